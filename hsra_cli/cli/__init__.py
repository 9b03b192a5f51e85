"""The ``hsra`` command line: thin commands over the library.

Each command lives in its own module and registers itself on :data:`app`. Heavy imports (torch, the
networks, file formats) happen inside the commands so ``hsra --help`` stays fast. :func:`main` turns every
error into one line on stderr: exit code 2 for usage errors, 1 for runtime errors, never a traceback
(set ``HSRA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import typer

app = typer.Typer(
    name="hsra",
    help="Hyperspectral reconstruction from coded-aperture snapshot captures (CASSI).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


try:  # Flags take no value: show them without a type (typer ≥ 0.16 shows "<bool>", as if one were expected).
    from typer.core import TyperOption as _TyperOption

    _display_type = _TyperOption.display_type_rich

    def _flag_display_type(self, ctx):
        return None if self.is_flag else _display_type(self, ctx)

    _TyperOption.display_type_rich = _flag_display_type
except (ImportError, AttributeError):  # older typer: flags already show bare
    pass


def _version(value: bool):
    if value:
        from .. import __version__

        print(f"hsra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Hyperspectral reconstruction from coded-aperture snapshot captures (CASSI).

    Typical run: [b]hsra simulate[/b] a cube (or take a real capture), [b]hsra reconstruct[/b] it,
    [b]hsra evaluate[/b] against the truth, [b]hsra render[/b] previews. See [b]hsra models[/b] for the methods.
    """


# Commands register themselves on `app` when imported.
from . import simulate_cmd, reconstruct_cmd, evaluate_cmd, render_cmd, models_cmd, train_cmd, calibrate_cmd, report_cmd  # noqa: E402,F401


def _error(message: str, code: int) -> int:
    sys.stderr.write(f"hsra: error: {message}\n")
    sys.stderr.flush()
    return code


@contextlib.contextmanager
def _signals_as_exceptions():
    """SIGINT and SIGTERM raise :class:`~hsra_cli.errors.Interrupted` in the main thread, so temporaries are removed
    and batches end with their summary; a second signal gets the default action (stop at once)."""
    from ..errors import raise_interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        raise_interrupted(signum)  # Interrupted, now or at the end of a step that must not be cut in two

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


#: Options that name a file or folder: an empty value there is a slip (an unset shell variable, ``-o "$OUT"``), not
#: the current folder, which is what the path parser would make of it.
PATH_OPTIONS = ("-o", "--out", "--output-file", "-m", "--mask", "--truth", "--config", "--data", "--val-data",
                "--pretrained", "--weights")


#: Options that name an array in a file or a model: empty, they would silently mean "not given".
NAME_OPTIONS = ("--key", "--mask-key", "--truth-key", "--data-key", "--model")


def _empty_path_option(args: list[str]) -> str | None:
    """The first path or name option of ``args`` given an empty value, or None."""
    for index, token in enumerate(args):
        if token == "--":
            return None
        name, equals, value = token.partition("=")
        if name in PATH_OPTIONS + NAME_OPTIONS and token.startswith("--") and equals and not value:
            return name
        if token in PATH_OPTIONS + NAME_OPTIONS and index + 1 < len(args) and args[index + 1] == "":
            return token
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hsra`` console script; returns (and exits with) the exit code."""
    from ..errors import HsraError, Interrupted

    args = sys.argv[1:] if argv is None else argv
    from ..provenance import set_command_line

    set_command_line(["hsra", *args], whole_process=argv is None)  # for the JSON records (provenance), --max-time
    debug = os.environ.get("HSRA_DEBUG", "") not in ("", "0")
    empty = _empty_path_option(args)
    if empty is not None:
        expected = "a name" if empty in NAME_OPTIONS else "a path"
        code = _error(f"{empty} is empty; expected {expected} (is a shell variable unset?)", 2)
        if argv is None:
            sys.exit(code)
        return code
    try:
        with _signals_as_exceptions():
            result = app(args=args, prog_name="hsra", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = _error("aborted", 130)
    except Interrupted as exc:  # a command that does not end with a summary of its own
        code = _error(f"interrupted by {exc.signal_name}", exc.exit_code)
    except typer.TyperException as exc:  # usage errors from option parsing (exit code 2)
        if not exc.format_message().strip():  # `hsra` or `hsra models …` alone: the help was printed, nothing more
            code = exc.exit_code
            if argv is None:
                sys.exit(code)
            return code
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", "hsra") or "hsra"
        hint = f" (see '{path} --help')" if exc.exit_code == 2 else ""
        code = _error(exc.format_message() + hint, exc.exit_code)
    except HsraError as exc:
        if debug:
            raise
        code = _error(str(exc), exc.exit_code)
    except MemoryError:
        code = _error(f"out of memory running hsra {' '.join(args[:1])}; try a smaller --tile-size or --memory-cap", 1)
    except Exception as exc:  # a bug of ours: still one line, with a way to see more
        if debug:
            raise
        code = _error(f"internal error: {type(exc).__name__}: {exc} (run with HSRA_DEBUG=1 for the traceback)", 1)
    if argv is None:
        sys.exit(code)
    return code
