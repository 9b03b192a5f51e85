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



#: The placeholders of ``hsra simulate --name``.
SIMULATE_NAME_FIELDS = {
    "stem": "the cube's file name without its suffix (stem_N for scene N of a stack)",
    "parent": "the name of the cube's folder",
    "noise": "the noise model (none, gaussian, shot)",
    "seed": "the seed",
}
#: The mask every measurement of an output folder shares.
MASK_FILE = "mask.mat"


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
    name="{stem}",
    on_warning=None,
    on_written=None,
    on_failed=None,
    on_note=None,
):
    """Simulate a measurement for each cube into ``out_dir``; returns a :class:`~hsra_cli.batch.BatchResult`
    (``outputs``: the paths written, in order).

    ``cube_paths``: files or :class:`~hsra_cli.inputs.Source` s (a stack gives each of its selected scenes).
    Writes ``<name>.mat`` (key ``meas`` plus the physics and noise settings; ``name`` is a template of
    :data:`SIMULATE_NAME_FIELDS`), ``mask.mat`` (the 2-D aperture or 3-D mask used, key ``mask``) and, with
    ``preview``, ``<name>_meas.png``. A ``mask.mat`` already there holding the same mask is kept (so a shell loop
    can simulate one cube per call into one folder); a different one is refused unless ``overwrite``. Every
    output is checked before any is written; an output never replaces an input of the same call. A cube that
    cannot be read or simulated fails alone (``on_failed(path, message)``); Ctrl-C/SIGTERM stops after the
    current file with ``interrupted`` and ``left`` set.
    """
    from pathlib import Path

    from .batch import BatchResult, check_name_template, check_not_inputs, clean_stale_temporaries, output_name
    from .errors import INTERRUPTS, HsraError, InputFileError, OutputExistsError
    from .inputs import SceneReader, Source, same_file, scenes_of
    from .io import check_writable, output_folder, read_mask, write_array
    from .render import measurement_preview, save_png

    out_dir = Path(out_dir)
    if noise not in NOISE_KINDS:
        raise UsageError(f"unknown --noise {noise!r}; expected one of: {', '.join(NOISE_KINDS)}")
    if axis not in ("width", "height"):
        raise UsageError(f"--axis must be width or height, got {axis!r}")
    if mask_path is None and mask_kind not in MASK_KINDS:
        raise UsageError(f"unknown --mask-kind {mask_kind!r}; expected one of: {', '.join(MASK_KINDS)}")
    check_name_template(name, SIMULATE_NAME_FIELDS)
    result = BatchResult()

    def fail(path, error: HsraError) -> None:  # path: an input's spec, or a Scene ("stack.npy:3")
        result.failed.append((Path(str(path)), str(error), error))
        if on_failed:
            on_failed(path, str(error))

    scenes = []
    for item in cube_paths:
        source = item if isinstance(item, Source) else Source(Path(item), str(item))
        try:
            scenes.extend(scenes_of(source, key))
        except HsraError as exc:
            fail(source.spec, exc)
    planned, stems = [], {}
    for scene in scenes:
        stem = output_name(name, stem=scene.stem, parent=scene.path.parent.name, noise=noise, seed=str(seed))
        if stem in stems:
            raise UsageError(
                f"inputs {stems[stem]} and {scene} would both write {stem}.mat; name the outputs apart with --name "
                "(e.g. '{parent}_{stem}') or rename one"
            )
        stems[stem] = scene
        planned.append((scene, out_dir / f"{stem}.mat", out_dir / f"{stem}_meas.png" if preview else None))
    inputs = [scene.path for scene in scenes] + ([Path(mask_path)] if mask_path is not None else [])
    targets = [t for _, meas_path, png_path in planned for t in (meas_path, png_path) if t is not None]
    check_not_inputs(targets, inputs)
    for target in targets:
        check_writable(target, overwrite)
    mask_target = out_dir / MASK_FILE
    check_writable(mask_target, True)  # its content decides (below) whether it may be replaced
    mask = None
    if mask_path is not None:
        mask, _ = read_mask(mask_path, mask_key)
    if not planned:
        return result
    with output_folder(out_dir):  # created here; removed again if nothing was written into it
        clean_stale_temporaries(out_dir, on_note)

        def settle_mask(mask_array: np.ndarray, write: bool = True) -> None:
            """Write mask.mat, or keep the one there when it holds this mask; refuse a different one (``write``
            False: only the refusal, before anything is computed)."""
            mask_array = np.asarray(mask_array, dtype=np.float32)
            if mask_target.exists():
                try:
                    existing, _ = read_mask(mask_target, "mask")
                except HsraError:
                    existing = None
                if existing is not None and existing.shape == mask_array.shape and np.array_equal(existing, mask_array):
                    if on_note and write:
                        on_note(f"kept {mask_target}: it already holds this mask")
                    return
                for source in inputs:
                    if same_file(mask_target, source):
                        raise UsageError(
                            f"output {mask_target} would replace the input {source} of this call; write to another folder (-o)"
                        )
                if not overwrite:
                    raise OutputExistsError(
                        f"{mask_target} exists and holds a different mask; pass --overwrite to replace it or write to "
                        "another folder"
                    )
            if not write:
                return
            mask_meta = {"mask_kind": "file" if mask_path is not None else mask_kind, "seed": seed}
            written = write_array(mask_target, mask_array, key="mask", metadata=mask_meta, overwrite=overwrite)
            result.outputs.append(written)
            if on_written:
                on_written(written)

        if mask is not None:
            settle_mask(mask, write=False)
        mask_written = False  # mask.mat goes with the first measurement: if every cube fails, nothing is left
        reader = SceneReader(key, bands)
        handled = 0
        try:
            for scene, meas_path, png_path in planned:
                try:
                    cube, _, _ = reader.read(scene)
                    if on_warning and (cube.max() > 1.5 or cube.min() < -0.01):
                        on_warning(f"{scene}: values span {cube.min():.3g}..{cube.max():.3g}; CASSI cubes are usually in [0, 1]")
                    if mask is None:  # generated for the first cube; every later one must have its size
                        mask = generate_mask(cube.shape[0], cube.shape[1], mask_kind, seed)
                        settle_mask(mask, write=False)
                    measurement, op = simulate_measurement(
                        cube, mask, step=step, axis=axis, noise=noise, noise_sigma=noise_sigma, qe=qe, bit_depth=bit_depth,
                        gain=gain, seed=seed,
                    )
                except (OutputExistsError, UsageError):
                    raise
                except HsraError as exc:
                    fail(scene, exc)
                    handled += 1
                    continue
                except MemoryError:
                    fail(scene, InputFileError(f"out of memory simulating {scene}"))
                    handled += 1
                    continue
                if not mask_written:
                    settle_mask(mask)
                    mask_written = True
                meta = {
                    **op.describe(),
                    "noise": noise,
                    "noise_sigma": noise_sigma if noise == "gaussian" else None,
                    "qe": qe if noise == "shot" else None,
                    "bit_depth": bit_depth if noise == "shot" else None,
                    "gain": gain if noise == "shot" else None,
                    "seed": seed,
                    "source": str(scene),
                    "scale": "field: sum over bands of the masked, sheared cube",
                }
                written = []
                try:
                    written.append(write_array(meas_path, measurement, key="meas", metadata=meta, overwrite=overwrite))
                    if png_path is not None:
                        written.append(save_png(png_path, measurement_preview(measurement), overwrite=overwrite))
                except (HsraError, OSError) as exc:  # e.g. a full disk: this cube fails, its partial output goes
                    for path in written:
                        path.unlink(missing_ok=True)
                    fail(scene, exc if isinstance(exc, HsraError) else HsraError(f"cannot write {meas_path}: {exc}"))
                    handled += 1
                    continue
                result.outputs.extend(written)
                result.done.append(scene.path)
                handled += 1
                if on_written:
                    for path in written:
                        on_written(path)
        except INTERRUPTS as exc:  # Ctrl-C, or SIGINT/SIGTERM as hsra_cli.errors.Interrupted
            import signal

            result.interrupted = getattr(exc, "signum", int(signal.SIGINT))
            result.left = [scene.path for scene, _, _ in planned[handled:]]
        return result
