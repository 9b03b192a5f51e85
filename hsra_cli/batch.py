"""Files in, files out: many captures through one :class:`~hsra_cli.reconstruct.Reconstructor`.

Inputs are files, folders (their supported files, sorted) or glob patterns; outputs go to one folder, named after
the inputs (``<stem>.<format>``, ``<stem>_rgb.png``, ``<stem>_bands.png``, ``<stem>_residual.png`` (the trust map),
``<stem>.json``). Every output path is
checked before any computing starts, so an existing file is never overwritten by accident and a refused run
leaves nothing behind. A failed input does not stop the others; outputs are written by a background thread so the
model never waits on the disk.
"""

from __future__ import annotations

import glob
import json
import platform
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import HsraError, InputFileError, OutputExistsError, UsageError


def expand_inputs(specs: list[str], suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Files, folders and (quoted) glob patterns -> a sorted, de-duplicated list of files."""
    from .io import SUPPORTED_SUFFIXES

    suffixes = suffixes or SUPPORTED_SUFFIXES
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if any(ch in spec for ch in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            matches = [p for p in matches if p.is_file() and p.suffix.lower() in suffixes]
            if not matches:
                raise InputFileError(f"the pattern {spec!r} matches no {'/'.join(suffixes)} file")
            found.extend(matches)
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not matches:
                raise InputFileError(f"the folder {spec!r} holds no {'/'.join(suffixes)} file")
            found.extend(matches)
        elif path.exists():
            found.append(path)
        else:
            raise InputFileError(f"input {spec!r} does not exist")
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.resolve(), None)
    return list(unique)


def shard(paths: list[Path], num_parts: int = 1, part_id: int = 0) -> list[Path]:
    """Part ``part_id`` of ``num_parts`` interleaved parts (every machine gets a similar mix)."""
    if num_parts < 1:
        raise UsageError(f"--num-parts must be ≥ 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise UsageError(f"--part-id must be in 0..{num_parts - 1}, got {part_id}")
    return paths[part_id::num_parts]


def environment() -> dict:
    import torch

    return {
        "hsra": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }


@dataclass
class BatchResult:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    #: (input, message, the exception) for each failed input
    failed: list[tuple[Path, str, Exception]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def output_paths(out_dir: Path, stem: str, fmt: str, previews: bool) -> dict[str, Path]:
    paths = {"cube": out_dir / f"{stem}.{fmt}", "record": out_dir / f"{stem}.json"}
    if previews:
        paths["rgb"] = out_dir / f"{stem}_rgb.png"
        paths["bands"] = out_dir / f"{stem}_bands.png"
        paths["residual"] = out_dir / f"{stem}_residual.png"
    return paths


def reconstruct_files(
    inputs: list[Path],
    mask_path: Path,
    out_dir: Path,
    reconstructor,
    *,
    fmt: str = "mat",
    key: str | None = None,
    mask_key: str | None = None,
    normalize: str = "auto",
    mask_offset: tuple[int, int] | None = None,
    wavelengths_nm=None,
    previews: bool = True,
    skip_existing: bool = False,
    overwrite: bool = False,
    arguments: dict | None = None,
    on_begin=None,
    on_start=None,
    on_done=None,
    calibration: dict | None = None,
) -> BatchResult:
    """Reconstruct every input into ``out_dir``. ``on_begin(todo, skipped)`` (after the up-front checks),
    ``on_start(path, index, total)`` and ``on_done(path, record|None, error|None)`` report progress. Raises before computing anything when outputs would be overwritten.
    ``calibration``: how the geometry was found (``--mask-offset auto``), kept in every record."""
    from .bands import default_wavelengths
    from .io import atomic_output, check_writable, read_mask, read_measurement, write_cube
    from .render import write_previews
    from .trust import write_residual_map

    if fmt not in ("mat", "h5", "tif", "npy"):
        raise UsageError(f"unknown --format {fmt!r}; expected mat, h5, tif or npy")
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise UsageError(f"inputs {stems[path.stem]} and {path} would both write {path.stem}.{fmt}; rename one")
        stems[path.stem] = path
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is not a folder")

    result = BatchResult()
    todo: list[tuple[Path, dict[str, Path]]] = []
    for path in inputs:
        paths = output_paths(out_dir, path.stem, fmt, previews)
        if skip_existing and paths["cube"].exists() and paths["record"].exists():
            result.skipped.append(path)
            continue
        for target in paths.values():
            try:
                check_writable(target, overwrite)
            except OutputExistsError:
                raise OutputExistsError(
                    f"{target} exists; pass --overwrite to replace it or --skip-existing to keep it"
                ) from None
        todo.append((path, paths))
    if on_begin:
        on_begin(len(todo), len(result.skipped))
    if not todo:
        return result

    mask, mask_loaded = read_mask(mask_path, mask_key)
    wavelengths = np.asarray(
        wavelengths_nm if wavelengths_nm is not None else (reconstructor.wavelengths_nm or default_wavelengths(reconstructor.bands)),
        dtype=np.float64,
    )
    if wavelengths.shape != (reconstructor.bands,):
        raise UsageError(f"{wavelengths.size} wavelengths given for {reconstructor.bands} bands")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()

    def write_outputs(cube: np.ndarray, record: dict, paths: dict[str, Path], residual_map=None) -> dict:
        start = time.perf_counter()
        meta = {k: record[k] for k in ("model", "physics", "normalization")}
        write_cube(paths["cube"], cube, wavelengths_nm=wavelengths, metadata=meta, overwrite=overwrite)
        if previews:
            write_previews(cube, wavelengths, out_dir, paths["cube"].stem, overwrite=overwrite)
            if residual_map is not None:
                write_residual_map(paths["residual"], residual_map, record["residual"], paths["cube"].stem, overwrite)
        record["seconds"]["write"] = time.perf_counter() - start
        with atomic_output(paths["record"], overwrite) as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str))
        return record

    pending: list[tuple[Path, dict[str, Path], Future]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsra-writer") as writer:
        for index, (path, paths) in enumerate(todo):
            if on_start:
                on_start(path, index, len(todo))
            try:
                start = time.perf_counter()
                measurement, loaded = read_measurement(path, key)
                read_seconds = time.perf_counter() - start
                recon = reconstructor.reconstruct(
                    measurement, mask, normalize=normalize, mask_offset=mask_offset, key=loaded.key
                )
            except HsraError as exc:
                result.failed.append((path, str(exc), exc))
                if on_done:
                    on_done(path, None, str(exc))
                continue
            record = recon.record
            record["seconds"]["read"] = read_seconds
            record.update(
                {
                    "input": {"path": str(path), "key": loaded.key, "shape": list(measurement.shape)},
                    "mask_file": {"path": str(mask_path), "key": mask_loaded.key, "shape": list(mask.shape)},
                    "outputs": {k: str(v) for k, v in paths.items()},
                    "wavelengths_nm": wavelengths.tolist(),
                    "arguments": arguments or {},
                    "environment": env,
                }
            )
            if calibration is not None:
                record["calibration"] = calibration
            pending.append((path, paths, writer.submit(write_outputs, recon.cube, record, paths, recon.residual_map)))
            # Report finished writes as they complete, without waiting on the current one.
            pending = _collect(pending, result, on_done, block=False)
        _collect(pending, result, on_done, block=True)
    return result


def _collect(pending, result: BatchResult, on_done, block: bool):
    remaining = []
    for path, paths, future in pending:
        if not block and not future.done():
            remaining.append((path, paths, future))
            continue
        try:
            record = future.result()
        except HsraError as exc:
            result.failed.append((path, str(exc), exc))
            if on_done:
                on_done(path, None, str(exc))
            continue
        except OSError as exc:
            result.failed.append((path, f"cannot write outputs: {exc}", exc))
            if on_done:
                on_done(path, None, f"cannot write outputs: {exc}")
            continue
        result.done.append(path)
        result.outputs.extend(paths.values())
        if on_done:
            on_done(path, record, None)
    return remaining
