"""Reconstruction quality metrics: the one home of the metric formulas in ``hsra``.

Every function takes a predicted and a ground-truth cube laid out **H × W × C** (height, width, bands) with
values in [0, 1] (numpy arrays; torch tensors are converted, but they must also be H × W × C, not the
networks' C × H × W: a cube that is clearly C × H × W is refused, :func:`check_layout`). Results are per scene;
averaging over scenes is :func:`mean_over_scenes`.

Two conventions decide what the formulas see (the field's papers and its training logs differ by
~0.01–0.2 dB, so every report should say which one was used):

``"field"`` (default, how the papers' tables are computed)
    the prediction is clipped to [0, 1], then both cubes are quantised to 8-bit levels ``round(255·v)``
    and every metric works on those levels with peak ``L = 255``.
``"float"`` (how training logs are computed)
    the prediction is clipped to [0, 1] and the metrics work on the floats with peak ``L = 1``.

The same preparation feeds every metric, so SAM and ERGAS (which do not depend on the scale) also see the
quantised values under ``"field"``. Truth values must already lie in [0, 1]; a truth outside that range is
an error (usually a cube still in 0–255 or 0–65535 units), not something to clip silently; so is a prediction off
the [0, 1] scale (:func:`check_prediction`: more than a little overshoot in more than a few values), in every
metric.

Definitions (the field's; docs/metrics.md states them for users):

- PSNR: per band ``10·log10(L² / MSE_b)``, mean over bands. A band with zero error would be infinite; it
  counts as :data:`PSNR_CAP_DB` (100 dB) so a perfect band cannot dominate the mean.
- SSIM: per band, Gaussian window 11 × 11 with σ = 1.5, K = (0.01, 0.03), population (not sample)
  statistics; mean of the SSIM map over its 'valid' region (no padding: the map is (H−10) × (W−10)); mean
  over bands.
- SAM: per-pixel angle between the predicted and true spectra, in degrees, mean over pixels. Pixels where
  either spectrum is all zero have no direction and are skipped.
- ERGAS: ``100 · sqrt(mean_b (RMSE_b / mean(truth_b))²)`` (resolution ratio 1). Bands whose truth mean is
  zero are skipped.
- LPSNR(p) ("local PSNR"; no public definition exists, this is ``hsra``'s): the cube is cut into
  non-overlapping p × p tiles from the top-left corner (incomplete tiles at the right and bottom edges are
  dropped); each tile's PSNR is computed over all its pixels and bands at once (capped like PSNR); LPSNR is
  the mean of the tile PSNRs. Because it averages log-errors of small regions, LPSNR(8) ≥ LPSNR(16) ≥ PSNR
  in practice when errors vary across the image.

SAM and ERGAS return NaN when nothing is left after skipping (an all-zero prediction or truth for SAM, an
all-zero truth for ERGAS); :data:`UNDEFINED_WHEN` says when, and :func:`defined_counts` how many scenes a mean
of :func:`mean_over_scenes` is over.

Every metric (:func:`evaluate_cube`, what ``hsra evaluate`` and ``hsra report`` use, and the single ones,
``psnr``, ``ssim``, …) refuses a prediction that is clearly not on the [0, 1] scale (more than
:data:`OFF_SCALE_FRACTION` of its values outside [−:data:`PREDICTION_OVERSHOOT`, 1 + :data:`PREDICTION_OVERSHOOT`]:
a cube still in 0–255 units), as it refuses such a truth; smaller overshoots, normal for a network's output, are
clipped. Training validation clips its predictions first, so a network early in training is still scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
from scipy.ndimage import correlate1d

from .bands import DEFAULT_BANDS
from .errors import ShapeError, UsageError, ValueRangeError

Convention = Literal["field", "float"]

#: The conventions understood by every metric (see the module docstring).
CONVENTIONS: tuple[str, ...] = ("field", "float")

#: Keys of :func:`evaluate_cube`'s result, in report order.
METRIC_KEYS: tuple[str, ...] = ("psnr", "ssim", "sam", "ergas", "lpsnr8", "lpsnr16")

#: Units of each metric, for tables and reports ("" = unitless).
METRIC_UNITS: dict[str, str] = {
    "psnr": "dB", "ssim": "", "sam": "degrees", "ergas": "", "lpsnr8": "dB", "lpsnr16": "dB",
}

#: Whether a larger value is better, for each metric.
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True, "ssim": True, "sam": False, "ergas": False, "lpsnr8": True, "lpsnr16": True,
}

#: PSNR (dB) given to a band or tile with zero error.
PSNR_CAP_DB = 100.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)

#: Why a metric can be undefined (NaN) for a scene; the metrics not listed are always defined.
UNDEFINED_WHEN: dict[str, str] = {
    "sam": "no pixel where both spectra are non-zero, e.g. an all-zero prediction",
    "ergas": "no band whose truth mean is non-zero",
}

# A truth this far outside [0, 1] is float noise from an earlier division, not a cube in other units.
_TRUTH_RANGE_TOLERANCE = 1e-4

#: How far beyond [0, 1] a prediction's values may go and still be clipped (a network's overshoot, 1.05) ...
PREDICTION_OVERSHOOT = 0.5
#: ... unless more than this fraction of them lie beyond it: then the cube is not on the [0, 1] scale (a float
#: cube in 0–255 units) and :func:`evaluate_cube` refuses it; a few hot pixels are still clipped.
OFF_SCALE_FRACTION = 0.01


def _to_numpy(cube, what: str) -> np.ndarray:
    """Array or tensor -> float64 numpy array, refusing integer data (it is not in [0, 1])."""
    if hasattr(cube, "detach") and hasattr(cube, "is_floating_point"):  # a torch tensor; no torch import needed
        if not cube.is_floating_point():
            raise ValueRangeError(
                f"the {what} is an integer tensor ({cube.dtype}); metrics expect floats in [0, 1]"
            )
        return cube.detach().cpu().double().numpy()
    array = np.asarray(cube)
    if array.dtype.kind in "iu":
        raise ValueRangeError(
            f"the {what} has integer dtype {array.dtype}; metrics expect floats in [0, 1] "
            f"(divide by {np.iinfo(array.dtype).max} first)"
        )
    if array.dtype.kind != "f":
        raise ValueRangeError(f"the {what} has dtype {array.dtype}; metrics expect floats in [0, 1]")
    return array.astype(np.float64, copy=False)


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        raise ValueRangeError(f"{name} holds NaN or Inf values; expected finite values in [0, 1]")


def check_truth(truth, name: str = "the truth") -> None:
    """Raise :class:`ValueRangeError` unless ``truth`` holds finite floats in [0, 1] (up to float noise).

    ``name`` starts the message (``"the truth scene01.mat"``), so a caller can say which file it was.
    """
    truth = _to_numpy(truth, "truth")
    _check_finite(truth, name)
    if truth.size == 0:
        return
    low, high = float(truth.min()), float(truth.max())
    if low < -_TRUTH_RANGE_TOLERANCE or high > 1.0 + _TRUTH_RANGE_TOLERANCE:
        raise ValueRangeError(
            f"{name} has values in [{low:.4g}, {high:.4g}]; expected [0, 1] "
            "(an 8-bit cube must be divided by 255, a 16-bit one by 65535)"
        )


def check_prediction(pred, name: str = "the prediction") -> None:
    """Raise :class:`ValueRangeError` unless ``pred`` holds finite floats on the [0, 1] scale.

    Overshoot up to :data:`PREDICTION_OVERSHOOT` beyond [0, 1] is allowed (the metrics clip it), and so is more
    in at most :data:`OFF_SCALE_FRACTION` of the values (hot pixels); beyond that the cube is in other units (a
    float cube in 0–255) and its scores would mean nothing. ``name`` starts the message.
    """
    pred = _to_numpy(pred, "prediction")
    _check_finite(pred, name)
    if pred.size == 0:
        return
    outside = np.count_nonzero((pred < -PREDICTION_OVERSHOOT) | (pred > 1.0 + PREDICTION_OVERSHOOT))
    if outside > OFF_SCALE_FRACTION * pred.size:
        low, high = float(pred.min()), float(pred.max())
        raise ValueRangeError(
            f"{name} has values in [{low:.4g}, {high:.4g}] ({100.0 * outside / pred.size:.3g} % of them outside "
            f"[{-PREDICTION_OVERSHOOT:g}, {1.0 + PREDICTION_OVERSHOOT:g}]); expected [0, 1] (small overshoot is "
            "clipped; a cube in 0–255 units must be divided by 255, one in 0–65535 by 65535)"
        )


def check_layout(shape) -> None:
    """Raise :class:`ShapeError` when a cube of ``shape`` is clearly laid out C × H × W (the networks' layout) rather
    than the H × W × C the metrics take.

    Only the unmistakable case is refused, since a short H × W × C strip (28 × 28 × 31, 12 × 40 × 31) looks like
    C × H × W too: the last axis is not the field's band count and is more than twice the first; the first is
    longer than 3 (a strip, colour channels) and shorter than the second; and either the image would be square
    (``C × N × N``) or the first axis is the field's band count (``28 × H × W``). Anything else is taken as
    H × W × C, as documented.
    """
    first, middle, last = (int(n) for n in shape)
    bands_first = (last != DEFAULT_BANDS and 3 < first < middle and last > 2 * first
                   and (middle == last or first == DEFAULT_BANDS))
    if bands_first:
        raise ShapeError(
            f"the cubes have shape {tuple(shape)}, which looks like C × H × W ({first} bands of {middle} × {last} "
            "pixels, the layout a network returns); the metrics take H × W × C: pass cube.permute(1, 2, 0) for a "
            "torch tensor, np.moveaxis(cube, 0, -1) for a numpy array"
        )


def _prepare(pred, truth, convention: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Check and convert a (prediction, truth) pair; return both on the convention's scale and its peak.

    Returns float64 H × W × C arrays with values in [0, peak]: integer levels 0..255 with peak 255 for
    ``"field"``, floats in [0, 1] with peak 1 for ``"float"``.
    """
    if convention not in CONVENTIONS:
        raise UsageError(f"unknown metric convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    pred = _to_numpy(pred, "prediction")
    truth = _to_numpy(truth, "truth")
    if pred.shape != truth.shape:
        raise ShapeError(
            f"prediction shape {tuple(pred.shape)} does not match truth shape {tuple(truth.shape)}; "
            "expected two cubes of the same H × W × C size"
        )
    if pred.ndim != 3:
        raise ShapeError(f"expected cubes laid out H × W × C (3-D), got shape {tuple(pred.shape)}")
    if pred.size == 0:
        raise ShapeError(f"the cubes are empty (shape {tuple(pred.shape)})")
    check_layout(pred.shape)
    check_prediction(pred)
    check_truth(truth)
    pred = np.clip(pred, 0.0, 1.0)
    truth = np.clip(truth, 0.0, 1.0)
    if convention == "field":
        # np.rint rounds halves to even, as torch.round does in the field's evaluation code.
        return np.rint(pred * 255.0), np.rint(truth * 255.0), 255.0
    return pred, truth, 1.0


def _psnr_from_mse(mse: np.ndarray, peak: float) -> np.ndarray:
    """PSNR (dB) for an array of mean squared errors, zero error capped at :data:`PSNR_CAP_DB`."""
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(peak * peak / mse)
    return np.minimum(values, PSNR_CAP_DB)


def _psnr(pred: np.ndarray, truth: np.ndarray, peak: float) -> float:
    mse_per_band = np.mean((pred - truth) ** 2, axis=(0, 1))
    return float(np.mean(_psnr_from_mse(mse_per_band, peak)))


def psnr(pred, truth, convention: Convention = "field") -> float:
    """Mean over bands of the per-band PSNR, in dB.

    Args:
        pred, truth: cubes H × W × C, values in [0, 1] (a prediction's small overshoot is clipped; one off that
            scale is refused: :func:`check_prediction`).
        convention: ``"field"`` (uint8 levels, peak 255) or ``"float"`` (floats, peak 1).

    A band with zero error counts as 100 dB (:data:`PSNR_CAP_DB`) instead of infinity.
    """
    return _psnr(*_prepare(pred, truth, convention))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return window / window.sum()


def _valid_filter(stack: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable correlation of ``stack`` (N × H × W × C) over H and W, keeping only the 'valid' region.

    Filtering with zero padding and then cropping the half-window keeps exactly the outputs whose window
    lies inside the image, so the padding never influences the result.
    """
    half = (len(window) - 1) // 2
    filtered = correlate1d(stack, window, axis=1, mode="constant")[:, half:-half]
    filtered = correlate1d(filtered, window, axis=2, mode="constant")[:, :, half:-half]
    return filtered


def _ssim_per_band(pred: np.ndarray, truth: np.ndarray, peak: float) -> np.ndarray:
    height, width, _ = pred.shape
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ShapeError(
            f"SSIM needs cubes of at least {SSIM_WINDOW} × {SSIM_WINDOW} pixels, got {height} × {width}"
        )
    c1 = (SSIM_K[0] * peak) ** 2
    c2 = (SSIM_K[1] * peak) ** 2
    # One filtering pass over the five local statistics at once, vectorised over bands.
    stack = np.stack([pred, truth, pred * pred, truth * truth, pred * truth])
    mean_p, mean_t, mean_pp, mean_tt, mean_pt = _valid_filter(stack, _gaussian_window())
    var_p = mean_pp - mean_p * mean_p
    var_t = mean_tt - mean_t * mean_t
    cov_pt = mean_pt - mean_p * mean_t
    ssim_map = ((2.0 * mean_p * mean_t + c1) * (2.0 * cov_pt + c2)) / (
        (mean_p * mean_p + mean_t * mean_t + c1) * (var_p + var_t + c2)
    )
    return ssim_map.mean(axis=(0, 1))


def ssim_per_band(pred, truth, convention: Convention = "field") -> np.ndarray:
    """SSIM of each band (C values in [-1, 1]): Gaussian 11 × 11 window, σ = 1.5, K = (0.01, 0.03).

    Args:
        pred, truth: cubes H × W × C, values in [0, 1]; H and W must be at least 11.
        convention: ``"field"`` (uint8 levels, L = 255) or ``"float"`` (floats, L = 1).

    Each band's value is the mean of its SSIM map over the valid region ((H−10) × (W−10), no padding).
    """
    return _ssim_per_band(*_prepare(pred, truth, convention))


def ssim(pred, truth, convention: Convention = "field") -> float:
    """Mean over bands of :func:`ssim_per_band` (unitless, 1 = identical)."""
    return float(np.mean(ssim_per_band(pred, truth, convention)))


def _sam(pred: np.ndarray, truth: np.ndarray) -> float:
    dot = np.einsum("hwc,hwc->hw", pred, truth)
    norms = np.linalg.norm(pred, axis=2) * np.linalg.norm(truth, axis=2)
    usable = norms > 0
    if not usable.any():
        return math.nan
    cosine = np.clip(dot[usable] / norms[usable], -1.0, 1.0)  # rounding can push |cos| a hair above 1
    return float(np.degrees(np.arccos(cosine)).mean())


def sam(pred, truth, convention: Convention = "field") -> float:
    """Mean spectral angle in degrees (0 = same spectral shape everywhere, 90 = orthogonal spectra).

    Args:
        pred, truth: cubes H × W × C, values in [0, 1].
        convention: ``"field"`` or ``"float"``; the angle does not depend on the scale, only on quantisation.

    Pixels where the predicted or the true spectrum is all zero have no direction and are left out of the
    mean; NaN if no pixel is left.
    """
    pred, truth, _ = _prepare(pred, truth, convention)
    return _sam(pred, truth)


def _ergas(pred: np.ndarray, truth: np.ndarray) -> float:
    rmse = np.sqrt(np.mean((pred - truth) ** 2, axis=(0, 1)))
    band_means = truth.mean(axis=(0, 1))
    usable = band_means > 0
    if not usable.any():
        return math.nan
    return float(100.0 * np.sqrt(np.mean((rmse[usable] / band_means[usable]) ** 2)))


def ergas(pred, truth, convention: Convention = "field") -> float:
    """ERGAS = 100 · sqrt(mean_b (RMSE_b / mean(truth_b))²), resolution ratio 1 (unitless, 0 = perfect).

    Args:
        pred, truth: cubes H × W × C, values in [0, 1].
        convention: ``"field"`` or ``"float"``; the ratio does not depend on the scale, only on quantisation.

    Bands whose truth mean is zero are left out; NaN if no band is left.
    """
    pred, truth, _ = _prepare(pred, truth, convention)
    return _ergas(pred, truth)


def _check_patch(patch) -> int:
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
        raise UsageError(f"LPSNR patch size must be a positive integer, got {patch!r}")
    return int(patch)


def _lpsnr(pred: np.ndarray, truth: np.ndarray, peak: float, patch: int) -> float:
    height, width, bands = pred.shape
    rows, cols = height // patch, width // patch
    if rows == 0 or cols == 0:
        raise ShapeError(f"LPSNR({patch}) needs cubes of at least {patch} × {patch} pixels, got {height} × {width}")
    squared_error = (pred[: rows * patch, : cols * patch] - truth[: rows * patch, : cols * patch]) ** 2
    tiles = squared_error.reshape(rows, patch, cols, patch, bands)
    return float(np.mean(_psnr_from_mse(tiles.mean(axis=(1, 3, 4)), peak)))


def lpsnr(pred, truth, patch: int, convention: Convention = "field") -> float:
    """Local PSNR (dB): mean over non-overlapping ``patch`` × ``patch`` tiles of each tile's PSNR.

    Args:
        pred, truth: cubes H × W × C, values in [0, 1]; H and W must be at least ``patch``.
        patch: tile side in pixels.
        convention: ``"field"`` (uint8 levels, peak 255) or ``"float"`` (floats, peak 1).

    ``hsra``'s definition (none is published): tiles start at the top-left corner, incomplete tiles at the
    right and bottom edges are dropped, each tile's MSE is taken over all its pixels and bands at once, a
    tile with zero error counts as 100 dB, and the tile PSNRs are averaged.
    """
    patch = _check_patch(patch)
    return _lpsnr(*_prepare(pred, truth, convention), patch)


def evaluate_cube(pred, truth, convention: Convention = "field") -> dict[str, float]:
    """All metrics of one scene, keyed by :data:`METRIC_KEYS` in that order.

    Args:
        pred, truth: cubes H × W × C, values in [0, 1] (at least 16 × 16 pixels for LPSNR(16)).
        convention: ``"field"`` (default, the papers' tables) or ``"float"`` (training logs).

    Raises:
        ShapeError: the shapes differ (the message names both), the cube is too small, or it is clearly laid out
            C × H × W (:func:`check_layout`).
        ValueRangeError: integer data, NaN/Inf, a truth outside [0, 1], or a prediction not on the [0, 1]
            scale (:func:`check_prediction`; small overshoot is clipped).
    """
    pred, truth, peak = _prepare(pred, truth, convention)  # once, shared by every metric
    return {
        "psnr": _psnr(pred, truth, peak),
        "ssim": float(np.mean(_ssim_per_band(pred, truth, peak))),
        "sam": _sam(pred, truth),
        "ergas": _ergas(pred, truth),
        "lpsnr8": _lpsnr(pred, truth, peak, 8),
        "lpsnr16": _lpsnr(pred, truth, peak, 16),
    }


def mean_over_scenes(results: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average per-scene results (as from :func:`evaluate_cube`) metric by metric.

    NaN entries (a scene where SAM or ERGAS had nothing to measure) are left out of that metric's mean;
    a metric that is NaN in every scene stays NaN. Results may hold only some of :data:`METRIC_KEYS` (``{"psnr":
    30.1}``): a metric missing from a scene is left out like NaN, and one missing from every scene is not in the
    means.
    """
    results = list(results)
    if not results:
        raise UsageError("no scenes to average")
    means = {}
    for key in _present_keys(results):
        values = np.array([float(scene.get(key, math.nan)) for scene in results], dtype=np.float64)
        finite = values[~np.isnan(values)]
        means[key] = float(finite.mean()) if finite.size else math.nan
    return means


def _present_keys(results: list) -> list[str]:
    """The metrics of :data:`METRIC_KEYS` (in that order) that at least one result holds; a result that is not a
    mapping is a :class:`UsageError`."""
    for scene in results:
        if not isinstance(scene, Mapping):
            raise UsageError(f"expected per-scene results as mappings of metric to value (as evaluate_cube gives), "
                             f"got {type(scene).__name__}")
    return [key for key in METRIC_KEYS if any(key in scene for scene in results)]


def defined_counts(results: Iterable[Mapping[str, float]]) -> dict[str, int]:
    """For each metric, how many of the per-scene results define it (are not NaN): the number of scenes its
    :func:`mean_over_scenes` is over. Fewer than the scenes means the mean left some out (:data:`UNDEFINED_WHEN`)."""
    results = list(results)
    return {key: sum(1 for scene in results if not math.isnan(float(scene.get(key, math.nan))))
            for key in _present_keys(results)}
