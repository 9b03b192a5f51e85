"""`hsra calibrate`: the mask offset, dispersion step and axis that explain real captures."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import THREADS_HELP, AxisChoice, console, info, set_threads, stdout, value_of


@app.command(
    epilog="""[b]Examples[/b]

  hsra calibrate capture.mat --mask big_mask.mat            [dim]# prints --mask-offset R,C --step S --axis A[/dim]

  hsra calibrate 'captures/*.mat' --mask mask.mat -o calib.json --overwrite   [dim]# several captures jointly[/dim]

  hsra reconstruct capture.mat --mask big_mask.mat $(hsra calibrate capture.mat --mask big_mask.mat -q) -o out/

  hsra calibrate capture.mat --mask mask.mat --step 2 --axis width   [dim]# only the offset[/dim]
""",
)
def calibrate(
    inputs: List[str] = typer.Argument(..., help="Captures of one system: files, folders or quoted glob patterns (a folder skips the --mask file and the mask.mat hsra simulate writes)."),
    mask: Path = typer.Option(..., "-m", "--mask", help="The 2-D coded aperture, at least as large as the capture area."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the result and the score landscapes to this JSON file (default: none, so the command can run again and again inside $(...))."),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the measurement (default: meas, meas_real, y, …)."),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    bands: Optional[int] = typer.Option(None, "--bands", min=1, help="Band count, not estimated (default: what the capture records, as hsra simulate writes it, else 28; a count that disagrees with the record is refused)."),
    step: Optional[int] = typer.Option(None, "--step", min=1, help="Fix the dispersion step instead of estimating it."),
    axis: Optional[AxisChoice] = typer.Option(None, "--axis", help="Fix the dispersion axis instead of estimating it."),
    max_step: Optional[int] = typer.Option(None, "--max-step", min=1, help="Largest dispersion step tried when --step is not given (pixels per band; default 4).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing JSON file (never a capture or the mask of the same call)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and warnings on stderr."),
):
    """Estimate the geometry of a CASSI system from its captures.

    Finds where the capture area lies in the mask (--mask-offset), the dispersion step and axis, and a sub-pixel
    offset (in the JSON), from how the mask's pattern shows in the captures. Prints the flags for hsra reconstruct
    on stdout; with -o, also writes the score landscapes to a JSON file. When the evidence is weak it prints no flags,
    says the best guess in its error line and exits 1 (the JSON is still written, to look at).
    """
    from rich.markup import escape

    from hsra_cli.bands import DEFAULT_BANDS
    from hsra_cli.calibrate import (
        MAX_STEP, MIN_SIGNIFICANCE, calibrate_files, calibration_inputs, check_calibration_output, write_calibration,
    )
    from hsra_cli.cli._common import require_files
    from hsra_cli.errors import UsageError
    from hsra_cli.reconstruct import capture_file_bands

    if step is not None and max_step is not None and step > max_step:
        raise UsageError(f"--step {step} and --max-step {max_step} contradict each other (--step fixes the step; "
                         "--max-step bounds the steps tried when it is not given); pick one")
    require_files([mask], "mask")
    axis = value_of(axis)
    set_threads(threads)
    paths, skipped, folder_masks = calibration_inputs(inputs, mask)
    # a capture hsra simulate wrote records its band count: taken as hsra reconstruct takes it
    recorded = capture_file_bands(paths[0], key)
    note = None
    if bands is None:
        bands = recorded or DEFAULT_BANDS
        if recorded is not None and recorded != DEFAULT_BANDS:
            note = f"note: {bands} bands, as {paths[0].name} records"
    elif recorded is not None and recorded != bands:
        raise UsageError(f"--bands {bands} disagrees with {paths[0]}, which records {recorded} bands; the band count "
                         f"decides the geometry found: leave --bands out, or give --bands {recorded}")
    if out is not None:
        check_calibration_output(out, paths, mask, overwrite)
    result, source = calibrate_files(
        paths, mask, key=key, mask_key=mask_key, bands=bands, steps=[step] if step else None,
        axes=[axis] if axis else None, max_step=max_step or MAX_STEP,
    )
    if out is not None:
        write_calibration(out, result, source, overwrite)
    # said once the run succeeded: a refusal stays one line
    for path in skipped:
        info(f"skipping {escape(str(path))}: it is the --mask file", quiet)
    for path in folder_masks:
        info(f"skipping {escape(str(path))}: it is the mask hsra simulate wrote beside its captures", quiet)
    if note:
        info(escape(note), quiet)
    where = f"landscapes in {out}" if out is not None else "landscapes: -o FILE.json"
    if not quiet:
        console.print(f"{result.captures} capture(s) {result.capture_shape[0]}×{result.capture_shape[1]}, mask "
                      f"{result.mask_shape[0]}×{result.mask_shape[1]}, {result.seconds:.1f} s")
        # the footprint stage's ranking; the offset reported after it is refined by the matched filter
        console.print("candidates (coarse footprint fit; the offset below is then refined):")
        console.print(f"{'axis':<8}{'step':>5}{'offset':>12}{'score':>8}{'coverage':>10}{'occupancy':>11}")
        for cand in result.candidates[:6]:
            offset = f"{cand['offset'][0]},{cand['offset'][1]}"
            console.print(f"{cand['axis']:<8}{cand['step']:>5}{offset:>12}{cand['score']:>8.3f}"
                          f"{cand['coverage']:>10.3f}{cand['occupancy']:>11.3f}")
        sub = result.subpixel_offset
        info(f"offset {result.offset[0]},{result.offset[1]} (sub-pixel {sub[0]:.2f},{sub[1]:.2f}), step {result.step}, "
             f"{result.axis}: {result.reason}; {where}")
    if not result.confident:  # no flags on stdout: `$(hsra calibrate …)` must not pass a guess on (exit 1)
        from hsra_cli.errors import HsraError

        raise HsraError(
            f"calibration is not conclusive ({result.reason}); best guess {result.flags()}, not printed on stdout. "
            "Check that the mask is this system's, or fix what you know (--step, --axis); "
            + (f"landscapes in {out}" if out is not None else "write the score landscapes with -o FILE.json")
        )
    if result.significance < MIN_SIGNIFICANCE:  # conclusive only because nothing was left to choose
        from hsra_cli.cli._common import warn

        warn(f"the mask pattern is barely visible in the captures ({result.significance:.1f} σ < {MIN_SIGNIFICANCE:g}): "
             "the geometry given is the only one that fits, but is this the captures' mask?")
    stdout.print(result.flags())
    return 0
