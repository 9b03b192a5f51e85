"""`hsra simulate`: snapshot measurements from hyperspectral cubes."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import console, info, stdout, warn


@app.command(
    epilog="""[b]Examples[/b]

  hsra simulate scene.mat -o sim/                       [dim]# random binary mask, no noise[/dim]

  hsra simulate cubes/*.mat --mask mask_256.mat -o sim/ --noise shot --qe 0.4 --bit-depth 2048

  hsra simulate cube.h5 --key img --noise gaussian --noise-sigma 0.01 -o sim/
""",
)
def simulate(
    cubes: List[Path] = typer.Argument(..., help="Cube files (H×W×C or C×H×W; .mat .h5 .tif .npy .npz), values in [0, 1]."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: <stem>.mat (key meas), mask.mat, <stem>_meas.png."),
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the cube (default: the usual names)."),
    bands: Optional[int] = typer.Option(None, "--bands", help="Band count, to tell the layout when it is ambiguous."),
    mask: Optional[Path] = typer.Option(None, "-m", "--mask", help="Coded aperture file (2-D, or a 3-D shifted mask). Default: generated."),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    mask_kind: str = typer.Option("random-binary", "--mask-kind", help="Generated mask: random-binary or random-grey."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated mask and the noise."),
    step: int = typer.Option(2, "--step", help="Dispersion in pixels per band."),
    axis: str = typer.Option("width", "--axis", help="Dispersion axis: width or height."),
    noise: str = typer.Option("none", "--noise", help="none, gaussian (--noise-sigma) or shot (--qe, --bit-depth, --gain)."),
    noise_sigma: float = typer.Option(0.0, "--noise-sigma", help="Gaussian noise σ in measurement units."),
    qe: float = typer.Option(0.4, "--qe", help="Quantum efficiency of the shot-noise model."),
    bit_depth: int = typer.Option(2048, "--bit-depth", help="Sensor levels of the shot-noise model."),
    gain: float = typer.Option(1.0, "--gain", help="Signal gain before the shot-noise draw (the real-data recipe uses 1.2)."),
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Write a PNG of each measurement."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr."),
):
    """Simulate CASSI snapshots of cubes: y = Σ_b shift_b(mask ⊙ x_b), plus optional noise.

    Prints the paths written, one per line, on stdout.
    """
    from hsra_cli.cli._common import require_files
    from hsra_cli.simulate import simulate_files

    require_files(list(cubes) + ([mask] if mask else []), "input")
    written = simulate_files(
        cubes,
        out,
        key=key,
        bands=bands,
        mask_path=mask,
        mask_key=mask_key,
        mask_kind=mask_kind,
        seed=seed,
        step=step,
        axis=axis,
        noise=noise,
        noise_sigma=noise_sigma,
        qe=qe,
        bit_depth=bit_depth,
        gain=gain,
        preview=preview,
        overwrite=overwrite,
        on_warning=warn,
        on_written=lambda p: info(f"wrote {p}", quiet),
    )
    for path in written:
        stdout.print(str(path))
