"""Simulated CASSI snapshots: coded apertures, measurements and the field's noise models.

Measurements are in *field scale*: the plain sum over bands of the masked, sheared cube
(``CassiOperator.A``), as the KAIST benchmark files hold them. Noise:

* ``gaussian``: ``y + N(0, σ²)`` with σ in measurement units;
* ``shot``: the field's real-data recipe (TSA-Net, MST): on the network-normalised measurement
  ``y_n = gain · y · 2/bands``, draw ``Binomial(⌊y_n · bit/QE⌋, QE) / bit``, then scale back to field scale.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .bands import DEFAULT_AXIS, DEFAULT_STEP
from .errors import ShapeError, UsageError, ValueRangeError
from .physics import CassiOperator

MASK_KINDS = ("random-binary", "random-grey")
NOISE_KINDS = ("none", "gaussian", "shot")

NoiseKind = Literal["none", "gaussian", "shot"]


def generate_mask(height: int, width: int, kind: str = "random-binary", seed: int = 0, fill: float = 0.5) -> np.ndarray:
    """A coded aperture ``height × width`` (float32 in [0, 1]).

    ``random-binary``: each pixel open with probability ``fill`` (the classic CASSI code).
    ``random-grey``: uniform transmission in [0.005, 1], like a calibrated grey-level capture of a binary code.
    """
    if height < 1 or width < 1:
        raise ShapeError(f"mask size must be positive, got {height}×{width}")
    rng = np.random.default_rng(seed)
    if kind == "random-binary":
        if not 0 < fill <= 1:
            raise UsageError(f"mask fill must be in (0, 1], got {fill}")
        return (rng.random((height, width)) < fill).astype(np.float32)
    if kind == "random-grey":
        return rng.uniform(0.005, 1.0, size=(height, width)).astype(np.float32)
    raise UsageError(f"unknown mask kind {kind!r}; expected one of: {', '.join(MASK_KINDS)}")


def shot_noise(
    measurement: torch.Tensor,
    bands: int,
    qe: float = 0.4,
    bit_depth: int = 2048,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The field's shot-noise model on a field-scale measurement; returns a field-scale measurement.

    ``gain`` multiplies the signal before the photon draw (the real-data recipe uses 1.2).
    """
    if not 0 < qe <= 1:
        raise UsageError(f"quantum efficiency must be in (0, 1], got {qe}")
    if bit_depth < 1:
        raise UsageError(f"bit depth must be positive, got {bit_depth}")
    normalised = measurement * (gain * 2.0 / bands)
    counts = torch.floor(normalised.clamp(min=0) * (bit_depth / qe))
    drawn = torch.binomial(counts, torch.full_like(counts, qe), generator=generator)
    return drawn / bit_depth * (bands / 2.0)


def simulate_measurement(
    cube_hwc: np.ndarray,
    mask,
    *,
    step: int = DEFAULT_STEP,
    axis: str = DEFAULT_AXIS,
    noise: NoiseKind = "none",
    noise_sigma: float = 0.0,
    qe: float = 0.4,
    bit_depth: int = 2048,
    gain: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, CassiOperator]:
    """Snapshot of a cube ``H×W×C`` through ``mask`` (any form CassiOperator accepts).

    Returns the field-scale measurement (float32 ``H×W'``) and the operator used.
    """
    if cube_hwc.ndim != 3:
        raise ShapeError(f"cube must be 3-D H×W×bands, got shape {cube_hwc.shape}")
    bands = cube_hwc.shape[-1]
    op = CassiOperator(mask, bands=bands, step=step, axis=axis)
    cube = torch.from_numpy(np.ascontiguousarray(cube_hwc, dtype=np.float32)).permute(2, 0, 1)
    if tuple(cube.shape[-2:]) != op.cube_shape:
        h, w = op.cube_shape
        raise ShapeError(
            f"cube is {cube.shape[-2]}×{cube.shape[-1]} but the mask is {h}×{w}; expected the same height and width"
        )
    y = op.A(cube)
    generator = torch.Generator().manual_seed(int(seed))
    if noise == "gaussian":
        if noise_sigma < 0:
            raise UsageError(f"--noise-sigma must be ≥ 0, got {noise_sigma}")
        y = y + noise_sigma * torch.randn(y.shape, generator=generator)
    elif noise == "shot":
        y = shot_noise(y, bands, qe=qe, bit_depth=bit_depth, gain=gain, generator=generator)
    elif noise != "none":
        raise UsageError(f"unknown noise {noise!r}; expected one of: {', '.join(NOISE_KINDS)}")
    if not torch.isfinite(y).all():
        raise ValueRangeError("simulated measurement holds NaN/Inf; check the cube values")
    return y.numpy().astype(np.float32), op



def simulate_files(
    cube_paths,
    out_dir,
    *,
    key=None,
    bands=None,
    mask_path=None,
    mask_key=None,
    mask_kind="random-binary",
    seed=0,
    step=DEFAULT_STEP,
    axis=DEFAULT_AXIS,
    noise="none",
    noise_sigma=0.0,
    qe=0.4,
    bit_depth=2048,
    gain=1.0,
    preview=True,
    overwrite=False,
    on_warning=None,
    on_written=None,
) -> list:
    """Simulate a measurement for each cube file into ``out_dir``; returns the paths written.

    Writes ``<stem>.mat`` (key ``meas`` plus the physics and noise settings), ``mask.mat`` (the 2-D aperture or
    3-D mask used, key ``mask``) and, with ``preview``, ``<stem>_meas.png``. All outputs are checked before any
    is written.
    """
    from pathlib import Path

    from .io import check_writable, read_cube, read_mask, unit_range, write_array

    out_dir = Path(out_dir)
    if noise not in NOISE_KINDS:
        raise UsageError(f"unknown --noise {noise!r}; expected one of: {', '.join(NOISE_KINDS)}")
    if axis not in ("width", "height"):
        raise UsageError(f"--axis must be width or height, got {axis!r}")
    if mask_path is None and mask_kind not in MASK_KINDS:
        raise UsageError(f"unknown --mask-kind {mask_kind!r}; expected one of: {', '.join(MASK_KINDS)}")
    stems = [Path(p).stem for p in cube_paths]
    if len(set(stems)) != len(stems):
        raise UsageError("two inputs share a file name stem; their outputs would collide")
    targets = [out_dir / "mask.mat"]
    for stem in stems:
        targets.append(out_dir / f"{stem}.mat")
        if preview:
            targets.append(out_dir / f"{stem}_meas.png")
    for target in targets:
        check_writable(target, overwrite)

    cubes = []
    for path in cube_paths:
        cube, loaded = read_cube(path, key, bands)
        cube, _ = unit_range(cube, loaded)
        if on_warning and (cube.max() > 1.5 or cube.min() < -0.01):
            on_warning(f"{path}: values span {cube.min():.3g}..{cube.max():.3g}; CASSI cubes are usually in [0, 1]")
        cubes.append((Path(path), cube, loaded))
    sizes = {c.shape[:2] for _, c, _ in cubes}
    if mask_path is not None:
        mask, _ = read_mask(mask_path, mask_key)
    else:
        if len(sizes) > 1:
            raise ShapeError(
                f"cubes differ in size ({', '.join(f'{h}×{w}' for h, w in sorted(sizes))}); one generated mask "
                "cannot fit them all: simulate them separately or pass --mask"
            )
        (height, width), = sizes
        mask = generate_mask(height, width, mask_kind, seed)

    from .render import measurement_preview, save_png

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path, cube, loaded in cubes:
        measurement, op = simulate_measurement(
            cube, mask, step=step, axis=axis, noise=noise, noise_sigma=noise_sigma, qe=qe, bit_depth=bit_depth,
            gain=gain, seed=seed,
        )
        meta = {
            **op.describe(),
            "noise": noise,
            "noise_sigma": noise_sigma if noise == "gaussian" else None,
            "qe": qe if noise == "shot" else None,
            "bit_depth": bit_depth if noise == "shot" else None,
            "gain": gain if noise == "shot" else None,
            "seed": seed,
            "source": str(path),
            "scale": "field: sum over bands of the masked, sheared cube",
        }
        results.append((path, measurement, meta))
    mask_meta = {"mask_kind": "file" if mask_path is not None else mask_kind, "seed": seed}
    written.append(write_array(out_dir / "mask.mat", np.asarray(mask, dtype=np.float32), key="mask", metadata=mask_meta, overwrite=overwrite))
    if on_written:
        on_written(written[-1])
    for path, measurement, meta in results:
        written.append(write_array(out_dir / f"{path.stem}.mat", measurement, key="meas", metadata=meta, overwrite=overwrite))
        if on_written:
            on_written(written[-1])
        if preview:
            written.append(save_png(out_dir / f"{path.stem}_meas.png", measurement_preview(measurement), overwrite=overwrite))
            if on_written:
                on_written(written[-1])
    return written
