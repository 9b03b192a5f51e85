"""`hsra reconstruct`: measurements -> hyperspectral cubes, with previews and a JSON record per input."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import (
    SKIP_EXISTING_HELP, THREADS_HELP, AxisChoice, FormatChoice, NormalizeChoice, complete_model, console, fraction, info, parse_offset,
    parse_wavelengths, positive, set_threads,
)


def _parse_tile(text: str):
    from hsra_cli.errors import UsageError

    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--tile-size {text!r} must be auto, 0 (never tile) or a number of pixels") from None


@app.command(
    epilog="""[b]Examples[/b]

  hsra reconstruct capture.mat --mask mask.mat -o out/   [dim]# the shipped network, or gap-tv for other optics[/dim]

  hsra reconstruct capture.mat --mask mask.mat --model s --refine 0 -o out/   [dim]# HSRA-S alone[/dim]

  hsra reconstruct 'captures/*.mat' --mask mask_660.mat --model gap-tv -o out/ --skip-existing

  hsra reconstruct captures/ --mask mask.mat -o out/ --num-parts 4 --part-id 0   [dim]# one of 4 machines[/dim]

  hsra reconstruct big.h5 --key meas --mask mask.mat --tile-size 256 --tile-overlap 0.25 --device cuda -o out/

  hsra reconstruct sim/ --mask sim/mask.mat --model s --name '{stem}_{model}' -o compare/   [dim]# methods side by side[/dim]
""",
)
def reconstruct(
    inputs: List[str] = typer.Argument(..., help="Measurement files, folders or quoted glob patterns (a folder skips the --mask file)."),
    mask: Path = typer.Option(..., "-m", "--mask", help="Coded aperture: 2-D (cropped at --mask-offset when larger) or a 3-D shifted mask."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder; outputs are named after the inputs (--name)."),
    model: str = typer.Option(
        "auto", "--model", autocompletion=complete_model,
        help="auto (default): the shipped network hsra-dum-2stg when the capture's geometry is the one it was trained "
        "for (28 bands, step 2 along the width), else gap-tv; or a registered model or alias: gap-tv, s, dum2, "
        "m, l, dum3 … (see hsra models).",
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Other weights for the network named by --model: a model folder (as hsra train exports it) or a .safetensors file (with --bands/--step/--axis when not the default optics)."),
    name: str = typer.Option(
        "{stem}", "--name",
        help="Output name template: {stem} (input name), {parent} (its folder), {model}; e.g. '{stem}_{model}' lets "
        "several methods write into one folder.",
    ),
    fmt: FormatChoice = typer.Option(FormatChoice.MAT, "--format", help="Cube format."),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the measurement (default: meas, meas_real, y, …)."),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    mask_offset: Optional[str] = typer.Option(None, "--mask-offset", metavar="ROW,COL|auto", help="Row, column of the capture area in a larger mask (required when the mask is larger), or auto: calibrate the captures first, as hsra calibrate does, and use what it finds."),
    normalize: NormalizeChoice = typer.Option(NormalizeChoice.AUTO, "--normalize", help="auto, none (field-scale sum) or max (real captures: max → 0.8)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda (or cuda:N)."),
    bands: Optional[int] = typer.Option(None, "--bands", min=1, help="Band count (default: what a 3-D shifted mask shows, else 28; networks use their card's; with auto, another count selects gap-tv)."),
    wavelengths: Optional[str] = typer.Option(
        None, "--wavelengths",
        help="Band centres (nm) the cubes store and the previews use: comma list or text file (default: the weights' "
        "card, the field's list for 28 bands, else what the capture records); one per band.",
    ),
    step: Optional[int] = typer.Option(None, "--step", min=1, help="Dispersion step in pixels (gap-tv; networks use their card's; with auto, another step selects gap-tv)."),
    axis: Optional[AxisChoice] = typer.Option(None, "--axis", help="Dispersion axis (gap-tv; networks use their card's; with auto, another axis selects gap-tv)."),
    tile_size: str = typer.Option("auto", "--tile-size", help="auto (whole image when it fits --memory-cap), 0 (never tile) or pixels."),
    tile_overlap: float = typer.Option(0.25, "--tile-overlap", callback=fraction, help="Overlap of neighbouring tiles, as a fraction of the tile, in [0, 1)."),
    memory_cap: float = typer.Option(4.0, "--memory-cap", callback=positive, help="Memory budget in GB (> 0) for one forward pass; larger captures are tiled."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Half-precision autocast on CUDA (never on the CPU)."),
    refine: Optional[int] = typer.Option(None, "--refine", min=0, help="Refinement iterations run on a network's cube so it agrees with the measurement (accelerated GAP; TV on the correction, weight 0.05, then on the cube, 0.005; a final TV at 0.01): default 20 for networks, 0 turns it off (gap-tv: none)."),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="Networks: also reconstruct the mirrored capture (an exact symmetry of CASSI) and average the two; twice the network time, about +0.1 dB (up to +0.3 on binary masks)."),
    adapt: int = typer.Option(0, "--adapt", min=0, metavar="STEPS", help="Networks: first fine-tune a copy of the weights on each capture, from the capture alone (measurement consistency + equivariance), for this many steps; 0 (default) is off. See README."),
    previews: bool = typer.Option(True, "--previews/--no-previews", help="Write <name>_rgb.png, <name>_bands.png and the trust map <name>_residual.png."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help=SKIP_EXISTING_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (never an input of the same call)."),
    num_parts: int = typer.Option(1, "--num-parts", min=1, help="Split the input list into this many parts …"),
    part_id: int = typer.Option(0, "--part-id", min=0, help="… and process only this one (0-based)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors, warnings and the summary on stderr."),
):
    """Reconstruct hyperspectral cubes from CASSI measurements.

    Writes <name>.<format> (H×W×C under key cube, with wavelengths_nm when known; .tif: a C×H×W stack; .npy: the bare
    array), previews, and, last, <name>.json (arguments, versions, device, timings, residual ‖A x̂ − y‖/‖y‖), which
    marks the set complete. Prints the cube paths on stdout. Integer measurements are scaled to [0, 1]. A failed
    input does not stop the others: the summary ends the run, exit code 1 if any failed. Ctrl-C or SIGTERM stops
    after the writes in progress (exit 130 / 143).
    """
    from rich.markup import escape

    from hsra_cli.batch import (
        RECONSTRUCT_NAME_FIELDS, BatchResult, check_keep_or_replace, check_name_template, reconstruct_files, shard,
    )
    from hsra_cli.cli._common import print_summary, require_files, value_of
    from hsra_cli.cli._progress import BatchProgress
    from hsra_cli.errors import HsraError, UsageError
    from hsra_cli.inputs import collect
    from hsra_cli.reconstruct import Reconstructor

    check_keep_or_replace(skip_existing, overwrite)
    require_files([mask], "mask")
    check_name_template(name, RECONSTRUCT_NAME_FIELDS)
    shard([], num_parts, part_id)  # check the sharding options before any work
    set_threads(threads)
    if device != "cuda":
        from hsra_cli.nets.runtime import keep_freed_memory

        keep_freed_memory()  # ~20 % faster CPU inference: big buffers are reused instead of page-faulted
    auto_offset = mask_offset is not None and mask_offset.strip().lower() == "auto"
    try:
        offset = None if auto_offset else parse_offset(mask_offset)
    except UsageError:
        raise UsageError(f"--mask-offset {mask_offset!r} is not of the form row,column (two integer pixel offsets); "
                         "expected ROW,COL or auto") from None
    tile = _parse_tile(tile_size)
    wavelength_list = parse_wavelengths(wavelengths) if wavelengths is not None else None
    sources, problems, excluded = collect(inputs, exclude=[mask])
    # a folder hsra simulate wrote holds its mask beside the captures: when --mask names another (the larger mask
    # of a --mask-offset simulation), that file is the folder's aperture, not a capture
    from hsra_cli.simulate import is_simulated_mask

    folder_masks = [source.path for source in sources if source.listed and is_simulated_mask(source.path)]
    sources = [source for source in sources if source.path not in folder_masks]
    for source in sources:
        if source.scenes is not None:
            problems.append((source.spec, UsageError(
                f"{source.spec!r}: a scene selector picks cubes from a stack (evaluate, simulate, render, train); "
                "reconstruct reads one measurement per file")))
    # as given (relative stays relative, as every command names its inputs); records hold absolute paths
    paths = shard([source.path for source in sources if source.scenes is None], num_parts, part_id)
    if part_id:
        problems = []  # inputs that name nothing are reported once, by part 0
    single = len(paths) + len(problems) == 1  # one input: no progress chatter; a failure is the one error line
    if single and problems:
        raise problems[0][1]
    if not sources and not problems and excluded:
        raise UsageError(f"the only input given is the --mask file ({excluded[0]}); give the captures to reconstruct")
    if not sources and not problems and folder_masks:
        raise UsageError(f"the only input found is the mask hsra simulate wrote ({folder_masks[0]}); give the captures "
                         "to reconstruct")
    if not paths and not problems:
        info(f"part {part_id} of {num_parts} holds no input; nothing to do", quiet)
        return 0
    result = BatchResult()
    for spec, error in problems:
        result.failed.append((Path(spec), str(error), error))
        console.print(f"[red]failed[/red] {escape(spec)}: {escape(str(error))}")
    if paths:
        notes = []  # said once the run is under way (one input: once it succeeded), so that a refusal stays one line
        if bands is None:  # a 3-D shifted mask holds its band count
            from hsra_cli.bands import DEFAULT_BANDS
            from hsra_cli.reconstruct import mask_file_bands

            shown = mask_file_bands(mask, mask_key, step, value_of(axis))
            if shown is not None and shown != DEFAULT_BANDS:
                bands = shown
                notes.append(f"note: {bands} bands, as the 3-D mask's layout shows (--bands overrides)")
            else:  # a capture hsra simulate wrote records its band count
                from hsra_cli.reconstruct import capture_file_bands

                recorded = capture_file_bands(paths[0], key)
                if recorded is not None and recorded != DEFAULT_BANDS:
                    bands = recorded
                    notes.append(f"note: {bands} bands, as {paths[0].name} records (--bands overrides)")
        reconstructor = Reconstructor(
            model, weights=weights, device=device, bands=bands, step=step, axis=value_of(axis), tile_size=tile,
            tile_overlap=tile_overlap, memory_cap_gb=memory_cap, amp=amp, refine=refine,
            self_ensemble=self_ensemble, adapt=adapt,
        )
        if wavelength_list is not None and len(wavelength_list) != reconstructor.bands:
            raise UsageError(
                f"--wavelengths gives {len(wavelength_list)} wavelengths but {reconstructor.entry.name} reconstructs "
                f"{reconstructor.bands} bands; expected one per band (--bands sets the band count of a solver)"
            )
        calibration = None
        if auto_offset:
            from hsra_cli.calibrate import auto_geometry

            left_out = [] if not single else None  # in a batch, bad inputs fail alone
            try:
                reconstructor, offset, calibration = auto_geometry(
                    reconstructor, paths, mask, key=key, mask_key=mask_key,
                    step_given=step is not None, axis_given=axis is not None, left_out=left_out,
                )
            except HsraError:
                if not left_out or len(left_out) < len(paths):
                    raise
                for path, error in left_out:  # every input bad: the batch's failures and summary, as without auto
                    result.failed.append((path, str(error), error))
                    console.print(f"[red]failed[/red] {escape(str(path))}: {escape(str(error))}")
                return print_summary(result)
            for path, error in left_out or ():
                result.failed.append((path, str(error), error))
                console.print(f"[red]failed[/red] {escape(str(path))}: {escape(str(error))}")
            paths = [path for path in paths if path not in {bad for bad, _ in left_out or ()}]
            info(f"calibrated on {calibration['captures']} capture(s) in {calibration['seconds']:.1f} s: --mask-offset "
                 f"{offset[0]},{offset[1]} --step {calibration['step']} --axis {calibration['axis']}", quiet)
        choice = reconstructor.choice
        # said once the run is under way (one input: once it succeeded), so that a refusal stays one line
        fallback = (f"note: --model auto chose {choice['chosen']}: {choice['reason']}"
                    if choice and not reconstructor.entry.needs_weights else None)
        if fallback:
            notes.append(fallback)
        arguments = {
            "inputs": inputs, "mask": str(mask), "out": str(out), "model": model, "weights": str(weights) if weights else None,
            "name": name, "format": fmt.value, "key": key, "mask_key": mask_key, "mask_offset": "auto" if auto_offset else offset,
            "normalize": normalize.value, "wavelengths": None if wavelength_list is None else wavelength_list.tolist(),
            "device": device, "tile_size": tile, "tile_overlap": tile_overlap,
            "memory_cap_gb": memory_cap, "amp": amp, "refine": reconstructor.refine,
            "self_ensemble": self_ensemble, "adapt": adapt, "num_parts": num_parts,
            "part_id": part_id,
        }
        with BatchProgress(len(paths), quiet=quiet or single) as bar:

            def on_begin(todo, skipped):
                bar.set_total(todo)
                for path in excluded:  # said once the run is accepted: a refusal stays one line
                    bar.line(f"skipping {escape(str(path))}: it is the --mask file", always=not quiet)
                for path in folder_masks:
                    bar.line(f"skipping {escape(str(path))}: it is the mask hsra simulate wrote beside its captures",
                             always=not quiet)
                if not single:
                    for note in notes:
                        bar.line(escape(note))
                    bar.line(f"{reconstructor.entry.name} on {reconstructor.device}: {todo} input(s) → {escape(str(out))}"
                             + (f" ({skipped} already done)" if skipped else ""))

            def on_start(path, index, total):
                bar.start(path.name, index)

            def on_result(path, index, total, record):
                # The item's own line, printed when it is reconstructed (writes finish in the background).
                for warning in record.get("warnings", []):
                    console.print(f"[yellow]warning:[/yellow] {escape(path.name)}: {escape(warning)}")
                if record["tiling"].get("fallback"):
                    console.print(f"[yellow]note:[/yellow] {escape(path.name)}: {record['tiling']['fallback']}")
                if not single:
                    bar.line(f"[{index + 1}/{total}] {escape(path.name)}: {record['seconds']['reconstruct']:.2f} s, "
                             f"residual {record['residual']:.4f}, tiles {record['tiling']['tile_size'] or 'none'}")
                bar.advance()

            def on_done(path, record, error):
                if error:
                    if not single:
                        bar.line(f"[red]failed[/red] {escape(str(path))}: {escape(error)}", always=True)
                    return
                if single:
                    for note in notes:
                        info(escape(note), quiet)
                # named under -o as given (relative stays relative, as simulate and render print theirs)
                cube = Path(record["outputs"]["cube"])
                try:
                    cube = out / cube.relative_to(Path(out).resolve())
                except ValueError:
                    pass
                typer.echo(str(cube))  # as it is: scripts read these lines (no markup, no tab expansion)

            batch = reconstruct_files(
                paths, mask, out, reconstructor, fmt=fmt.value, key=key, mask_key=mask_key,
                normalize=normalize.value, mask_offset=offset, wavelengths_nm=wavelength_list, previews=previews, skip_existing=skip_existing,
                overwrite=overwrite, arguments=arguments, name=name, on_begin=on_begin, on_start=on_start,
                on_result=on_result, on_done=on_done,
                on_note=(lambda text: notes.append(f"note: {text}")) if single  # said with the others, once done
                else (lambda text: bar.line(f"note: {escape(text)}")),
                progress=bar.step, calibration=calibration,
            )
        result.done, result.skipped, result.outputs = batch.done, batch.skipped, batch.outputs
        result.failed += batch.failed
        result.left, result.interrupted = batch.left, batch.interrupted
    if single and result.failed and result.interrupted is None:
        _, message, exc = result.failed[0]
        raise exc if isinstance(exc, HsraError) else HsraError(message)
    return print_summary(result)
