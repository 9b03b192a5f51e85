"""`hsra reconstruct`: measurements -> hyperspectral cubes, with previews and a JSON record per input."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import console, parse_offset, info, stdout


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

  hsra reconstruct capture.mat --mask mask.mat --model s -o out/

  hsra reconstruct capture.mat --mask mask.mat --model s --refine 0 -o out/   [dim]# the network alone[/dim]

  hsra reconstruct 'captures/*.mat' --mask mask_660.mat --model gap-tv -o out/ --skip-existing

  hsra reconstruct captures/ --mask mask.mat -o out/ --num-parts 4 --part-id 0   [dim]# one of 4 machines[/dim]

  hsra reconstruct big.h5 --key meas --mask mask.mat --tile-size 256 --tile-overlap 0.25 --device cuda -o out/
""",
)
def reconstruct(
    inputs: List[str] = typer.Argument(..., help="Measurement files, folders or quoted glob patterns."),
    mask: Path = typer.Option(..., "-m", "--mask", help="Coded aperture: 2-D (cropped at --mask-offset when larger) or a 3-D shifted mask."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder; outputs are named after the inputs."),
    model: str = typer.Option("gap-tv", "--model", help="Registered model or alias: gap-tv, s, m, l, dum3, dum4 … (see hsra models)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Another .safetensors weights file for the network."),
    fmt: str = typer.Option("mat", "--format", help="Cube format: mat, h5, tif or npy."),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the measurement (default: meas, meas_real, y, …)."),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    mask_offset: Optional[str] = typer.Option(None, "--mask-offset", help="row,column of the capture area in a larger mask (required when the mask is larger), or auto: find it with hsra calibrate first."),
    normalize: str = typer.Option("auto", "--normalize", help="auto, none (field-scale sum) or max (real captures: max → 0.8)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    bands: Optional[int] = typer.Option(None, "--bands", help="Band count (gap-tv; networks use their card's)."),
    step: Optional[int] = typer.Option(None, "--step", help="Dispersion step in pixels (gap-tv; networks use their card's)."),
    axis: Optional[str] = typer.Option(None, "--axis", help="Dispersion axis, width or height (gap-tv; networks use their card's)."),
    tile_size: str = typer.Option("auto", "--tile-size", help="auto (whole image when it fits --memory-cap), 0 (never tile) or pixels."),
    tile_overlap: float = typer.Option(0.25, "--tile-overlap", help="Overlap of neighbouring tiles, as a fraction of the tile."),
    memory_cap: float = typer.Option(4.0, "--memory-cap", help="Memory budget in GB for one forward pass; larger captures are tiled."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Half-precision autocast on CUDA (never on the CPU)."),
    refine: Optional[int] = typer.Option(None, "--refine", help="GAP-TV iterations run on a network's cube so it agrees with the measurement: default 5 for networks, 0 turns it off (gap-tv: none)."),
    previews: bool = typer.Option(True, "--previews/--no-previews", help="Write <stem>_rgb.png, <stem>_bands.png and the trust map <stem>_residual.png."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose cube and record already exist."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    num_parts: int = typer.Option(1, "--num-parts", help="Split the input list into this many parts …"),
    part_id: int = typer.Option(0, "--part-id", help="… and process only this one (0-based)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and the summary on stderr."),
):
    """Reconstruct hyperspectral cubes from CASSI measurements.

    Writes <stem>.<format> (H×W×C under key cube, with wavelengths_nm), previews, and <stem>.json (arguments,
    versions, device, timings, residual ‖A x̂ − y‖/‖y‖). Prints the cube paths on stdout. Exit code 1 if any
    input failed; the others are still processed.
    """
    import torch

    from hsra_cli.batch import expand_inputs, reconstruct_files, shard
    from hsra_cli.cli._common import require_files
    from hsra_cli.errors import HsraError, UsageError
    from hsra_cli.reconstruct import Reconstructor

    require_files([mask], "mask")
    if fmt not in ("mat", "h5", "tif", "npy"):
        raise UsageError(f"unknown --format {fmt!r}; expected mat, h5, tif or npy")
    if threads:
        torch.set_num_threads(threads)
    if device != "cuda":
        from hsra_cli.nets.runtime import keep_freed_memory

        keep_freed_memory()  # ~20 % faster CPU inference: big buffers are reused instead of page-faulted
    auto_offset = mask_offset == "auto"
    offset = None if auto_offset else parse_offset(mask_offset)
    tile = _parse_tile(tile_size)
    paths = shard(expand_inputs(inputs), num_parts, part_id)
    if not paths:
        info(f"part {part_id} of {num_parts} holds no input; nothing to do", quiet)
        return 0
    reconstructor = Reconstructor(
        model, weights=weights, device=device, bands=bands, step=step, axis=axis, tile_size=tile,
        tile_overlap=tile_overlap, memory_cap_gb=memory_cap, amp=amp, refine=refine,
    )

    calibration = None
    if auto_offset:
        from hsra_cli.calibrate import auto_geometry

        reconstructor, offset, calibration = auto_geometry(reconstructor, paths, mask, key=key, mask_key=mask_key,
                                                           step_given=step is not None, axis_given=axis is not None)
        info(f"calibrated on {calibration['captures']} capture(s) in {calibration['seconds']:.1f} s: --mask-offset "
             f"{offset[0]},{offset[1]} --step {calibration['step']} --axis {calibration['axis']}", quiet)

    single = len(paths) == 1  # one input: no progress chatter, and a failure is the command's one error line

    def on_begin(todo, skipped):
        if single:
            return
        info(f"{reconstructor.entry.name} on {reconstructor.device}: {todo} input(s) → {out}"
             + (f" ({skipped} already done)" if skipped else ""), quiet)
    arguments = {
        "inputs": inputs, "mask": str(mask), "out": str(out), "model": model, "weights": str(weights) if weights else None,
        "format": fmt, "key": key, "mask_key": mask_key, "mask_offset": "auto" if auto_offset else offset, "normalize": normalize,
        "device": device, "tile_size": tile, "tile_overlap": tile_overlap, "memory_cap_gb": memory_cap, "amp": amp,
        "refine": reconstructor.refine, "num_parts": num_parts, "part_id": part_id,
    }

    def on_start(path, index, total):
        if single:
            return
        info(f"[{index + 1}/{total}] {path.name}", quiet)

    def on_done(path, record, error):
        if error:
            if not single:
                console.print(f"[red]failed[/red] {path}: {error}")
            return
        seconds = record["seconds"]["reconstruct"]
        info(f"  {path.name}: {seconds:.2f} s, residual {record['residual']:.4f}, tiles {record['tiling']['tile_size'] or 'none'}", quiet)
        if record["tiling"].get("fallback"):
            console.print(f"[yellow]note:[/yellow] {record['tiling']['fallback']}")
        stdout.print(record["outputs"]["cube"])

    result = reconstruct_files(
        paths, mask, out, reconstructor, fmt=fmt, key=key, mask_key=mask_key, normalize=normalize,
        mask_offset=offset, previews=previews, skip_existing=skip_existing, overwrite=overwrite,
        arguments=arguments, on_begin=on_begin, on_start=on_start, on_done=on_done, calibration=calibration,
    )
    if single and result.failed:
        _, message, exc = result.failed[0]
        raise exc if isinstance(exc, HsraError) else HsraError(message)
    summary = f"{len(result.done)} done, {len(result.skipped)} skipped, {len(result.failed)} failed"
    console.print(summary if not result.failed else f"[red]{summary}[/red]")
    return 1 if result.failed else 0
