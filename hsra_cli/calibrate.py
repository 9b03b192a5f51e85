"""Calibration: find the geometry (mask offset, dispersion step and axis) that explains snapshot captures.

A real CASSI system is known only roughly: the coded aperture was photographed once, usually larger than the part
the sensor sees, and a mask registered one pixel off ruins every reconstruction. The capture itself carries the
answer, because every band of the scene is modulated by the same mask pattern, shifted by ``step·b`` pixels
along the dispersion axis.

Three stages, each on the capture's *relative modulation* (the capture divided by its own local mean, minus 1:
what the scene's smooth shading does not explain, i.e. mostly the mask's fine pattern):

1. **Landscape.** For each dispersion axis, the normalised cross-correlation (NCC) of the capture's modulation
   with one unsheared copy of the mask's modulation at every offset (FFT). At the true row offset the copies of
   all bands show up as a band of correlation along the dispersion axis: the *dispersion profile*.
2. **Footprint.** For each step, the column offset whose band positions (taken from the operator: where a single
   pixel lands for each band) best match the profile. Two physical facts score it: every significant correlation
   must fall on some band (*coverage*: light comes only from the bands), and the bands should carry light
   (*occupancy*; a band may be dark in a scene, so this one is soft). Score = coverage³ · occupancy. The best
   (axis, step) wins; the margin to the runner-up says how clear the choice was.
3. **Matched filter.** At the chosen step and axis, the NCC of the capture's modulation with the modulation of
   the sheared mask Φ·1 = A(1) (the operator applied to a white cube) for offsets ±2 pixels around the footprint
   estimate (less than one step along the dispersion axis, where a whole step only relabels the bands); its maximum is the integer offset, and a V fit through its neighbours gives a sub-pixel offset.

Several captures of one system are calibrated jointly (their NCC maps are averaged). The footprint stage is what
tells step 1 from step 2 on real captures, whose modulation is blurred by the optics and dominated by the bright
bands: a matched filter alone prefers whichever step packs its bands into the brightest part of the profile.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .bands import DEFAULT_BANDS
from .errors import HsraError, ShapeError, UsageError, ValueRangeError
from .physics import _AXES as AXES, CassiOperator, check_settings, unsheared_size

#: Steps tried when none is given: 1 … MAX_STEP pixels per band.
MAX_STEP = 4
#: Gaussian σ (pixels) of the local mean that the relative modulation divides by.
MODULATION_SIGMA = 2.0
#: A shift counts as lit when its profile value exceeds this many noise σ …
OCCUPIED_SIGMA = 3.0
#: … and this fraction of the typical band level (see footprint_floor).
OCCUPIED_FRACTION = 0.25
#: The landscape peak must stand this many noise σ above the median for a calibration to be trusted …
MIN_SIGNIFICANCE = 8.0
#: … and the best (axis, step) must beat the runner-up's footprint score by this much …
MIN_MARGIN = 0.05
#: … and its bands must explain the light: at most this share of the lit shifts around its footprint may fall
#: where no band lands (a geometry whose step is too small, e.g. one outside the search, leaves light beyond it).
MAX_UNEXPLAINED = 0.25
#: Lags of the mask's own autocorrelation used to model one band's copy on the profile.
KERNEL_REACH = 3
#: Half-size of the matched-filter neighbourhood searched around the footprint estimate.
REFINE_RADIUS = 2


@dataclass
class Calibration:
    """The geometry that best explains the captures, with the evidence for it.

    ``offset`` is (row, column) of the capture area's top-left corner in the mask; ``subpixel_offset`` refines it
    by a V fit through the matched-filter scores (reported, not used by ``hsra reconstruct``).
    """

    offset: tuple[int, int]
    step: int
    axis: str
    bands: int
    subpixel_offset: tuple[float, float]
    confident: bool
    reason: str
    significance: float
    margin: float | None
    candidates: list[dict] = field(default_factory=list)
    profile: dict = field(default_factory=dict)
    neighbourhood: dict = field(default_factory=dict)
    landscape: dict = field(default_factory=dict)
    captures: int = 1
    capture_shape: tuple[int, int] = (0, 0)
    mask_shape: tuple[int, int] = (0, 0)
    seconds: float = 0.0

    def flags(self) -> str:
        """The ``hsra reconstruct`` options for this geometry."""
        return f"--mask-offset {self.offset[0]},{self.offset[1]} --step {self.step} --axis {self.axis}"

    def summary(self) -> dict:
        """The result without the landscapes (what a reconstruction record keeps)."""
        return {
            "offset": list(self.offset),
            "step": self.step,
            "axis": self.axis,
            "bands": self.bands,
            "subpixel_offset": [round(v, 3) for v in self.subpixel_offset],
            "confident": self.confident,
            "reason": self.reason,
            "significance": round(self.significance, 2),
            "margin": None if self.margin is None else round(self.margin, 4),
            "captures": self.captures,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        data["flags"] = self.flags()
        data["definitions"] = {
            "offset": "row, column of the capture area's top-left corner in the mask",
            "significance": "peak of the single-copy NCC landscape above its median, in robust noise σ",
            "margin": "footprint score of the best (axis, step) minus the runner-up's",
            "score": "coverage³ · occupancy of the band positions on the dispersion profile",
            "coverage": "share of the profile above the floor that falls on a band position (±1 px)",
            "occupancy": "share of band positions whose profile value exceeds the floor",
            "floor": f"max({OCCUPIED_SIGMA:g} noise σ, {OCCUPIED_FRACTION:g} × median of the band-count largest "
                     "profile values)",
            "fit": "lit: profile shifts above the floor within one footprint span of the result's bands; "
                   "unexplained: those no band (±1 px) covers (at most "
                   f"{MAX_UNEXPLAINED:g} of lit for a confident result)",
            "profile": "NCC of the capture's modulation with one mask copy, along the dispersion axis, at the "
                       "found row; shift = mask column − measurement column (band b at offset − step·b)",
            "neighbourhood": "NCC with the sheared mask A(1) at offsets around the result (rows × columns)",
        }
        return data


# --------------------------------------------------------------------------------------------------------------
# building blocks


def relative_modulation(image: np.ndarray, sigma: float = MODULATION_SIGMA) -> np.ndarray:
    """``image / local mean − 1`` (float64): the fine pattern that smooth shading does not explain.

    The local mean is a Gaussian of ``sigma`` pixels; it is floored at 5 % of its average so dark regions do not
    blow up the noise.
    """
    from scipy import ndimage

    data = np.asarray(image, dtype=np.float64)
    local = ndimage.gaussian_filter(data, sigma, mode="nearest")
    return (data - local) / (local + 0.05 * max(float(local.mean()), 1e-12))


def band_shifts(bands: int, step: int) -> np.ndarray:
    """Where each band of one scene pixel lands along the dispersion axis, in pixels: the operator applied to a
    single pixel lit in one band at a time."""
    op = CassiOperator(np.ones((1, 1), np.float32), bands=bands, step=step, axis="width")
    lit = torch.eye(bands)[:, :, None, None]  # bands × (bands × 1 × 1): band b alone lit
    with torch.inference_mode():
        landed = op.A(lit)[:, 0, :]  # bands × W'
    return landed.argmax(dim=1).numpy().astype(np.int64)


def _box_sums(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sums of ``values`` over every ``height × width`` window (valid positions), by an integral image."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    integral[1:, 1:] = values.cumsum(0).cumsum(1)
    return (integral[height:, width:] - integral[:-height, width:] - integral[height:, :-width]
            + integral[:-height, :-width])


def _correlate_valid(template: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Σ template · image-window for every valid position of the template inside the image (FFT)."""
    th, tw = template.shape
    ih, iw = image.shape
    spectrum = np.fft.rfft2(image) * np.conj(np.fft.rfft2(template, s=(ih, iw)))
    return np.fft.irfft2(spectrum, s=(ih, iw))[: ih - th + 1, : iw - tw + 1]


def ncc_landscape(modulations: Sequence[np.ndarray], mask_modulation: np.ndarray, pad: int) -> np.ndarray:
    """Mean NCC of each capture modulation (``H × W'``) with the mask modulation at every offset.

    The mask is padded by ``pad`` zero columns on both sides (so copies of the outer bands, which reach past the
    mask's edge, still have a place); the NCC is normalised by the overlapping part only. Entry ``[r, t]`` is
    the offset (row ``r``, column ``t − pad``) of the capture's top-left pixel in the mask.
    """
    height, width = modulations[0].shape
    mh, mw = mask_modulation.shape
    total_width = max(mw + 2 * pad, width)
    image = np.zeros((mh, total_width))
    image[:, pad : pad + mw] = mask_modulation
    valid = np.zeros_like(image)
    valid[:, pad : pad + mw] = 1.0
    image_energy = _box_sums(image * image, height, width)
    result = 0.0
    for modulation in modulations:
        template = modulation - modulation.mean()
        numerator = _correlate_valid(template, image)
        template_energy = _correlate_valid(template * template, valid)
        result = result + numerator / np.sqrt(np.maximum(template_energy * image_energy, 1e-12))
    return result / len(modulations)


def _robust_sigma(values: np.ndarray) -> float:
    median = float(np.median(values))
    return max(1.4826 * float(np.median(np.abs(values - median))), 1e-9)


def footprint_floor(profile: np.ndarray, sigma: float, bands: int) -> float:
    """The profile value below which a shift counts as dark: 3 noise σ, or a quarter of the typical band level.

    The second term matters on small captures: a mask's weak long-range correlation (≈0.5 % at any lag), summed
    over the copies of all bands, raises a pedestal of a few σ around the footprint that must not pass for light.
    The typical band level is the median of the ``bands`` largest profile values.
    """
    level = float(np.median(np.sort(profile)[-bands:]))
    return max(OCCUPIED_SIGMA * sigma, OCCUPIED_FRACTION * level)


def footprint_score(profile: np.ndarray, floor: float, positions: np.ndarray) -> tuple[float, float, float]:
    """(score, coverage, occupancy) of band positions (indices into ``profile``) on a dispersion profile.

    ``floor``: see :func:`footprint_floor`. Coverage is the share of the profile above the floor that lies on a
    band position (±1 px: the mask's own blur spreads each copy); occupancy the share of bands above the floor.
    """
    occupancy = float(np.mean(profile[positions] > floor))
    significant = np.maximum(profile - floor, 0.0)
    total = float(significant.sum())
    covered = np.zeros(profile.shape, dtype=bool)
    for spread in (-1, 0, 1):
        covered[np.clip(positions + spread, 0, profile.size - 1)] = True
    coverage = float(significant[covered].sum()) / total if total > 0 else 0.0
    return coverage**3 * occupancy, coverage, occupancy


def footprint_fit(profile: np.ndarray, floor: float, positions: np.ndarray) -> dict:
    """How well band positions (indices into ``profile``) explain the light on a dispersion profile: light comes
    only from the bands. ``lit``: shifts above ``floor`` within one footprint span of the footprint (where the light
    of a larger step would fall); ``unexplained``: those of them no band position (±1 px) covers. A correct geometry
    leaves (almost) nothing unexplained; one whose step is too small leaves about half of the light.
    """
    lit = profile > floor
    covered = np.zeros(profile.shape, dtype=bool)
    for spread in (-1, 0, 1):
        covered[np.clip(positions + spread, 0, profile.size - 1)] = True
    span = int(positions.max() - positions.min())
    lo, hi = max(int(positions.min()) - span - 1, 0), min(int(positions.max()) + span + 2, profile.size)
    return {"lit": int(lit[lo:hi].sum()), "unexplained": int((lit & ~covered)[lo:hi].sum())}


def dispersion_kernel(mask_modulation: np.ndarray, reach: int = KERNEL_REACH) -> np.ndarray:
    """Autocorrelation of the mask's modulation along the (last, dispersion) axis at lags −reach … reach,
    normalised to 1 at lag 0: the profile one band's copy leaves on the dispersion profile."""
    m = mask_modulation - mask_modulation.mean()
    width = m.shape[-1]
    energy = float(np.sum(m * m))
    values = [float(np.sum(m[:, : width - abs(d)] * m[:, abs(d) :])) / max(energy, 1e-12) for d in range(-reach, reach + 1)]
    return np.asarray(values)


def profile_misfit(profile: np.ndarray, positions: np.ndarray, kernel: np.ndarray) -> float:
    """Relative least-squares misfit of the profile near the band positions by Σ_b w_b · kernel(t − t_b).

    Decides the offset along the dispersion axis between candidates one step apart, which place the same set of
    copies except at the two ends of the footprint; the kernel accounts for the light each copy spills onto its
    neighbours through the mask's own blur.
    """
    reach = kernel.size // 2
    lo = max(int(positions.min()) - 2 * reach, 0)
    hi = min(int(positions.max()) + 2 * reach + 1, profile.size)
    t = np.arange(lo, hi)
    lags = t[:, None] - positions[None, :]
    design = np.where(np.abs(lags) <= reach, kernel[np.clip(lags + reach, 0, kernel.size - 1)], 0.0)
    target = profile[lo:hi]
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    misfit = target - design @ weights
    return float(np.sum(misfit**2) / max(float(np.sum(target**2)), 1e-12))


def _cube_size(measurement_shape: tuple[int, int], bands: int, step: int, axis: str) -> tuple[int, int]:
    h, w = measurement_shape
    if axis == "height":
        return unsheared_size(h, bands, step), w
    return h, unsheared_size(w, bands, step)


def _max_pool(values: np.ndarray, cells: int = 48) -> list[list[float]]:
    """A coarse view of a landscape for the JSON record: the maximum over ``cells × cells`` blocks."""
    rows = np.array_split(np.arange(values.shape[0]), min(cells, values.shape[0]))
    cols = np.array_split(np.arange(values.shape[1]), min(cells, values.shape[1]))
    return [[round(float(values[r[0] : r[-1] + 1, c[0] : c[-1] + 1].max()), 4) for c in cols] for r in rows]


def _sheared_mask_modulation(mask_window: np.ndarray, bands: int, step: int, axis: str) -> np.ndarray:
    """Relative modulation of A(1): the mask window sheared and summed over bands by the operator."""
    op = CassiOperator(mask_window, bands=bands, step=step, axis=axis)
    ones = torch.ones(bands, *op.cube_shape)
    with torch.inference_mode():
        sheared = op.A(ones).numpy()
    return relative_modulation(sheared)


def _peak_offset(minus: float, centre: float, plus: float) -> float:
    """Sub-pixel position of a peak from three samples by a symmetric V fit (the correlation peak of a random
    pattern is a cone, not a parabola: a parabola would pull every estimate toward the integer pixel)."""
    low = min(minus, plus)
    if not centre > low:
        return 0.0
    return float(np.clip(0.5 * (plus - minus) / (centre - low), -0.5, 0.5))


# --------------------------------------------------------------------------------------------------------------
# the calibration


def _check_capture(array: np.ndarray) -> None:
    """Raise unless ``array`` is a capture calibration can use: 2-D, finite, not constant, counting light (negative
    values only as noise, the rule of ``hsra reconstruct``: :func:`hsra_cli.reconstruct.measurement_warnings`)."""
    from .reconstruct import measurement_warnings

    if array.ndim != 2:
        raise ShapeError(f"a capture must be 2-D (H×W'), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueRangeError("a capture holds NaN or Inf values; expected finite numbers")
    if float(array.std()) == 0:
        raise ValueRangeError("a capture is constant; it carries no trace of the mask to calibrate on")
    measurement_warnings(array)  # refuses negative values beyond noise; noise does not disturb the calibration


def _check_inputs(captures, mask, bands, steps, axes):
    if not captures:
        raise UsageError("calibration needs at least one capture")
    arrays = [np.asarray(c, dtype=np.float32) for c in captures]
    for array in arrays:
        _check_capture(array)
        if array.shape != arrays[0].shape:
            raise ShapeError(
                f"captures calibrated together must have one shape; got {arrays[0].shape} and {array.shape} "
                "(calibrate them separately)"
            )
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ShapeError(
            f"the mask has shape {mask.shape}; expected the 2-D coded aperture (a 3-D shifted mask already fixes the "
            "geometry: give its --step and --axis to hsra reconstruct instead)"
        )
    if not np.isfinite(mask).all():
        raise ValueRangeError("mask holds NaN or Inf values; expected finite transmission values")
    if not np.abs(mask).max() > 0:
        raise ValueRangeError("mask is all zero; expected a coded aperture with open pixels")
    if float(mask.std()) == 0:
        raise ValueRangeError("mask is constant (every pixel the same); expected a coded aperture with a pattern")
    for axis in axes:
        for step in steps:
            check_settings(bands, step, axis)
    return arrays, mask


def calibrate(
    captures: Sequence[np.ndarray],
    mask: np.ndarray,
    *,
    bands: int = DEFAULT_BANDS,
    steps: Sequence[int] | None = None,
    axes: Sequence[str] | None = None,
    max_step: int = MAX_STEP,
) -> Calibration:
    """Find the mask offset, dispersion step and axis that best explain ``captures``.

    Args:
        captures: one or more 2-D measurements ``H × W'`` of one system (any scale; jointly calibrated): a list,
            one 2-D array, or a 3-D array ``N × H × W'`` holding ``N`` captures.
        mask: the 2-D coded aperture, at least as large as the capture area.
        bands: the band count (not estimated).
        steps: the dispersion steps to try (default 1 … ``max_step``); one value (``2`` or ``[2]``) fixes the step.
        axes: the dispersion axes to try (default both); one value (``"width"`` or ``["width"]``) fixes the axis.
        max_step: the largest step tried when ``steps`` is not given (ignored when it is).

    Returns:
        a :class:`Calibration`; ``confident`` is False (with a reason) when the evidence is weak.

    Raises:
        ShapeError: no tried geometry fits the capture inside the mask.
    """
    start = time.perf_counter()
    if isinstance(captures, (np.ndarray, torch.Tensor)):
        if captures.ndim == 2:
            captures = [captures]  # one capture
        elif captures.ndim == 3:
            captures = list(captures)  # a stack N × H × W' of captures
        else:
            raise ShapeError(
                f"captures is an array of shape {tuple(captures.shape)}; expected one capture "
                "H×W', a stack N×H×W' of captures, or a list of captures"
            )
    if isinstance(steps, (int, np.integer)):
        steps = [steps]
    if isinstance(axes, str):
        axes = [axes]
    try:
        steps = tuple(range(1, max_step + 1)) if steps is None else tuple(int(s) for s in steps)
    except (TypeError, ValueError):
        raise UsageError(f"steps must be dispersion steps in pixels (an int or a list of them), got {steps!r}") from None
    axes = AXES if axes is None else tuple(axes)
    arrays, mask = _check_inputs(captures, mask, bands, steps, axes)
    shape = arrays[0].shape
    candidates: list[dict] = []
    per_axis: dict[str, dict] = {}
    def fits(step: int, axis: str) -> bool:
        height, width = _cube_size(shape, bands, step, axis)
        return height >= 2 and width >= 2 and height <= mask.shape[0] and width <= mask.shape[1]

    for axis in axes:
        fitting = [step for step in steps if fits(step, axis)]
        if not fitting:
            continue
        # The landscape reaches as far as the default search's would (the largest step up to MAX_STEP that fits):
        # with only a fixed step's own shifts, a mask no larger than the capture area leaves a profile that is
        # nearly all footprint, whose median is then signal, not background, and the evidence (significance,
        # floor) would read as weak for the true step.
        reach = [step for step in range(1, max(MAX_STEP, *fitting) + 1) if step in fitting or fits(step, axis)]
        # Work with the dispersion along the last axis (the operator does the same internally).
        flip = (lambda a: a.T) if axis == "height" else (lambda a: a)
        modulations = [flip(relative_modulation(a)) for a in arrays]
        mask_internal = flip(mask)
        shifts = {step: band_shifts(bands, step) for step in fitting}
        pad = max(int(band_shifts(bands, step).max()) for step in reach)
        mask_modulation = relative_modulation(mask_internal)
        landscape = ncc_landscape(modulations, mask_modulation, pad)
        rows_valid = mask_internal.shape[0] - modulations[0].shape[0] + 1
        landscape = landscape[:rows_valid]
        sigma = _robust_sigma(landscape)
        significance = float((landscape.max() - np.median(landscape)) / sigma)
        row = int(np.argmax(landscape.max(axis=1)))
        profile = landscape[row]
        floor = footprint_floor(profile, sigma, bands)
        per_axis[axis] = {"sigma": sigma, "floor": floor, "kernel": dispersion_kernel(mask_modulation), "row": row, "profile": profile, "pad": pad,
                          "significance": significance, "landscape": landscape}
        for step in fitting:
            cube_width = _cube_size(shape, bands, step, axis)[1 if axis == "width" else 0]
            best = None
            for column in range(0, mask_internal.shape[1] - cube_width + 1):
                # Band b of the pixel at mask column `column + j` lands on measurement column j + shift_b,
                # i.e. at landscape shift `column − shift_b`.
                positions = column - shifts[step] + pad
                score, coverage, occupancy = footprint_score(profile, floor, positions)
                if best is None or score > best[0]:
                    best = (score, coverage, occupancy, column)
            score, coverage, occupancy, column = best
            offset = (row, column) if axis == "width" else (column, row)
            candidates.append({"axis": axis, "step": step, "offset": list(offset), "score": round(score, 4),
                               "coverage": round(coverage, 4), "occupancy": round(occupancy, 4)})
    if not candidates:
        raise ShapeError(
            f"the {shape[0]}×{shape[1]} capture does not fit inside the {mask.shape[0]}×{mask.shape[1]} mask for "
            f"any tried geometry ({bands} bands, steps {', '.join(map(str, steps))}, axes {', '.join(axes)}); "
            "expected a mask at least as large as the capture area"
        )
    candidates.sort(key=lambda c: -c["score"])
    best = candidates[0]
    margin = best["score"] - candidates[1]["score"] if len(candidates) > 1 else None
    axis, step = best["axis"], best["step"]
    info = per_axis[axis]

    # Stage 2b: between offsets a whole step apart along the dispersion axis (the same copies, relabelled bands),
    # the one whose footprint ends fit the profile best, copies' spill included.
    height, width = _cube_size(shape, bands, step, axis)
    r0, c0 = best["offset"]
    along_start = c0 if axis == "width" else r0
    along_limit = (mask.shape[1] - width) if axis == "width" else (mask.shape[0] - height)
    shifts = band_shifts(bands, step)
    misfits = {}
    for candidate in range(along_start - step, along_start + step + 1):
        if 0 <= candidate <= along_limit:
            misfits[candidate] = profile_misfit(info["profile"], candidate - shifts + info["pad"], info["kernel"])
    along = min(misfits, key=misfits.get)
    fit = footprint_fit(info["profile"], info["floor"], along - shifts + info["pad"])
    if axis == "width":
        c0 = along
    else:
        r0 = along

    # Stage 3: matched filter with the sheared mask around the footprint estimate.
    # Along the dispersion axis a move by a whole step only relabels the bands (every copy lands where its
    # neighbour's did): only the ends of the footprint tell those apart, which stage 2 has judged. The matched
    # filter searches less than one step there.
    along = min(REFINE_RADIUS, step - 1)
    row_radius, col_radius = (REFINE_RADIUS, along) if axis == "width" else (along, REFINE_RADIUS)
    rows = [r for r in range(r0 - row_radius, r0 + row_radius + 1) if 0 <= r <= mask.shape[0] - height]
    cols = [c for c in range(c0 - col_radius, c0 + col_radius + 1) if 0 <= c <= mask.shape[1] - width]
    spread = int(shifts.max())
    # Compare only where every band comes from inside the window (the window's own Φ·1 is exact there); a window
    # no wider than the spread of the bands has no such part, and is compared whole.
    extent = width if axis == "width" else height
    first = spread if spread < extent else 0
    interior = (slice(None), slice(first, width)) if axis == "width" else (slice(first, height), slice(None))
    capture_modulations = [relative_modulation(a)[interior] for a in arrays]
    scores = np.full((len(rows), len(cols)), -np.inf)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            pattern = _sheared_mask_modulation(mask[r : r + height, c : c + width], bands, step, axis)[interior]
            pattern = pattern - pattern.mean()
            values = [float(np.sum(m * pattern) / max(np.linalg.norm(m - m.mean()) * np.linalg.norm(pattern), 1e-12))
                      for m in capture_modulations]
            scores[i, j] = float(np.mean(values))
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    offset = (rows[i], cols[j])
    sub_row = _peak_offset(scores[i - 1, j], scores[i, j], scores[i + 1, j]) if 0 < i < len(rows) - 1 else 0.0
    sub_col = _peak_offset(scores[i, j - 1], scores[i, j], scores[i, j + 1]) if 0 < j < len(cols) - 1 else 0.0

    reasons = []
    if info["significance"] < MIN_SIGNIFICANCE:
        reasons.append(f"the mask pattern is barely visible in the capture (significance {info['significance']:.1f} σ "
                       f"< {MIN_SIGNIFICANCE:g})")
    if margin is not None and margin < MIN_MARGIN:
        runner = candidates[1]
        reasons.append(f"step {runner['step']} along the {runner['axis']} fits almost as well (margin {margin:.3f} "
                       f"< {MIN_MARGIN:g})")
    if fit["unexplained"] > MAX_UNEXPLAINED * fit["lit"]:
        reasons.append(f"step {step} along the {axis} leaves light that none of its {bands} bands explains "
                       f"({fit['unexplained']} of {fit['lit']} lit shifts of the dispersion profile: a step beyond those "
                       "tried, or another band count?)")
    confident = not reasons
    reason = "; ".join(reasons) if reasons else (
        f"mask pattern {info['significance']:.0f} σ above noise" + (f", margin {margin:.2f}" if margin is not None else ""))
    if len(candidates) == 1 and (height, width) == tuple(mask.shape):  # nothing to choose: the geometry is given
        confident = True
        reason = ("the only geometry that fits (a mask of the capture area's size, one step and axis); " + reason)

    pad = info["pad"]
    shift_range = np.arange(info["profile"].size) - pad
    return Calibration(
        offset=(int(offset[0]), int(offset[1])),
        step=int(step),
        axis=axis,
        bands=int(bands),
        subpixel_offset=(offset[0] + sub_row, offset[1] + sub_col),
        confident=confident,
        reason=reason,
        significance=info["significance"],
        margin=margin,
        candidates=candidates,
        profile={"axis": axis, "row": info["row"], "shift": shift_range.tolist(),
                 "ncc": [round(float(v), 5) for v in info["profile"]], "noise_sigma": info["sigma"],
                 "floor": info["floor"], "fit": fit},
        neighbourhood={"rows": rows, "columns": cols, "ncc": np.round(scores, 5).tolist(),
                       "footprint_offset": best["offset"], "fitted_offset": [r0, c0],
                       "profile_misfit": {str(k): round(v, 5) for k, v in misfits.items()}},
        landscape={a: {"max_pooled": _max_pool(v["landscape"]), "significance": round(v["significance"], 2)}
                   for a, v in per_axis.items()},
        captures=len(arrays),
        capture_shape=(int(shape[0]), int(shape[1])),
        mask_shape=(int(mask.shape[0]), int(mask.shape[1])),
        seconds=time.perf_counter() - start,
    )


#: Captures read for a joint calibration of many inputs (``hsra reconstruct --mask-offset auto``).
MAX_CAPTURES = 8


def calibrate_files(
    paths: Sequence[Path],
    mask_path: Path,
    *,
    key: str | None = None,
    mask_key: str | None = None,
    bands: int = DEFAULT_BANDS,
    steps: Sequence[int] | None = None,
    axes: Sequence[str] | None = None,
    max_step: int = MAX_STEP,
    max_captures: int | None = None,
    left_out: list | None = None,
) -> tuple[Calibration, dict]:
    """Read captures (at most ``max_captures``) and the mask, and calibrate them jointly.

    Returns the calibration and where it came from (files, keys) for records. With a list as ``left_out`` (a batch
    whose bad inputs fail alone), a capture that cannot be read or used, or whose shape is not the one most of the
    read captures share, is left out and appended to it as ``(path, HsraError)``; up to ``max_captures`` usable ones
    are read. Without it, the first such capture fails the calibration.
    """
    from .io import read_mask, read_measurement

    read: list[tuple[Path, np.ndarray, str]] = []
    for path in paths:
        if max_captures and len(read) == max_captures:
            break
        try:
            measurement, loaded = read_measurement(path, key)
            try:
                _check_capture(np.asarray(measurement))
            except HsraError as exc:  # which of several captures (the readers name their file themselves)
                raise type(exc)(f"{path}: {exc}") if len(paths) > 1 else exc from None
        except HsraError as exc:
            if left_out is None:
                raise
            left_out.append((path, exc))
            continue
        read.append((path, measurement, loaded.key))
    if left_out is not None and read:
        shapes = [measurement.shape for _, measurement, _ in read]
        common = max(dict.fromkeys(shapes), key=shapes.count)  # the most common; on a tie, the first read
        for path, measurement, _ in read:
            if measurement.shape != common:
                left_out.append((path, ShapeError(
                    f"its shape {measurement.shape} is not that of the captures calibrated with it {common}; "
                    "--mask-offset auto gives one geometry to captures of one shape (calibrate it separately)")))
        read = [item for item in read if item[1].shape == common]
    if not read and left_out:
        raise left_out[0][1]
    chosen = [path for path, _, _ in read]
    captures = [measurement for _, measurement, _ in read]
    keys = [loaded_key for _, _, loaded_key in read]
    mask, mask_loaded = read_mask(mask_path, mask_key)
    try:
        result = calibrate(captures, mask, bands=bands, steps=steps, axes=axes, max_step=max_step)
    except HsraError as exc:
        raise type(exc)(f"calibration: {exc}") from None
    from .inputs import absolute

    source = {"capture_files": [str(absolute(Path(p))) for p in chosen], "capture_keys": keys, "mask": str(mask_path),
              "mask_key": mask_loaded.key}
    return result, source


def auto_geometry(reconstructor, paths: Sequence[Path], mask_path: Path, *, key: str | None = None,
                  mask_key: str | None = None, step_given: bool = False, axis_given: bool = False,
                  left_out: list | None = None):
    """``hsra reconstruct --mask-offset auto``: calibrate the inputs jointly (at most :data:`MAX_CAPTURES`), then
    return ``(reconstructor, offset, record)``. The step and axis are estimated too, unless they were given. A
    network named with ``--model`` keeps the step and axis it was trained for: captures that clearly show another
    geometry are refused (:class:`HsraError`) rather than reconstructed with the wrong one; when the free estimate
    is not conclusive, only the offset is searched at the network's geometry. A solver, and ``--model auto``, take
    the found step and axis (a new reconstructor is made when they differ; for ``auto`` it chooses again, so a
    geometry the network was not trained for gets GAP-TV). An inconclusive calibration is an error, not a guess.
    ``left_out``: as :func:`calibrate_files` (a batch's bad inputs fail alone rather than stop the calibration).
    """
    from .reconstruct import Reconstructor

    fixed = reconstructor.entry.needs_weights and reconstructor.choice is None
    steps = [reconstructor.step] if step_given else None
    axes = [reconstructor.axis] if axis_given else None
    result, source = calibrate_files(paths, mask_path, key=key, mask_key=mask_key, bands=reconstructor.bands,
                                     steps=steps, axes=axes, max_captures=MAX_CAPTURES, left_out=left_out)
    paths = [Path(p) for p in source["capture_files"]]  # those calibrated
    if fixed:
        trained = (reconstructor.step, reconstructor.axis)
        if result.confident and (result.step, result.axis) != trained:
            raise HsraError(
                f"--mask-offset auto: the captures show step {result.step} along the {result.axis} (hsra calibrate); "
                f"{reconstructor.name} was trained for step {trained[0]} along the {trained[1]}; use --model gap-tv "
                "or weights for that geometry"
            )
        if not result.confident:
            # not conclusive about the geometry: search the offset at the network's own (as it was trained for)
            result, source = calibrate_files(paths, mask_path, key=key, mask_key=mask_key, bands=reconstructor.bands,
                                             steps=[trained[0]], axes=[trained[1]], max_captures=MAX_CAPTURES)
    if not result.confident:
        raise HsraError(
            f"--mask-offset auto: calibration is not conclusive ({result.reason}); nothing was reconstructed. Check "
            f"the mask and the captures, or give the geometry (best guess: {result.flags()}; see hsra calibrate)"
        )
    if (result.step, result.axis) != (reconstructor.step, reconstructor.axis):
        if reconstructor.choice is not None:
            reconstructor = Reconstructor(reconstructor.requested, bands=reconstructor.bands, step=result.step,
                                          axis=result.axis, **reconstructor.options)
        else:
            reconstructor = Reconstructor(
                reconstructor.entry.name, device=str(reconstructor.device), bands=reconstructor.bands,
                step=result.step, axis=result.axis, tile_size=reconstructor.tile_size,
                tile_overlap=reconstructor.tile_overlap, memory_cap_gb=reconstructor.memory_cap_gb,
            )
    return reconstructor, result.offset, {**result.summary(), **source}


def calibration_inputs(specs, mask_path: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """The captures that ``specs`` (files, folders, quoted patterns) name, as ``hsra calibrate`` takes them:
    ``(paths, skipped, folder_masks)``, paths as given (relative stays relative, as every command names its inputs).
    The ``--mask`` file is never a capture, whether a folder or pattern lists it or it is named: it is left out and
    returned in ``skipped``. Nor is the mask ``hsra simulate`` writes beside its captures when a folder or pattern
    lists it (``--mask`` may name the larger mask of a ``--mask-offset`` simulation): ``folder_masks``, as
    ``hsra reconstruct`` leaves it out (:func:`hsra_cli.simulate.is_simulated_mask`). The command says so once the
    run succeeded. Raises the first spec that names nothing (every capture counts in a joint calibration), and
    :class:`UsageError` when a mask is all the specs name."""
    from .inputs import collect
    from .simulate import is_simulated_mask

    sources, problems, skipped = collect(specs, exclude=[mask_path])
    if problems:
        raise problems[0][1]
    folder_masks = [source.path for source in sources if source.listed and is_simulated_mask(source.path)]
    sources = [source for source in sources if source.path not in folder_masks]
    if not sources and skipped:
        raise UsageError(f"the only input given is the --mask file ({skipped[0]}); give the captures to calibrate")
    if not sources:
        raise UsageError(f"the only input found is the mask hsra simulate wrote ({folder_masks[0]}); give the captures "
                         "to calibrate")
    unique = {}  # a link to a capture counts once
    for source in sources:
        unique.setdefault(source.path.resolve(), source.path)
    return list(unique.values()), skipped, folder_masks


def check_calibration_output(path: Path, inputs: Sequence[Path], mask_path: Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a JSON output that would replace a capture or the mask of the same call (whatever
    ``overwrite`` says, :class:`UsageError`), a name not ending in .json, an existing file without ``overwrite``, or
    a path that cannot be written (:func:`hsra_cli.io.check_writable`)."""
    from .batch import FILE_HINT, check_not_inputs
    from .io import check_output_suffix, check_writable

    check_not_inputs([path], [*inputs, mask_path], FILE_HINT)
    check_output_suffix(path, (".json",), "the calibration's JSON", label="-o")
    check_writable(path, overwrite)


def write_calibration(path: Path, calibration: Calibration, source: dict | None = None,
                      overwrite: bool = False) -> Path:
    """Write the calibration with its landscapes as JSON (atomically; an existing file only with ``overwrite``)."""
    import json

    from .io import atomic_output

    data = {"source": source or {}, **calibration.to_dict()}
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))
    return Path(path)
