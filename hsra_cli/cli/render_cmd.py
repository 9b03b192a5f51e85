"""`hsra render`: PNG previews of cubes (false colour, band grid, spectra, error maps, comparisons)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import info, parse_point, require_files

COMPARISON_NAME = "comparison.png"


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


def _load(path: Path, key: Optional[str], bands: Optional[int], quiet: bool):
    """(cube H×W×C float32, wavelengths stored in the file or None); integer data scaled to [0, 1]."""
    import numpy as np

    from ..io import read_cube, unit_range

    cube, loaded = read_cube(path, key=key, bands=bands)
    cube, note = unit_range(cube, loaded)
    if note:
        info(note, quiet)
    metadata = loaded.metadata or {}
    return cube, metadata.get("wavelengths_nm")


@app.command(
    "render",
    epilog=(
        "[bold]Examples[/bold]\n\n"
        "  hsra render recon.npy -o previews/\n\n"
        "  hsra render out/ -o previews/   [dim]# every cube of a folder[/dim]\n\n"
        "  hsra render recon.h5 --key cube --pixel 80,120 --pixel 200,40 -o previews/\n\n"
        "  hsra render mst.npy gaptv.npy --truth scene01.mat --side-by-side -o figs/\n\n"
        "  hsra render cube.tif --wavelengths 450,460,470,480 --exposure 1.5 -o previews/ --overwrite"
    ),
)
def render(
    cube_specs: List[str] = typer.Argument(
        ..., metavar="CUBES...", show_default=False,
        help="Cube files (H×W×C or C×H×W; .npy .npz .mat .h5 .tif), folders or quoted patterns.",
    ),
    out: Optional[Path] = typer.Option(
        None, "-o", "--out", show_default=False, help="Folder for the PNGs (created if missing). [required]"
    ),
    old_output_dir: Optional[Path] = typer.Option(None, "--output-dir", hidden=True),
    pixel: List[str] = typer.Option(
        [], "--pixel", metavar="ROW,COL", help="Pixel (row, column) whose spectrum to plot; repeatable."
    ),
    point: List[str] = typer.Option([], "--point", hidden=True),  # the old spelling: x,y (column, row)
    radius: int = typer.Option(0, "--radius", min=0, help="Average each spectrum over a (2r+1)² square."),
    truth: List[Path] = typer.Option(
        [], "--truth", help="Ground-truth cube: one per cube, or one for all (same scene)."
    ),
    side_by_side: bool = typer.Option(
        False, "--side-by-side", help="Also write comparison.png: the cubes (and truth) in false colour, labelled."
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
    white_balance: bool = typer.Option(
        True, "--white-balance/--no-white-balance", help="Render a grey reflector neutral despite the band range."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress messages on stderr."),
) -> int:
    """Write PNG previews of hyperspectral cubes.

    For each cube: <stem>_rgb.png (false colour: CIE 1931 under an equal-energy illuminant, sRGB) and
    <stem>_bands.png (one panel per band, one shared scale).

    --pixel adds <stem>_spectra.png; --truth adds <stem>_error.png; --side-by-side adds comparison.png.

    The written paths go to stdout, one per line. Every output path is checked before anything is written;
    existing files are only replaced with --overwrite. A cube that fails does not stop the others (exit code 1).
    """
    from rich.markup import escape

    from ..batch import BatchResult, check_not_inputs, clean_stale_temporaries
    from ..errors import INTERRUPTS, HsraError, ShapeError, UsageError
    from ..inputs import collect
    from ._common import alias, console, parse_offset, print_summary

    output_dir = alias(out, old_output_dir, "--out", "--output-dir")
    if output_dir is None:
        raise UsageError("Missing option '-o' / '--out' (the folder for the PNGs)")
    sources, problems, _ = collect(cube_specs)
    problems += [(s.spec, UsageError(f"{s.spec!r}: render reads whole cube files; drop the scene selector"))
                 for s in sources if s.scenes is not None]
    cubes = [source.path for source in sources if source.scenes is None]
    if problems and (side_by_side or len(cubes) + len(problems) == 1):
        raise problems[0][1]  # a comparison needs every cube; a single cube's error is the one line

    if len(truth) not in (0, 1, len(cubes)):
        raise UsageError(
            f"got {len(truth)} --truth files for {len(cubes)} cubes; expected one per cube, or one for all"
        )
    # Spectra plots take (x, y) = (column, row); --pixel is row,col like every coordinate option of hsra.
    points = [tuple(reversed(parse_offset(text, "--pixel"))) for text in pixel] + [parse_point(text) for text in point]
    exposure_value = _parse_exposure(exposure)
    wavelength_list = _parse_wavelengths(wavelengths) if wavelengths is not None else None
    require_files(list(truth), "truth cube")

    stems = [path.stem for path in cubes]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise UsageError(
            f"several cubes are named {repeated[0]!r}; their previews would collide (rename or render separately)"
        )
    truths = (list(truth) * len(cubes) if len(truth) == 1 else list(truth)) if truth else [None] * len(cubes)

    from .. import render as previews

    planned: list[Path] = []
    for stem, truth_path in zip(stems, truths):
        planned += previews.preview_paths(output_dir, stem)
        if points:
            planned.append(output_dir / f"{stem}_spectra.png")
        if truth_path is not None:
            planned.append(output_dir / f"{stem}_error.png")
    if side_by_side:
        planned.append(output_dir / COMPARISON_NAME)
    check_not_inputs(planned, [*cubes, *truth])
    previews.check_outputs(planned, overwrite)
    clean_stale_temporaries(output_dir, lambda text: info(f"note: {escape(text)}", quiet))

    def load(path: Path, truth_path: Optional[Path]):
        """Read one cube (and its truth) and check them before any of its files is written."""
        info(f"rendering {path}", quiet)
        cube, file_wavelengths = _load(path, key, bands, quiet)
        true_cube = None
        if truth_path is not None:
            if truth_path not in loaded_truths:
                loaded_truths[truth_path] = _load(truth_path, truth_key, bands, quiet)[0]
            true_cube = loaded_truths[truth_path]
            if true_cube.shape != cube.shape:
                raise ShapeError(
                    f"truth {str(truth_path)!r} has shape {true_cube.shape} but cube {str(path)!r} has {cube.shape}"
                    "; expected the same H×W×C"
                )
        previews.check_points(points, cube.shape[0], cube.shape[1])
        if wavelength_list is not None and len(wavelength_list) != cube.shape[2]:
            raise UsageError(
                f"--wavelengths gives {len(wavelength_list)} wavelengths but {str(path)!r} has {cube.shape[2]} bands;"
                " expected one per band"
            )
        wavelengths_nm = wavelength_list if wavelength_list is not None else file_wavelengths
        return cube, wavelengths_nm, true_cube

    loaded_truths: dict[Path, object] = {}
    jobs = zip(cubes, stems, truths)
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

    result = BatchResult(failed=[(Path(spec), str(error), error) for spec, error in problems])
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
                    if len(cubes) + len(problems) == 1:
                        raise
                    result.failed.append((path, message, exc))
                    console.print(f"[red]failed[/red] {escape(str(path))}: {escape(message)}")
                    continue
            written += previews.write_previews(cube, wavelengths_nm, output_dir, stem, overwrite,
                                               exposure=exposure_value, white_balance=white_balance)
            if points:
                figure = previews.spectra_plot(cube, points, wavelengths_nm, truth=true_cube, radius=radius)
                written.append(previews.save_png(output_dir / f"{stem}_spectra.png", figure, overwrite))
            if true_cube is not None:
                figure = previews.error_map(cube, true_cube, wavelengths_nm)
                written.append(previews.save_png(output_dir / f"{stem}_error.png", figure, overwrite))
            result.done.append(stem)
            if side_by_side:
                kept.append((cube, wavelengths_nm, true_cube))
    except INTERRUPTS as exc:  # Ctrl-C or SIGTERM: what is written stays, the rest is left
        result.interrupted = getattr(exc, "signum", 2)
        result.left = [stem for stem in stems if stem not in result.done]
        side_by_side = False
    if side_by_side:
        reference = next((true_cube for _, _, true_cube in kept if true_cube is not None), None)
        figure = previews.side_by_side([cube for cube, _, _ in kept], stems, kept[0][1], truth=reference,
                                       exposure=exposure_value, white_balance=white_balance)
        written.append(previews.save_png(output_dir / COMPARISON_NAME, figure, overwrite))

    for path in written:
        typer.echo(str(path))
    info(f"wrote {len(written)} file(s) to {output_dir}", quiet)
    if result.failed or result.interrupted is not None:
        return print_summary(result)
    return 0
