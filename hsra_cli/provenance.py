"""Provenance of an output: when it was made, by which command and which hsra, from exactly which files.

:func:`add_provenance` completes a JSON record (as :mod:`hsra_cli.batch` writes one per input) so a paper can
cite it and a reader can check it: a UTC timestamp, the command line, the hsra version and git commit (when
hsra runs from a git checkout), the SHA-256 of the input and of the mask, and absolute paths for every file.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

#: The command line of this process as the CLI received it (set by :func:`set_command_line`).
_COMMAND_LINE: list[str] | None = None


#: ``time.perf_counter()`` when the command started (set with the command line): what --max-time counts from.
_COMMAND_STARTED: float | None = None


def set_command_line(argv: list[str], whole_process: bool = False) -> None:
    """Remember the command line (``["hsra", "reconstruct", ...]``) and when the command started; the CLI's entry
    point calls this. ``whole_process``: the process is this command (the console script), so its start counts
    from the interpreter's (the imports included); else from now (``main([...])`` called in a longer process)."""
    global _COMMAND_LINE, _COMMAND_STARTED
    _COMMAND_LINE = [str(part) for part in argv]
    _COMMAND_STARTED = time.perf_counter() - (process_age_s() if whole_process else 0.0)


def command_started() -> float | None:
    """``time.perf_counter()`` at the start of the CLI command (see :func:`set_command_line`); None outside it."""
    return _COMMAND_STARTED


def process_age_s() -> float:
    """Seconds since this process started (interpreter start-up and imports included). From /proc on Linux;
    elsewhere 0."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: the start, in clock ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    return max(0.0, uptime - started)


def command_line() -> str:
    """The command line, quoted as a shell would need it: the CLI's, else this Python process's."""
    argv = _COMMAND_LINE if _COMMAND_LINE is not None else [sys.executable, *sys.argv]
    return shlex.join(argv)


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout hsra runs from, or ``(None, None)`` when it is not one (an
    installed wheel) or git is unavailable. Only a repository whose top level holds this very package counts,
    so a wheel installed into some other project's tree does not report that project's commit."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None, None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from .weights import sha256_of

    return sha256_of(Path(path))


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, computed once per (path, size, modification time) in this process (a batch
    hashes its one mask once)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256_cached(str(resolved), stat.st_size, stat.st_mtime_ns)


def utc_timestamp() -> str:
    """Now, in UTC, ISO 8601 to the second: ``2026-11-30T01:40:00Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def provenance() -> dict:
    """The run's part of a record: timestamp, command line, working folder, hsra version, git commit."""
    from . import __version__

    commit, dirty = git_state()
    return {
        "created_utc": utc_timestamp(),
        "command_line": command_line(),
        "working_directory": os.getcwd(),
        "hsra_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _absolute(path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def add_provenance(record: dict, input_path, mask_path=None) -> dict:
    """Complete ``record`` in place (and return it): a ``provenance`` block (:func:`provenance`), the SHA-256
    and absolute path of the input (``record["input"]``) and of the mask (``record["mask_file"]``), and
    absolute paths for the outputs and a weights folder or file."""
    record["provenance"] = provenance()
    for key, path in (("input", input_path), ("mask_file", mask_path)):
        if path is None:
            continue
        entry = record.setdefault(key, {})
        entry["path"] = _absolute(path)
        try:
            entry["sha256"] = file_sha256(path)
        except OSError as exc:  # gone or unreadable since it was read: say so rather than fail the output
            entry["sha256"], entry["sha256_error"] = None, f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(record.get("outputs"), dict):
        record["outputs"] = {name: _absolute(path) for name, path in record["outputs"].items()}
    weights = record.get("weights")
    if isinstance(weights, dict) and weights.get("source"):
        weights["source"] = _absolute(weights["source"])
    return record
