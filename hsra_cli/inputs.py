"""One input syntax for every command: files, folders, quoted glob patterns and ``FILE:SCENES`` selectors.

* a file is taken as it is;
* a folder gives its supported files, sorted by name (not recursive);
* a pattern with ``*``, ``?`` or ``[`` (quoted, so the shell leaves it alone) gives the supported files it matches;
* ``stack.npz:0-3`` or ``stack.h5:0,2,5-7`` picks scenes (counted from 0, ranges include both ends) of a file
  holding a stack of cubes ``N × H × W × C`` (or ``N × C × H × W``), as ``hsra train --data`` does. A stack given
  without a selector gives all its scenes.

A spec that names nothing (a missing path, a folder or pattern without supported files) is a problem of that spec
alone: commands report it among the batch's failures and go on with the others.

Predictions and truths (``hsra evaluate``) are paired by name (:func:`pair_scenes`).
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import HsraError, InputFileError, ShapeError, UsageError, ValueRangeError


_SELECTOR = re.compile(r"^(.*):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)$")


def check_not_empty(specs, what: str = "an input") -> None:
    """Refuse an empty spec (``hsra evaluate "$UNSET"``): a path parser would read it as the current folder.

    Raises :class:`UsageError` worded as the CLI refuses an empty path option."""
    if isinstance(specs, (str, bytes)) or hasattr(specs, "__fspath__"):
        specs = [specs]
    for spec in specs:
        if str(spec) == "":
            raise UsageError(f"{what} is empty; expected a path (is a shell variable unset?)")


def parse_source(text: str) -> tuple[Path, list[int] | None]:
    """``"path"`` or ``"path:SELECTOR"`` -> (path, scene indices or None for all).

    An existing path is taken whole even if it ends in something that looks like a selector. An empty text is
    refused (:func:`check_not_empty`), never taken as the current folder.
    """
    check_not_empty(text)
    path = Path(text)
    if path.exists():
        return path, None
    match = _SELECTOR.match(text)
    if not match:
        head, colon, selector = text.rpartition(":")
        if colon and head and Path(head).is_file():  # an existing file with a selector that does not parse
            raise UsageError(
                f"scene selector {selector!r} in {text!r} is not one the syntax takes; expected scene numbers from 0: "
                "N, FIRST-LAST, or a comma list of them (stack.npz:0-3,7)"
            )
        return path, None
    indices: list[int] = []
    for part in match.group(2).split(","):
        first, _, last = part.partition("-")
        start, stop = int(first), int(last or first)
        if stop < start:
            raise UsageError(f"scene range {part!r} in {text!r} runs backwards; expected FIRST-LAST with FIRST ≤ LAST")
        indices.extend(range(start, stop + 1))
    return Path(match.group(1)), indices


@dataclass(frozen=True)
class Source:
    """One file named by the user's input specs."""

    path: Path
    #: the spec it came from, as typed
    spec: str
    #: the scenes a selector picked from a stack; None: the whole file
    scenes: tuple[int, ...] | None = None
    #: found in a folder or by a pattern, rather than named on its own
    listed: bool = False


def collect(specs, suffixes: tuple[str, ...] | None = None, exclude=()) -> tuple[list[Source], list[tuple[str, HsraError]], list[Path]]:
    """Expand input specs into files, in the order given (each folder or pattern sorted), without duplicates.

    ``exclude``: files never taken as inputs (the ``--mask`` file that sits among the captures ``hsra simulate``
    wrote), whether a folder or pattern lists them or they are named (a shell's ``sim/*.mat`` names them too).

    Returns ``(sources, problems, excluded)``: ``problems`` holds ``(spec, error)`` for each spec that names
    nothing; ``excluded`` the files left out because of ``exclude``. An empty spec (an unset shell variable) is
    refused before anything is looked at (:class:`UsageError`), never read as the current folder.
    """
    from .io import SUPPORTED_SUFFIXES

    specs = [str(spec) for spec in specs]
    check_not_empty(specs)
    suffixes = suffixes or SUPPORTED_SUFFIXES
    kinds = "/".join(suffixes)
    excluded_ids = {_identity(Path(p)) for p in exclude}
    sources: list[Source] = []
    problems: list[tuple[str, HsraError]] = []
    excluded: list[Path] = []
    for spec in map(str, specs):
        path = Path(spec)
        try:
            if any(ch in spec for ch in "*?[") and not path.exists():
                matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
                files = [p for p in matches if _listed_file(p) and p.suffix.lower() in suffixes]
                if not files:
                    raise InputFileError(f"the pattern {spec!r} matches no {kinds} file")
                found = [Source(p, spec, None, True) for p in files]
            elif path.is_dir():
                files = sorted(p for p in path.iterdir() if _listed_file(p) and p.suffix.lower() in suffixes)
                if not files:
                    raise InputFileError(f"the folder {spec!r} holds no {kinds} file")
                found = [Source(p, spec, None, True) for p in files]
            else:
                file, scenes = parse_source(spec)
                if not file.exists():
                    raise InputFileError(f"input {spec!r} does not exist")
                if file.is_dir():
                    raise UsageError(f"{spec!r}: a scene selector picks cubes from a stack file, not from a folder")
                found = [Source(file, spec, None if scenes is None else tuple(scenes), False)]
        except HsraError as exc:
            problems.append((spec, exc))
            continue
        for source in found:
            if _identity(source.path) in excluded_ids:
                excluded.append(source.path)
            else:
                sources.append(source)
    unique: dict[tuple, Source] = {}
    for source in sources:
        unique.setdefault((absolute(source.path), source.scenes), source)
    return list(unique.values()), problems, excluded


def _listed_file(path: Path) -> bool:
    """A file a folder or pattern lists as an input: a regular file, or a link whose target is gone (a share not
    mounted here); the latter fails as an input of its own, named, rather than vanishing from the batch (and, with
    --num-parts, shifting the other machines' shares)."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def absolute(path: Path) -> Path:
    """The path made absolute with its folders resolved but not the file itself: a link is an input of its own
    name (``b.npy -> a.npy`` gives ``b.*`` outputs), while the same file named twice (``dir`` and ``dir/a.npy``,
    ``./a.npy`` and ``a.npy``) is one input."""
    path = Path(path)
    return path.parent.resolve() / path.name


def _identity(path: Path):
    """What makes two paths the same file: device and inode when it exists (hard and soft links alike)."""
    try:
        status = path.stat()
        return (status.st_dev, status.st_ino)
    except OSError:
        return path.resolve()


def same_file(a: Path, b: Path) -> bool:
    return _identity(Path(a)) == _identity(Path(b))


# ------------------------------------------------------------------------------------------------------
# scenes: the cubes a source holds


@dataclass(frozen=True)
class Scene:
    """One cube of an input: a whole file (``index`` None) or one scene of a stack."""

    path: Path
    index: int | None = None

    @property
    def name(self) -> str:
        """``stem`` or ``stem:index``: what tables show and pairing compares."""
        return self.path.stem if self.index is None else f"{self.path.stem}:{self.index}"

    @property
    def stem(self) -> str:
        """A file-name stem for its outputs: ``stem`` or ``stem_index``."""
        return self.path.stem if self.index is None else f"{self.path.stem}_{self.index}"

    def __str__(self) -> str:
        return str(self.path) if self.index is None else f"{self.path}:{self.index}"


def scenes_of(source: Source, key: str | None = None, role: str = "cube") -> list[Scene]:
    """The cubes ``source`` names: its one cube, or the selected (default: all) scenes of an ``N × …`` stack.

    Reads only the file's headers where the format allows. ``role``: ``"cube"``, ``"prediction"`` or ``"truth"``
    (which array a file of several holds; see :func:`hsra_cli.io.read_array`). Raises :class:`UsageError` for a
    selector that does not fit the file."""
    from .io import declared_shape

    shape = declared_shape(source.path, key, role=role)
    if len(shape) == 4 and shape[0] != 1:
        count = shape[0]
        indices = source.scenes if source.scenes is not None else tuple(range(count))
        beyond = [i for i in indices if i >= count]
        if beyond:
            raise UsageError(
                f"{source.spec!r} selects scene {beyond[0]} but {source.path} holds {count} scenes (0–{count - 1})"
            )
        return [Scene(source.path, i) for i in indices]
    if source.scenes not in (None, (0,)):
        raise UsageError(f"{source.spec!r} selects scenes but {source.path} holds one cube (select :0 or nothing)")
    return [Scene(source.path)]


class SceneReader:
    """Reads scenes as ``H × W × C`` float32 cubes, integer data scaled to [0, 1]; a stack is read once for all
    its scenes that come one after another."""

    def __init__(self, key: str | None = None, bands: int | None = None, key_flag: str = "--key", role: str = "cube"):
        self.key, self.bands, self.key_flag, self.role = key, bands, key_flag, role
        self._stack = None  # (path, LoadedArray) of the last stack read

    def read(self, scene: Scene):
        """``(cube, loaded, note)``: ``note`` says how integer data was scaled (None when it was not)."""
        from .errors import key_option

        with key_option(self.key_flag):  # a file with several arrays asks for the flag of this reader's key
            return self._read(scene)

    def _read(self, scene: Scene):
        from .io import read_array, read_cube, to_hwc, unit_range

        if scene.index is None:
            cube, loaded = read_cube(scene.path, self.key, self.bands, role=self.role)
        else:
            if self._stack is None or self._stack[0] != scene.path:
                self._stack = None  # free the previous stack before reading the next
                # NaN/Inf are looked for scene by scene: one bad scene fails alone
                self._stack = (scene.path, read_array(scene.path, self.key, role=self.role, check_finite=False))
            loaded = self._stack[1]
            bad = int(loaded.data[scene.index].size - np.count_nonzero(np.isfinite(loaded.data[scene.index])))
            if bad:
                raise ValueRangeError(f"{scene} holds {bad} NaN/Inf values; expected finite numbers")
            stored = loaded.metadata.get("bands")
            bands = self.bands or (stored if isinstance(stored, int) and not isinstance(stored, bool) else None)
            try:
                cube = to_hwc(loaded.data[scene.index], bands)
            except ShapeError as exc:
                raise ShapeError(f"{scene}: {exc}") from None
        cube, note = unit_range(cube, loaded)
        return np.ascontiguousarray(cube, dtype=np.float32), loaded, note


# ------------------------------------------------------------------------------------------------------
# pairing predictions with truths

#: Endings that mark a truth file, stripped before names are compared (``scene01_gt`` pairs with ``scene01``).
TRUTH_SUFFIXES = ("_gt", "-gt", "_truth", "-truth", "_groundtruth", "_ref")
#: What may follow a truth's name in a prediction's name (``scene01_hsra-s`` pairs with ``scene01``).
_NAME_SEPARATORS = "_-."


def _truth_stem(truth: Scene) -> str:
    stem = truth.path.stem
    for suffix in TRUTH_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _truth_name(truth: Scene) -> str:
    stem = _truth_stem(truth)
    return stem if truth.index is None else f"{stem}:{truth.index}"


def pair_scenes(predictions: list[Scene], truths: list[Scene], by_position: bool = False,
                noun: str = "prediction"):
    """Pair each prediction with its truth. Returns ``(pairs, unmatched)``.

    By name: a truth pairs with the prediction of the same name, its name read without a truth ending
    (:data:`TRUTH_SUFFIXES`); failing that, with a prediction whose name starts with it followed by ``_ - .``
    (``scene01_hsra-s`` ↔ ``scene01``; the longest such name wins). Scene 3 of a stack also answers to the
    name its outputs get, ``stack_3`` (``stack.npz:3`` ↔ ``stack_3.mat``). One prediction file and one truth file pair
    scene by scene whatever their names. ``by_position``: in the order given, or one truth for all.
    ``unmatched`` lists the predictions with no truth; raises :class:`UsageError` when positions cannot pair
    (``noun``: what the command calls its predictions, ``cube`` for render, ``item`` for report).
    """
    if by_position or (len({p.path for p in predictions}) == 1 and len({t.path for t in truths}) == 1
                       and len(predictions) == len(truths)):
        if len(truths) == 1:
            return [(p, truths[0]) for p in predictions], []
        if len(truths) != len(predictions):
            raise UsageError(
                f"--pair-by-position got {len(predictions)} {noun}(s) and {len(truths)} truth(s); "
                f"expected as many truths as {noun}s, in the same order, or one truth for all"
            )
        return list(zip(predictions, truths)), []
    by_name: dict[str, Scene] = {}
    for truth in truths:
        name = _truth_name(truth)
        if name in by_name:
            raise UsageError(
                f"truths {by_name[name]} and {truth} are both named {name!r}; pairing by name needs distinct names "
                "(or pass --pair-by-position; Python: by_position=True)"
            )
        by_name[name] = truth
    # A scene of a stack also answers to the name its outputs get (Scene.stem, ``stack_3``), so a stack that went
    # through simulate and reconstruct pairs with the stack it came from; a truth of that very name comes first.
    for truth in truths:
        if truth.index is not None:
            by_name.setdefault(f"{_truth_stem(truth)}_{truth.index}", truth)
    pairs, unmatched = [], []
    for prediction in predictions:
        # a scene of a prediction stack answers to its output name too (``t_0`` ↔ a truth file ``t_0.npy``)
        names = dict.fromkeys((prediction.name, prediction.stem))
        truth = next((by_name[name] for name in names if name in by_name), None)
        if truth is None:
            prefixes = [n for n in by_name for name in names
                        if name.startswith(n) and name[len(n):len(n) + 1] in tuple(_NAME_SEPARATORS)]
            truth = by_name[max(prefixes, key=len)] if prefixes else None
        if truth is None:
            unmatched.append(prediction)
        else:
            pairs.append((prediction, truth))
    return pairs, unmatched


def truth_file_name(truth: Scene) -> str:
    """A truth's name as the pairing reads it (without ``_gt``, ``_truth`` …) in the form file names and tables
    use: ``scene01``, and ``stack_3`` for scene 3 of a stack (never ``stack:3``: no colon in a file name)."""
    stem = _truth_stem(truth)
    return stem if truth.index is None else f"{stem}_{truth.index}"


def unmatched_message(prediction: Scene, truths: list[Scene]) -> str:
    """Why ``prediction`` has no truth (evaluate, render, report), naming scenes of stacks as the tables and the
    outputs name them (``stack_0``, never ``stack:0``); a scene answers to that name in :func:`pair_scenes`."""
    names = sorted({truth_file_name(truth) for truth in truths})
    listed = ", ".join(names[:6]) + (f" … ({len(names)} in all)" if len(names) > 6 else "")
    return (
        f"no truth is named like {prediction.stem!r} (truths: {listed or 'none'}); name them alike "
        "(scene01.mat ↔ scene01_gt.mat, or scene01_<method>.mat ↔ scene01.mat) or pass --pair-by-position "
        "(Python: by_position=True)"
    )


def score_pair(pred: np.ndarray, truth: np.ndarray, prediction, truth_scene, convention: str = "field") -> dict:
    """The metrics of ``pred`` against ``truth`` (read cubes of the scenes ``prediction`` and ``truth_scene``), with
    the problems of a pair said as ``hsra evaluate`` says them: a :class:`ShapeError` naming both inputs, a
    ``ValueRangeError`` for an all-zero truth (its metrics would be NaN or meaningless: a wrong file or key)."""
    from .errors import ValueRangeError
    from .metrics import check_prediction, check_truth, evaluate_cube

    check_prediction(pred, f"the prediction {prediction}")
    check_truth(truth, f"the truth {truth_scene}")
    try:
        metrics = evaluate_cube(pred, truth, convention=convention)
    except ShapeError as exc:
        raise ShapeError(f"{prediction} vs {truth_scene}: {exc}") from None
    if not np.any(truth):
        raise ValueRangeError(
            f"truth {truth_scene} is all zero: nothing to score against; expected a cube of reflectances "
            "(the right file and --truth-key?)"
        )
    return metrics
