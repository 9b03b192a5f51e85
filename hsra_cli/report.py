"""One self-contained HTML page for a folder of reconstructions (``hsra report``).

The page is the place to look at a batch: per item the false colour, the band grid, the trust map, spectra at a
few automatically chosen points, the record's key facts (model, weights hash, geometry, residual, time) and, when
truths are given, the metrics. Items are sorted worst first (largest residual); a table at the top sorts by any
column. Everything is inside the one file (images as data URIs, inline style and script): it opens from disk with
no server and no network, and can be mailed or archived. Thumbnails link to the full-size PNGs beside it.

Items are found by their JSON records (``<stem>.json`` with ``model`` and ``outputs``): ``hsra reconstruct`` writes
the record last, so a cube without one is an unfinished output and is listed as such, not shown. A ``<stem>.json``
beside a cube ``<stem>.*`` that is no readable record (damaged JSON) is an item whose record is unreadable, not an
unfinished output. An item reads only the files beside its record (the folder given, even when the record names
another folder it was written in): a cube missing there is said to be missing, never read from elsewhere.

One bad item (an unreadable record, cube or preview, a record of the wrong shape) does not stop the page: the item
is listed with a note saying what is wrong, each problem is one ``problem(message)`` call naming the item
(:func:`write_report`), and the command ends with exit code 1, as a batch with a failed item ends.

A folder that holds no record itself but whose immediate subfolders do (``make demo``'s ``out/demo/<model>/``, one
folder per method) is reported as one page of every subfolder's items, each labelled by its subfolder
(``colorchecker (gap-tv)``), truths paired within each subfolder as if it were reported alone. A folder with
records of its own reports only those; its subfolders with records are named in one note (:func:`find_sources`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputFileError, UsageError, key_option
from .render import DEFAULT_ILLUMINANT

#: The report's file name in the folder of the reconstructions (no -o), or in the folder -o names.
REPORT_NAME = "report.html"
#: Spectra plotted per item, at points chosen by :func:`spectral_points`.
DEFAULT_POINTS = 4
#: At most this many (``--points``): the plot's colour cycle (matplotlib's tab10) has ten colours, so beyond ten two
#: points share a colour on the image and in the plot, and ten points with their truths (twenty legend lines) fill
#: the plot's height.
MAX_POINTS = 10
#: Widths (pixels) of the embedded thumbnails; the full-size files are linked.
THUMBNAIL_WIDTH = {"rgb": 360, "residual": 420, "bands": 960, "spectra": 480}


@dataclass
class ReportItem:
    """One reconstruction of the folder: its record, previews and (optionally) metrics."""

    name: str
    record_path: Path
    record: dict
    images: dict[str, str] = field(default_factory=dict)  # kind -> data URI
    links: dict[str, str] = field(default_factory=dict)  # kind -> path relative to the report
    points: list[tuple[int, int]] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)  # (H, W) of the cube
    metrics: dict | None = None
    notes: list[str] = field(default_factory=list)
    #: why the item has no metrics although truths were given (no truth paired with it, or the pair failed)
    truth_problem: str | None = None
    #: the subfolder of OUT_DIR it comes from (its method), when OUT_DIR holds its reconstructions in subfolders
    folder: str | None = None
    #: what could not be read or shown (an unreadable record, cube or preview, a field of the wrong type): each is
    #: also in ``notes``, and one ``problem`` call of :func:`write_report`; the command then exits 1
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        """Record a problem of this item: on the page (its notes) and for the command's stderr (``problems``)."""
        self.problems.append(message)
        self.notes.append(message)

    @property
    def label(self) -> str:
        """What the page and the warnings call it: its name, and its subfolder when there is one
        (``colorchecker (gap-tv)``), so that one scene of two methods is two items told apart."""
        return f"{self.name} ({self.folder})" if self.folder else self.name

    @property
    def residual(self) -> float:
        value = self.record.get("residual")
        return float(value) if isinstance(value, (int, float)) else float("nan")


def find_records(out_dir: Path) -> tuple[list[Path], list[str]]:
    """The reconstruction records in ``out_dir`` (sorted) and the stems of cubes that have none (unfinished).

    A ``<stem>.json`` that is no readable record (damaged JSON, not an object with ``model`` and ``outputs``) is one
    of the records when a cube ``<stem>.*`` lies beside it: a damaged record, whose item says so
    (:func:`build_item`), not an unfinished output. Without a cube beside it, it is some other file, ignored."""
    from .batch import is_record
    from .io import SUPPORTED_SUFFIXES

    cubes = {p.stem for p in out_dir.iterdir()
             if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith(".")}
    records = [path for path in sorted(out_dir.glob("*.json"))
               if is_record(path) or (path.stem in cubes and not path.name.startswith(".") and path.is_file())]
    stems = {p.stem for p in records}
    return records, sorted(cubes - stems)


@dataclass
class Sources:
    """The records a report shows (:func:`find_sources`)."""

    records: list[Path]
    #: record -> the subfolder of OUT_DIR it lies in (only when the items come from subfolders)
    folder_of: dict[Path, str] = field(default_factory=dict)
    #: cubes without a record (``stem``, or ``folder/stem``)
    unfinished: list[str] = field(default_factory=list)
    #: subfolders with records of their own that are not shown (OUT_DIR has records itself)
    skipped: list[str] = field(default_factory=list)

    @property
    def folders(self) -> list[str]:
        return list(dict.fromkeys(self.folder_of.values()))


def _subfolders_with_records(out_dir: Path) -> list[tuple[Path, list[Path], list[str]]]:
    """``(subfolder, records, unfinished)`` of each immediate, not hidden subfolder of ``out_dir`` that holds a
    record (sorted by name; one level only)."""
    found = []
    for sub in sorted(p for p in out_dir.iterdir() if not p.name.startswith(".") and p.is_dir()):
        try:
            records, unfinished = find_records(sub)
        except OSError:  # an unreadable subfolder is no folder of reconstructions
            continue
        if records:
            found.append((sub, records, unfinished))
    return found


def find_sources(out_dir: Path) -> Sources:
    """What the report of ``out_dir`` shows: its own records when it has any (subfolders with records are then
    only named, in ``skipped``); else the records of its immediate subfolders (one level, not deeper), each
    labelled by its subfolder: one folder per method, as ``make demo`` writes ``out/demo/<model>/``."""
    records, unfinished = find_records(out_dir)
    subfolders = _subfolders_with_records(out_dir)
    if records or not subfolders:
        return Sources(records, unfinished=unfinished, skipped=[sub.name for sub, _, _ in subfolders])
    sources = Sources([], unfinished=list(unfinished))
    for sub, sub_records, sub_unfinished in subfolders:
        sources.records += sub_records
        sources.folder_of.update({record: sub.name for record in sub_records})
        sources.unfinished += [f"{sub.name}/{stem}" for stem in sub_unfinished]
    return sources


def spectral_points(cube: np.ndarray, count: int = DEFAULT_POINTS, grid: int = 24) -> list[tuple[int, int]]:
    """``count`` pixels ``(x, y)`` with distinct spectra: the brightest pixel of a coarse grid, then each time the
    grid pixel whose spectrum is farthest (spectral angle) from those already chosen. The border (5 %) and dark
    pixels (the darkest two fifths) are skipped: their spectra are mostly artefacts and noise."""
    height, width, _ = cube.shape
    # Stay off the border: reconstructions are least reliable there (bands that leave the sensor, mask edges).
    top, left = min(max(4, height // 20), (height - 1) // 2), min(max(4, width // 20), (width - 1) // 2)
    rows = np.unique(np.linspace(top, height - 1 - top, min(grid, height)).round().astype(int))
    cols = np.unique(np.linspace(left, width - 1 - left, min(grid, width)).round().astype(int))
    spectra = cube[np.ix_(rows, cols)].reshape(-1, cube.shape[2]).astype(np.float64)
    coords = [(int(c), int(r)) for r in rows for c in cols]
    brightness = spectra.mean(axis=1)
    keep = brightness >= np.percentile(brightness, 40)
    spectra, brightness = spectra[keep], brightness[keep]
    coords = [c for c, k in zip(coords, keep) if k]
    norms = np.linalg.norm(spectra, axis=1)
    unit = spectra / np.maximum(norms, 1e-12)[:, None]
    chosen = [int(np.argmax(brightness))]
    closest = np.full(len(coords), np.inf)
    while len(chosen) < min(count, len(coords)):
        angle = np.arccos(np.clip(unit @ unit[chosen[-1]], -1.0, 1.0))
        closest = np.minimum(closest, angle)
        closest[chosen] = -1.0
        chosen.append(int(np.argmax(closest)))
    return [coords[i] for i in chosen]


def _data_uri(image_or_figure, width: int, photo: bool) -> str:
    """A PNG file, a uint8 image or a Figure, scaled to ``width`` pixels at most, as a data URI (JPEG for photos)."""
    from PIL import Image

    if isinstance(image_or_figure, (str, Path)):
        image = Image.open(image_or_figure)
        image.load()
    elif isinstance(image_or_figure, np.ndarray):
        image = Image.fromarray(image_or_figure)
    else:
        buffer = io.BytesIO()
        image_or_figure.savefig(buffer, format="png", dpi=100)
        buffer.seek(0)
        image = Image.open(buffer)
        image.load()
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
    out = io.BytesIO()
    if photo:
        image.convert("RGB").save(out, format="JPEG", quality=88)
        mime = "image/jpeg"
    else:
        image.save(out, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


@dataclass
class Truths:
    """The truths of a report, as ``hsra evaluate --truth`` takes them (:func:`hsra_cli.inputs.collect`), paired
    with the records by name (:func:`hsra_cli.inputs.pair_scenes`)."""

    specs: list[str]
    #: record (path) -> its truth scene
    paired: dict = field(default_factory=dict)
    #: record (path) -> why it has none (the message hsra evaluate gives)
    unpaired: dict = field(default_factory=dict)
    #: problems of specs that name no truth (a missing path, a bad selector), as ``--truth SPEC: why``
    problems: list[str] = field(default_factory=list)
    #: the same problems as ``(spec, error)``; :func:`write_report` refuses the call on the first
    #: (:func:`check_truth_specs`)
    errors: list = field(default_factory=list)
    #: every truth file named (never overwritten by the report)
    files: list[Path] = field(default_factory=list)
    #: any truth cube found at all
    found: bool = False


def pair_truths(records: list[Path], specs, truth_key: str | None = None, by_position: bool = False) -> Truths:
    """Collect the truths ``specs`` name and pair them with ``records`` (their stems are the reconstructions'
    names), the records of each folder on their own (two methods' ``colorchecker`` both pair with the one truth
    ``colorchecker``; ``by_position``: each folder's records in order). Raises :class:`UsageError` only for what
    makes pairing impossible (an empty spec, two truths of one name); a spec that names nothing is one of
    ``problems``, a record without a truth one of ``unpaired``."""
    from .errors import HsraError
    from .inputs import Scene, collect, pair_scenes, scenes_of, unmatched_message

    truths = Truths([str(spec) for spec in specs])
    sources, problems, _ = collect(truths.specs)
    truths.problems += [f"--truth {spec}: {error}" for spec, error in problems]
    # A spec that names nothing (a missing path, an empty folder, a bad selector) is how the tool was called.
    truths.errors += [(spec, error if isinstance(error, UsageError) else UsageError(str(error)))
                      for spec, error in problems]
    truths.files = [source.path for source in sources]
    scenes = []
    for source in sources:
        try:
            with key_option("--truth-key"):
                scenes.extend(scenes_of(source, truth_key, role="truth"))
        except HsraError as exc:
            truths.problems.append(f"--truth {source.spec}: {exc}")
            truths.errors.append((source.spec, exc))
    truths.found = bool(scenes)
    folders = list(dict.fromkeys(path.parent for path in records))
    for folder in folders:
        predictions = [Scene(path) for path in records if path.parent == folder]
        try:
            pairs, unmatched = (pair_scenes(predictions, scenes, by_position=by_position, noun="item") if scenes
                                else ([], predictions))
        except UsageError as exc:
            raise UsageError(f"{folder.name}: {exc}" if len(folders) > 1 else str(exc)) from None
        truths.paired.update({prediction.path: truth for prediction, truth in pairs})
        truths.unpaired.update({prediction.path: (unmatched_message(prediction, scenes) if scenes else
                                                  "no truth: --truth named no readable truth cube")
                                for prediction in unmatched})
    return truths


def check_truth_specs(truths: Truths) -> None:
    """Refuse truths of which a spec names nothing, as ``hsra render`` and ``hsra evaluate`` refuse them: one
    ``--truth: why`` error. A spec that names no file or scene (a missing path, an empty folder, a pattern that
    matches nothing, a selector out of range or backwards) is a :class:`UsageError` (exit 2); a named file that
    holds no readable truth cube keeps its own (data) error class, exit 1."""
    if not truths.errors:
        return
    _, error = truths.errors[0]
    message = f"--truth: {error}"
    raise UsageError(message) if isinstance(error, UsageError) else InputFileError(message)


def _named_output(record: dict, kind: str) -> str | None:
    """The file name the record gives for its output ``kind`` (``outputs.cube``), or None when it names none or
    names it with no usable text (:func:`_check_record` says so)."""
    outputs = record.get("outputs")
    value = outputs.get(kind) if isinstance(outputs, dict) else None
    return value if isinstance(value, str) and Path(value).name not in ("", ".", "..") else None


def _output_path(record: dict, kind: str, record_path: Path) -> Path | None:
    """The output ``kind`` of a record: the file of that name beside the record, or None when the record names none
    or it is not there. Only the record's own folder is looked in: a folder that was moved or copied shows its own
    files, never (silently) those of the folder the record was written in, which the record still names."""
    value = _named_output(record, kind)
    if value is None:
        return None
    beside = record_path.parent / Path(value).name
    return beside if beside.is_file() else None


def report_path(out_dir, output=None) -> Path:
    """Where the report of ``out_dir`` goes: ``out_dir/report.html`` without ``output``; ``output/report.html``
    when ``output`` names a folder (an existing one, or a path ending in a path separator, created if missing);
    else ``output`` itself."""
    text = "" if output is None else os.fspath(output)
    if not text:
        return Path(out_dir) / REPORT_NAME
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if text.endswith(separators) or Path(text).is_dir():
        return Path(text) / REPORT_NAME
    return Path(text)


#: The files of a record that the report reads (its cube and previews).
_READ_KINDS = ("cube", "rgb", "bands", "residual")


def report_inputs(records: list[Path], truth_files=()) -> list[Path]:
    """Every file the report of ``records`` reads: the records, the cubes and previews they name, and the truth
    files (what :func:`build_item` opens)."""
    inputs: list[Path] = []
    for record_path in records:
        inputs.append(record_path)
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):  # ValueError: JSON or UTF-8 that cannot be decoded
            continue
        if isinstance(record, dict):
            inputs += [path for kind in _READ_KINDS if (path := _output_path(record, kind, record_path)) is not None]
    return inputs + [Path(path) for path in truth_files]


#: Fields of a record that are JSON objects when present (``null``: absent); one of another type is dropped and
#: said to be wrong (:func:`read_record`).
_OBJECT_FIELDS = ("physics", "mask", "weights", "seconds", "residual_map", "normalization", "input", "outputs",
                  "calibration", "model_choice", "adapt", "refine")


def _shown(value) -> str:
    """A record's value as it is written in the record (JSON), shortened."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def read_record(record_path: Path) -> tuple[dict, list[str]]:
    """The record of an item, and what is wrong with it: a field of the wrong type (``"physics": "zzz"``, a
    ``null`` model, ``outputs.cube`` that is no file name) is one message each and is dropped from the record
    returned, so that the page shows the rest.

    Raises:
        InputFileError: the record cannot be read at all (missing, unreadable, damaged JSON, not a JSON object
            with ``model`` and ``outputs``).
    """
    from .io import _os_reason

    expected = "expected the JSON record hsra reconstruct writes"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"cannot read its record {record_path}: {_os_reason(exc)}") from None
    except UnicodeDecodeError:
        raise InputFileError(f"its record {record_path} is unreadable: not UTF-8 text; {expected}") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"its record {record_path} is unreadable: damaged JSON ({exc.msg} at line "
                             f"{exc.lineno}, column {exc.colno}); {expected}") from None
    if not isinstance(record, dict) or "model" not in record or not isinstance(record.get("outputs"), dict):
        raise InputFileError(f"its record {record_path} is unreadable: {_shown(record)} is no record ({expected}: "
                             "an object with model and outputs)")
    problems, record = [], dict(record)

    def wrong(key: str, value, what: str) -> None:
        problems.append(f"its record's {key} is {_shown(value)}; expected {what}")

    if not isinstance(record.get("model"), str) or not record["model"].strip():
        wrong("model", record.get("model"), "the name of the model")
        record["model"] = None
    for key in _OBJECT_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], dict):
            wrong(key, record[key], "an object")
            record[key] = None
    outputs = dict(record.get("outputs") or {})
    for kind in _READ_KINDS:
        if outputs.get(kind) is not None and _named_output({"outputs": outputs}, kind) is None:
            wrong(f"outputs.{kind}", outputs[kind], "a file name")
            outputs[kind] = None
    record["outputs"] = outputs
    residual = record.get("residual")
    if residual is not None and (isinstance(residual, bool) or not isinstance(residual, (int, float))):
        wrong("residual", residual, "a number")
        record["residual"] = None
    wavelengths = record.get("wavelengths_nm")
    if wavelengths is not None and not (isinstance(wavelengths, list) and wavelengths and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in wavelengths)):
        wrong("wavelengths_nm", wavelengths, "a list of wavelengths in nm")
        record["wavelengths_nm"] = None
    return record, problems


def _reason(exc: BaseException) -> str:
    """An exception as the one line a note shows: its message (the first line), else its type."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def build_item(record_path: Path, report_dir: Path, truth=None, truth_key: str | None = None,
               points: int = DEFAULT_POINTS, no_truth: str | None = None, read_truth=None,
               folder: str | None = None) -> ReportItem:
    """Read one record and what it points to, and render what the page shows of it.

    ``truth``: the :class:`~hsra_cli.inputs.Scene` paired with it (metrics as ``hsra evaluate`` scores them);
    ``no_truth``: why there is none when truths were given. A truth that cannot be scored (unreadable, another
    shape, all zero) leaves the item without metrics, the reason in ``truth_problem`` and in the page's notes.
    ``read_truth(scene, bands)``: how truths are read (default: a :class:`~hsra_cli.inputs.SceneReader`).
    ``folder``: the subfolder (method) it is labelled by (:attr:`ReportItem.label`).

    Never raises for a bad item: what cannot be read or drawn (the record, the cube, a preview) is one of the
    item's ``problems`` (and notes), and the item shows the rest. Only the files beside the record are read
    (:func:`_output_path`): a cube missing there is a problem, never read from the folder the record names."""
    from .errors import HsraError
    from .inputs import Scene, SceneReader, score_pair
    from .io import read_cube
    from .bands import DEFAULT_BANDS, default_wavelengths
    from .render import band_grid, false_color, spectra_plot

    item = ReportItem(name=record_path.stem, record_path=record_path, record={}, folder=folder)
    try:
        item.record, record_problems = read_record(record_path)
    except HsraError as exc:
        item.problem(f"{exc}; its cube is not shown")
        return item
    record = item.record
    for message in record_problems:
        item.problem(message)

    def attempt(what: str, draw):
        """``draw()``, or None with a problem saying what could not be drawn and why."""
        try:
            return draw()
        except (HsraError, ValueError, MemoryError) as exc:
            item.problem(f"cannot draw its {what}: {'out of memory' if isinstance(exc, MemoryError) else _reason(exc)}")
            return None

    named = _named_output(record, "cube")
    cube_path = _output_path(record, "cube", record_path)
    cube = wavelengths = None
    if named is None:
        if not any(message.startswith("its record's outputs.cube ") for message in record_problems):
            item.problem("its record names no cube (outputs.cube), so no cube is shown")
    elif cube_path is None:
        beside = Path(named).name
        elsewhere = (Path(named).is_absolute() and Path(named).parent != record_path.parent
                     and Path(named).parent.resolve() != record_path.parent.resolve())
        item.problem(f"its cube {beside} is missing from {record_path.parent}"
                     + (f"; its record names {named}, which is not read: the report shows only the files beside "
                        "the record" if elsewhere else ""))
    else:
        try:
            cube, loaded = read_cube(cube_path)
        except (HsraError, OSError, ValueError) as exc:
            item.problem(str(exc) if isinstance(exc, HsraError) else f"cannot read {cube_path}: {_reason(exc)}")
        except MemoryError:
            item.problem(f"out of memory reading {cube_path}")
        else:
            wavelengths = (loaded.metadata or {}).get("wavelengths_nm")
            if wavelengths is None:
                wavelengths = record.get("wavelengths_nm")
            item.image_size = cube.shape[:2]
            if wavelengths is None and cube.shape[-1] != DEFAULT_BANDS:
                spread = default_wavelengths(cube.shape[-1])
                item.notes.append(f"no wavelengths recorded for {cube.shape[-1]} bands: the images and spectra assume "
                                  f"an even spread over {spread[0]:g}–{spread[-1]:g} nm")
                wavelengths = spread  # said: the renderers invent none themselves
    previews = {"rgb": "false colour", "bands": "band grid", "residual": "trust map"}
    for kind, photo in (("rgb", True), ("bands", True), ("residual", False)):
        path = _output_path(record, kind, record_path)
        if path is not None:
            try:
                item.images[kind] = _data_uri(path, THUMBNAIL_WIDTH[kind], photo)
            except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many types for a damaged file
                instead = "; drawn from the cube instead" if cube is not None and kind != "residual" else ""
                item.problem(f"cannot read its {previews[kind]} {path}: {_reason(exc)}{instead}")
            else:
                item.links[kind] = os.path.relpath(path.resolve(), report_dir)
                continue
        if cube is not None and kind == "rgb":
            image = attempt("false colour", lambda: _data_uri(false_color(cube, wavelengths), THUMBNAIL_WIDTH[kind],
                                                              True))
        elif cube is not None and kind == "bands":
            image = attempt("band grid", lambda: _data_uri(band_grid(cube, wavelengths, title=item.label),
                                                           THUMBNAIL_WIDTH[kind], True))
        else:
            image = None
            if kind == "residual" and path is None:
                missing = _named_output(record, kind)
                item.notes.append(f"no trust map: {Path(missing).name} is missing from {record_path.parent}" if missing
                                  else "no trust map (reconstructed without previews or by an older hsra)")
        if image is not None:
            item.images[kind] = image
    truth_cube = None
    if truth is None and no_truth:
        item.truth_problem = no_truth
    elif truth is not None and cube is not None:
        if read_truth is None:
            def read_truth(scene, bands):
                return SceneReader(truth_key, bands, key_flag="--truth-key", role="truth").read(scene)
        try:
            candidate = read_truth(truth, cube.shape[2])[0]
            item.metrics = score_pair(cube, candidate, Scene(cube_path), truth)
        except HsraError as exc:
            item.truth_problem = str(exc)
        except MemoryError:
            item.truth_problem = f"out of memory scoring {cube_path} against {truth}"
        else:
            item.metrics["truth"] = str(truth)
            truth_cube = candidate
    elif truth is not None:  # the cube's own problem is the item's: said once
        item.notes.append(f"not compared with a truth: it has no cube to compare with {truth}")
    if item.truth_problem:
        item.notes.append(f"not compared with a truth: {item.truth_problem}")
    if cube is not None and points > 0:
        def spectra():
            chosen = spectral_points(cube, points)
            # Labelled as render labels its points, row then column (the one coordinate order of hsra).
            figure = spectra_plot(cube, chosen, wavelengths, truth=truth_cube, radius=1)
            return chosen, _data_uri(figure, THUMBNAIL_WIDTH["spectra"], False)

        drawn = attempt("spectra", spectra)
        if drawn is not None:
            item.points, item.images["spectra"] = drawn
    return item


# ----------------------------------------------------------------------------------------------------------------
# HTML

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#666;font-size:.9em}
table.summary{border-collapse:collapse;margin:1em 0;font-size:.9em;background:#fff}
table.summary th,table.summary td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.summary th{cursor:pointer;background:#eee;user-select:none} table.summary td.name,table.summary th.name{text-align:left}
table.summary th.sorted-desc::after{content:" \\25BC"} table.summary th.sorted-asc::after{content:" \\25B2"}
section.item{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.8em 1em}
section.item h2{font-size:1.1em;margin:0 0 .4em} .rank{color:#999;font-weight:normal}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0} figcaption{font-size:.8em;color:#555} img{max-width:100%;border:1px solid #eee}
.pic{position:relative;display:inline-block;line-height:0} .pic svg{position:absolute;left:0;top:0;width:100%;height:100%}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.1em .8em;font-size:.85em;margin:0}
dl.facts dt{color:#666} dl.facts dd{margin:0;font-family:ui-monospace,monospace}
.warn{color:#a40} .bad{color:#b00;font-weight:bold} details{margin-top:.5em}
"""

_SCRIPT = """
(function(){
  var table=document.getElementById('summary');
  var list=document.getElementById('items');
  function value(el,key){var v=el.getAttribute('data-'+key);if(v===null||v===''){return null;}
    var n=parseFloat(v);return isNaN(n)?v:n;}
  function sortBy(key,descending){
    var rows=Array.prototype.slice.call(table.tBodies[0].rows);
    rows.sort(function(a,b){var x=value(a,key),y=value(b,key);
      if(x===null||y===null){return x===y?0:(x===null?1:-1);}  /* a missing value (–) sorts last either way */
      if(typeof x==='number'&&typeof y==='number'){return descending?y-x:x-y;}
      x=String(x);y=String(y);return descending?y.localeCompare(x):x.localeCompare(y);});
    rows.forEach(function(r){table.tBodies[0].appendChild(r);});
    rows.forEach(function(r){var s=document.getElementById('item-'+r.getAttribute('data-id'));if(s){list.appendChild(s);}});
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th){
      th.classList.remove('sorted-asc','sorted-desc');
      if(th.getAttribute('data-key')===key){th.classList.add(descending?'sorted-desc':'sorted-asc');}});
    document.body.setAttribute('data-sorted',key+(descending?':desc':':asc'));
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th){
    th.addEventListener('click',function(){
      var key=th.getAttribute('data-key');
      var descending=th.classList.contains('sorted-desc')?false:
        (th.classList.contains('sorted-asc')?true:th.getAttribute('data-first')==='desc');
      sortBy(key,descending);});});
  window.hsraSortBy=sortBy;
  document.body.setAttribute('data-ready','yes');
})();
"""


#: The caption of the false colour. hsra reconstruct's ``<stem>_rgb.png`` and the report's own false colour (when that
#: file is missing) are both :func:`hsra_cli.render.false_color` with its defaults: CIE 1931 colours of the cube
#: lit by :data:`~hsra_cli.render.DEFAULT_ILLUMINANT` (D65), that light's white adapted to sRGB's white.
RGB_CAPTION = (f"false colour (CIE 1931, lit by {DEFAULT_ILLUMINANT}, white-balanced to sRGB); "
               "numbers: spectra points")

#: What the page shows for a missing or undefined value (as ``hsra evaluate`` prints it): never ``nan``.
MISSING = "–"


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and value != value)


def _fmt(value, digits: int = 4) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _data_value(value) -> str:
    """A value as a ``data-*`` attribute the page's sort reads: empty when missing or undefined (sorted last),
    infinities as JavaScript spells them."""
    if _missing(value):
        return ""
    if isinstance(value, (float, np.floating)) and abs(value) == float("inf"):
        return "Infinity" if value > 0 else "-Infinity"
    return html.escape(str(value))


def _part(record: dict, key: str) -> dict:
    """A field of a record that is an object (``physics``, ``seconds`` …), or {} when absent or of another type."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _model_name(record: dict) -> str:
    model = record.get("model")
    return model if isinstance(model, str) and model else "?"


def _geometry(record: dict) -> str:
    physics = _part(record, "physics")
    mask = _part(record, "mask")
    parts = [f"{physics.get('bands', '?')} bands, step {physics.get('dispersion_step', '?')}, "
             f"{physics.get('dispersion_axis', '?')}"]
    offset = mask.get("offset")
    if isinstance(offset, (list, tuple)) and len(offset) == 2:
        parts.append(f"mask offset {offset[0]},{offset[1]}")
    elif offset:
        parts.append(f"mask offset {offset}")
    calibration = _part(record, "calibration")
    if calibration:
        parts.append("calibrated" + ("" if calibration.get("confident", True) else " (not conclusive)"))
    return "; ".join(parts)


def _facts(item: ReportItem) -> list[tuple[str, str]]:
    r = item.record
    weights = _part(r, "weights")
    seconds = _part(r, "seconds")
    trust = _part(r, "residual_map")
    adapt, refine = _part(r, "adapt"), _part(r, "refine")
    facts = [
        ("model", _model_name(r) + (f" adapted {adapt.get('steps', '?')} steps" if adapt else "")
         + (" (self-ensemble ×2)" if r.get("self_ensemble") else "")
         + (f" + {refine.get('iterations', '?')} refinement iterations" if refine else "")),
        ("weights sha256", str(weights.get("sha256") or "—")[:16]),
    ]
    choice = _part(r, "model_choice")
    if choice:  # hsra reconstruct without --model: what auto chose and why
        facts.append(("chosen by", f"--model {choice.get('requested', 'auto')}: {choice.get('reason', '?')}"))
    facts += [
        ("geometry", _geometry(r)),
        ("residual ‖Ax̂−y‖/‖y‖", _fmt(item.residual)),
    ]
    if trust:
        of = trust.get("cube")
        label = "trust map p50 / p90 / p99" + (f" ({of})" if of and of != "the reconstruction" else "")
        facts.append((label, " / ".join(_fmt(trust.get(k, float("nan"))) for k in ("p50", "p90", "p99"))))
    facts.append(("time", f"{_fmt(seconds.get('reconstruct'), 2)} s on {r.get('device', '?')}"))
    size = item.image_size
    if size[0]:
        facts.append(("cube", f"{size[0]}×{size[1]}×{_part(r, 'physics').get('bands', '?')}"))
    facts.append(("normalisation", str(_part(r, "normalization").get("mode", "?"))))
    source = _part(r, "input").get("path")
    if source:
        facts.append(("input", str(source)))
    if item.metrics:
        m = item.metrics
        # An undefined metric (SAM of an all-zero prediction) is shown as missing, without its unit.
        shown = {key: _fmt(m.get(key), digits) for key, digits in (("psnr", 2), ("ssim", 3), ("sam", 2), ("ergas", 2))}
        facts.append(("vs truth (field)", f"PSNR {shown['psnr']}{' dB' if shown['psnr'] != MISSING else ''}, "
                                          f"SSIM {shown['ssim']}, SAM {shown['sam']}{'°' if shown['sam'] != MISSING else ''}, "
                                          f"ERGAS {shown['ergas']}"))
    return facts


def _markers(item: ReportItem) -> str:
    height, width = item.image_size
    if not item.points or not height:
        return ""
    marks = []
    for i, (x, y) in enumerate(item.points):
        cx, cy = (x + 0.5) / width * 100, (y + 0.5) / height * 100
        marks.append(f'<circle cx="{cx:.2f}%" cy="{cy:.2f}%" r="7" fill="none" stroke="#fff" stroke-width="2"/>'
                     f'<text x="{cx:.2f}%" y="{cy:.2f}%" dx="9" dy="4" fill="#fff" font-size="12" '
                     f'stroke="#000" stroke-width="0.6">{i + 1}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg">{"".join(marks)}</svg>'


def _figure_html(item: ReportItem, kind: str, caption: str, overlay: str = "") -> str:
    uri = item.images.get(kind)
    if not uri:
        return ""
    image = f'<img src="{uri}" alt="{html.escape(item.label)} {kind}" class="{kind}">'
    if kind in item.links:
        href = urllib.parse.quote(Path(item.links[kind]).as_posix())  # '#', '?', '%' in names are not URL syntax
        image = f'<a href="{html.escape(href)}">{image}</a>'
    return (f'<figure><span class="pic">{image}{overlay}</span>'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def render_html(items: list[ReportItem], out_dir: Path, unfinished: list[str], truth_specs=None,
                page_notes=()) -> str:
    """The page for ``items`` (already in their initial order: worst residual first). Items from subfolders
    (:attr:`ReportItem.folder`) are shown by their label and get a ``folder`` column; ``page_notes``: lines about the
    whole page (subfolders not shown)."""
    has_truth = any(item.metrics for item in items)
    folders = sorted({item.folder for item in items if item.folder})
    text_keys = ("rank", "name", "folder", "model")
    columns = [("rank", "#"), ("name", "name"), *((("folder", "folder"),) if folders else ()), ("model", "model"),
               ("residual", "residual"), ("p99", "trust p99"), ("seconds", "seconds")]
    if has_truth:
        columns += [("psnr", "PSNR dB"), ("ssim", "SSIM")]
    head = "".join(
        f'<th data-key="{key}" data-first="{"asc" if key in text_keys else "desc"}" '
        f'class="{"name" if key in text_keys[1:] else ""}'
        f'{" sorted-desc" if key == "residual" else ""}">{html.escape(label)}</th>' for key, label in columns)
    rows, sections = [], []
    for rank, item in enumerate(items, 1):
        r = item.record
        values = {
            "rank": rank, "name": item.label, "folder": item.folder or "", "model": _model_name(r),
            "residual": item.residual,
            "p99": _part(r, "residual_map").get("p99", float("nan")),
            "seconds": _part(r, "seconds").get("reconstruct", float("nan")),
            "psnr": (item.metrics or {}).get("psnr", float("nan")),
            "ssim": (item.metrics or {}).get("ssim", float("nan")),
        }
        data = " ".join(f'data-{key}="{_data_value(values[key])}"' for key, _ in columns)
        cells = "".join(
            f'<td class="{"name" if key in text_keys[1:] else ""}">'
            + (f'<a href="#item-{rank}">{html.escape(item.label)}</a>' if key == "name" else _fmt(values[key], 3 if key in ("psnr", "ssim", "seconds") else 4))
            + "</td>" for key, _ in columns)
        rows.append(f'<tr data-id="{rank}" {data}>{cells}</tr>')
        facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in _facts(item))
        notes = "".join(f'<p class="{"bad" if n in item.problems else "warn"}">{html.escape(n)}</p>'
                        for n in item.notes)
        record_html = (f'<details><summary>record</summary><pre>{html.escape(json.dumps(r, indent=1, default=str))}'
                       '</pre></details>' if r else "")
        sections.append(
            f'<section class="item" id="item-{rank}" data-name="{html.escape(item.label)}" '
            f'data-residual="{_data_value(item.residual)}">'
            f'<h2><span class="rank">#{rank}</span> {html.escape(item.label)}</h2>{notes}'
            f'<div class="row">'
            f'{_figure_html(item, "rgb", RGB_CAPTION, _markers(item))}'
            f'{_figure_html(item, "residual", "trust map: |Ax̂−y| in scene coordinates (bright = the cube does not explain its measurement)")}'
            f'<dl class="facts">{facts}</dl></div>'
            f'<div class="row">{_figure_html(item, "spectra", "spectra at the numbered points (3×3 mean)" + (", truth dashed" if item.metrics else ""))}'
            f'{_figure_html(item, "bands", "bands")}</div>'
            f'{record_html}'
            f"</section>")
    unfinished_html = ""
    if unfinished:
        names = ", ".join(html.escape(n) for n in unfinished)
        unfinished_html = f'<p class="warn">Unfinished (a cube without its record, not shown): {names}</p>'
    if truth_specs and not isinstance(truth_specs, (list, tuple)):
        truth_specs = [truth_specs]
    truth_html = f" Truths from {html.escape(', '.join(map(str, truth_specs)))}." if truth_specs else ""
    folders_html = (f" From {len(folders)} subfolder(s), one per method: {html.escape(', '.join(folders))}."
                    if folders else "")
    notes_html = "".join(f'<p class="warn">{html.escape(note)}</p>' for note in page_notes)
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>hsra report: {html.escape(out_dir.name or str(out_dir))}</title><style>{_STYLE}</style></head>"
        f'<body data-items="{len(items)}">'
        f"<h1>hsra report: {html.escape(str(out_dir))}</h1>"
        f'<p class="meta">{len(items)} reconstruction(s), worst residual first; click a column to sort.'
        f"{folders_html}{truth_html} Written by hsra {__version__} on {generated}.</p>{notes_html}{unfinished_html}"
        f'<table class="summary" id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<div id="items">{"".join(sections)}</div>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


#: Suffixes of the report's file (an -o that names a file).
REPORT_SUFFIXES = (".html", ".htm")


def check_report_suffix(path: Path, label: str = "-o") -> None:
    """Refuse a report file whose suffix is not :data:`REPORT_SUFFIXES` (HTML written into ``rep.txt``)."""
    from .io import check_output_suffix

    check_output_suffix(path, REPORT_SUFFIXES, "the HTML report", label=label, alternative="a folder (end it with /)")


def write_report(out_dir, output=None, *, truth=None, truth_dir=None, truth_key: str | None = None,
                 pair_by_position: bool = False, points: int = DEFAULT_POINTS, overwrite: bool = False,
                 progress=None, warn=None, note=None, problem=None) -> tuple[Path, list[ReportItem]]:
    """Write the report of the reconstructions in ``out_dir`` (where: :func:`report_path`).

    ``out_dir`` without records of its own but with immediate subfolders that have some (one per method, as
    ``make demo`` writes them): every subfolder's items on one page, each labelled by its subfolder, truths paired
    within each subfolder (:func:`find_sources`). ``out_dir`` with records of its own: only those; its subfolders
    with records are named in one ``note(message)`` call and one line of the page (not a truth problem).

    ``truth``: truth cubes in the input syntax of every command (a file, folder, pattern or ``stack.npz:0-4``,
    or a list of them; ``truth_dir`` is its old name), paired with the reconstructions by name as
    ``hsra evaluate --truth`` pairs them (``pair_by_position``: in order). A spec that names nothing is refused
    before anything is read or written (:func:`check_truth_specs`). Each truth problem of an item (none paired,
    one that cannot be scored) is one ``warn(message)`` call naming the item, and the item is shown without
    metrics, the reason in its notes; when no truth pairs with any item, one call says so.

    A bad item does not stop the page: each of its problems (an unreadable or damaged record, a cube that is
    missing beside its record or cannot be read, an unreadable preview, a field of the wrong type) is one
    ``problem(message)`` call naming the item (default: ``warn``), and the item is listed with a note saying what
    is wrong (:func:`build_item`). Only when the folder holds that one item is its first problem raised instead
    (:class:`InputFileError`, nothing written), as every command ends on its one input. Warnings of the libraries
    drawing an item (matplotlib, numpy) are the item's notes, never printed. ``points``: 0 to :data:`MAX_POINTS`.

    Raises:
        InputFileError: ``out_dir`` is missing or neither it nor its subfolders hold a reconstruction record; a
            truth file holds no readable truth cube (``--truth: why``); the folder's one item cannot be shown.
        UsageError: ``out_dir`` is empty text, ``points`` is out of range, a truth spec names nothing
            (``--truth: why``), the report's file
            name is not .html/.htm, or the report would replace a file it reads (a record, cube, preview or
            truth), whatever ``overwrite`` says.
        OutputExistsError: the report exists and ``overwrite`` is False.
        HsraError: the report cannot be written there.
    """
    from .batch import FILE_HINT, check_not_inputs
    from .inputs import check_not_empty
    from .io import atomic_output, check_writable

    check_not_empty(out_dir, "OUT_DIR")
    if truth is not None and truth_dir is not None:
        raise UsageError("truth_dir is the old name of truth; give only truth")
    truth = truth if truth is not None else truth_dir
    specs = [] if truth is None else [truth] if isinstance(truth, (str, os.PathLike)) else list(truth)
    given, out_dir = os.fspath(out_dir), Path(out_dir)
    if not out_dir.exists():  # worded as every command words a missing input; exit 1 as theirs
        raise InputFileError(f"input {given!r} does not exist; expected the output folder of hsra reconstruct")
    if not out_dir.is_dir():
        raise InputFileError(f"{out_dir} is not a folder; expected the output folder of hsra reconstruct")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or not 0 <= points <= MAX_POINTS:
        raise UsageError(f"--points {points} is out of range; expected 0 to {MAX_POINTS} spectra per item (beyond "
                         f"{MAX_POINTS} the plot's colours repeat and its legend overflows)")
    output = report_path(out_dir, output)
    sources = find_sources(out_dir)
    records, unfinished = sources.records, sources.unfinished
    truths = pair_truths(records, specs, truth_key, pair_by_position) if specs else None
    if truths is not None:
        check_truth_specs(truths)  # before anything is read or written
    check_not_inputs([output], report_inputs(records, truths.files if truths else ()), FILE_HINT)
    check_report_suffix(output)
    check_writable(output, overwrite)
    if not records:
        raise InputFileError(
            f"{out_dir} holds no reconstruction record (<stem>.json written by hsra reconstruct), nor does any "
            "subfolder directly inside it; nothing to report"
        )
    page_notes = []
    if sources.skipped:
        page_notes.append(
            f"Not included: subfolder(s) with reconstructions of their own ({', '.join(sources.skipped)}); this page "
            f"shows only the {len(records)} item(s) of {out_dir} itself. Report a subfolder on its own, or move "
            "these items into a subfolder to report all of them on one page.")
        if note:
            note(page_notes[-1])
    warn = warn or (lambda message: None)
    nothing_paired = truths is not None and not truths.paired
    if truths is not None:
        if nothing_paired and truths.found:
            first = next(iter(truths.unpaired.values()))
            warn(f"--truth pairs with none of the {len(records)} item(s), so the report has no metrics: {first}")
    readers: dict = {}

    def read_truth(scene, bands):
        from .inputs import SceneReader

        reader = readers.setdefault(bands, SceneReader(truth_key, bands, key_flag="--truth-key", role="truth"))
        return reader.read(scene)

    problem = problem or warn
    items = []
    for index, path in enumerate(records):
        if progress:
            progress(path, index, len(records))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                item = build_item(path, output.parent.resolve(), truths.paired.get(path) if truths else None,
                                  truth_key, points, no_truth=truths.unpaired.get(path) if truths else None,
                                  read_truth=read_truth, folder=sources.folder_of.get(path))
            except Exception as exc:  # a bug of ours on an odd item: that item fails, not the page
                if os.environ.get("HSRA_DEBUG", "") not in ("", "0"):
                    raise
                item = ReportItem(name=path.stem, record_path=path, record={}, folder=sources.folder_of.get(path))
                item.problem(f"cannot show it: internal error: {type(exc).__name__}: {_reason(exc)}")
        for message in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()):
            item.notes.append(f"while drawing it: {message}")
        if item.problems and len(records) == 1:
            raise InputFileError(item.problems[0])
        for message in item.problems:
            problem(f"{item.label}: {message}")
        if item.truth_problem and not nothing_paired:
            warn(f"{item.label}: {item.truth_problem}")
        items.append(item)
    items.sort(key=lambda item: (-item.residual if item.residual == item.residual else float("inf"), item.name,
                                 item.folder or ""))
    failed = [item.label for item in items if item.problems]
    if failed:
        page_notes.append(f"{len(failed)} of {len(items)} item(s) could not be read or shown in full, each with a note "
                          f"saying why: {', '.join(failed)}.")
    page = render_html(items, out_dir, unfinished, [str(spec) for spec in specs], page_notes)
    with atomic_output(output, overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return output, items
