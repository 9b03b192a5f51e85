"""Files in, files out: many captures through one :class:`~hsra_cli.reconstruct.Reconstructor`.

Inputs are files, folders (their supported files, sorted) or glob patterns (:mod:`hsra_cli.inputs`); outputs go
to one folder, named after the inputs by a template (``--name``, default ``{stem}``). Each input's outputs form a
set: the cube, its previews (false colour, band grid, the trust map ``<stem>_residual.png``) and, written last, its JSON record, which marks the set complete. Every output path is
checked before any computing starts, so an existing file is never overwritten by accident, an output never
replaces an input of the same call, and a refused run leaves nothing behind. A failed input does not stop the
others; outputs are written by a background thread so the model never waits on the disk. Ctrl-C or SIGTERM ends
the batch after the writes in progress, with what was done and what is left.
"""

from __future__ import annotations

import json
import platform
import signal
import string
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import INTERRUPTS, HsraError, InputFileError, OutputExistsError, UsageError, interrupts_deferred

#: The placeholders of ``hsra reconstruct --name``.
RECONSTRUCT_NAME_FIELDS = {
    "stem": "the input's file name without its suffix",
    "parent": "the name of the input's folder",
    "model": "the method's registered name (gap-tv, hsra-s, …)",
}


def expand_inputs(specs: list[str], suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Files, folders and (quoted) glob patterns -> a sorted, de-duplicated list of files; raises the first spec
    that names nothing (:func:`hsra_cli.inputs.collect` reports them all instead)."""
    from .inputs import absolute, collect

    sources, problems, _ = collect(specs, suffixes)
    if problems:
        raise problems[0][1]
    return [absolute(source.path) for source in sources]


def check_name_template(template: str, fields: dict[str, str], option: str = "--name") -> None:
    """Refuse (:class:`UsageError`) an output-name template with unknown placeholders or a path in it."""
    allowed = ", ".join("{" + name + "}" for name in fields)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"{option} {template!r} is not a name template ({exc}); use placeholders {allowed}") from None
    for literal, name, spec, conversion in parts:
        if name is not None and (spec or conversion):
            shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            raise UsageError(f"{option} {template!r}: conversions and format specs are not supported ({shown}); "
                             f"use plain {allowed}")
        if name is not None and name not in fields:
            raise UsageError(f"{option} {template!r}: unknown placeholder {{{name}}}; expected {allowed}")
        if "/" in literal or "\\" in literal:
            raise UsageError(f"{option} {template!r} holds a folder; name files only and choose the folder with -o")
    if not template or template.startswith("."):
        raise UsageError(f"{option} {template!r} must give a visible file name, e.g. '{{stem}}'")


def output_name(template: str, **values: str) -> str:
    """Fill a template checked by :func:`check_name_template`."""
    return template.format(**values)


#: What to do instead, for the commands that write a folder of named outputs, and for those that write one file.
FOLDER_HINT = "write to another folder (-o) or name the outputs apart (--name)"
FILE_HINT = "give -o another file name"


def check_not_inputs(outputs, inputs, hint: str = FOLDER_HINT) -> None:
    """Refuse (:class:`UsageError`, before any work) an output that is one of the call's inputs, whatever
    ``--overwrite`` says: the same file under any name (links included). ``hint`` says what to do instead."""
    from .inputs import same_file

    existing_inputs = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    for target in outputs:
        target = Path(target)
        if not target.exists():
            continue
        for source in existing_inputs:
            if same_file(target, source):
                raise UsageError(f"output {target} would replace the input {source} of this call; {hint}")


def clean_stale_temporaries(folder: Path, on_note=None) -> None:
    """Remove what killed runs left in ``folder`` (see :func:`hsra_cli.io.remove_stale_temporaries`); one note."""
    from .io import STALE_TEMPORARY_SECONDS, _fmt_bytes, remove_stale_temporaries

    removed, kept = remove_stale_temporaries(folder)
    if on_note and removed:
        size = _fmt_bytes(sum(size for _, size in removed))
        on_note(f"removed {len(removed)} temporary file(s) ({size}) that an interrupted run left in {folder}")
    if on_note and kept:
        on_note(
            f"left {len(kept)} temporary file(s) in {folder}: changed less than {STALE_TEMPORARY_SECONDS:.0f} s ago "
            "or not lockable here, so perhaps another run's (e.g. {})".format(kept[0].name)
        )


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "not enough memory")
    )


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
    #: inputs not processed because the batch was interrupted
    left: list[Path] = field(default_factory=list)
    #: the signal number (SIGINT for Ctrl-C) that interrupted the batch; None when it ran to its end
    interrupted: int | None = None


def output_paths(out_dir: Path, stem: str, fmt: str, previews: bool) -> dict[str, Path]:
    """One input's set of outputs, in the order they are written: the record comes last and marks the set
    complete (:func:`set_complete`). The one list of what a set holds."""
    paths = {"cube": out_dir / f"{stem}.{fmt}"}
    if previews:
        paths["rgb"] = out_dir / f"{stem}_rgb.png"
        paths["bands"] = out_dir / f"{stem}_bands.png"
        paths["residual"] = out_dir / f"{stem}_residual.png"  # the trust map (hsra_cli.trust)
    paths["record"] = out_dir / f"{stem}.json"
    return paths


def set_complete(paths: dict[str, Path]) -> bool:
    """A set is complete when its record (written last) is a JSON object and every other file of it exists."""
    return is_record(paths["record"]) and all(path.is_file() for path in paths.values())


def is_record(path: Path) -> bool:
    """Whether ``path`` is a record ``hsra reconstruct`` wrote: a JSON object naming its model and its outputs (any
    other file under a record's name is the user's, never replaced without ``--overwrite``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model" in data and isinstance(data.get("outputs"), dict)


def check_keep_or_replace(skip_existing: bool, overwrite: bool) -> None:
    """Refuse ``--skip-existing`` with ``--overwrite`` (:class:`UsageError`), in every command that writes sets: one
    keeps what is there, the other replaces it, and the pair would keep complete sets made otherwise unnoticed."""
    if skip_existing and overwrite:
        raise UsageError("--skip-existing and --overwrite contradict each other (keep the outputs there, or replace "
                         "them); pick one (Python: skip_existing=, overwrite=)")


def plan_set(paths: Sequence[Path], *, skip_existing: bool = False, overwrite: bool = False,
             complete: bool | None = None, own=None, missing: Sequence[Path] | None = None) -> str:
    """``"skip"``, ``"write"`` or ``"replace"`` for one input's set of output files ``paths`` (in the order they
    are written): the rule of ``--skip-existing`` in every command that writes sets (reconstruct, simulate,
    render). A complete set is skipped with ``skip_existing``; an incomplete one is redone (its
    files replaced) when every file of it that exists is hsra's (``own(path)``; default :func:`hsra_cli.render.written_by_hsra`); a file that is not hsra's is only
    replaced with ``overwrite``. Raises :class:`OutputExistsError` when existing files are in the way and neither
    flag allows replacing them, and the errors of :func:`hsra_cli.io.check_writable`.

    ``complete``: whether the set is complete (default: every file of it exists); ``missing``: what the set lacks,
    for the message (default: its files that do not exist).
    """
    from .io import check_writable

    if own is None:
        from .render import written_by_hsra as own

    paths = [Path(path) for path in paths]
    present = [path for path in paths if path.exists() and not path.is_dir()]
    if complete is None:
        complete = len(present) == len(paths)
    if complete and skip_existing:
        return "skip"
    foreign = [] if complete else [path for path in present if not own(path)]
    replace = overwrite or (skip_existing and bool(present) and not foreign)
    if present and not replace:
        if complete:
            raise OutputExistsError(f"{present[0]} exists; pass --overwrite to replace it or --skip-existing to keep it")
        if foreign:
            raise OutputExistsError(f"{foreign[0]} exists and was not written by hsra; pass --overwrite to replace it")
        missing = [path for path in paths if path not in present] if missing is None else list(missing)
        if missing:
            raise OutputExistsError(
                f"{present[0]} exists but its set is incomplete ({missing[0].name} is missing: an interrupted run?); "
                "pass --skip-existing to redo that input or --overwrite"
            )
        raise OutputExistsError(f"{present[0]} exists; pass --overwrite to replace it")
    for target in paths:
        check_writable(target, replace)
    return "replace" if replace else "write"


def _written_by_reconstruct(path: Path, paths: dict[str, Path]) -> bool:
    """Whether a file of reconstruct's set ``paths`` is hsra's: a record (a crash never leaves a damaged one, it is
    written atomically), an image naming hsra as its creator, a cube whose metadata names its model (a .npy cube
    holds none: it counts as hsra's)."""
    from .render import written_by_hsra

    if path == paths["record"]:
        return is_record(path)
    if path == paths["cube"]:
        if path.suffix.lower() == ".npy":
            return True
        try:
            from .io import read_array

            return "model" in (read_array(path, None, role="cube").metadata or {})
        except (HsraError, OSError, ValueError):
            return False
    return written_by_hsra(path)


def _plan_set(paths: dict[str, Path], skip_existing: bool, overwrite: bool) -> str:
    """:func:`plan_set` for reconstruct's set, complete once its record is written."""
    return plan_set(list(paths.values()), skip_existing=skip_existing, overwrite=overwrite,
                    complete=set_complete(paths), own=lambda path: _written_by_reconstruct(path, paths))


class SetOfAnotherRun(OutputExistsError):
    """A set in the output folder that ``--skip-existing`` must neither keep nor replace: its record says it was made
    from another capture or mask, with other settings or in another format. Without ``--overwrite`` that input fails
    alone (named, the batch goes on and exits 1)."""


#: What ``hsra reconstruct`` asked for that decides the cube (the record's ``arguments``), compared by
#: ``--skip-existing``; how it was computed (device, tiling, memory cap, amp, parts, threads) is not.
_SETTINGS = ("normalize", "mask_offset", "wavelengths", "refine", "self_ensemble", "adapt")


def _existing_record(paths: dict[str, Path]) -> tuple[dict | None, dict[str, Path]]:
    """The record at ``paths["record"]`` when it is hsra's (:func:`is_record`), and the set it names, as files of
    this folder (by name: a moved folder keeps its sets); ``(None, {})`` otherwise."""
    try:
        record = json.loads(paths["record"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, {}
    if not (isinstance(record, dict) and "model" in record and isinstance(record.get("outputs"), dict)):
        return None, {}
    folder = paths["record"].parent
    made = {kind: folder / Path(name).name for kind, name in record["outputs"].items()
            if isinstance(name, str) and Path(name).name}
    made["record"] = paths["record"]
    return record, made


def _plain(value):
    """``value`` as its JSON round trip gives it (tuples become lists), for comparing with a record."""
    return json.loads(json.dumps(value, default=str))


def _made_otherwise(record: dict, path: Path, mask_path: Path, wanted: dict) -> str | None:
    """How the set ``record`` describes was not made by this call from ``path``: ``"from another capture than …"``,
    ``"with another mask than …"`` or ``"with other settings (…)"``; None when it is this call's result. The input
    and mask are compared by the SHA-256 the record holds (this input hashed once; without a recorded hash, by
    path)."""
    from .provenance import file_sha256

    def differs(entry, current: Path) -> tuple[str, str] | None:
        entry = entry if isinstance(entry, dict) else {}
        name = str(entry.get("path") or "?")
        recorded = entry.get("sha256")
        if recorded:
            try:
                now = file_sha256(current)
            except OSError:
                return None  # unreadable now: reading it fails the input with its own message
            return None if now == recorded else (name, f"sha256 {recorded[:12]}…, this one's {now[:12]}…")
        same = entry.get("path") and Path(str(entry["path"])).resolve() == Path(current).resolve()
        return None if same else (name, "another file")

    capture = differs(record.get("input"), path)
    if capture:
        return f"from another capture than {path} (the record's input {capture[0]}, {capture[1]})"
    mask = differs(record.get("mask_file"), mask_path)
    if mask:
        return f"with another mask than {mask_path} (the record's {mask[0]}, {mask[1]})"
    changed = []
    if record.get("model") != wanted["model"]:
        changed.append(f"model {record.get('model')}, not {wanted['model']}")
    recorded_weights = (record.get("weights") or {}).get("sha256") if isinstance(record.get("weights"), dict) else None
    if (recorded_weights or wanted["weights"]) and recorded_weights != wanted["weights"]:
        changed.append("other weights")
    physics = record.get("physics") if isinstance(record.get("physics"), dict) else {}
    for name, option in (("bands", "bands"), ("dispersion_step", "step"), ("dispersion_axis", "axis")):
        if wanted.get(name) is not None and name in physics and physics[name] != wanted[name]:
            changed.append(f"{option} {physics[name]}, not {wanted[name]}")
    for name, option in (("key", "input"), ("mask_key", "mask_file")):  # a key asked for, against the one read
        entry = record.get(option) if isinstance(record.get(option), dict) else {}
        if wanted.get(name) is not None and entry.get("key") not in (None, wanted[name]):
            changed.append(f"{name.replace('_', '-')} {entry['key']}, not {wanted[name]}")
    asked = record.get("arguments") if isinstance(record.get("arguments"), dict) else {}
    for name in _SETTINGS:
        if name in asked and name in wanted["arguments"] and _plain(asked[name]) != _plain(wanted["arguments"][name]):
            changed.append(f"{name.replace('_', '-')} {asked[name]}, not {wanted['arguments'][name]}")
    return f"from {path} with other settings ({'; '.join(changed)})" if changed else None


def _stale_files(paths: dict[str, Path], made: dict[str, Path]) -> list[Path]:
    """hsra's files of the set ``paths`` replaces that the new set does not write: the previews of its name (an
    image naming hsra as its creator) and the cube the old record names in another format. Nothing else."""
    from .render import written_by_hsra

    ours = set(paths.values())
    every = output_paths(paths["record"].parent, paths["record"].stem, "npy", previews=True)
    stale = [every[kind] for kind in ("rgb", "bands", "residual")
             if every[kind] not in ours and every[kind].is_file() and written_by_hsra(every[kind])]
    old_cube = made.get("cube")
    if old_cube is not None and old_cube not in ours and old_cube.is_file() and _written_by_reconstruct(old_cube, made):
        stale.append(old_cube)
    return stale


def _plan_reconstruct(path: Path, paths: dict[str, Path], mask_path: Path, wanted: dict, *, skip_existing: bool,
                      overwrite: bool) -> tuple[str, list[Path], bool]:
    """``(plan, stale, without_previews)`` for one input's set: :func:`_plan_set`'s plan, the files to remove once a
    replaced set is written (:func:`_stale_files`), and whether a skipped set lacks previews it was made without.

    What ``--skip-existing`` keeps is this call's result, complete for what it was made with: the record there names
    this input and mask (their SHA-256), the model, weights and settings of this call (:func:`_made_otherwise`) and
    a cube in this ``--format``, and every file it names exists. A set made with ``--no-previews`` is skipped by a
    call that asks for previews (they cannot be drawn without reconstructing again: the trust map needs the
    measurement's residual; ``hsra render`` draws the others from the cube). A set made from another capture or mask,
    with other settings, or in another format is never kept for this input nor replaced without ``--overwrite``:
    :class:`SetOfAnotherRun`. An interrupted set of this call is redone as :func:`plan_set` says. ``--overwrite``
    replaces the whole set: hsra's files of the old one that the new one does not write are removed."""
    record, made = _existing_record(paths)
    where = paths["record"].parent / paths["record"].stem
    if record is not None and not overwrite:
        old_cube = made.get("cube")
        if old_cube != paths["cube"]:
            raise SetOfAnotherRun(
                f"output set {where} was made as {old_cube.name if old_cube else 'no cube'}, not {paths['cube'].name} "
                f"(another --format); pass --overwrite to replace that set, or write to another folder (-o)"
            )
        if skip_existing:
            otherwise = _made_otherwise(record, path, mask_path, wanted)
            if otherwise:
                raise SetOfAnotherRun(
                    f"output set {where} was made {otherwise}; --skip-existing keeps only this call's own results: "
                    "pass --overwrite to redo it, or write to another folder (-o)"
                )
            if all(file.is_file() for file in made.values()) and not set_complete(paths):
                return "skip", [], True  # complete as it was made: only previews it was not asked for are missing
    plan = _plan_set(paths, skip_existing, overwrite)
    return plan, (_stale_files(paths, made) if plan == "replace" else []), False


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
    name: str = "{stem}",
    on_begin=None,
    on_start=None,
    on_result=None,
    on_done=None,
    on_note=None,
    progress=None,
    calibration: dict | None = None,
) -> BatchResult:
    """Reconstruct every input into ``out_dir``, each output set named by the template ``name``
    (:data:`RECONSTRUCT_NAME_FIELDS`).

    Callbacks: ``on_begin(todo, skipped)`` after the up-front checks; ``on_start(path, index, total)``;
    ``on_result(path, index, total, record)`` when an input is reconstructed (before its files are written);
    ``on_done(path, record|None, error|None)`` when its set is written or it failed; ``on_note(text)`` for
    housekeeping notes; ``progress(done, total)`` for the steps (tiles, solver iterations) of the current input.

    Raises before computing anything when outputs would be overwritten or replace an input. ``skip_existing``:
    this call's complete sets are skipped and incomplete ones redone; a set made from another capture or mask, with
    other settings or in another format fails its input alone (:func:`_plan_reconstruct`). ``overwrite`` replaces
    whole sets: hsra's previews of a set that the new one does not write (and the old record's cube in another
    format) are removed once the new set is written. Integer measurements (uint8/uint16/…) are scaled to
    [0, 1] by their type's maximum, as integer cubes are, and the record says so. On KeyboardInterrupt or
    :class:`~hsra_cli.errors.Interrupted` (the CLI's SIGINT/SIGTERM) the input being reconstructed is dropped, the
    write under way is finished, and the result comes back with ``interrupted`` and ``left`` set.
    ``calibration``: how the geometry was found (``--mask-offset auto``), kept in every record.
    """
    from .bands import DEFAULT_BANDS, default_wavelengths
    from .io import atomic_output, output_folder, read_mask, read_measurement, unit_range, write_cube
    from .provenance import add_provenance
    from .render import prepare as prepare_previews, write_previews
    from .trust import write_residual_map

    if fmt not in ("mat", "h5", "tif", "npy"):
        raise UsageError(f"unknown --format {fmt!r}; expected mat, h5, tif or npy")
    check_name_template(name, RECONSTRUCT_NAME_FIELDS)
    stems: dict[str, Path] = {}
    planned: list[tuple[Path, str]] = []
    for path in inputs:
        stem = output_name(name, stem=path.stem, parent=path.parent.name, model=reconstructor.entry.name)
        if stem in stems:
            raise UsageError(
                f"inputs {stems[stem]} and {path} would both write {stem}.{fmt}; name the outputs apart with --name "
                "(e.g. '{parent}_{stem}') or rename one"
            )
        stems[stem] = path
        planned.append((path, stem))
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is not a folder")
    sets = [(path, output_paths(out_dir, stem, fmt, previews)) for path, stem in planned]
    check_not_inputs((p for _, paths in sets for p in paths.values()), [*inputs, mask_path])

    result = BatchResult()
    todo: list[tuple[Path, dict[str, Path], bool, list[Path]]] = []
    refused: list[tuple[Path, SetOfAnotherRun]] = []
    without_previews = 0
    wanted = {
        "model": getattr(reconstructor, "name", None) or reconstructor.entry.name,
        "weights": (getattr(reconstructor, "weights_info", None) or {}).get("sha256"),
        "bands": getattr(reconstructor, "bands", None), "dispersion_step": getattr(reconstructor, "step", None),
        "dispersion_axis": getattr(reconstructor, "axis", None), "key": key, "mask_key": mask_key,
        "arguments": arguments or {},
    }
    for path, paths in sets:
        try:
            plan, stale, bare = _plan_reconstruct(path, paths, mask_path, wanted, skip_existing=skip_existing,
                                                  overwrite=overwrite)
        except SetOfAnotherRun as exc:
            if not skip_existing:
                raise  # without --skip-existing every existing output refuses the call, before any work
            refused.append((path, exc))
            continue
        if plan == "skip":
            result.skipped.append(path)
            without_previews += bare and previews
        else:
            todo.append((path, paths, plan == "replace", stale))
    if on_begin:
        on_begin(len(todo), len(result.skipped))
    if without_previews and on_note:
        on_note(f"kept {without_previews} set(s) made with --no-previews as they are (their previews were not asked "
                f"for then); draw them from the cubes with hsra render, or redo them with --overwrite")
    for path, exc in refused:  # each refused input fails alone, named; the batch goes on and exits 1
        result.failed.append((path, str(exc), exc))
        if on_done:
            on_done(path, None, str(exc))
    if not todo:
        return result

    mask, mask_loaded = read_mask(mask_path, mask_key)
    # The cube and record keep only wavelengths that are known: given (--wavelengths), else those the capture's file
    # records (hsra simulate writes the cube's), else the weights' card, else the field's 28; for other band counts
    # the previews alone assume an even spread (default_wavelengths), and a note says so once.
    fallback = reconstructor.wavelengths_nm or (default_wavelengths(reconstructor.bands)
                                                if reconstructor.bands == DEFAULT_BANDS else None)
    known = wavelengths_nm if wavelengths_nm is not None else fallback
    wavelengths = np.asarray(known if known is not None else default_wavelengths(reconstructor.bands), dtype=np.float64)
    if wavelengths.shape != (reconstructor.bands,):
        raise UsageError(f"{wavelengths.size} wavelengths given for {reconstructor.bands} bands")
    stored = None if known is None else wavelengths
    said = set()

    def say_once(kind, text):
        if kind not in said and on_note is not None:
            said.add(kind)
            on_note(text)

    def wavelengths_of(loaded):
        """(wavelengths the cube and record keep or None, those its previews use) for one capture."""
        if wavelengths_nm is not None:
            return stored, stored
        own = (loaded.metadata or {}).get("wavelengths_nm")
        if own is not None and len(own) == reconstructor.bands:
            own = np.asarray(own, dtype=np.float64)
            trained = reconstructor.wavelengths_nm
            # said when they differ by more than a band's spacing (a few nm of calibration are no news)
            spacing = float(np.mean(np.abs(np.diff(trained)))) if trained is not None and len(trained) > 1 else 0.5
            if trained is not None and len(trained) == own.size and not np.allclose(own, trained, atol=spacing):
                say_once("trained", f"the capture records bands of {own[0]:g}–{own[-1]:g} nm, which the cube keeps; "
                                    f"{reconstructor.name} was trained on {trained[0]:g}–{trained[-1]:g} nm")
            return own, own
        if stored is not None:
            return stored, stored
        say_once("unknown", f"no wavelengths are known for {reconstructor.bands} bands: the cubes store none (render "
                            f"them with --wavelengths); the previews assume {reconstructor.bands} bands spread evenly "
                            f"over {wavelengths[0]:g}–{wavelengths[-1]:g} nm")
        return None, wavelengths
    with output_folder(out_dir):  # created here; removed again if nothing was written into it
        clean_stale_temporaries(out_dir, on_note)
        env = environment()

        def write_outputs(cube: np.ndarray, record: dict, paths: dict[str, Path], replace: bool, residual_map,
                          kept, shown, stale: Sequence[Path] = ()) -> dict:
            start = time.perf_counter()
            meta = {k: record[k] for k in ("model", "physics", "normalization")}
            if replace:  # the old record goes first: until the new one lands, the set reads as incomplete
                paths["record"].unlink(missing_ok=True)
            # Every file of the set (output_paths) is written before the record; each goes into `written`, so a set
            # whose writing fails is removed whole.
            written: list[Path] = []
            try:
                written.append(write_cube(paths["cube"], cube, wavelengths_nm=kept, metadata=meta, overwrite=replace))
                if previews:
                    written += write_previews(cube, shown, out_dir, paths["cube"].stem, overwrite=replace)
                    trust = record.get("residual_map") or {}
                    of = trust.get("cube")
                    written.append(write_residual_map(paths["residual"], residual_map, trust.get("residual", record["residual"]),
                                                      paths["cube"].stem, replace,
                                                      of=None if of in (None, "the reconstruction") else of))
                record["seconds"]["write"] = time.perf_counter() - start
                with atomic_output(paths["record"], replace) as tmp:
                    tmp.write_text(json.dumps(record, indent=2, default=str))
            except BaseException:
                for path in written:  # a set without its record is useless: free the disk (they are this call's files)
                    path.unlink(missing_ok=True)
                raise
            # The new set is whole: hsra's files of the one it replaced that it does not hold go (--overwrite replaces
            # a set, not some of its files).
            for path in stale:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    if on_note:
                        on_note(f"could not remove {path}, left from the set this run replaced: {exc.strerror or exc}")
            return record

        pending: list[tuple[Path, dict[str, Path], Future]] = []
        handled = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsra-writer") as writer:
            if previews:
                writer.submit(prepare_previews)  # imports overlap the first reconstruction
            try:
                for index, (path, paths, replace, stale) in enumerate(todo):
                    if on_start:
                        on_start(path, index, len(todo))
                    try:
                        start = time.perf_counter()
                        measurement, loaded = read_measurement(path, key)
                        measurement, _ = unit_range(measurement, loaded)
                        read_seconds = time.perf_counter() - start
                        recon = reconstructor.reconstruct(
                            measurement, mask, normalize=normalize, mask_offset=mask_offset, key=loaded.key,
                            progress=progress, scale=(loaded.metadata or {}).get("scale"),
                        )
                    except (HsraError, MemoryError, RuntimeError) as exc:
                        if isinstance(exc, RuntimeError) and not _out_of_memory(exc):
                            raise
                        if not isinstance(exc, HsraError):
                            exc = InputFileError(
                                f"out of memory reconstructing {path}; lower --memory-cap or set --tile-size so it is tiled"
                            )
                        result.failed.append((path, str(exc), exc))
                        handled += 1
                        if on_done:
                            on_done(path, None, str(exc))
                        continue
                    record = recon.record
                    record["seconds"]["read"] = read_seconds
                    kept, shown = wavelengths_of(loaded)
                    integer = loaded.metadata.get("integer_dtype")
                    record.update(
                        {
                            "input": {
                                "path": str(path), "key": loaded.key, "shape": list(measurement.shape),
                                **({"integer_dtype": integer, "scaled_by": f"1/{np.iinfo(np.dtype(integer)).max}",
                                    "note": "integer measurement scaled to [0, 1], as integer cubes are"}
                                   if integer else {}),
                            },
                            "mask_file": {"path": str(mask_path), "key": mask_loaded.key, "shape": list(mask.shape),
                                          **({"scaled_by": mask_loaded.metadata["mask_scaled_by"]}
                                             if mask_loaded.metadata.get("mask_scaled_by") else {})},
                            "outputs": {k: str(v) for k, v in paths.items()},
                            "wavelengths_nm": None if kept is None else kept.tolist(),
                            "arguments": arguments or {},
                            "environment": env,
                        }
                    )
                    if calibration is not None:
                        record["calibration"] = calibration
                    add_provenance(record, path, mask_path)  # timestamp, command line, versions, hashes, absolute paths
                    if on_result:
                        on_result(path, index, len(todo), record)
                    # The next input is reconstructed while this one is written, but no further ahead: memory stays
                    # bounded and an interruption finds at most one write under way.
                    _collect(pending, result, on_done, block=True)
                    pending.append((path, paths, writer.submit(write_outputs, recon.cube, record, paths, replace,
                                                                 recon.residual_map, kept, shown, stale)))
                    handled += 1
                _collect(pending, result, on_done, block=True)
            except INTERRUPTS as exc:  # Ctrl-C, or SIGINT/SIGTERM as hsra_cli.errors.Interrupted
                result.interrupted = getattr(exc, "signum", int(signal.SIGINT))
                # A write not yet begun is dropped with the input in progress; the one under way is finished.
                dropped = [item for item in pending if item[2].cancel()]
                for item in dropped:
                    pending.remove(item)
                result.left = [path for path, _, _ in dropped] + [item[0] for item in todo[handled:]]
                _collect(pending, result, on_done, block=True)
        return result


def _collect(pending, result: BatchResult, on_done, block: bool) -> None:
    """Record the finished writes of ``pending`` (all of them with ``block``), removing them from the list."""
    for item in list(pending):
        path, paths, future = item
        if not block and not future.done():
            continue
        try:
            record = future.result()
        except HsraError as exc:
            pending.remove(item)
            result.failed.append((path, str(exc), exc))
            if on_done:
                on_done(path, None, str(exc))
            continue
        except OSError as exc:
            pending.remove(item)
            result.failed.append((path, f"cannot write outputs: {exc}", exc))
            if on_done:
                on_done(path, None, f"cannot write outputs: {exc}")
            continue
        with interrupts_deferred():  # counted as done and its path printed, or neither
            pending.remove(item)
            result.done.append(path)
            result.outputs.extend(paths.values())
            if on_done:
                on_done(path, record, None)
