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
from hsra_cli.cli._common import SKIP_EXISTING_HELP, info, parse_point, require_files

#: The comparison figure is <scene>_comparison.<format>; the scene is the cubes' shared name, else the truth's.
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


def _labels(cubes: list[Path], given: list[str]) -> list[str]:
    """One label per cube: --label as given, else the record's model, else the folder's name when two cubes
    share a file name, else the file's stem."""
    from ..errors import UsageError

    if given and len(given) != len(cubes):
        raise UsageError(f"got {len(given)} --label for {len(cubes)} cubes; expected one per cube")
    if given:
        return list(given)
    stems = [path.stem for path in cubes]
    labels = []
    for path in cubes:
        model = _record_model(path)
        if model is None:
            shared = stems.count(path.stem) > 1
            model = (path.resolve().parent.name or path.stem) if shared else path.stem
        labels.append(model)
    return labels


def _file_part(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", label).strip("-.") or "cube"


def _scene_name(stems: list[str], truths: list[Optional[Path]]) -> str:
    if len(set(stems)) == 1:
        return stems[0]
    named = {path.stem for path in truths if path is not None}
    return named.pop() if len(named) == 1 else "scene"


def _parse_wavelengths(text: str):
    """``--wavelengths``: a comma list of numbers, or a text file of numbers (commas or whitespace)."""
    import numpy as np

    from ..errors import UsageError

    source = text
    candidate = Path(text)
    if candidate.is_file():
        try:
            source = candidate.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --wavelengths file {text!r}: {exc}") from None
    parts = source.replace(",", " ").split()
    try:
        values = np.asarray([float(part) for part in parts], dtype=np.float64)
    except ValueError:
        raise UsageError(
            f"--wavelengths {text!r} is neither a comma list of numbers (nm) nor a file of numbers"
        ) from None
    if values.size == 0:
        raise UsageError(f"--wavelengths {text!r} holds no numbers; expected one wavelength (nm) per band")
    if not (np.isfinite(values).all() and np.all(np.diff(values) > 0)):
        raise UsageError(f"--wavelengths {text!r} must be finite and strictly increasing (shortest first)")
    return values


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


def _load(path: Path, key: Optional[str], bands: Optional[int], notes: list):
    """(cube H×W×C float32, wavelengths stored in the file or None); integer data scaled to [0, 1], which is
    noted in ``notes`` (said once the cube is accepted, so that a refusal stays one line)."""
    from ..io import read_cube, unit_range

    cube, loaded = read_cube(path, key=key, bands=bands)
    cube, note = unit_range(cube, loaded)
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
        "  hsra render recon.h5 --key cube --pixel 80,120 --pixel 200,40 -o previews/\n\n"
        "  hsra render mst.npy gaptv.npy --truth scene01.mat --side-by-side -o figs/\n\n"
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
        help="Cube files (H×W×C or C×H×W; .npy .npz .mat .h5 .tif), folders or quoted patterns.",
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
    truth: List[Path] = typer.Option(
        [], "--truth", help="Ground-truth cube: one per cube, or one for all (same scene)."
    ),
    side_by_side: bool = typer.Option(
        False, "--side-by-side",
        help="Also write <scene>_comparison.png: the cubes (and truth) in false colour, labelled, with PSNR "
        "when --truth is given. The scene is the cubes' shared file name, else the truth's.",
    ),
    label: List[str] = typer.Option(
        [], "--label",
        help="Panel label, one per cube, in order (default: the model in the cube's JSON record, else the "
        "folder's name for same-named cubes, else the file name).",
    ),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside the cube files (default: guessed)."),
    truth_key: Optional[str] = typer.Option(
        None, "--truth-key", help="Array name inside the --truth files (default: guessed)."
    ),
    bands: Optional[int] = typer.Option(
        None, "--bands", min=1, help="Band count, when the layout of an array is ambiguous."
    ),
    wavelengths: Optional[str] = typer.Option(
        None,
        "--wavelengths",
        help="Band centres (nm): comma list or text file (default: stored in the cube, else 28 bands).",
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
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress messages on stderr."),
) -> int:
    """Write previews and figures of hyperspectral cubes (PNG; figures also PDF or SVG).

    For each cube: <stem>_rgb.png (false colour: CIE 1931, white point of --illuminant adapted to sRGB's D65)
    and <stem>_bands.png (one panel per band, one shared scale). Same-named cubes from different folders are
    told apart by their labels: <stem>_<label>_rgb.png.

    --pixel adds <stem>_spectra.png (the pixels marked on the image); --truth adds <stem>_error.png;
    --side-by-side adds <scene>_comparison.png. --figure-format pdf|svg writes those figures as vectors.

    The written paths go to stdout, one per line. Every output path is checked before anything is written;
    existing files are only replaced with --overwrite. A cube that fails does not stop the others (exit code 1);
    --skip-existing skips cubes whose files are all there and redoes those an interruption left incomplete.
    """
    from rich.markup import escape

    from ..batch import BatchResult, check_not_inputs, clean_stale_temporaries, plan_set
    from ..errors import INTERRUPTS, HsraError, ShapeError, UsageError
    from ..inputs import collect
    from ..io import output_folder
    from ._common import alias, console, parse_offset, print_summary, value_of

    output_dir = alias(out, old_output_dir, "--out", "--output-dir")
    sources, problems, _ = collect(cube_specs)
    problems += [(s.spec, UsageError(f"{s.spec!r}: render reads whole cube files; drop the scene selector"))
                 for s in sources if s.scenes is not None]
    cubes = [source.path for source in sources if source.scenes is None]
    single = len(cubes) + len(problems) == 1  # one cube: no progress chatter; a failure is the one error line
    if problems and (side_by_side or single):
        raise problems[0][1]  # a comparison needs every cube; a single cube's error is the one line

    if len(truth) not in (0, 1, len(cubes)):
        raise UsageError(
            f"got {len(truth)} --truth files for {len(cubes)} cubes; expected one per cube, or one for all"
        )
    # Spectra plots take (x, y) = (column, row); --pixel is row,col like every coordinate option of hsra.
    pixel_points = [tuple(reversed(parse_offset(text, "--pixel"))) for text in pixel]
    old_points = [parse_point(text) for text in point]
    points = pixel_points + old_points
    exposure_value = _parse_exposure(exposure)
    wavelength_list = _parse_wavelengths(wavelengths) if wavelengths is not None else None
    require_files(list(truth), "truth cube")

    from .. import render as previews

    previews.illuminant_white(illuminant, previews.default_wavelengths(28))  # an unknown name fails up front
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
    stems = [path.stem for path in cubes]
    # Same-named cubes (e.g. one scene reconstructed by several methods into their own folders) are named
    # <stem>_<label>; their labels must then tell them apart.
    names = [f"{stem}_{_file_part(text)}" if stems.count(stem) > 1 else stem for stem, text in zip(stems, labels)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(
            f"several cubes would be written as {repeated[0]!r}; their previews would collide "
            "(give each a different --label, rename, or render separately)"
        )
    truths = (list(truth) * len(cubes) if len(truth) == 1 else list(truth)) if truth else [None] * len(cubes)
    comparison = output_dir / f"{_scene_name(stems, truths)}_{COMPARISON_SUFFIX}.{fmt}"

    sets: list[list[Path]] = []  # each cube's files, in the order they are written
    for name, truth_path in zip(names, truths):
        files = previews.preview_paths(output_dir, name, fmt)
        if points:
            files.append(output_dir / f"{name}_spectra.{fmt}")
        if truth_path is not None:
            files.append(output_dir / f"{name}_error.{fmt}")
        sets.append(files)
    planned = [path for files in sets for path in files] + ([comparison] if side_by_side else [])
    check_not_inputs(planned, [*cubes, *truth], "write to another folder (-o)")
    # Every set is checked before anything is written: "skip" (complete, --skip-existing), "write" or "replace".
    plans = {name: plan_set(files, skip_existing=skip_existing, overwrite=overwrite)
             for name, files in zip(names, sets)}
    if side_by_side:  # the comparison is a set of its own
        plans[comparison] = plan_set([comparison], skip_existing=skip_existing, overwrite=overwrite)
    last_file = {name: files[-1] for name, files in zip(names, sets)}
    with output_folder(output_dir):  # created here; removed again if nothing was written into it
        clean_stale_temporaries(output_dir, lambda text: info(f"note: {escape(text)}", quiet))

        def load(path: Path, truth_path: Optional[Path]):
            """Read one cube (and its truth) and check them before any of its files is written."""
            if not single:
                info(f"rendering {escape(str(path))}", quiet)
            notes: list[str] = []
            cube, file_wavelengths = _load(path, key, bands, notes)
            true_cube = None
            if truth_path is not None:
                if truth_path not in loaded_truths:
                    loaded_truths[truth_path] = _load(truth_path, truth_key, bands, notes)[0]
                true_cube = loaded_truths[truth_path]
                if true_cube.shape != cube.shape:
                    raise ShapeError(
                        f"truth {str(truth_path)!r} has shape {true_cube.shape} but cube {str(path)!r} has {cube.shape}"
                        "; expected the same H×W×C"
                    )
            previews.check_points(pixel_points, cube.shape[0], cube.shape[1], what="--pixel")
            previews.check_points(old_points, cube.shape[0], cube.shape[1], what="--point")
            if patch is not None:
                previews.check_points([patch[:2]], cube.shape[0], cube.shape[1], what="--grey-patch")
            if wavelength_list is not None and len(wavelength_list) != cube.shape[2]:
                raise UsageError(
                    f"--wavelengths gives {len(wavelength_list)} wavelengths but {str(path)!r} has {cube.shape[2]} bands;"
                    " expected one per band"
                )
            wavelengths_nm = wavelength_list if wavelength_list is not None else file_wavelengths
            for note in notes:  # the cube is accepted: now its notes
                info(escape(note), quiet)
            return cube, wavelengths_nm, true_cube

        loaded_truths: dict[Path, object] = {}
        jobs = list(zip(cubes, names, truths))
        skipped = [name for name in names if plans[name] == "skip"]
        if side_by_side and plans[comparison] == "skip" and len(skipped) == len(names):
            jobs = []  # nothing to draw: no cube is read
        elif not side_by_side:
            jobs = [job for job in jobs if plans[job[1]] != "skip"]  # a skipped cube is not even read
        if side_by_side:
            # The comparison needs every cube anyway: load and check them all before writing anything.
            items = [(stem, *load(path, truth_path)) for path, stem, truth_path in jobs]
            for stem, cube, _, _ in items[1:]:
                if cube.shape != items[0][1].shape:
                    raise ShapeError(
                        f"--side-by-side compares one scene: cube {stem!r} has shape {cube.shape} but "
                        f"{items[0][0]!r} has {items[0][1].shape}"
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
        kept: list = []
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
                    kept.append((cube, wavelengths_nm, true_cube))
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
                    kept.append((cube, wavelengths_nm, true_cube))
        except INTERRUPTS as exc:  # Ctrl-C or SIGTERM: what is written stays, the rest is left
            result.interrupted = getattr(exc, "signum", 2)
            result.left = [name for name in names if name not in result.done and name not in skipped]
            side_by_side = False
        if side_by_side and plans[comparison] != "skip":
            reference = next((true_cube for _, _, true_cube in kept if true_cube is not None), None)
            figure = previews.side_by_side([cube for cube, _, _ in kept], labels, kept[0][1], truth=reference,
                                           title=comparison.stem[: -len(COMPARISON_SUFFIX) - 1], **colour)
            written.append(previews.save_figure(comparison, figure, plans[comparison] == "replace", dpi))

    for path in written:
        typer.echo(str(path))
    info(f"wrote {len(written)} file(s) to {output_dir}", quiet)
    if result.failed or result.interrupted is not None or result.skipped:
        return print_summary(result)
    return 0
