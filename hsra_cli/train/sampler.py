"""Training batches of the field's recipe: cube patches, their coded apertures and their simulated snapshots.

The whole batch is assembled by tensor operations on the training device, so the same code feeds a CPU run and
keeps a GPU busy: the training scenes and the calibrated masks live in device memory as flat pixel stores, and
every crop, rot90/flip, mosaic quarter and mask window is one gather through an index tensor computed for the
whole batch; generated masks, the CASSI simulation (:class:`hsra_cli.physics.CassiOperator`) and the shot noise
run batched on the device too.

Randomness comes from two generators owned by the sampler: a numpy ``Generator`` for the geometry (a few
numbers per crop, drawn on the CPU) and a ``torch.Generator`` on the device for everything drawn per pixel
(generated masks, photon counts). Their states, with the synthetic stream's position, are the sampler's state,
so a resumed run draws exactly the batches an uninterrupted one would have, on any device.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ShapeError, UsageError
from ..physics import CassiOperator
from ..simulate import shot_noise
from ..synth import ignore_interrupts, stream_scene

from .config import MASK_MODES  # noqa: E402,F401  (re-exported: the sampler checks its physics against it)

#: Kinds of generated coded apertures (``--generated-masks``), drawn with equal probability:
#: ``binary`` i.i.d. open/closed pixels; ``blurred`` a binary pattern through a 3×3 point-spread function with a
#: 0.5 % floor (the bimodal grey levels of calibrated masks such as the field's 256² and 660² ones); ``grey``
#: i.i.d. uniform transmissions.
GENERATED_MASK_KINDS = ("binary", "blurred", "grey")
#: Open fraction of generated binary patterns, drawn uniformly per mask.
GENERATED_FILL_RANGE = (0.25, 0.75)


@dataclass(frozen=True)
class MeasurementModel:
    """How snapshots are simulated from cube patches.

    ``mask_mode="fixed"`` (simulation recipe): every patch sees the same window of the first mask, at
    ``mask_offset`` (row, column). ``"random"`` (real-data recipe): each patch sees its own random window.
    The field-scale measurement ``A(x)`` is multiplied by ``gain``; with ``shot_noise`` the field's photon model
    is applied (:func:`hsra_cli.simulate.shot_noise`: Binomial(⌊y_n·bit/QE⌋, QE)/bit on the network-scale
    ``y_n = gain·y·2/bands``), which already includes the gain. ``noise_fraction`` is the share of patches that
    get the gain and the photon model; the others are measured clean (gain 1).
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
    noise_fraction: float = 1.0

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
        if not 0 <= self.noise_fraction <= 1:
            raise UsageError(f"--noise-fraction must be in [0, 1], got {self.noise_fraction}")

    @property
    def noisy_always(self) -> bool:
        """Every patch gets the gain and the noise model (what validation then uses too)."""
        return self.noise_fraction >= 1

    def operator(self, apertures: torch.Tensor, check_values: bool = True) -> CassiOperator:
        """The CASSI operator of a batch of apertures ``B×H×W``."""
        return CassiOperator(apertures[:, None], bands=self.bands, step=self.step, axis=self.axis,
                             check_values=check_values)

    def simulate(
        self,
        cubes: torch.Tensor,
        apertures: torch.Tensor,
        generator: torch.Generator | None,
        noisy: torch.Tensor | None = None,
        operator: CassiOperator | None = None,
    ) -> torch.Tensor:
        """Field-scale snapshots ``B×H×W'`` of cubes ``B×C×H×W`` through apertures ``B×H×W`` (same device).

        ``noisy`` (bool ``B``) picks the samples that get the gain and noise; None: all of them. ``operator``:
        the apertures' operator when the caller has built it already.
        """
        operator = operator if operator is not None else self.operator(apertures)
        measurement = operator.A(cubes)
        if self.shot_noise:
            treated = shot_noise(
                measurement, self.bands, qe=self.qe, bit_depth=self.bit_depth, gain=self.gain, generator=generator
            )
        elif self.gain != 1.0:
            treated = measurement * self.gain
        else:
            return measurement
        if noisy is None:
            return treated
        return torch.where(noisy[:, None, None], treated, measurement)

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
    """One training batch, on the sampler's device. ``cube``: ``B×C×P×P`` in [0, 1]; ``mask``: ``B×P×P``
    apertures; ``measurement``: ``B×P×P'`` field-scale snapshots of ``cube`` through ``mask``; ``operator``:
    the CASSI operator of ``mask`` (what the network is called with)."""

    cube: torch.Tensor
    mask: torch.Tensor
    measurement: torch.Tensor
    operator: CassiOperator | None = None


def _upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``: through pinned memory without waiting on a GPU (its queue keeps running)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


# --------------------------------------------------------------------------------------------------
def stream_lookahead(batch_size: int, workers: int) -> int:
    """Scenes of each size the stream queues ahead: a batch of B samples draws at most about 2·B scenes of one
    size (its mosaic tiles, when every crop is synthetic), so 4·B covers two batches; 2 per worker keeps every
    worker busy; never fewer than 8."""
    return max(8, 4 * int(batch_size), 2 * int(workers))


class SyntheticStream:
    """Fresh synthetic scenes, one per draw, generated at the crop size (:class:`hsra_cli.synth.SyntheticScenes`).

    Each crop size has its own sequence: draw ``k`` of size ``s`` on rank ``r`` of ``world_size`` processes is
    scene ``k·world_size + r`` of the size-``s`` source, so no two draws of the run, on any rank, share a scene,
    and which scene comes next never depends on timing. With ``workers > 0``, worker processes generate the next
    scenes of each size ahead of time (in order), so a training step does not wait for them. Scenes are kept
    as float16 whether or not workers make them, so both ways give the same batches. ``fraction`` is the share
    of crops taken from the stream.

    ``prefetch`` is how many scenes of each size are queued ahead (default :func:`stream_lookahead`): at least
    one batch's draws, so a step takes ready scenes while the workers make the next batch's, and at least twice
    the workers, so none of them sits idle while the queue waits for the step.
    """

    def __init__(self, bands: int, fraction: float, seed: int = 0, rank: int = 0, world_size: int = 1,
                 workers: int = 0, prefetch: int | None = None, batch_size: int = 1):
        from ..bands import default_wavelengths

        if not 0 < fraction <= 1:
            raise UsageError(f"the synthetic stream's share of draws must be in (0, 1], got {fraction}")
        self.wavelengths = tuple(float(w) for w in default_wavelengths(bands))
        self.fraction = float(fraction)
        # offset from the pool's seed so a pool and a stream of one run never hold the same scenes
        self.seed = int(seed) + 1
        self.rank, self.world_size = int(rank), int(world_size)
        self.draws_by_size: dict[int, int] = {}
        self.workers = int(workers)
        self.prefetch = max(1, int(prefetch)) if prefetch is not None else stream_lookahead(batch_size, workers)
        self.wait_s = 0.0
        self._pool = None
        self._queues: dict[int, deque] = {}

    @property
    def draws(self) -> int:
        """Scenes drawn so far by this process, all sizes together."""
        return sum(self.draws_by_size.values())

    def _index(self, size: int, k: int) -> int:
        return k * self.world_size + self.rank

    def _submit(self, size: int, k: int):
        return self._pool.submit(stream_scene, size, self._index(size, k), self.wavelengths, self.seed)

    def draw(self, size: int) -> np.ndarray:
        k = self.draws_by_size.get(size, 0)
        self.draws_by_size[size] = k + 1
        if self.workers <= 0:
            return stream_scene(size, self._index(size, k), self.wavelengths, self.seed)
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: workers must not inherit a CUDA context or torch's thread pools
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=ignore_interrupts
            )
        queue = self._queues.setdefault(size, deque())
        if not queue:  # first draw of this size (or after a restore): start the look-ahead at draw k
            queue.extend(self._submit(size, j) for j in range(k, k + self.prefetch))
        future = queue.popleft()
        queue.append(self._submit(size, k + len(queue) + 1))
        import time

        started = time.perf_counter()
        scene = future.result()
        self.wait_s += time.perf_counter() - started
        return scene

    def state_dict(self) -> dict:
        return {"draws_by_size": {str(size): n for size, n in self.draws_by_size.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.draws_by_size = {int(size): int(n) for size, n in (state.get("draws_by_size") or {}).items()}
        self._cancel()

    def _cancel(self) -> None:
        for queue in self._queues.values():
            for future in queue:
                future.cancel()
        self._queues = {}

    def close(self) -> None:
        self._cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# --------------------------------------------------------------------------------------------------
class _PixelStore:
    """Images ``H×W×C`` of different sizes as one ``N_pixels × C`` tensor on a device, for batched gathers."""

    def __init__(self, images: list[np.ndarray], device: torch.device, dtype=torch.float32):
        self.heights = np.array([image.shape[0] for image in images], dtype=np.int64)
        self.widths = np.array([image.shape[1] for image in images], dtype=np.int64)
        sizes = self.heights * self.widths
        self.bases = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if images else np.zeros(0, np.int64)
        if images:
            flat = np.concatenate([np.asarray(image, dtype=np.float32).reshape(-1, image.shape[2]) for image in images])
            self.pixels = torch.from_numpy(flat).to(device=device, dtype=dtype)
        else:
            self.pixels = torch.zeros(0, 1, device=device, dtype=dtype)

    def view(self, index: int) -> np.ndarray:
        """Image ``index`` as a numpy view of the store (CPU stores only)."""
        start = int(self.bases[index])
        size = int(self.heights[index] * self.widths[index])
        return self.pixels[start : start + size].numpy().reshape(int(self.heights[index]), int(self.widths[index]), -1)


def _tile_geometry(patch: int, mosaic: torch.Tensor, device: torch.device):
    """Per-pixel tile slot (0 for a plain crop, 0–3 for a mosaic quarter) and local coordinates, ``B×P×P``."""
    half = patch // 2
    grid = torch.arange(patch, device=device)
    rows, cols = grid[:, None].expand(patch, patch), grid[None, :].expand(patch, patch)
    quarter = (rows >= half).long() * 2 + (cols >= half).long()
    is_mosaic = mosaic[:, None, None]
    slot = torch.where(is_mosaic, quarter, torch.zeros_like(quarter))
    local_rows = torch.where(is_mosaic, rows % half, rows)
    local_cols = torch.where(is_mosaic, cols % half, cols)
    return slot, local_rows, local_cols


def _augmented_source(rows: torch.Tensor, cols: torch.Tensor, size: torch.Tensor, k: torch.Tensor,
                      flip_rows: torch.Tensor, flip_cols: torch.Tensor):
    """Where output pixel (rows, cols) of a crop of side ``size`` comes from after ``np.rot90(crop, k)`` then
    optional flips of the rows and the columns (all arguments broadcast; returns crop coordinates)."""
    last = size - 1
    u = torch.where(flip_rows, last - rows, rows)
    v = torch.where(flip_cols, last - cols, cols)
    # np.rot90(A, k)[u, v] = A[r, c] with: k=0 (u, v); k=1 (v, n−1−u); k=2 (n−1−u, n−1−v); k=3 (n−1−v, u)
    r = torch.where(k == 0, u, torch.where(k == 1, v, torch.where(k == 2, last - u, last - v)))
    c = torch.where(k == 0, v, torch.where(k == 1, last - u, torch.where(k == 2, last - v, u)))
    return r, c


def generate_masks(count: int, size: int, kinds: np.ndarray, fills: np.ndarray, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """``count`` generated apertures ``size × size`` (see :data:`GENERATED_MASK_KINDS`); ``kinds`` indexes that
    tuple per mask and ``fills`` gives each binary pattern's open fraction."""
    uniform = torch.rand(count, size, size, generator=generator, device=device)
    packed = _upload(np.stack([np.asarray(fills, np.float32), np.asarray(kinds, np.float32)]), device)
    fill, kind = packed[0][:, None, None], packed[1][:, None, None]
    binary = (uniform < fill).float()
    # grey: an i.i.d. uniform transmission, made from the same draw (uniform/fill is uniform on [0,1) where open)
    grey = uniform
    blurred = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(binary[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1
    )[:, 0]
    blurred = blurred.clamp(min=0.005)
    return torch.where(kind == 0, binary, torch.where(kind == 1, blurred, grey))


class PatchSampler:
    """Draws batches of the field's training recipe from scenes held in device memory.

    Args:
        scenes: cubes ``H×W×C`` float32 in [0, 1], each at least ``patch_size`` on both sides.
        masks: the 2-D coded aperture ``H×W`` (float32), or a list of them, each at least ``patch_size`` on both
            sides. ``fixed`` mode uses the first one; ``random`` mode draws a mask, then a window of it, per patch.
        physics: how snapshots are made (:class:`MeasurementModel`).
        patch_size: side ``P`` of the square training patches (even when ``mosaic``).
        batch_size: samples per batch in this process.
        mosaic: when true, half of each batch (for an odd batch, the odd sample with probability ½) is a mosaic
            of four ``P/2`` crops from independently chosen scenes, the other half plain ``P`` crops; every crop
            gets its own rot90/flips.
        scene_weights: probability of drawing each scene (default uniform); see :func:`scene_weights`.
        stream: fresh synthetic scenes for a share of the crops (:class:`SyntheticStream`), or None.
        generated_masks: share of patches (``random`` mode) whose aperture is generated rather than cropped
            from ``masks`` (:func:`generate_masks`).
        exposure: ``F ≥ 1``; above 1 every sample is scaled by a gain drawn log-uniformly in ``[1/F, F]`` and
            capped at ``1 / max(sample)``, so scenes are seen at other exposures without clipping.
        seed, rank: the generators are seeded from ``(seed, rank)``: each process of a multi-GPU run has its
            own stream, and the same ``(seed, rank)`` always gives the same batches.
        device: where the scenes live and the batches are made.
    """

    def __init__(
        self,
        scenes: list[np.ndarray],
        masks,
        physics: MeasurementModel,
        *,
        patch_size: int,
        batch_size: int,
        mosaic: bool = True,
        scene_weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        stream: SyntheticStream | None = None,
        generated_masks: float = 0.0,
        exposure: float = 1.0,
        device="cpu",
    ):
        masks = [masks] if isinstance(masks, np.ndarray) else list(masks)
        if not scenes and stream is None:
            raise UsageError("no training scenes: give --data and/or --synthetic")
        if not scenes and stream.fraction < 1:
            raise ValueError("without scenes the synthetic stream must supply every crop (fraction 1)")
        if patch_size < 2 or (mosaic and patch_size % 2):
            raise UsageError(f"--patch-size must be an even number ≥ 2 for the mosaic, got {patch_size}")
        if batch_size < 1:
            raise UsageError(f"--batch-size must be ≥ 1, got {batch_size}")
        if not 0 <= generated_masks <= 1:
            raise UsageError(f"--generated-masks must be a share in [0, 1], got {generated_masks}")
        if not exposure >= 1:
            raise UsageError(f"--exposure must be ≥ 1 (1: off), got {exposure}")
        if generated_masks > 0 and physics.mask_mode == "fixed":
            raise UsageError("--generated-masks needs --mask-mode random (fixed mode uses one mask window)")
        for index, scene in enumerate(scenes):
            if scene.shape[0] < patch_size or scene.shape[1] < patch_size:
                raise ShapeError(
                    f"training scene {index} is {scene.shape[0]}×{scene.shape[1]}, smaller than the "
                    f"{patch_size}×{patch_size} patch; lower --patch-size"
                )
        if not masks:
            raise UsageError("give --mask FILE (the coded aperture the network is trained for)")
        for mask in masks:
            if mask.ndim != 2 or mask.shape[0] < patch_size or mask.shape[1] < patch_size:
                raise ShapeError(
                    f"the mask is {'×'.join(map(str, mask.shape))}; training needs a 2-D aperture at least "
                    f"{patch_size}×{patch_size} (the patch size)"
                )
        self.device = torch.device(device)
        self.stream = stream
        self.physics = physics
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.mosaic = bool(mosaic)
        self.generated_masks = float(generated_masks)
        self.exposure = float(exposure)
        self.scene_count = len(scenes)
        if scene_weights is None:
            scene_weights = np.full(len(scenes), 1.0 / max(1, len(scenes)))
        self.scene_weights = np.asarray(scene_weights, dtype=np.float64)
        if self.scene_weights.shape != (len(scenes),):
            raise ValueError("scene_weights must hold one weight per scene")
        self.scenes = _PixelStore(scenes, self.device)
        self.masks = _PixelStore([np.asarray(m, dtype=np.float32)[..., None] for m in masks], self.device)
        if physics.mask_mode == "fixed":
            window = physics.fixed_crop(masks[0], patch_size, patch_size)
            self._fixed_mask = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).to(self.device)
        self.rng = np.random.default_rng([int(seed), int(rank)])
        self.noise_generator = torch.Generator(device=self.device).manual_seed(int(seed) * 1_000_003 + int(rank))
        self.data_seconds = 0.0

    def scene_view(self, index: int) -> np.ndarray:
        """Training scene ``index`` as stored (a view on the CPU: callers may drop their own copy)."""
        return self.scenes.view(index)

    # ----------------------------------------------------------------------------------------------
    def _draw_tiles(self, count: int, sizes: np.ndarray):
        """Geometry of ``count`` crops of the given sides: synthetic or not, scene, top-left, rot90, flips."""
        rng = self.rng
        stream = self.stream
        if stream is None:
            synthetic = np.zeros(count, dtype=bool)
        elif stream.fraction >= 1:
            synthetic = np.ones(count, dtype=bool)
        else:
            synthetic = rng.random(count) < stream.fraction
        scene = np.zeros(count, dtype=np.int64)
        real = ~synthetic
        if real.any():
            scene[real] = rng.choice(self.scene_count, size=int(real.sum()), p=self.scene_weights)
        # top-left from uniforms: the number of positions depends on the scene drawn
        position = rng.random((2, count))
        heights = np.where(real, self.scenes.heights[scene] if self.scene_count else 0, sizes)
        widths = np.where(real, self.scenes.widths[scene] if self.scene_count else 0, sizes)
        top = np.floor(position[0] * (heights - sizes + 1)).astype(np.int64)
        left = np.floor(position[1] * (widths - sizes + 1)).astype(np.int64)
        k = rng.integers(4, size=count)
        flips = rng.integers(2, size=(2, count)).astype(bool)
        return synthetic, scene, top, left, k, flips

    def _gather_cubes(self, mosaic: np.ndarray) -> torch.Tensor:
        device, patch = self.device, self.patch_size
        size = len(mosaic)
        slots = np.where(mosaic, 4, 1)
        first = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
        tile_size = np.repeat(np.where(mosaic, patch // 2, patch), slots)
        count = int(slots.sum())
        synthetic, scene, top, left, k, flips = self._draw_tiles(count, tile_size)

        # synthetic crops: whole fresh scenes at the crop size, in a small per-batch store
        synth_base = np.zeros(count, dtype=np.int64)
        synth_store = None
        if synthetic.any():
            fresh = [self.stream.draw(int(tile_size[t])) for t in np.flatnonzero(synthetic)]
            offsets = np.cumsum([0] + [f.shape[0] * f.shape[1] for f in fresh])[:-1]
            synth_base[synthetic] = offsets
            synth_store = _upload(np.concatenate([f.reshape(-1, f.shape[2]) for f in fresh]), device).float()

        row_stride = np.where(synthetic, tile_size, self.scenes.widths[scene] if self.scene_count else 0)
        base = np.where(synthetic, synth_base, self.scenes.bases[scene] if self.scene_count else 0)
        # one upload for the batch's geometry: per-tile parameters, then per-sample mosaic flag and first tile
        packed = _upload(np.concatenate([
            np.stack([base + top * row_stride + left, row_stride, tile_size, k, flips[0], flips[1], synthetic]
                     ).astype(np.int64).ravel(),
            mosaic.astype(np.int64), first,
        ]), device)
        params = packed[: 7 * count].view(7, count)
        slot, rows, cols = _tile_geometry(patch, packed[7 * count : 7 * count + size].bool(), device)
        tile = packed[7 * count + size :][:, None, None] + slot  # B×P×P
        per_pixel = params[:, tile]  # 7×B×P×P
        r, c = _augmented_source(rows, cols, per_pixel[2], per_pixel[3], per_pixel[4].bool(), per_pixel[5].bool())
        index = (per_pixel[0] + r * per_pixel[1] + c).reshape(-1)
        if synth_store is None:
            pixels = self.scenes.pixels.index_select(0, index)
        elif not (~synthetic).any():
            pixels = synth_store.index_select(0, index)
        else:
            is_synthetic = per_pixel[6].bool().reshape(-1, 1)
            pixels = torch.where(
                is_synthetic,
                synth_store.index_select(0, index.clamp(max=synth_store.shape[0] - 1)),
                self.scenes.pixels.index_select(0, index.clamp(max=self.scenes.pixels.shape[0] - 1)),
            )
        return pixels.view(size, patch, patch, -1).permute(0, 3, 1, 2).contiguous()

    def _masks(self, size: int) -> torch.Tensor:
        device, patch = self.device, self.patch_size
        if self.physics.mask_mode == "fixed":
            return self._fixed_mask.expand(size, patch, patch).contiguous()
        rng = self.rng
        generated = rng.random(size) < self.generated_masks if self.generated_masks > 0 else np.zeros(size, bool)
        which = rng.integers(len(self.masks.bases), size=size) if len(self.masks.bases) > 1 else np.zeros(size, np.int64)
        position = rng.random((2, size))
        top = np.floor(position[0] * (self.masks.heights[which] - patch + 1)).astype(np.int64)
        left = np.floor(position[1] * (self.masks.widths[which] - patch + 1)).astype(np.int64)
        packed = _upload(np.concatenate([
            self.masks.bases[which] + top * self.masks.widths[which] + left, self.masks.widths[which],
            generated.astype(np.int64),
        ]), device)
        start, stride, generated_flags = packed[:size], packed[size : 2 * size], packed[2 * size :].bool()
        grid = torch.arange(patch, device=device)
        index = start[:, None, None] + grid[None, :, None] * stride[:, None, None] + grid[None, None, :]
        windows = self.masks.pixels[:, 0].index_select(0, index.reshape(-1)).view(size, patch, patch)
        if generated.any():
            kinds = rng.integers(len(GENERATED_MASK_KINDS), size=size)
            fills = rng.uniform(*GENERATED_FILL_RANGE, size=size)
            made = generate_masks(size, patch, kinds, fills, self.noise_generator, device)
            windows = torch.where(generated_flags[:, None, None], made, windows)
        return windows

    def _expose(self, cube: torch.Tensor) -> torch.Tensor:
        """Each sample times a gain, log-uniform in [1/F, F], capped so that no value passes 1."""
        log_f = np.log(self.exposure)
        gains = _upload(np.exp(self.rng.uniform(-log_f, log_f, size=cube.shape[0])).astype(np.float32), self.device)
        peaks = cube.detach().amax(dim=(1, 2, 3)).clamp(min=1e-6)
        gains = torch.minimum(gains, 1.0 / peaks)
        return cube * gains.to(cube.dtype)[:, None, None, None]

    def next_batch(self) -> Batch:
        import time

        started = time.perf_counter()
        size = self.batch_size
        mosaics = size // 2 if self.mosaic else 0
        if self.mosaic and size % 2 and self.rng.random() < 0.5:
            mosaics += 1
        mosaic = np.zeros(size, dtype=bool)
        mosaic[size - mosaics:] = True
        cube = self._gather_cubes(mosaic)
        if self.exposure > 1:
            cube = self._expose(cube)
        mask = self._masks(size)
        noisy = None
        if 0 < self.physics.noise_fraction < 1:
            noisy = _upload(self.rng.random(size) < self.physics.noise_fraction, self.device)
        elif self.physics.noise_fraction == 0:
            noisy = torch.zeros(size, dtype=torch.bool, device=self.device)
        operator = self.physics.operator(mask, check_values=False)  # masks made here: no host round trip
        measurement = self.physics.simulate(cube, mask, self.noise_generator, noisy, operator=operator)
        self.data_seconds += time.perf_counter() - started
        return Batch(cube=cube, mask=mask, measurement=measurement, operator=operator)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    # ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "numpy_generator": self.rng.bit_generator.state,
            "noise_generator": self.noise_generator.get_state(),
            "noise_device": self.device.type,
            "stream_draws": self.stream.draws if self.stream is not None else None,
            "stream": self.stream.state_dict() if self.stream is not None else None,
            "format": 2,
        }

    def load_state_dict(self, state: dict) -> bool:
        """Restore a state; returns False when it comes from the older, per-crop sampler (then the run goes on
        with these generators but cannot replay the old batches exactly)."""
        self.rng.bit_generator.state = state["numpy_generator"]
        noise = state["noise_generator"]
        # a checkpoint of another device type: its photon generator cannot be carried over, keep this one's
        if state.get("noise_device", "cpu") == self.device.type:
            self.noise_generator.set_state(noise.cpu() if hasattr(noise, "cpu") else noise)
        exact = state.get("format") == 2 and state.get("noise_device", "cpu") == self.device.type
        if self.stream is not None:
            if state.get("stream"):
                self.stream.load_state_dict(state["stream"])
            else:  # older checkpoints counted draws of every size together
                self.stream.load_state_dict({"draws_by_size": {str(self.patch_size): int(state.get("stream_draws") or 0)}})
        return exact


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
