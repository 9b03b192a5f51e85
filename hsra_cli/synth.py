"""Synthetic spectral scenes built from real published spectra, for training and for the bundled sample.

Every cube this module returns is **H × W × C float32 in [0, 1]** (C bands at ``wavelengths_nm``, by default
:func:`hsra_cli.bands.default_wavelengths`). Values are radiance-like: a reflectance spectrum times an
illuminant spectrum times a spatial shading field, scaled by one exposure gain per scene. Nothing is downloaded:
the spectra ship with ``colour-science``, the natural images (lifted scenes only) with ``scikit-image``.

Spectral resampling: a band is modelled as a box response from the midpoint with its lower neighbour to the
midpoint with its upper neighbour, and a published spectrum (5 or 10 nm steps) is averaged over that box after
linear interpolation. Averaging rather than point sampling matters for line-spectrum illuminants (fluorescent
lamps), whose 5 nm peaks a point sample would hit or miss by chance.

Entry points: :func:`reflectance_library`, :func:`illuminant_library`, :func:`colorchecker_scene`,
:func:`procedural_scene`, :func:`lifted_image_scene`, :class:`SyntheticScenes` (an infinite, indexable source
deterministic in ``(seed, index)``) and :func:`write_scenes`. See ``docs/synthetic-data.md`` for what the data
is and is not. This module stays free of torch so data loaders can use it in worker processes cheaply.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .bands import default_wavelengths
from .errors import HsraError, OutputExistsError, ShapeError, UsageError, ValueRangeError

__all__ = [
    "SUPPORTED_RANGE_NM",
    "REFLECTANCE_SETS",
    "ILLUMINANTS",
    "SCENE_KINDS",
    "reflectance_library",
    "illuminant_library",
    "colorchecker_patch_boxes",
    "colorchecker_scene",
    "procedural_scene",
    "lifted_image_scene",
    "natural_images",
    "SyntheticScenes",
    "stream_scene",
    "ignore_interrupts",
    "write_scenes",
]

#: Wavelength range (nm) every bundled spectral set covers; band centres must lie inside it. The PMC chart
#: (400–700 nm) is the narrowest set; the field's 28 bands (453.5–648 nm) sit well inside.
SUPPORTED_RANGE_NM: tuple[float, float] = (400.0, 700.0)

#: Reflectance sets in :func:`reflectance_library`, in order: name -> source. Names are colour-science's.
REFLECTANCE_SETS: dict[str, str] = {
    "ColorChecker N Ohta": "ColorChecker Classic measured by N. Ohta (1997), identical to ISO 17321-1:2012 "
    "(colour.SDS_COLOURCHECKERS)",
    "BabelColor Average": "average of 30 ColorChecker Classic charts, BabelColor (2012) "
    "(colour.SDS_COLOURCHECKERS)",
    "PMC": "preferred memory colour chart, M. R. Luo (2024), Color Res. Appl., doi:10.1002/col.22940 "
    "(colour.SDS_COLOURCHECKERS)",
    "CIE 2024 TCS": "CIE test colour samples TCS01-15 (CIE 13.3-1995; TCS15 from CIE data set "
    "doi:10.25039/CIE.DS.7chm7z5h) (colour.quality.datasets.tcs.SDS_TCS)",
    "NIST CQS 9.0": "NIST Colour Quality Scale samples VS1-15, Ohno & Davis (2008, 2013) "
    "(colour.quality.datasets.vs.SDS_VS)",
    "RAW to ACES 190": "190 reflectance patches of the Academy RAW to ACES v1 training set, Dyer et al. (2017) "
    "(colour.characterisation.read_training_data_rawtoaces_v1)",
}

#: Illuminants in :func:`illuminant_library` (colour.SDS_ILLUMINANTS names, CIE 15:2018 tables): daylight
#: phases, incandescent, three fluorescent lamps (standard, broadband, narrow triphosphor) and two white LEDs.
ILLUMINANTS: tuple[str, ...] = ("D65", "D50", "D75", "A", "FL2", "FL7", "FL11", "LED-B3", "LED-V1")

# How often random scenes draw each illuminant. Daylight and incandescent light dominate, as in the field's
# benchmark captures; fluorescent lamps come less often, the narrow-band FL11 least, because their line spectra
# make every pixel's spectrum spiky (band-to-band curvature 10-40x that of daylight), which would teach a
# network a prior that does not fit most captures.
_ILLUMINANT_DRAW_WEIGHTS: dict[str, float] = {
    "D65": 3.0, "D50": 2.0, "D75": 2.0, "A": 2.0,
    "LED-B3": 1.0, "LED-V1": 1.0,
    "FL2": 0.5, "FL7": 0.5, "FL11": 0.25,
}

#: Scene kinds :class:`SyntheticScenes` can draw.
SCENE_KINDS: tuple[str, ...] = ("procedural", "lifted", "colorchecker")

# The chart used for the colour-chart scene: the mean of 30 charts is closer to a chart a user owns than
# any single measurement.
_CHART = "BabelColor Average"
# Band width assumed for a single band, which has no neighbours to take a width from.
_SINGLE_BAND_WIDTH_NM = 10.0
# Fine grid for the band averages; 0.25 nm keeps the box edges accurate for bands only ~4 nm wide.
_FINE_STEP_NM = 0.25


# ----------------------------------------------------------------------------------------------------------
# Spectra


def _check_wavelengths(wavelengths_nm) -> np.ndarray:
    """Band centres as a float64 vector; default: the project's band list."""
    if wavelengths_nm is None:
        return default_wavelengths()
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    if wl.ndim != 1 or wl.size < 1:
        raise ShapeError(f"wavelengths_nm must be a 1-D list of band centres, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        raise ValueRangeError("wavelengths_nm holds NaN or Inf")
    if wl.size > 1 and not np.all(np.diff(wl) > 0):
        raise ValueRangeError("wavelengths_nm must be strictly increasing")
    lo, hi = SUPPORTED_RANGE_NM
    if wl[0] < lo or wl[-1] > hi:
        raise ValueRangeError(
            f"synthetic scenes cover {lo:g}-{hi:g} nm (the range of the bundled spectra), "
            f"got bands from {wl[0]:g} to {wl[-1]:g} nm"
        )
    return wl


def _band_edges(wl: np.ndarray) -> np.ndarray:
    """(C, 2) lower/upper edge of each band: midpoints to the neighbours, mirrored at both ends."""
    if wl.size == 1:
        half = _SINGLE_BAND_WIDTH_NM / 2
        return np.array([[wl[0] - half, wl[0] + half]])
    mid = (wl[1:] + wl[:-1]) / 2
    lower = np.concatenate([[wl[0] - (mid[0] - wl[0])], mid])
    upper = np.concatenate([mid, [wl[-1] + (wl[-1] - mid[-1])]])
    return np.stack([lower, upper], axis=1)


def _resampling_matrix(source_nm: np.ndarray, wl: np.ndarray) -> np.ndarray:
    """(C, L) matrix taking a spectrum sampled at ``source_nm`` (L,) to band averages at ``wl`` (C,).

    Linear in the samples, so it can be built once per source grid: column j is the band average of the
    piecewise-linear interpolant of the j-th unit vector. Outside the source range the end values hold.
    """
    edges = _band_edges(wl)
    matrix = np.empty((wl.size, source_nm.size))
    eye = np.eye(source_nm.size)
    for c, (lo, hi) in enumerate(edges):
        n = max(int(np.ceil((hi - lo) / _FINE_STEP_NM)), 1)
        fine = lo + (np.arange(n) + 0.5) * (hi - lo) / n  # midpoint rule
        interp = np.stack([np.interp(fine, source_nm, eye[j]) for j in range(source_nm.size)], axis=1)
        matrix[c] = interp.mean(axis=0)
    return matrix


def _resample(sds, wl: np.ndarray) -> np.ndarray:
    """(N, C) band averages of colour-science spectral distributions that may use different grids."""
    cache: dict[tuple, np.ndarray] = {}
    rows = []
    for sd in sds:
        source = np.asarray(sd.wavelengths, dtype=np.float64)
        key = (source[0], source[-1], source.size)
        if key not in cache:
            cache[key] = _resampling_matrix(source, wl)
        rows.append(cache[key] @ np.asarray(sd.values, dtype=np.float64))
    return np.stack(rows)


def _reflectance_set_sds(name: str) -> list:
    import colour
    from colour.quality.datasets.tcs import SDS_TCS
    from colour.quality.datasets.vs import SDS_VS

    if name in ("ColorChecker N Ohta", "BabelColor Average", "PMC"):
        return list(colour.SDS_COLOURCHECKERS[name].values())
    if name == "CIE 2024 TCS":
        return list(SDS_TCS["CIE 2024"].values())
    if name == "NIST CQS 9.0":
        return list(SDS_VS["NIST CQS 9.0"].values())
    if name == "RAW to ACES 190":
        return list(colour.characterisation.read_training_data_rawtoaces_v1().to_sds())
    raise UsageError(f"unknown reflectance set {name!r}; expected one of {', '.join(REFLECTANCE_SETS)}")


@functools.lru_cache(maxsize=16)
def _reflectance_library_cached(wl_key: tuple[float, ...], sets: tuple[str, ...]) -> np.ndarray:
    wl = np.asarray(wl_key)
    blocks = [_resample(_reflectance_set_sds(name), wl) for name in sets]
    spectra = np.concatenate(blocks)
    # Three RAW-to-ACES patches reach 1.05 near 700 nm; a reflectance library stays in [0, 1].
    out = np.clip(spectra, 0.0, 1.0).astype(np.float32)
    out.setflags(write=False)
    return out


def reflectance_library(wavelengths_nm=None, sets: Sequence[str] | None = None) -> np.ndarray:
    """Real published reflectance spectra, band-averaged to ``wavelengths_nm``.

    Args:
        wavelengths_nm: band centres (nm), strictly increasing, inside :data:`SUPPORTED_RANGE_NM`;
            default :func:`hsra_cli.bands.default_wavelengths`.
        sets: names from :data:`REFLECTANCE_SETS` (default: all of them).

    Returns:
        (N, C) float32 reflectances in [0, 1], one row per sample (298 for all sets; no two identical), in
        the order of ``sets`` and of each set's own listing. Read-only (it is cached).
    """
    wl = _check_wavelengths(wavelengths_nm)
    names = tuple(REFLECTANCE_SETS) if sets is None else tuple(sets)
    if not names:
        raise UsageError("sets must name at least one reflectance set")
    for name in names:
        if name not in REFLECTANCE_SETS:
            raise UsageError(f"unknown reflectance set {name!r}; expected one of {', '.join(REFLECTANCE_SETS)}")
    return _reflectance_library_cached(tuple(wl.tolist()), names)


@functools.lru_cache(maxsize=16)
def _illuminant_library_cached(wl_key: tuple[float, ...], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import colour

    wl = np.asarray(wl_key)
    spectra = _resample([colour.SDS_ILLUMINANTS[name] for name in names], wl)
    out = {}
    for name, spectrum in zip(names, spectra):
        vector = (spectrum / spectrum.max()).astype(np.float32)
        vector.setflags(write=False)
        out[name] = vector
    return out


def illuminant_library(wavelengths_nm=None, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Real illuminant spectra (CIE tables shipped with colour-science), band-averaged to ``wavelengths_nm``.

    Args:
        wavelengths_nm: band centres (nm); default :func:`hsra_cli.bands.default_wavelengths`.
        names: ``colour.SDS_ILLUMINANTS`` names (default :data:`ILLUMINANTS`).

    Returns:
        ``{name: (C,) float32}``, each scaled so its largest band is 1 (relative spectral power; a
        reflectance times it stays in [0, 1]). The arrays are read-only (cached).
    """
    wl = _check_wavelengths(wavelengths_nm)
    chosen = ILLUMINANTS if names is None else tuple(names)
    known = _illuminant_names()
    for name in chosen:
        if name not in known:
            raise UsageError(f"unknown illuminant {name!r}; expected a colour.SDS_ILLUMINANTS name such as D65")
    return dict(_illuminant_library_cached(tuple(wl.tolist()), tuple(chosen)))


@functools.lru_cache(maxsize=1)
def _illuminant_names() -> frozenset:
    # colour's mapping slugifies every key on each `in` test (~1 ms): synthetic streams ask once per scene
    import colour

    return frozenset(colour.SDS_ILLUMINANTS.keys())


@functools.lru_cache(maxsize=16)
def _srgb_basis_cached(wl_key: tuple[float, ...]) -> np.ndarray:
    from colour.recovery import MSDS_BASIS_FUNCTIONS_sRGB_MALLETT2019 as basis

    wl = np.asarray(wl_key)
    matrix = _resampling_matrix(np.asarray(basis.wavelengths, dtype=np.float64), wl)
    out = (matrix @ np.asarray(basis.values, dtype=np.float64)).T.astype(np.float32)  # (3, C): R, G, B
    out.setflags(write=False)
    return out


def _illuminant_vector(illuminant, wl: np.ndarray) -> np.ndarray:
    """(C,) illuminant from a name or an array of C values; scaled to max 1."""
    if isinstance(illuminant, str):
        return illuminant_library(wl, names=[illuminant])[illuminant]
    vector = np.asarray(illuminant, dtype=np.float64)
    if vector.shape != wl.shape:
        raise ShapeError(f"illuminant must be a name or {wl.size} values (one per band), got shape {vector.shape}")
    if not np.all(np.isfinite(vector)) or vector.min() < 0 or vector.max() <= 0:
        raise ValueRangeError("illuminant values must be finite, non-negative and not all zero")
    return (vector / vector.max()).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Spatial building blocks (all H × W float32)


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_size(height: int, width: int, minimum: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    if int(height) != height or int(width) != width:
        raise ShapeError(f"scene size must be whole pixels, got {height} x {width}")
    height, width = int(height), int(width)
    if height < minimum[0] or width < minimum[1]:
        raise ShapeError(f"scene size must be at least {minimum[0]} x {minimum[1]} pixels, got {height} x {width}")
    return height, width


@functools.lru_cache(maxsize=8)
def _frequency_radius(height: int, width: int) -> np.ndarray:
    """|f| on the grid of ``np.fft.irfft2`` for a height × width field, infinite at DC (read-only)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fy * fy + fx * fx)
    radius[0, 0] = np.inf  # no DC: the mean is set by the caller
    radius.setflags(write=False)
    return radius


def _noise(rng: np.random.Generator, height: int, width: int, beta: float) -> np.ndarray:
    """Gaussian random field with power spectrum 1/f^beta, zero mean, unit std.

    beta ≈ 2 is the power law of natural images (fine detail at every scale); larger beta gives smoother
    fields (shading, region boundaries). Built by filtering white noise in Fourier space, so it wraps around
    at the borders, which is invisible in a single scene.
    """
    amplitude = _frequency_radius(height, width) ** (-beta / 2)
    shape = amplitude.shape
    # (a + i·b)·amplitude, filled in place: the same numbers as the complex arithmetic, at half the cost
    spectrum = np.empty(shape, dtype=np.complex128)
    spectrum.real = rng.standard_normal(shape)
    spectrum.imag = rng.standard_normal(shape)
    spectrum.real *= amplitude
    spectrum.imag *= amplitude
    field = np.fft.irfft2(spectrum, s=(height, width))
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def _ramp(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """Coverage from a signed distance (negative inside): a linear edge ``softness`` pixels wide.

    softness 1 is an anti-aliased sharp edge; larger values mimic defocus or soft material boundaries.
    """
    return np.clip(0.5 - signed_distance / softness, 0.0, 1.0).astype(np.float32)


class _Canvas:
    """Reflectance image being painted (H × W × C) plus helpers that paint into bounding boxes only."""

    def __init__(self, reflectance: np.ndarray, rng: np.random.Generator, library: np.ndarray):
        self.cube = reflectance
        self.rng = rng
        self.library = library
        self.height, self.width = reflectance.shape[:2]

    def spectrum(self) -> np.ndarray:
        """A library spectrum, or a convex mix of 2–3, at a random albedo scale (darker versions are real)."""
        rng = self.rng
        count = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        rows = self.library[rng.choice(self.library.shape[0], size=count, replace=False)]
        weights = rng.dirichlet(np.ones(count))
        return (weights @ rows * rng.uniform(0.35, 1.0)).astype(np.float32)

    def box(self, cy: float, cx: float, reach: float) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Slices of the square around (cy, cx) of half-size ``reach``, and pixel-centre coordinates in it
        relative to the centre; None when it misses the image."""
        top, bottom = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, self.height)
        left, right = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, self.width)
        if top >= bottom or left >= right:
            return None
        v = (np.arange(top, bottom, dtype=np.float32) + 0.5 - cy)[:, None]
        u = (np.arange(left, right, dtype=np.float32) + 0.5 - cx)[None, :]
        return slice(top, bottom), slice(left, right), v, u

    def paint(self, rows: slice, cols: slice, alpha: np.ndarray, layer: np.ndarray) -> None:
        """Alpha-composite ``layer`` (h × w × C, or C) over the canvas inside the box."""
        region = self.cube[rows, cols]
        region += alpha[..., None] * (layer - region)


def _shape_distance(rng: np.random.Generator, v: np.ndarray, u: np.ndarray, size: float) -> np.ndarray:
    """Approximate signed distance (px, negative inside) to a random ellipse, rotated rectangle or blob."""
    angle = rng.uniform(0, np.pi)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    a, b = u * cos + v * sin, -u * sin + v * cos
    kind = rng.choice(["ellipse", "rectangle", "blob"], p=[0.35, 0.35, 0.3])
    ry, rx = size * rng.uniform(0.3, 1.0), size * rng.uniform(0.3, 1.0)
    if kind == "ellipse":
        return (np.sqrt((a / rx) ** 2 + (b / ry) ** 2) - 1.0) * min(rx, ry)
    if kind == "rectangle":
        return np.maximum(np.abs(a) - rx, np.abs(b) - ry)
    # Star-shaped blob: a radius modulated by a few angular harmonics; more harmonics give rougher outlines.
    phi = np.arctan2(b, a)
    radius = np.full_like(phi, 1.0)
    for k in range(2, int(rng.integers(3, 8))):
        radius += rng.uniform(0, 0.35 / k**0.7) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return np.sqrt(a * a + b * b) - size * 0.75 * np.clip(radius, 0.3, None)


def _grating(rng: np.random.Generator, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Stripes 2.5–16 px apart at a random angle, from sine-like to square-wave (fine detail)."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(2.5, 16.0)
    phase = u * np.float32(np.cos(angle)) + v * np.float32(np.sin(angle))
    wave = np.sin(phase * np.float32(2 * np.pi / period) + np.float32(rng.uniform(0, 2 * np.pi)))
    return np.clip(0.5 + 0.5 * wave * np.float32(rng.uniform(1.0, 6.0)), 0.0, 1.0)


def _text_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Lines of random 3 × 5 bit glyphs: text-like high-frequency strokes, 0/1, h × w."""
    pixel = int(rng.integers(1, 4))  # glyph bit size in pixels
    bits_y, bits_x = -(-height // pixel), -(-width // pixel)
    bits = rng.random((bits_y, bits_x)) < 0.45
    # A glyph is 3 bits wide with 1 blank column; a line is 5 bits tall with 2 blank rows.
    bits[:, np.arange(bits_x) % 4 == 3] = False
    bits[np.arange(bits_y) % 7 >= 5, :] = False
    # Words: blank a random subset of glyph columns so lines break into groups.
    glyph_blank = rng.random(bits_x // 4 + 1) < 0.2
    bits[:, glyph_blank[np.arange(bits_x) // 4]] = False
    return np.repeat(np.repeat(bits, pixel, axis=0), pixel, axis=1)[:height, :width].astype(np.float32)


def _voronoi_labels(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """H × W region labels: nearest of ``cells`` random seeds, with warped (wiggly) boundaries."""
    scale = max(height, width)
    warp = rng.uniform(0.0, 0.04) * scale
    yy = np.arange(height, dtype=np.float32)[:, None] + warp * _noise(rng, height, width, 3.5)
    xx = np.arange(width, dtype=np.float32)[None, :] + warp * _noise(rng, height, width, 3.5)
    seeds_y = rng.uniform(0, height, cells).astype(np.float32)
    seeds_x = rng.uniform(0, width, cells).astype(np.float32)
    best = np.full((height, width), np.inf, dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.intp)
    for k in range(cells):
        distance = (yy - seeds_y[k]) ** 2 + (xx - seeds_x[k]) ** 2
        closer = distance < best
        best = np.where(closer, distance, best)
        labels[closer] = k
    return labels


def _expose(radiance: np.ndarray, rng: np.random.Generator, low: float = 0.55, high: float = 0.95) -> np.ndarray:
    """Scale the scene so its brightest value is a random level in [low, high]; float32 in [0, 1].

    Scaling by the maximum (not a percentile) never clips, so no spectrum is flattened at the top.
    """
    peak = float(radiance.max())
    if peak <= 0:
        return np.zeros_like(radiance, dtype=np.float32)
    radiance *= np.float32(rng.uniform(low, high) / peak)
    return np.clip(radiance, 0.0, 1.0, out=radiance).astype(np.float32, copy=False)


def _draw_illuminant(rng: np.random.Generator) -> str:
    """A name from :data:`ILLUMINANTS`, drawn with the weights above."""
    weights = np.array([_ILLUMINANT_DRAW_WEIGHTS[name] for name in ILLUMINANTS])
    return ILLUMINANTS[rng.choice(len(ILLUMINANTS), p=weights / weights.sum())]


def _random_illumination(rng: np.random.Generator, wl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direct and ambient illuminant spectra (C,): a library illuminant, sometimes blended with a second
    one (continuous colour temperatures, mixed lighting)."""
    library = illuminant_library(wl)

    def one() -> np.ndarray:
        first = library[_draw_illuminant(rng)]
        if rng.random() < 0.5:
            second = library[_draw_illuminant(rng)]
            t = rng.uniform()
            first = t * first + (1 - t) * second
        return first / first.max()

    return one(), one()


# ----------------------------------------------------------------------------------------------------------
# Scenes


def colorchecker_patch_boxes(height: int = 256, width: int = 256) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(top, left, bottom, right)`` (bottom/right exclusive) of the 24 patches of
    :func:`colorchecker_scene`, in chart order: row by row from the top-left "dark skin" (1) to the
    bottom-right "black" (24); patch 19 is white, 20–23 the greys.
    """
    height, width = _check_size(height, width, (8, 12))
    # Square cells filling 90 % of the limiting dimension, patches 80 % of a cell: the real chart's look.
    cell = min(0.9 * width / 6, 0.9 * height / 4)
    patch = max(int(round(0.8 * cell)), 1)
    top0 = (height - 4 * cell) / 2
    left0 = (width - 6 * cell) / 2
    boxes = []
    for row in range(4):
        for col in range(6):
            top = int(round(top0 + row * cell + (cell - patch) / 2))
            left = int(round(left0 + col * cell + (cell - patch) / 2))
            boxes.append((top, left, top + patch, left + patch))
    return boxes


def colorchecker_scene(
    height: int = 256,
    width: int = 256,
    wavelengths_nm=None,
    illuminant="D65",
    seed: int = 0,
) -> np.ndarray:
    """A ColorChecker Classic chart: 24 patches (BabelColor average spectra) in the standard 4 × 6 layout on a
    dark surround, lit by ``illuminant`` with mild shading (a soft vignette and a gentle gradient whose
    direction comes from ``seed``).

    Args:
        height, width: scene size (at least 8 × 12); patch boxes: :func:`colorchecker_patch_boxes`.
        wavelengths_nm: band centres (nm); default :func:`hsra_cli.bands.default_wavelengths`.
        illuminant: a ``colour.SDS_ILLUMINANTS`` name or C values (one per band).
        seed: selects the shading.

    Returns:
        H × W × C float32 in [0, 1], scaled so the brightest value is 0.9.
    """
    import colour

    height, width = _check_size(height, width, (8, 12))
    wl = _check_wavelengths(wavelengths_nm)
    light = _illuminant_vector(illuminant, wl)
    patches = _resample(list(colour.SDS_COLOURCHECKERS[_CHART].values()), wl).astype(np.float32)
    rng = np.random.default_rng(seed)

    # The real chart's frame is black card; half the black patch's reflectance reads as such.
    cube = np.broadcast_to(0.5 * patches[23], (height, width, wl.size)).copy()
    for spectrum, (top, left, bottom, right) in zip(patches, colorchecker_patch_boxes(height, width)):
        cube[top:bottom, left:right] = spectrum

    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height - 0.5
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 + rng.uniform(0.03, 0.08) * (np.cos(angle) * xx + np.sin(angle) * yy) * 2
    vignette = 1.0 - rng.uniform(0.05, 0.12) * (xx * xx + yy * yy) * 2
    cube *= (gradient * vignette)[..., None] * light
    cube *= np.float32(0.9 / cube.max())
    return np.clip(cube, 0.0, 1.0).astype(np.float32)


def procedural_scene(height: int = 256, width: int = 256, wavelengths_nm=None, rng=None) -> np.ndarray:
    """A random piecewise-smooth scene painted with real reflectance spectra.

    Layers, back to front: warped Voronoi regions (each a library spectrum, or a convex mix of 2–3, blended
    smoothly toward a second spectrum by a smooth field); 3–14 ellipses, rotated rectangles and star-shaped
    blobs with edges from anti-aliased-sharp to ~10 px soft, some shaded like curved surfaces, some striped;
    sometimes a label with text-like glyphs; sometimes a noise-threshold blob. Then a fine multiplicative
    albedo texture (1/f^β noise), and illumination: a smooth intensity field times a direct illuminant, an
    optional soft cast shadow, plus ambient light with its own spectrum. Spectra stay spectrally smooth and
    bands strongly correlated because every spectrum is a real one (or a mix of real ones) times a real
    illuminant.

    Args:
        height, width: scene size in pixels (any size ≥ 1).
        wavelengths_nm: band centres (nm); default :func:`hsra_cli.bands.default_wavelengths`.
        rng: ``numpy.random.Generator``, seed, or None (fresh entropy).

    Returns:
        H × W × C float32 in [0, 1], brightest value between 0.55 and 0.95.
    """
    height, width = _check_size(height, width)
    wl = _check_wavelengths(wavelengths_nm)
    rng = _as_rng(rng)
    library = reflectance_library(wl)
    bands = wl.size
    size = max(height, width)

    # Background regions.
    cells = int(rng.integers(3, 25))
    labels = _voronoi_labels(rng, height, width, cells)
    canvas = _Canvas(np.empty((height, width, bands), dtype=np.float32), rng, library)
    first = np.stack([canvas.spectrum() for _ in range(cells)])
    second = np.stack([canvas.spectrum() for _ in range(cells)])
    blend = np.clip(0.5 + 0.5 * _noise(rng, height, width, rng.uniform(2.0, 3.5)), 0.0, 1.0)
    # Many real surfaces are near-uniform: a third of the scenes get no spectral mottling at all.
    blend *= np.float32(rng.uniform(0.0, 0.6) if rng.random() < 0.7 else 0.0)
    np.take(first, labels, axis=0, out=canvas.cube)
    canvas.cube += blend[..., None] * (second - first)[labels]

    # Objects.
    brightness = _noise(rng, height, width, 2.5)  # shared texture field, sliced per object
    for _ in range(int(rng.integers(3, 15))):
        radius = size * rng.uniform(0.04, 0.3)
        softness = float(np.exp(rng.uniform(0.0, np.log(10.0))))
        box = canvas.box(rng.uniform(0, height), rng.uniform(0, width), radius + softness)
        if box is None:
            continue
        rows, cols, v, u = box
        distance = _shape_distance(rng, v, u, radius)
        alpha = _ramp(distance, softness)
        layer = np.broadcast_to(canvas.spectrum(), alpha.shape + (bands,)).copy()
        if rng.random() < 0.5:  # curved surface: darker toward the rim
            shade = 1.0 - rng.uniform(0.1, 0.6) * np.clip((u * u + v * v) / np.float32(radius * radius), 0, 1)
            layer *= shade[..., None]
        layer *= (1.0 + rng.uniform(0.0, 0.2) * brightness[rows, cols])[..., None]
        canvas.paint(rows, cols, alpha, layer)
        if rng.random() < 0.25:  # stripes on the object
            canvas.paint(rows, cols, alpha * _grating(rng, v, u), canvas.spectrum())

    if rng.random() < 0.5:  # a label carrying text-like glyphs
        label_h = int(size * rng.uniform(0.08, 0.3))
        label_w = int(size * rng.uniform(0.15, 0.5))
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        rows, cols = slice(top, min(top + label_h, height)), slice(left, min(left + label_w, width))
        h, w = rows.stop - rows.start, cols.stop - cols.start
        if h > 0 and w > 0:
            paper = library[rng.integers(library.shape[0])] * np.float32(rng.uniform(0.7, 1.0))
            canvas.paint(rows, cols, np.ones((h, w), np.float32), paper)
            ink = library[rng.integers(library.shape[0])] * np.float32(rng.uniform(0.05, 0.4))
            canvas.paint(rows, cols, _text_like(rng, h, w), ink)

    if rng.random() < 0.4:  # organic blobs (foliage, stains) from a thresholded smooth field
        field = _noise(rng, height, width, rng.uniform(2.5, 4.0))
        alpha = np.clip((field - rng.uniform(0.3, 1.2)) / rng.uniform(0.02, 0.5), 0.0, 1.0)
        canvas.paint(slice(None), slice(None), alpha, canvas.spectrum())

    reflectance = canvas.cube
    texture = 1.0 + rng.uniform(0.0, 0.15) * _noise(rng, height, width, rng.uniform(1.0, 2.2))
    reflectance *= np.clip(texture, 0.0, None)[..., None]

    # Illumination: direct light with smooth intensity variation and maybe a soft cast shadow, plus ambient.
    direct, ambient = _random_illumination(rng, wl)
    intensity = np.exp(rng.uniform(0.05, 0.4) * _noise(rng, height, width, rng.uniform(3.0, 4.0)))
    if rng.random() < 0.4:
        edge = _noise(rng, height, width, 4.0)
        shadow = np.clip((edge - rng.uniform(-0.5, 0.5)) / rng.uniform(0.05, 0.4), 0.0, 1.0)
        intensity *= 1.0 - rng.uniform(0.4, 0.8) * shadow
    ambient_level = np.float32(rng.uniform(0.0, 0.3))
    light = intensity[..., None] * direct + ambient_level * ambient
    reflectance *= light
    return _expose(reflectance, rng)


def _to_unit_rgb(rgb) -> np.ndarray:
    """H × W × 3 sRGB-encoded image (uint8, or float in [0, 1]) as float32 in [0, 1]."""
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ShapeError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    image = image.astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueRangeError("RGB image holds NaN or Inf")
    if image.min() < 0 or image.max() > 1:
        raise ValueRangeError(
            f"float RGB must be in [0, 1], got {image.min():.3g} to {image.max():.3g} (uint8 is also accepted)"
        )
    return image


def lifted_image_scene(rgb, wavelengths_nm=None, rng=None, illuminant=None) -> np.ndarray:
    """Lift an sRGB image to spectra: linear sRGB weights Mallett & Yuksel's (2019) three basis reflectances.

    The basis spectra are non-negative and sum to 1 at every wavelength, so any linear sRGB in [0, 1]³ maps
    to a reflectance in [0, 1] whose colour under D65 is that sRGB. Each pixel therefore has only 3 degrees
    of spectral freedom (no metamers, no narrow features): good texture and colour statistics, poor
    spectral variety. The reflectance is then lit by ``illuminant`` (default: random, as in procedural scenes)
    and exposed.

    Args:
        rgb: H × W × 3 sRGB-encoded image, uint8 (or uint16) or float in [0, 1]; an alpha channel is dropped.
        wavelengths_nm: band centres (nm); default :func:`hsra_cli.bands.default_wavelengths`.
        rng: ``numpy.random.Generator``, seed, or None; picks the illuminant and the exposure.
        illuminant: a ``colour.SDS_ILLUMINANTS`` name, C values, or None for a random one.

    Returns:
        H × W × C float32 in [0, 1], brightest value between 0.55 and 0.95.
    """
    image = _to_unit_rgb(rgb)
    wl = _check_wavelengths(wavelengths_nm)
    rng = _as_rng(rng)
    # sRGB decoding (IEC 61966-2-1): linear segment near black, 2.4 power above.
    linear = np.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4).astype(np.float32)
    reflectance = linear @ _srgb_basis_cached(tuple(wl.tolist()))
    if illuminant is None:
        direct, _ = _random_illumination(rng, wl)
    else:
        direct = _illuminant_vector(illuminant, wl)
    reflectance *= direct.astype(np.float32)
    return _expose(reflectance, rng)


@functools.lru_cache(maxsize=1)
def natural_images() -> tuple[np.ndarray, ...]:
    """The colour photographs bundled with scikit-image (no network) that carry no copyright restriction:
    astronaut (NASA, public domain), chelsea and coffee (CC0), rocket (SpaceX, public domain). Each
    H × W × 3 uint8 sRGB, read-only. (stereo_motorcycle is bundled too but comes from the Middlebury data
    set without a stated licence, so it is left out of data that may end up in shipped weights.)

    Raises:
        HsraError: scikit-image is not installed.
    """
    try:
        import skimage.data as data
    except ImportError as error:
        raise HsraError(
            "lifted scenes use scikit-image's bundled photographs: pip install scikit-image, "
            "or pass your own images=[...]"
        ) from error
    loaders: list[Callable[[], np.ndarray]] = [data.astronaut, data.chelsea, data.coffee, data.rocket]
    images = []
    for load in loaders:
        image = np.ascontiguousarray(load()[..., :3])
        image.setflags(write=False)
        images.append(image)
    return tuple(images)


def _resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """h × w × 3 float image resampled to height × width (pixel-centre aligned, bilinear)."""
    in_h, in_w = image.shape[:2]
    y = np.clip((np.arange(height) + 0.5) * in_h / height - 0.5, 0, in_h - 1)
    x = np.clip((np.arange(width) + 0.5) * in_w / width - 0.5, 0, in_w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy, wx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _random_view(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``image`` (H × W × 3, uint8 or float in [0, 1]) at a random scale (0.5–2 output pixels per input pixel), maybe mirrored,
    as height × width × 3 float32 in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    in_h, in_w = image.shape[:2]
    # Never ask for more input than exists: the smallest allowed scale makes the crop fit.
    min_scale = max(height / in_h, width / in_w)
    scale = float(np.exp(rng.uniform(np.log(max(0.5, min_scale)), np.log(max(2.0, min_scale)))))
    crop_h = min(max(int(round(height / scale)), 1), in_h)
    crop_w = min(max(int(round(width / scale)), 1), in_w)
    top = int(rng.integers(0, in_h - crop_h + 1))
    left = int(rng.integers(0, in_w - crop_w + 1))
    crop = _to_unit_rgb(image[top : top + crop_h, left : left + crop_w])
    if scale < 1.0:  # anti-alias before shrinking (the usual sigma = (factor - 1) / 2)
        sigma = (1.0 / scale - 1.0) / 2
        crop = gaussian_filter(crop, sigma=(sigma, sigma, 0))
    view = _resize_bilinear(crop, height, width)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.clip(view, 0.0, 1.0)


class SyntheticScenes:
    """An infinite, indexable source of synthetic scenes: ``scenes[i]`` (or ``scenes.scene(i)``) is an
    H × W × C float32 cube in [0, 1], the same for the same ``(seed, i)`` in any process, in any order.

    Scene ``i`` is of kind ``kinds[i % len(kinds)]`` (so kinds are balanced) and draws everything from a
    generator seeded with ``(seed, i)``. Kinds: ``"procedural"`` (:func:`procedural_scene`), ``"lifted"``
    (:func:`lifted_image_scene` on a random crop of one of ``images``, default :func:`natural_images`),
    ``"colorchecker"`` (:func:`colorchecker_scene` under a random illuminant, random shading).

    Wrap it in a torch ``Dataset`` with a chosen epoch length; there is no ``len()`` because it never ends.
    """

    def __init__(
        self,
        height: int = 256,
        width: int = 256,
        wavelengths_nm=None,
        kinds: Sequence[str] = ("procedural", "lifted"),
        seed: int = 0,
        images: Sequence[np.ndarray] | None = None,
    ):
        self.height, self.width = _check_size(height, width)
        self.wavelengths_nm = _check_wavelengths(wavelengths_nm)
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        if not kinds:
            raise UsageError(f"kinds must name at least one of {', '.join(SCENE_KINDS)}")
        for kind in kinds:
            if kind not in SCENE_KINDS:
                raise UsageError(f"unknown scene kind {kind!r}; expected one of {', '.join(SCENE_KINDS)}")
        if "colorchecker" in kinds:
            _check_size(height, width, (8, 12))
        if int(seed) != seed or seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {seed}")
        self.kinds = kinds
        self.seed = int(seed)
        self._images = None if images is None else tuple(_to_unit_rgb(image) for image in images)
        if self._images is not None and not self._images:
            raise UsageError("images must hold at least one RGB image")

    @property
    def bands(self) -> int:
        return int(self.wavelengths_nm.size)

    def kind(self, index: int) -> str:
        """The scene kind of scene ``index``."""
        return self.kinds[index % len(self.kinds)]

    def scene(self, index: int) -> np.ndarray:
        """Scene ``index`` (≥ 0): H × W × C float32 in [0, 1]."""
        if int(index) != index or index < 0:
            raise UsageError(f"scene index must be a non-negative integer, got {index}")
        index = int(index)
        rng = np.random.default_rng([self.seed, index])
        kind = self.kind(index)
        if kind == "procedural":
            return procedural_scene(self.height, self.width, self.wavelengths_nm, rng)
        if kind == "lifted":
            sources = natural_images() if self._images is None else self._images
            view = _random_view(sources[rng.integers(len(sources))], self.height, self.width, rng)
            return lifted_image_scene(view, self.wavelengths_nm, rng)
        name = _draw_illuminant(rng)
        return colorchecker_scene(self.height, self.width, self.wavelengths_nm, name, int(rng.integers(2**31)))

    def __getitem__(self, index: int) -> np.ndarray:
        return self.scene(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            yield self.scene(index)
            index += 1

    def __repr__(self) -> str:
        return (
            f"SyntheticScenes(height={self.height}, width={self.width}, bands={self.bands}, "
            f"kinds={self.kinds}, seed={self.seed})"
        )


_STREAM_SOURCES: dict = {}


def stream_scene(size: int, index: int, wavelengths_nm: tuple, seed: int) -> np.ndarray:
    """Scene ``index`` of the ``size``² sequence of ``hsra train --synthetic-stream`` (a :class:`SyntheticScenes`
    of that size and ``seed``), clipped to [0, 1], as float16: what the stream's worker processes send back (half
    the bytes of float32). It lives here, away from torch, so that a worker process starts without importing it."""
    key = (size, tuple(wavelengths_nm), seed)
    source = _STREAM_SOURCES.get(key)
    if source is None:
        source = _STREAM_SOURCES[key] = SyntheticScenes(size, size, wavelengths_nm=list(wavelengths_nm), seed=seed)
    return np.clip(source.scene(index), 0.0, 1.0).astype(np.float16)


def ignore_interrupts() -> None:
    """Initializer of the stream's worker processes: SIGINT and SIGTERM go to the whole process group (Ctrl-C,
    ``timeout``, job schedulers), and they are the trainer's to handle: it stops cleanly, checkpoints and shuts the
    workers down. A worker killed by them would break the pool under the trainer's last batches."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def write_scenes(
    out_dir,
    count: int,
    height: int = 256,
    width: int = 256,
    seed: int = 0,
    wavelengths_nm=None,
    kinds: Sequence[str] = ("procedural", "lifted"),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``count`` scenes of :class:`SyntheticScenes` as ``scene_0000.npy`` ... (H × W × C float32 in
    [0, 1]) plus ``scenes.json`` (wavelengths, seed, kinds, size: enough to regenerate them) in ``out_dir``.

    Existing files are refused up front (nothing is written) unless ``overwrite``. Each file is written
    atomically (:func:`hsra_cli.io.write_cube`). ``progress(done, count)`` is called after each scene.

    Returns:
        The scene paths, in index order.
    """
    from .io import atomic_output, check_writable, write_cube

    if int(count) != count or count < 1:
        raise UsageError(f"count must be a positive integer, got {count}")
    count = int(count)
    scenes = SyntheticScenes(height, width, wavelengths_nm, kinds, seed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {out} exists and is not a folder")
    digits = max(4, len(str(count - 1)))
    paths = [out / f"scene_{i:0{digits}d}.npy" for i in range(count)]
    manifest = out / "scenes.json"
    if not overwrite:
        existing = [p for p in [*paths, manifest] if p.exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise OutputExistsError(f"{existing[0]}{more} already exist; pass overwrite=True (--overwrite) to replace")
    check_writable(manifest, overwrite)  # an unwritable folder fails here, before any scene is computed

    wavelengths = scenes.wavelengths_nm
    record = {
        "generator": "hsra_cli.synth.SyntheticScenes",
        "seed": scenes.seed,
        "kinds": list(scenes.kinds),
        "count": count,
        "height": scenes.height,
        "width": scenes.width,
        "layout": "HWC float32 in [0, 1]",
        "wavelengths_nm": [float(w) for w in wavelengths],
        "files": [p.name for p in paths],
        "scene_kinds": [scenes.kind(i) for i in range(count)],
    }
    for i, path in enumerate(paths):
        metadata = {"generator": record["generator"], "seed": scenes.seed, "index": i, "kind": scenes.kind(i)}
        # .npy holds the bare array; the wavelengths and provenance live in scenes.json.
        write_cube(path, scenes.scene(i), wavelengths_nm=wavelengths, metadata=metadata, overwrite=overwrite)
        if progress is not None:
            progress(i + 1, count)
    with atomic_output(manifest, overwrite) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    return paths
