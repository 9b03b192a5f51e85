"""`hsra simulate`: snapshot measurements from hyperspectral cubes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import (
    QE_METAVAR, SKIP_EXISTING_HELP, THREADS_HELP, AxisChoice, MaskKindChoice, NoiseChoice, console, info, parse_offset, quantum_efficiency,
    set_threads, value_of, warn,
)


def finite_positive(value):
    """Option callback: a finite number > 0 (typer's ``min`` lets inf through, and cannot exclude its bound)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number > 0; expected a positive number")
    return value


@app.command(
    epilog="""[b]Examples[/b]

  hsra simulate scene.mat -o sim/                       [dim]# random binary mask, no noise[/dim]

  hsra simulate cubes/*.mat --mask mask_256.mat -o sim/ --noise shot --qe 0.4 --bit-depth 2048

  hsra simulate cube.h5 --key img --noise-sigma 0.01 -o sim/           [dim]# --noise-sigma implies --noise gaussian[/dim]

  hsra simulate kaist_truth.npz:0-3 --mask mask_256.mat -o sim/         [dim]# scenes 0–3 of a stack[/dim]

  hsra simulate kaist_truth.npz:1 --mask mask_660.mat --mask-offset 123,301 -o sim/   [dim]# a window of a larger mask[/dim]

  for f in cubes/*.mat; do hsra simulate "$f" --mask m.mat -o sim/; done   [dim]# mask.mat is kept[/dim]

  hsra simulate cubes/ --mask mask_256.mat -o sim/ --skip-existing      [dim]# resume an interrupted run[/dim]
""",
)
def simulate(
    cubes: List[str] = typer.Argument(
        ..., help="Cube files (H×W×C or C×H×W; .mat .h5 .tif .npy .npz), folders, quoted patterns or stack.npz:SCENES; "
        "values in [0, 1].",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: <name>.mat (key meas), mask.mat, <name>_meas.png."),
    name: str = typer.Option(
        "{stem}", "--name", help="Output name template: {stem} (cube name; stem_N for scene N of a stack), {parent}, "
        "{noise}, {seed}.",
    ),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the cube (default: the usual names)."),
    bands: Optional[int] = typer.Option(None, "--bands", min=1, help="Band count, to tell the layout when it is ambiguous."),
    mask: Optional[Path] = typer.Option(None, "-m", "--mask", help="Coded aperture file (2-D, or a 3-D shifted mask). Default: generated."),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    mask_offset: Optional[str] = typer.Option(
        None, "--mask-offset", metavar="ROW,COL", help="Simulate through the window at this row, column of a --mask "
        "larger than the cubes (mask.mat holds the window; each measurement records where it lies).",
    ),
    mask_kind: Optional[MaskKindChoice] = typer.Option(
        None, "--mask-kind", help="Generated mask, without --mask (default: random-binary).", show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed of the generated mask and the noise (as hsra train's, at most 4294967295)."),
    step: int = typer.Option(2, "--step", min=1, help="Dispersion in pixels per band."),
    axis: AxisChoice = typer.Option(AxisChoice.WIDTH, "--axis", help="Dispersion axis."),
    noise: Optional[NoiseChoice] = typer.Option(
        None, "--noise", help="Noise model: none, gaussian (needs --noise-sigma) or shot (--qe, --bit-depth, --gain). "
        "Default: the model that the options given imply, else none.", show_default=False,
    ),
    noise_sigma: Optional[float] = typer.Option(
        None, "--noise-sigma", callback=finite_positive, help="Gaussian noise σ in measurement units, > 0; implies "
        "--noise gaussian.",
    ),
    qe: Optional[float] = typer.Option(
        None, "--qe", metavar=QE_METAVAR, callback=quantum_efficiency,
        help="Quantum efficiency of the shot-noise model (default 0.4); implies --noise shot.", show_default=False,
    ),
    bit_depth: Optional[int] = typer.Option(
        None, "--bit-depth", min=1, help="Sensor levels of the shot-noise model (default 2048); implies --noise shot.",
        show_default=False,
    ),
    gain: Optional[float] = typer.Option(
        None, "--gain", callback=finite_positive, help="Signal gain before the shot-noise draw (default 1; the real-data "
        "recipe uses 1.2); implies --noise shot.", show_default=False,
    ),
    previews: Optional[bool] = typer.Option(None, "--previews/--no-previews", help="Write a PNG of each measurement (default: previews)."),
    old_preview: Optional[bool] = typer.Option(None, "--preview/--no-preview", hidden=True),
    skip_existing: bool = typer.Option(False, "--skip-existing", help=SKIP_EXISTING_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (never an input of the same call)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors, warnings and the summary on stderr."),
):
    """Simulate CASSI snapshots of cubes: y = Σ_b shift_b(mask ⊙ x_b), plus optional noise.

    Prints the paths written, one per line, on stdout. A mask.mat already in the folder holding the same mask is
    kept, so one cube per call into one folder works. A cube that fails does not stop the others (exit code 1 at
    the end); Ctrl-C or SIGTERM stops after the current cube (exit 130 / 143), and --skip-existing resumes.
    """
    from rich.markup import escape

    from hsra_cli.batch import BatchResult, check_keep_or_replace
    from hsra_cli.cli._common import alias, print_summary, require_files
    from hsra_cli.errors import UsageError
    from hsra_cli.inputs import collect
    from hsra_cli.simulate import expand_inputs, inputs_error, resolve_noise, simulate_files

    set_threads(threads)
    preview = alias(previews, old_preview, "--previews", "--preview")
    preview = True if preview is None else preview
    noise_settings = resolve_noise(value_of(noise), noise_sigma, qe, bit_depth, gain)  # given vs default: None
    check_keep_or_replace(skip_existing, overwrite)
    if mask is not None and mask_kind is not None:
        raise UsageError(f"--mask-kind {mask_kind.value} chooses a generated mask, and --mask gives one from a file; "
                         "pick one")
    mask_kind = mask_kind or MaskKindChoice.RANDOM_BINARY
    offset = parse_offset(mask_offset)
    if offset is not None and mask is None:
        raise UsageError("--mask-offset places the capture in a --mask file larger than the cubes; give --mask (a "
                         "generated mask is made at the cube's size)")
    if mask is not None:
        require_files([mask], "mask")
    sources, problems, excluded = collect(cubes, exclude=[mask] if mask is not None else ())
    if not sources and not problems and excluded:
        raise UsageError(f"the only input given is the --mask file ({excluded[0]}); give the cubes to simulate")
    scenes, unreadable = expand_inputs(sources, key)  # stack selectors checked against the files' headers
    order = {spec: index for index, spec in enumerate(map(str, cubes))}
    problems = sorted([*problems, *unreadable], key=lambda problem: order.get(problem[0], len(order)))  # as typed
    if problems and not scenes:  # nothing to simulate: one error line, not a batch summary
        raise inputs_error(problems)
    single = len(scenes) + len(problems) == 1 and not any(s.listed for s in sources)
    result = BatchResult()

    def on_failed(path, message):
        if not single:
            console.print(f"[red]failed[/red] {escape(str(path))}: {escape(message)}")

    batch = simulate_files(
        scenes, out, key=key, bands=bands, mask_path=mask, mask_key=mask_key, mask_kind=mask_kind.value,
        seed=seed, step=step, axis=axis.value, **noise_settings, mask_offset=offset, preview=preview, overwrite=overwrite,
        skip_existing=skip_existing, name=name,
        on_warning=warn, on_written=lambda p: info(f"wrote {escape(str(p))}", quiet), on_failed=on_failed,
        on_note=lambda text: info(f"note: {escape(text)}", quiet), failed_inputs=problems,
    )
    result.done, result.outputs, result.left, result.interrupted = batch.done, batch.outputs, batch.left, batch.interrupted
    result.skipped = batch.skipped
    result.failed += batch.failed
    for path in excluded:  # said once the run is accepted: a refusal stays one line
        info(f"skipping {escape(str(path))}: it is the --mask file", quiet)
    for path in result.outputs:
        typer.echo(str(path))  # as it is: scripts read these lines (no markup, no tab expansion)
    if single and result.failed and result.interrupted is None:
        raise result.failed[0][2]
    if single and result.interrupted is None and not result.skipped:
        return 0
    return print_summary(result)
