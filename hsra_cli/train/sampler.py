"""Training batches of the field's recipe: cube patches, their mask crops and their simulated snapshots.

Everything random about the data (scene choice, crop positions, rot90/flips, which samples are mosaics, mask
crop positions, shot noise) comes from two generators owned by the sampler: a numpy ``Generator`` for the
geometry and a ``torch.Generator`` for the photon draws. Their states are the sampler's state, so a resumed
run draws exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ShapeError, UsageError
from ..physics import CassiOperator
from ..simulate import shot_noise

MASK_MODES = ("fixed", "random")


@dataclass(frozen=True)
class MeasurementModel:
    """How snapshots are simulated from cube patches.

    ``mask_mode="fixed"`` (simulation recipe): every patch sees the same mask crop, at ``mask_offset``
    (row, column). ``"random"`` (real-data recipe): each patch sees its own random crop of the mask.
    The field-scale measurement ``A(x)`` is multiplied by ``gain``; with ``shot_noise`` the field's photon model
    is applied (:func:`hsra_cli.simulate.shot_noise`: Binomial(⌊y_n·bit/QE⌋, QE)/bit on the network-scale
    ``y_n = gain·y·2/bands``), which already includes the gain.
    """

    bands: int
    step: int = 2
    axis: str = "width"
    mask_mode: str = "fixed"
    mask_offset: tuple[int, int] = (0, 0)
    gain: float = 1.0
    shot_noise: bool = False
    qe: float = 0.4
    bit_depth: int = 2048

    def check(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise UsageError(f"--mask-mode must be one of {', '.join(MASK_MODES)}, got {self.mask_mode!r}")
        if self.gain <= 0:
            raise UsageError(f"--gain must be positive, got {self.gain}")
        if not 0 < self.qe <= 1:
            raise UsageError(f"--qe must be in (0, 1], got {self.qe}")
        if self.bit_depth < 1:
            raise UsageError(f"--bit-depth must be a positive number of levels, got {self.bit_depth}")
        if min(self.mask_offset) < 0:
            raise UsageError(f"--mask-offset must be non-negative, got {self.mask_offset}")

    def simulate(self, cubes: torch.Tensor, apertures: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Field-scale snapshots ``B×H×W'`` of cubes ``B×C×H×W`` through apertures ``B×H×W`` (same device)."""
        operator = CassiOperator(apertures[:, None], bands=self.bands, step=self.step, axis=self.axis)
        measurement = operator.A(cubes)
        if self.shot_noise:
            return shot_noise(
                measurement, self.bands, qe=self.qe, bit_depth=self.bit_depth, gain=self.gain, generator=generator
            )
        return measurement * self.gain if self.gain != 1.0 else measurement

    def fixed_crop(self, mask: np.ndarray, height: int, width: int) -> np.ndarray:
        """The aperture window ``height × width`` at :attr:`mask_offset` (validation, and ``fixed`` training)."""
        top, left = self.mask_offset
        if top + height > mask.shape[0] or left + width > mask.shape[1]:
            raise ShapeError(
                f"a {height}×{width} window at --mask-offset {top},{left} does not fit in the "
                f"{mask.shape[0]}×{mask.shape[1]} mask; expected a mask at least "
                f"{top + height}×{left + width} (or a smaller offset)"
            )
        return mask[top : top + height, left : left + width]


@dataclass
class Batch:
    """One training batch, on the CPU. ``cube``: ``B×C×P×P`` in [0, 1]; ``mask``: ``B×P×P`` apertures;
    ``measurement``: ``B×P×P'`` field-scale snapshots of ``cube`` through ``mask``."""

    cube: torch.Tensor
    mask: torch.Tensor
    measurement: torch.Tensor


class SyntheticStream:
    """Fresh synthetic scenes, one per draw, generated at the crop size (:class:`hsra_cli.synth.SyntheticScenes`).

    Draw ``k`` of rank ``r`` in a run of ``world_size`` processes is scene ``k·world_size + r`` of the stream,
    so no two draws of the run, on any rank, share a scene. ``fraction`` is the share of crops taken from it.
    """

    def __init__(self, bands: int, fraction: float, seed: int = 0, rank: int = 0, world_size: int = 1):
        from ..bands import default_wavelengths

        if not 0 < fraction <= 1:
            raise UsageError(f"the synthetic stream's share of draws must be in (0, 1], got {fraction}")
        self.wavelengths = default_wavelengths(bands)
        self.fraction = float(fraction)
        # offset from the pool's seed so a pool and a stream of one run never hold the same scenes
        self.seed = int(seed) + 1
        self.rank, self.world_size = int(rank), int(world_size)
        self.draws = 0
        self._sources: dict = {}

    def draw(self, size: int) -> np.ndarray:
        from ..synth import SyntheticScenes

        if size not in self._sources:
            self._sources[size] = SyntheticScenes(size, size, wavelengths_nm=self.wavelengths, seed=self.seed)
        index = self.draws * self.world_size + self.rank
        self.draws += 1
        return np.clip(self._sources[size].scene(index), 0.0, 1.0).astype(np.float32, copy=False)


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rot90 (k ∈ 0..3) and random flips of both spatial axes of a square ``P×P×C`` patch."""
    patch = np.rot90(patch, k=int(rng.integers(4)), axes=(0, 1))
    if rng.integers(2):
        patch = patch[::-1]
    if rng.integers(2):
        patch = patch[:, ::-1]
    return patch


class PatchSampler:
    """Draws batches of the field's training recipe from scenes held in memory.

    Args:
        scenes: cubes ``H×W×C`` float32 in [0, 1], each at least ``patch_size`` on both sides.
        mask: the 2-D coded aperture ``H×W`` (float32), at least ``patch_size`` on both sides.
        physics: how snapshots are made (:class:`MeasurementModel`).
        patch_size: side ``P`` of the square training patches (even when ``mosaic``).
        batch_size: samples per batch in this process.
        mosaic: when true, half of each batch (for an odd batch, the odd sample with probability ½) is a mosaic
            of four ``P/2`` crops from independently chosen scenes, the other half plain ``P`` crops; every crop
            gets its own rot90/flips.
        scene_weights: probability of drawing each scene (default uniform); see :func:`scene_weights`.
        stream: fresh synthetic scenes for a share of the crops (:class:`SyntheticStream`), or None.
        seed, rank: the generators are seeded from ``(seed, rank)``: each process of a multi-GPU run has its
            own stream, and the same ``(seed, rank)`` always gives the same batches.
    """

    def __init__(
        self,
        scenes: list[np.ndarray],
        mask: np.ndarray,
        physics: MeasurementModel,
        *,
        patch_size: int,
        batch_size: int,
        mosaic: bool = True,
        scene_weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        stream: SyntheticStream | None = None,
    ):
        if not scenes and stream is None:
            raise UsageError("no training scenes: give --data and/or --synthetic")
        if not scenes and stream.fraction < 1:
            raise ValueError("without scenes the synthetic stream must supply every crop (fraction 1)")
        if patch_size < 2 or (mosaic and patch_size % 2):
            raise UsageError(f"--patch-size must be an even number ≥ 2 for the mosaic, got {patch_size}")
        if batch_size < 1:
            raise UsageError(f"--batch-size must be ≥ 1, got {batch_size}")
        for index, scene in enumerate(scenes):
            if scene.shape[0] < patch_size or scene.shape[1] < patch_size:
                raise ShapeError(
                    f"training scene {index} is {scene.shape[0]}×{scene.shape[1]}, smaller than the "
                    f"{patch_size}×{patch_size} patch; lower --patch-size"
                )
        if mask.ndim != 2 or mask.shape[0] < patch_size or mask.shape[1] < patch_size:
            raise ShapeError(
                f"the mask is {'×'.join(map(str, mask.shape))}; training needs a 2-D aperture at least "
                f"{patch_size}×{patch_size} (the patch size)"
            )
        self.scenes = scenes
        self.stream = stream
        self.mask = np.ascontiguousarray(mask, dtype=np.float32)
        self.physics = physics
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.mosaic = bool(mosaic)
        if scene_weights is None:
            scene_weights = np.full(len(scenes), 1.0 / max(1, len(scenes)))
        self.scene_weights = np.asarray(scene_weights, dtype=np.float64)
        if self.scene_weights.shape != (len(scenes),):
            raise ValueError("scene_weights must hold one weight per scene")
        if physics.mask_mode == "fixed":
            self._fixed_mask = physics.fixed_crop(self.mask, patch_size, patch_size)
        self.rng = np.random.default_rng([int(seed), int(rank)])
        self.noise_generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(rank))

    # ----------------------------------------------------------------------------------------------
    def _crop(self, size: int) -> np.ndarray:
        """A ``size × size`` crop of a randomly drawn scene (or a fresh synthetic scene), rotated/flipped."""
        if self.stream is not None and (self.stream.fraction >= 1 or self.rng.random() < self.stream.fraction):
            return augment(self.stream.draw(size), self.rng)
        scene = self.scenes[int(self.rng.choice(len(self.scenes), p=self.scene_weights))]
        top = int(self.rng.integers(scene.shape[0] - size + 1))
        left = int(self.rng.integers(scene.shape[1] - size + 1))
        return augment(scene[top : top + size, left : left + size], self.rng)

    def _mosaic(self) -> np.ndarray:
        half = self.patch_size // 2
        tiles = [self._crop(half) for _ in range(4)]
        return np.concatenate(
            [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0
        )

    def _mask_crop(self) -> np.ndarray:
        if self.physics.mask_mode == "fixed":
            return self._fixed_mask
        size = self.patch_size
        top = int(self.rng.integers(self.mask.shape[0] - size + 1))
        left = int(self.rng.integers(self.mask.shape[1] - size + 1))
        return self.mask[top : top + size, left : left + size]

    def next_batch(self) -> Batch:
        size = self.batch_size
        mosaics = size // 2 if self.mosaic else 0
        if self.mosaic and size % 2 and self.rng.random() < 0.5:
            mosaics += 1
        patches = [self._crop(self.patch_size) for _ in range(size - mosaics)]
        patches += [self._mosaic() for _ in range(mosaics)]
        masks = [self._mask_crop() for _ in range(size)]
        cube = torch.from_numpy(np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2)))
        mask = torch.from_numpy(np.ascontiguousarray(np.stack(masks)))
        measurement = self.physics.simulate(cube, mask, self.noise_generator)
        return Batch(cube=cube, mask=mask, measurement=measurement)

    # ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "numpy_generator": self.rng.bit_generator.state,
            "noise_generator": self.noise_generator.get_state(),
            "stream_draws": self.stream.draws if self.stream is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["numpy_generator"]
        self.noise_generator.set_state(state["noise_generator"])
        if self.stream is not None:
            self.stream.draws = int(state["stream_draws"])


def scene_weights(real_count: int, synthetic_count: int, synthetic_fraction: float | None) -> np.ndarray:
    """Per-scene draw probabilities: real scenes first, then synthetic ones.

    ``synthetic_fraction=None`` draws every scene equally often; otherwise the synthetic scenes together get
    that share of the draws, the real scenes the rest (each group uniform inside).
    """
    total = real_count + synthetic_count
    if total == 0:  # every crop comes from the synthetic stream
        return np.zeros(0)
    if synthetic_fraction is None or synthetic_count == 0 or real_count == 0:
        return np.full(total, 1.0 / total)
    if not 0 <= synthetic_fraction <= 1:
        raise UsageError(f"--synthetic-fraction must be in [0, 1], got {synthetic_fraction}")
    weights = np.empty(total)
    weights[:real_count] = (1.0 - synthetic_fraction) / real_count
    weights[real_count:] = synthetic_fraction / synthetic_count
    return weights
