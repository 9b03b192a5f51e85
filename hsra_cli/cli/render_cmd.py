"""`hsra render`: previews and figures of cubes (false colour, band grid, spectra, error maps, comparisons)."""

from __future__ import annotations

import enum
import glob
import json
import re
from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import SKIP_EXISTING_HELP, info, parse_point, parse_wavelengths

#: A comparison figure is <scene>_comparison.<format>, one per scene: the cubes paired with one truth (named as the
#: cubes' shared name, else the truth's), or without --truth the cubes of one name (``scene07``, ``scene07_<method>``).
COMPARISON_SUFFIX = "comparison"


class WhiteBalance(str, enum.Enum):
    illuminant = "illuminant"
    grey_world = "grey-world"
    none = "none"


class FigureFormat(str, enum.Enum):
    png = "png"
    pdf = "pdf"
    svg = "svg"


def _record_model(path: Path) -> Optional[str]:
    """The model named in the JSON record hsra reconstruct wrote beside ``path`` (<stem>.json), if any."""
    record = path.with_suffix(".json")
    try:
        model = json.loads(record.read_text()).get("model") if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return str(model) if isinstance(model, str) and model else None


def _labels(cubes: list, given: list[str]) -> list[str]:
    """One label per cube (a :class:`~hsra_cli.inputs.Scene`): --label as given, else the record's model (a whole
    file's), else the folder's name when two cubes share a name, else the cube's name (``stem``, ``stem_3``)."""
    from ..errors import UsageError

    if given and len(given) != len(cubes):
        raise UsageError(f"got {len(given)} --label for {len(cubes)} cubes; expected one per cube")
    if given:
        return list(given)
    stems = [scene.stem for scene in cubes]
    labels = []
    for scene in cubes:
        model = _record_model(scene.path) if scene.index is None else None
        if model is None:
            shared = stems.count(scene.stem) > 1
            model = (scene.path.resolve().parent.name or scene.stem) if shared else scene.stem
        labels.append(model)
    return labels


def _file_part(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", label).strip("-.") or "cube"


_SEPARATORS = "_-."


def _shared_prefix(stem: str, stems: list[str]) -> Optional[str]:
    """The longest name that ``stem`` starts with (up to a ``_ - .``, or whole) and another cube's name equals or
    starts with the same way: the scene of ``scene07_hsra-s`` beside ``scene07_gap-tv`` (``scene07``)."""
    others = list(stems)
    others.remove(stem)
    cuts = [len(stem)] + [i for i in range(len(stem) - 1, 0, -1) if stem[i] in _SEPARATORS]
    for cut in sorted(set(cuts), reverse=True):
        prefix = stem[:cut]
        if any(other == prefix or (other.startswith(prefix) and other[cut:cut + 1] in tuple(_SEPARATORS))
               for other in others):
            return prefix
    return None


def _comparison_groups(cubes: list, truths: list) -> list[tuple[str, list[int]]]:
    """The comparison figures of --side-by-side: ``(scene, indices of its cubes)``, one per scene.

    With --truth, the cubes paired with one truth (named after the cubes' shared name, else the truth's name
    read as :func:`hsra_cli.inputs.pair_scenes` reads it); without, the cubes of one name or of one scene prefix
    (``scene01_gap-tv``, ``scene01_hsra-s``). Cubes whose names group no further (``mst`` and ``gaptv``, or
    ``epoch10`` and ``epoch20`` of one scene) are the one figure the user asked for, ``scene``."""
    from ..inputs import truth_file_name

    stems = [scene.stem for scene in cubes]
    groups: dict = {}
    if any(truth is not None for truth in truths):
        for index, truth in enumerate(truths):
            groups.setdefault(truth, []).append(index)
        named = []
        for truth, indices in groups.items():
            own = {stems[i] for i in indices}
            named.append((own.pop() if len(own) == 1 else truth_file_name(truth), indices))
        return named
    if len(set(stems)) == 1:
        return [(stems[0], list(range(len(cubes))))]
    keys = [_shared_prefix(stem, stems) for stem in stems]
    if all(key is not None for key in keys):
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        return list(groups.items())
    return [("scene", list(range(len(cubes))))]


def _scenes(specs, key: Optional[str], key_flag: str, role: str, option: Optional[str] = None):
    """The scenes that input specs name (files, folders, patterns, ``stack.npz:0-2``: :mod:`hsra_cli.inputs`,
    as ``hsra evaluate`` reads them), and ``(spec, error)`` for each spec or file that names none.

    Specs of ``option`` (--truth) are refused at once, as ``hsra evaluate`` and ``hsra report`` refuse them: one
    that names no file or scene (a missing path, an empty folder, a pattern matching nothing, a selector that does
    not fit) is a :class:`UsageError` naming the option (exit 2); a file holding no readable cube keeps its data
    error (exit 1), one that needs its key asks for it."""
    from ..errors import HsraError, InputFileError, KeyChoiceError, UsageError, key_option
    from ..inputs import absolute, collect, scenes_of

    sources, problems, _ = collect(specs)
    if option and problems:
        raise UsageError(f"{option}: {problems[0][1]}") from None
    scenes, seen = [], set()
    for source in sources:
        try:
            with key_option(key_flag):
                found = scenes_of(source, key, role=role)
        except HsraError as exc:
            if option and isinstance(exc, UsageError):
                raise UsageError(f"{option}: {exc}") from None
            if option:
                raise (exc if isinstance(exc, KeyChoiceError) else InputFileError(f"{option}: {exc}")) from None
            problems.append((str(source.path) if source.listed else source.spec, exc))  # the file, not its folder
            continue
        for scene in found:  # stack.npz:0-2 and stack.npz:2 name scene 2 once
            if (absolute(scene.path), scene.index) not in seen:
                seen.add((absolute(scene.path), scene.index))
                scenes.append(scene)
    return scenes, problems


def _pair_truths(cubes: list, truths: list, by_position: bool):
    """Each cube's truth (None without --truth), and ``(cube, error)`` for each cube with none.

    Paired exactly as ``hsra evaluate`` pairs (:func:`hsra_cli.inputs.pair_scenes`): by name, or in the order
    given with ``by_position``, where one truth serves every cube (several methods' reconstructions of one scene,
    ``mst.npy gaptv.npy --truth scene01.mat --pair-by-position``). A cube no truth is named like is refused, as
    evaluate refuses it, never drawn against another scene's truth."""
    from ..errors import UsageError
    from ..inputs import pair_scenes, unmatched_message

    if not truths:
        return {}, []
    pairs, unmatched = pair_scenes(cubes, truths, by_position=by_position, noun="cube")
    return dict(pairs), [(cube, UsageError(unmatched_message(cube, truths))) for cube in unmatched]


def _plan(files: list[Path], figure_format: str, *, skip_existing: bool, overwrite: bool) -> str:
    """:func:`hsra_cli.batch.plan_set` for one cube's files; a set that reads as incomplete only because an earlier
    run wrote its figures in another --figure-format is said to be so (not taken for an interrupted run)."""
    from ..batch import plan_set
    from ..errors import OutputExistsError
    from ..render import written_by_hsra

    try:
        return plan_set(files, skip_existing=skip_existing, overwrite=overwrite)
    except OutputExistsError:
        present = [path for path in files if path.exists()]
        missing = [path for path in files if not path.exists()]
        others = [fmt.value for fmt in FigureFormat if fmt.value != figure_format]
        elsewhere = [(path, path.with_suffix(f".{fmt}")) for path in missing for fmt in others
                     if path.with_suffix(f".{fmt}").exists()]
        if not (present and elsewhere and all(written_by_hsra(path) for path in present)):
            raise
        path, other = elsewhere[0]
        raise OutputExistsError(
            f"{present[0]} exists, from a run with --figure-format {other.suffix[1:]} ({other.name} is there, "
            f"{path.name} is not); pass --overwrite to replace it and add the {figure_format} figures, or write to "
            "another folder (-o)"
        ) from None


def _checked_truth(cube, scene):
    """``cube``, the truth of ``scene``, if it can be scored against: in [0, 1] and not all zero, refused (naming
    its file) as ``hsra evaluate`` refuses it (:func:`hsra_cli.inputs.score_pair`), before any figure is drawn."""
    import numpy as np

    from ..errors import ValueRangeError
    from ..metrics import check_truth

    check_truth(cube, f"the truth {scene}")
    if not np.any(cube):
        raise ValueRangeError(
            f"truth {scene} is all zero: nothing to score against; expected a cube of reflectances "
            "(the right file and --truth-key?)"
        )
    return cube


def _parse_exposure(text: str):
    from ..errors import UsageError

    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UsageError(f"--exposure {text!r} must be 'auto' or a positive number (a gain; 1 = white at full scale)")
    return value


def _load(reader, scene, notes: list):
    """(cube H×W×C float32, wavelengths stored in its file or None) of a scene read by ``reader``
    (:class:`~hsra_cli.inputs.SceneReader`); integer data scaled to [0, 1], which is noted in ``notes`` (said once
    the cube is accepted, so that a refusal stays one line)."""
    cube, loaded, note = reader.read(scene)
    if note:
        notes.append(note)
    metadata = loaded.metadata or {}
    return cube, metadata.get("wavelengths_nm")


def _old_output_dir(ctx: typer.Context, value: Optional[Path]):
    """--output-dir, the old name of -o: its value stands for -o's when -o is not given (so -o can be required)."""
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), "out": value}
    return value


@app.command(
    "render",
    epilog=(
        "[bold]Examples[/bold]\n\n"
        "  hsra render recon.npy -o previews/\n\n"
        "  hsra render out/ -o previews/   [dim]# every cube of a folder[/dim]\n\n"
        "  hsra render kaist_truth.npz:0-2 -o previews/   [dim]# scenes of a stack: kaist_truth_0_rgb.png …[/dim]\n\n"
        "  hsra render out/ --truth truth/ -o figs/   [dim]# error maps, truths paired by name[/dim]\n\n"
        "  hsra render recon.h5 --key cube --pixel 80,120 --pixel 200,40 -o previews/\n\n"
        "  hsra render mst.npy gaptv.npy --truth scene01.mat --pair-by-position --side-by-side -o figs/   "
        "[dim]# one truth for cubes not named after it[/dim]\n\n"
        "  hsra render hsra-s/scene01.mat gap-tv/scene01.mat --truth truth/scene01.mat --side-by-side "
        "--figure-format pdf -o figs/   [dim]# labels from the JSON records[/dim]\n\n"
        "  hsra render capture.mat --illuminant A --pixel 80,120 --dpi 300 -o figs/\n\n"
        "  hsra render cube.tif --wavelengths 450,460,470,480 --exposure 1.5 -o previews/ --overwrite\n\n"
        "  hsra render out/ -o previews/ --skip-existing   [dim]# resume an interrupted run[/dim]"
    ),
)
def render(
    cube_specs: List[str] = typer.Argument(
        ..., metavar="CUBES...", show_default=False,
        help="Cubes (H×W×C or C×H×W; .npy .npz .mat .h5 .tif): files, folders, quoted patterns, N×H×W×C stacks, "
        "stack.npz:SCENES (a scene's files are named stack_N).",
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", show_default=False, help="Folder for the PNGs (created if missing)."
    ),
    old_output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", hidden=True, is_eager=True, callback=_old_output_dir
    ),
    pixel: List[str] = typer.Option(
        [], "--pixel", metavar="ROW,COL", help="Pixel (row, column) whose spectrum to plot; repeatable."
    ),
    point: List[str] = typer.Option([], "--point", hidden=True),  # the old spelling: x,y (column, row)
    radius: int = typer.Option(0, "--radius", min=0, help="Average each spectrum over a (2r+1)² square."),
    truth: List[str] = typer.Option(
        [], "--truth", metavar="TRUTH",
        help="Ground truth, the same syntax as the cubes; repeatable. Paired with the cubes by name as in hsra "
        "evaluate (scene01 ↔ scene01, scene01_gt; scene01_<method> ↔ scene01); one truth for cubes named "
        "otherwise (several methods' cubes of one scene) with --pair-by-position.",
    ),
    pair_by_position: bool = typer.Option(
        False, "--pair-by-position", help="Pair with --truth in the order given (or one truth for all) instead of by name."
    ),
    side_by_side: bool = typer.Option(
        False, "--side-by-side",
        help="Also write <scene>_comparison.png, one per scene: its cubes (and truth) in false colour, labelled, "
        "with PSNR when --truth is given. A scene's cubes are those paired with one truth (named as the cubes' shared "
        "file name, else the truth), or without --truth those of one name (scene07, scene07_<method>).",
    ),
    label: List[str] = typer.Option(
        [], "--label",
        help="Panel label, one per cube, in order (default: the model in the cube's JSON record, else the "
        "folder's name for same-named cubes, else the file name).",
    ),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the cube (default: the usual names)."),
    truth_key: Optional[str] = typer.Option(
        None, "--truth-key", help="Variable holding the truth cube (default: the usual names)."
    ),
    bands: Optional[int] = typer.Option(
        None, "--bands", min=1, help="Band count, when the layout of an array is ambiguous."
    ),
    wavelengths: Optional[str] = typer.Option(
        None,
        "--wavelengths",
        help="Band centres (nm): comma list or text file (default: stored in the cube, else the field's list for "
        "28 bands; other band counts need it).",
    ),
    exposure: str = typer.Option(
        "auto", "--exposure", help="'auto' (99.5th percentile of luminance at 0.95) or a gain (1: white at full scale)."
    ),
    illuminant: str = typer.Option(
        "D65", "--illuminant",
        help="Light the cube was lit by (radiance) or is seen under (reflectance): a CIE name such as D65, D50, "
        "A, E, FL2. Its white point, as the bands sample it, is adapted to sRGB's white (colour-science, CAT02).",
    ),
    white_balance: Optional[WhiteBalance] = typer.Option(
        None, "--white-balance", show_default=False,
        help="illuminant (the default): a white under --illuminant renders white; grey-world: the image's mean colour is "
        "taken as grey; none: no adaptation. Not with --grey-patch.",
    ),
    grey_patch: Optional[str] = typer.Option(
        None, "--grey-patch", metavar="ROW,COL[,RADIUS]",
        help="A grey region to balance on instead (not with --white-balance): its centre pixel (row, column) and "
        "radius (default 4: 9×9 pixels).",
    ),
    no_white_balance: bool = typer.Option(False, "--no-white-balance", hidden=True),
    dpi: int = typer.Option(120, "--dpi", min=10, max=2400, help="Resolution of the figures."),
    figure_format: FigureFormat = typer.Option(
        FigureFormat.png, "--figure-format", help="Format of the figures (band grid, spectra, error map, comparison)."
    ),
    skip_existing: bool = typer.Option(False, "--skip-existing", help=SKIP_EXISTING_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and the summary on stderr."),
) -> int:
    """Write previews and figures of hyperspectral cubes (PNG; figures also PDF or SVG).

    For each cube: <stem>_rgb.png (false colour: CIE 1931, white point of --illuminant adapted to sRGB's D65)
    and <stem>_bands.png (one panel per band, one shared scale). Same-named cubes from different folders are
    told apart by their labels: <stem>_<label>_rgb.png.

    --pixel adds <stem>_spectra.png (the pixels marked on the image); --truth adds <stem>_error.png (truths are
    paired with the cubes by name, as hsra evaluate pairs them);
    --side-by-side adds <scene>_comparison.png for each scene. --figure-format pdf|svg writes those figures as vectors.

    The written paths go to stdout, one per line. Every output path is checked before anything is written;
    existing files are only replaced with --overwrite. A cube that fails does not stop the others (exit code 1);
    --skip-existing skips cubes whose files are all there and redoes those an interruption left incomplete.
    """
    from rich.markup import escape

    from ..batch import BatchResult, check_keep_or_replace, check_not_inputs, clean_stale_temporaries
    from ..errors import INTERRUPTS, HsraError, ShapeError, UsageError, ValueRangeError
    from ..inputs import SceneReader
    from ..metrics import check_prediction
    from ..io import output_folder
    from ._common import alias, console, parse_offset, print_summary, value_of

    output_dir = alias(out, old_output_dir, "--out", "--output-dir")
    check_keep_or_replace(skip_existing, overwrite)
    if pair_by_position and not truth:
        raise UsageError("--pair-by-position pairs cubes with --truth; give --truth or drop it")
    cubes, problems = _scenes(cube_specs, key, "--key", "prediction")
    # a truth that names nothing: the call is wrong, before any cube is drawn
    truth_scenes, _ = _scenes(truth, truth_key, "--truth-key", "truth", option="--truth")
    truth_of, unmatched = _pair_truths(cubes, truth_scenes, pair_by_position)
    problems += [(str(cube), error) for cube, error in unmatched]
    cubes = [cube for cube in cubes if cube not in {scene for scene, _ in unmatched}]
    single = len(cubes) + len(problems) == 1  # one cube: no progress chatter; a failure is the one error line
    if problems and (side_by_side or single):
        raise problems[0][1]  # a comparison needs every cube; a single cube's error is the one line
    # Spectra plots take (x, y) = (column, row); --pixel is row,col like every coordinate option of hsra.
    pixel_points = [tuple(reversed(parse_offset(text, "--pixel"))) for text in pixel]
    old_points = [parse_point(text) for text in point]
    points = pixel_points + old_points
    exposure_value = _parse_exposure(exposure)
    wavelength_list = parse_wavelengths(wavelengths) if wavelengths is not None else None

    from .. import render as previews

    previews.illuminant_white(illuminant, previews.default_wavelengths(28))  # an unknown name fails up front
    if wavelength_list is not None:
        try:  # a light that gives nothing in the given bands: a wrong --wavelengths or --illuminant, up front
            previews.illuminant_white(illuminant, wavelength_list)
        except ValueRangeError as exc:
            raise UsageError(f"--wavelengths with --illuminant {illuminant}: {exc}") from None
    patch = None
    if grey_patch is not None:
        parts = grey_patch.split(",")
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].strip().isdigit()):
            raise UsageError(f"--grey-patch {grey_patch!r} is not of the form ROW,COL or ROW,COL,RADIUS (pixels)")
        row, col = parse_offset(",".join(parts[:2]), "--grey-patch")
        patch = (col, row) if len(parts) == 2 else (col, row, int(parts[2]))  # the renderer takes (x, y)
    balance = previews.white_balance_choice("none" if no_white_balance else value_of(white_balance), patch)
    colour = {"exposure": exposure_value, "white_balance": balance, "illuminant": illuminant, "grey_patch": patch}
    fmt = figure_format.value

    labels = _labels(list(cubes), list(label))
    stems = [scene.stem for scene in cubes]
    # Same-named cubes (e.g. one scene reconstructed by several methods into their own folders) are named
    # <stem>_<label>; their labels must then tell them apart.
    names = [f"{stem}_{_file_part(text)}" if stems.count(stem) > 1 else stem for stem, text in zip(stems, labels)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(
            f"several cubes would be written as {repeated[0]!r}; their previews would collide "
            "(give each a different --label, rename, or render separately)"
        )
    truths = [truth_of.get(cube) for cube in cubes]
    # One comparison per scene: {path: indices of its cubes}.
    comparisons = {output_dir / f"{scene}_{COMPARISON_SUFFIX}.{fmt}": indices
                   for scene, indices in (_comparison_groups(cubes, truths) if side_by_side else [])}
    if side_by_side and len(comparisons) != len(_comparison_groups(cubes, truths)):
        raise UsageError(
            "several scenes' comparisons would be written under one name (truths of the same name); render each "
            "scene separately"
        )

    sets: list[list[Path]] = []  # each cube's files, in the order they are written
    for name, truth_path in zip(names, truths):
        files = previews.preview_paths(output_dir, name, fmt)
        if points:
            files.append(output_dir / f"{name}_spectra.{fmt}")
        if truth_path is not None:
            files.append(output_dir / f"{name}_error.{fmt}")
        sets.append(files)
    planned = [path for files in sets for path in files] + list(comparisons)
    check_not_inputs(planned, [scene.path for scene in [*cubes, *truth_scenes]], "write to another folder (-o)")
    # Every set is checked before anything is written: "skip" (complete, --skip-existing), "write" or "replace".
    plans = {name: _plan(files, fmt, skip_existing=skip_existing, overwrite=overwrite)
             for name, files in zip(names, sets)}
    for comparison in comparisons:  # each comparison is a set of its own
        plans[comparison] = _plan([comparison], fmt, skip_existing=skip_existing, overwrite=overwrite)
    last_file = {name: files[-1] for name, files in zip(names, sets)}
    with output_folder(output_dir):  # created here; removed again if nothing was written into it
        clean_stale_temporaries(output_dir, lambda text: info(f"note: {escape(text)}", quiet))

        def load(path, truth_path):
            """Read one cube (and its truth), both scenes, and check them before any of its files is written."""
            if not single:
                info(f"rendering {escape(str(path))}", quiet)
            notes: list[str] = []
            cube, file_wavelengths = _load(cube_reader, path, notes)
            true_cube = None
            if truth_path is not None:  # scored against it: off-scale values are refused, as hsra evaluate does
                check_prediction(cube, f"cube {path}")
                if truth_path not in loaded_truths:
                    try:
                        loaded_truths[truth_path] = _checked_truth(_load(truth_reader, truth_path, notes)[0],
                                                                   truth_path)
                    except HsraError as exc:  # every cube paired with it fails the same way, the file read once
                        loaded_truths[truth_path] = exc
                true_cube = loaded_truths[truth_path]
                if isinstance(true_cube, HsraError):
                    raise true_cube
                if true_cube.shape != cube.shape:
                    raise ShapeError(
                        f"truth {str(truth_path)!r} has shape {true_cube.shape} but cube {str(path)!r} has {cube.shape}"
                        "; expected the same H×W×C"
                    )
            previews.check_points(pixel_points, cube.shape[0], cube.shape[1], what="--pixel")
            previews.check_points(old_points, cube.shape[0], cube.shape[1], what="--point")
            if patch is not None:
                previews.check_points([patch[:2]], cube.shape[0], cube.shape[1], what="--grey-patch")
            wavelengths_nm = previews.band_centres(cube.shape[2], wavelength_list, file_wavelengths, repr(str(path)))
            if true_cube is None:
                try:
                    check_prediction(cube, f"cube {path}")
                except ValueRangeError:  # drawn anyway, but not silently
                    notes.append(f"warning: {path}: values span {float(cube.min()):.3g}..{float(cube.max()):.3g}; "
                                 "expected [0, 1] (a cube in 0–255 units must be divided by 255)")
            for note in notes:  # the cube is accepted: now its notes
                info(escape(note), quiet)
            return cube, wavelengths_nm, true_cube

        loaded_truths: dict = {}
        cube_reader = SceneReader(key, bands, role="prediction")
        truth_reader = SceneReader(truth_key, bands, key_flag="--truth-key", role="truth")
        jobs = list(zip(cubes, names, truths))
        skipped = [name for name in names if plans[name] == "skip"]
        if side_by_side and all(plans[c] == "skip" for c in comparisons) and len(skipped) == len(names):
            jobs = []  # nothing to draw: no cube is read
        elif not side_by_side:
            jobs = [job for job in jobs if plans[job[1]] != "skip"]  # a skipped cube is not even read
        if side_by_side:
            # The comparison needs every cube anyway: load and check them all before writing anything.
            items = [(stem, *load(path, truth_path)) for path, stem, truth_path in jobs]
            shapes = {stem: cube.shape for stem, cube, _, _ in items}
            for indices in (comparisons.values() if items else []):
                first = names[indices[0]]
                for index in indices[1:]:
                    if shapes[names[index]] != shapes[first]:
                        raise ShapeError(
                            f"--side-by-side compares one scene: cube {names[index]!r} has shape "
                            f"{shapes[names[index]]} but {first!r} has {shapes[first]}"
                        )
        else:
            items = (((stem, path), lambda path=path, truth_path=truth_path: load(path, truth_path))
                     for path, stem, truth_path in jobs)

        result = BatchResult(failed=[(Path(spec), str(error), error) for spec, error in problems], skipped=skipped)
        for name in skipped:
            info(f"skipping {escape(name)}: its files are complete", quiet or single)
        for spec, error in problems:
            console.print(f"[red]failed[/red] {escape(spec)}: {escape(str(error))}")
        written: list[Path] = []
        kept: dict = {}  # name: (cube, wavelengths, truth), for the comparisons
        try:
            for item in items:
                if side_by_side:
                    stem, cube, wavelengths_nm, true_cube = item
                else:  # each cube on its own: one that fails does not stop the others
                    (stem, path), read = item
                    try:
                        cube, wavelengths_nm, true_cube = read()
                    except (HsraError, MemoryError) as exc:
                        message = str(exc) if isinstance(exc, HsraError) else f"out of memory reading {path}"
                        if single:
                            raise
                        result.failed.append((path, message, exc))
                        console.print(f"[red]failed[/red] {escape(str(path))}: {escape(message)}")
                        continue
                if plans[stem] == "skip":  # --side-by-side reads every cube; a complete set is not redrawn
                    kept[stem] = (cube, wavelengths_nm, true_cube)
                    continue
                replace = plans[stem] == "replace"
                if replace:  # the set reads as incomplete until its last file is new again
                    last_file[stem].unlink(missing_ok=True)
                pattern = f"{glob.escape(stem)}_*"
                existed = set(output_dir.glob(pattern))
                try:
                    own = previews.write_previews(cube, wavelengths_nm, output_dir, stem, replace, **colour,
                                                  figure_format=fmt, dpi=dpi)
                    if points:
                        image = previews.false_color(cube, wavelengths_nm, **colour)
                        figure = previews.spectra_plot(cube, points, wavelengths_nm, truth=true_cube, radius=radius,
                                                       image=image)
                        own.append(previews.save_figure(output_dir / f"{stem}_spectra.{fmt}", figure, replace, dpi))
                    if true_cube is not None:
                        figure = previews.error_map(cube, true_cube, wavelengths_nm)
                        own.append(previews.save_figure(output_dir / f"{stem}_error.{fmt}", figure, replace, dpi))
                except (HsraError, MemoryError) as exc:
                    if single or side_by_side:
                        raise
                    # This cube fails alone (a full disk, say): the files it had begun are removed, none older.
                    for made in set(output_dir.glob(pattern)) - existed:
                        made.unlink(missing_ok=True)
                    message = str(exc) if isinstance(exc, HsraError) else f"out of memory rendering {stem}"
                    result.failed.append((Path(stem), message, exc))
                    console.print(f"[red]failed[/red] {escape(stem)}: {escape(message)}")
                    continue
                written += own
                result.done.append(stem)
                if side_by_side:
                    kept[stem] = (cube, wavelengths_nm, true_cube)
        except INTERRUPTS as exc:  # Ctrl-C or SIGTERM: what is written stays, the rest is left
            result.interrupted = getattr(exc, "signum", 2)
            result.left = [name for name in names if name not in result.done and name not in skipped]
            side_by_side = False
        for comparison, indices in (comparisons.items() if side_by_side else []):
            if plans[comparison] == "skip":
                continue
            group = [kept[names[index]] for index in indices]  # every cube of one scene, and that scene's truth
            figure = previews.side_by_side([cube for cube, _, _ in group], [labels[index] for index in indices],
                                           group[0][1], truth=group[0][2],
                                           title=comparison.stem[: -len(COMPARISON_SUFFIX) - 1], **colour)
            written.append(previews.save_figure(comparison, figure, plans[comparison] == "replace", dpi))

    for path in written:
        typer.echo(str(path))
    info(f"wrote {len(written)} file(s) to {output_dir}", quiet)
    if result.failed or result.interrupted is not None or result.skipped:
        return print_summary(result)
    return 0
