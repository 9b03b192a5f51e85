"""Previews of cubes and measurements: false colour, band grids, spectra, error maps, comparisons.

Used by ``hsra render``, ``hsra simulate`` and ``hsra reconstruct``. Everything here works on numpy arrays:

* cubes are ``H × W × C`` floats, nominally reflectance in [0, 1]. Reconstructions may stray slightly below 0
  or above 1; images clip for display, plots of numbers (spectra, errors) show the values as they are;
* wavelengths are band centres in nm, shape ``(C,)``; ``None`` means the field's 28-band list, which only a cube of
  28 bands can take for granted (:func:`band_centres`: any other band count needs its wavelengths);
* images are returned as ``uint8`` arrays, plots as :class:`matplotlib.figure.Figure` objects drawn with the Agg
  canvas directly (never pyplot), so rendering neither needs a display nor touches matplotlib's global state.

:func:`save_png` writes either kind atomically through :func:`hsra_cli.io.atomic_output`.

Colour rendering (:func:`false_color`) integrates each spectrum against the CIE 1931 2° colour-matching functions
at the band wavelengths and encodes the result as sRGB. By default the cube is taken as lit by **CIE D65**
(:data:`DEFAULT_ILLUMINANT`, daylight: radiance under it, or reflectance seen in it) and D65's white point, as the
bands sample it, is adapted to sRGB's white; ``illuminant="E"`` (``--illuminant E``) renders reflectance under an
equal-energy light instead. The field's 28 bands span only 453.5–648 nm, so the blue and red ends of the visible
range are missing; the default white balance compensates for that (see :func:`false_color`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .bands import default_wavelengths
from .errors import HsraError, ShapeError, UsageError, ValueRangeError

if TYPE_CHECKING:  # matplotlib is imported lazily: `hsra --help` must stay fast
    from matplotlib.figure import Figure

Exposure = Union[str, float]

#: The visible range covered by the CIE 1931 colour-matching functions; bands outside it get zero weight.
CMF_RANGE_NM = (360.0, 830.0)
#: Auto exposure puts this percentile of the luminance Y ...
AUTO_EXPOSURE_PERCENTILE = 99.5
#: ... at this level (a little below 1 so highlights keep some detail instead of clipping flat).
AUTO_EXPOSURE_TARGET = 0.95
#: White balance never amplifies a channel by more than 1 / this fraction of the strongest channel; beyond that
#: the band set carries too little information for that channel (e.g. no band below 500 nm: no blue).
WHITE_BALANCE_FLOOR = 0.05
#: Resolution of written figures.
FIGURE_DPI = 120
#: The light a cube is rendered under by default: a cube is taken as radiance lit by this illuminant (or as
#: reflectance seen in it), and its white point is adapted to sRGB's D65 white. D65 is daylight and sRGB's own
#: white, and the bundled sample is lit by it; ``"E"`` (equal energy) renders reflectance cubes as they are.
DEFAULT_ILLUMINANT = "D65"
#: White-balance modes of :func:`false_color`: ``illuminant`` adapts from the illuminant's white point (as
#: sampled by the bands), ``grey-world`` from the image's mean colour, ``patch`` from the mean colour of a grey
#: patch, ``none`` shows the XYZ colours as they are (a D65 white point assumed).
WHITE_BALANCE_MODES = ("illuminant", "grey-world", "patch", "none")
#: Chromatic adaptation transform (colour-science's von Kries with this cone space).
ADAPTATION_TRANSFORM = "CAT02"
#: Grey patch half-size in pixels when none is given: a 9 × 9 square.
GREY_PATCH_RADIUS = 4


# --------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------


def _as_cube(cube, what: str = "cube") -> np.ndarray:
    """Validate an ``H × W × C`` cube and return it as float32/float64 (values unchanged; other types become
    float64)."""
    array = np.asarray(cube)
    if array.ndim != 3:
        raise ShapeError(f"{what} must be a 3-D array H×W×C (bands last), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1 or array.shape[2] < 1:
        raise ShapeError(f"{what} has an empty dimension: shape {array.shape}")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueRangeError(f"{what} contains NaN or Inf values; cannot render it")
    return array


def _as_wavelengths(wavelengths_nm, bands: int, shape=None) -> np.ndarray:
    """Band centres in nm for a cube of ``bands`` bands (``shape``: the cube's, for the message).

    ``None``: the field's list, which only a cube of 28 bands can take for granted (:func:`band_centres`'s rule);
    any other band count is refused (:class:`ShapeError`) rather than given invented wavelengths.
    """
    if wavelengths_nm is None:
        try:
            return band_centres(bands)
        except ShapeError:
            from .bands import CASSI28_WAVELENGTHS_NM as field

            transposed = ""
            if shape is not None and len(shape) == 3 and shape[0] == len(field):
                transposed = (f"; its shape {tuple(shape)} looks like C×H×W: pass the cube bands last, H×W×C "
                              "(np.moveaxis(cube, 0, -1), or tensor.permute(1, 2, 0))")
            raise ShapeError(
                f"the cube has {bands} bands and no wavelengths were given; only {len(field)} bands have a default "
                f"list ({field[0]:g}–{field[-1]:g} nm): pass wavelengths_nm=, one centre (nm) per band, shortest "
                f"first{transposed}"
            ) from None
    wavelengths = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    if wavelengths.size != bands:
        raise ShapeError(f"got {wavelengths.size} wavelengths for a cube of {bands} bands; expected one per band")
    if not np.isfinite(wavelengths).all():
        raise ValueRangeError("wavelengths contain NaN or Inf values")
    if bands > 1 and not np.all(np.diff(wavelengths) > 0):
        raise ValueRangeError("wavelengths must be strictly increasing (band centres in nm, shortest first)")
    return wavelengths


def band_centres(bands: int, given=None, stored=None, where: str = "the cube") -> np.ndarray:
    """The band centres (nm) to render a cube of ``bands`` bands with: ``given`` (``--wavelengths``), else
    ``stored`` in its file, else the field's list, which only a cube of the field's 28 bands can take for granted.

    Any other band count without wavelengths is refused (:class:`ShapeError`): spreading a list over another
    band count would invent wavelengths and, from them, the colours.
    """
    from .bands import CASSI28_WAVELENGTHS_NM

    if given is not None or stored is not None:
        wavelengths = given if given is not None else stored
        if len(wavelengths) != bands:
            what = "--wavelengths gives" if given is not None else f"{where} stores"
            raise (UsageError if given is not None else ShapeError)(
                f"{what} {len(wavelengths)} wavelengths but {where} has {bands} bands; expected one per band"
            )
        return _as_wavelengths(wavelengths, bands)
    if bands != len(CASSI28_WAVELENGTHS_NM):
        raise ShapeError(
            f"{where} has {bands} bands and stores no wavelengths; only {len(CASSI28_WAVELENGTHS_NM)} bands have a "
            f"default list ({CASSI28_WAVELENGTHS_NM[0]:g}–{CASSI28_WAVELENGTHS_NM[-1]:g} nm): pass --wavelengths, "
            f"one centre (nm) per band, shortest first, as a comma list (--wavelengths 400,410,420,…) or a text file "
            "of numbers"
        )
    return default_wavelengths(bands)


def _same_shape(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{what_a} has shape {a.shape} but {what_b} has shape {b.shape}; expected the same H×W×C")


# --------------------------------------------------------------------------------------------------------------
# False colour
# --------------------------------------------------------------------------------------------------------------


def _xyz_weights(wavelengths: np.ndarray) -> np.ndarray:
    """``C × 3`` weights turning a reflectance spectrum into CIE XYZ with a perfect white at Y = 1.

    The bands are unevenly spaced (4 nm apart in the blue, 11.5 nm in the red), so each band's colour-matching
    value is also weighted by the width of the spectrum it stands for (half the distance to each neighbour):
    a plain sum would over-weight the densely sampled blue end.
    """
    import colour

    cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
    inside = (wavelengths >= CMF_RANGE_NM[0]) & (wavelengths <= CMF_RANGE_NM[1])
    weights = np.zeros((wavelengths.size, 3))
    if inside.any():
        # Indexing the colour signal interpolates the 1 nm table at arbitrary wavelengths.
        weights[inside] = np.asarray(cmfs[wavelengths[inside]], dtype=np.float64).reshape(-1, 3)
    widths = np.gradient(wavelengths) if wavelengths.size > 1 else np.ones(1)
    weights *= widths[:, None]
    white_luminance = weights[:, 1].sum()
    if white_luminance <= 0:
        raise ValueRangeError(
            f"no band lies where the eye sees luminance ({CMF_RANGE_NM[0]:.0f}–{CMF_RANGE_NM[1]:.0f} nm); "
            f"got wavelengths {wavelengths.min():.1f}–{wavelengths.max():.1f} nm: cannot render colour"
        )
    return weights / white_luminance


def fast_percentile(values: np.ndarray, percentile: float, max_samples: int = 1 << 20) -> float:
    """``np.percentile`` of ``values`` for display scaling; above ``max_samples`` values, of an evenly strided
    subset of about that many (a preview's colour scale needs no more, and 12 M values cost 0.3 s each)."""
    flat = np.asarray(values).reshape(-1)
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    return float(np.percentile(flat, percentile))


def _auto_gain(luminance: np.ndarray) -> float:
    """Gain that puts the 99.5th percentile of ``luminance`` at 0.95 (1 for an all-dark image)."""
    level = float(fast_percentile(luminance, AUTO_EXPOSURE_PERCENTILE))
    if level <= 0:
        # Mostly black image with a few lit pixels: expose for the brightest one instead.
        level = float(luminance.max())
    return AUTO_EXPOSURE_TARGET / level if level > 0 else 1.0


def auto_exposure(cube, wavelengths_nm=None) -> float:
    """The gain ``false_color(..., exposure="auto")`` would apply to ``cube`` (H×W×C, reflectance).

    Use it to render several cubes of one scene with the same exposure, so that their brightness compares.
    """
    array = np.clip(_as_cube(cube), 0.0, None)
    weights = _xyz_weights(_as_wavelengths(wavelengths_nm, array.shape[2], array.shape))
    return _auto_gain(array.reshape(-1, array.shape[2]) @ weights[:, 1])


def _parse_exposure(exposure: Exposure) -> float | None:
    """``"auto"`` -> None, a positive number -> that gain."""
    if isinstance(exposure, str):
        if exposure.strip().lower() == "auto":
            return None
        try:
            exposure = float(exposure)
        except ValueError:
            raise UsageError(f"exposure must be 'auto' or a positive number, got {exposure!r}") from None
    gain = float(exposure)
    if not np.isfinite(gain) or gain <= 0:
        raise UsageError(f"exposure must be 'auto' or a positive number, got {exposure!r}")
    return gain



def _xyz_to_linear_srgb_matrix() -> np.ndarray:
    import colour

    return np.asarray(colour.RGB_COLOURSPACES["sRGB"].matrix_XYZ_to_RGB, dtype=np.float64)


def _srgb_white_xyz() -> np.ndarray:
    """XYZ of sRGB's D65 white with Y = 1 (what a neutral renders as)."""
    import colour

    xy = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]
    return np.asarray(colour.xy_to_XYZ(xy), dtype=np.float64)


def illuminant_names() -> list[str]:
    """Names accepted by ``illuminant=`` / ``--illuminant``: colour-science's CIE tables (A, D50, D65, E, FL2, …)."""
    import colour

    return sorted(colour.SDS_ILLUMINANTS)


def illuminant_white(illuminant: str, wavelengths_nm) -> np.ndarray:
    """XYZ (Y = 1) of a perfect white reflector lit by ``illuminant``, as the cube's bands sample it.

    The same band weights as the rendering are used, so the white point includes the effect of the band range
    (the field's 453.5–648 nm bands miss the deep blue): a white under that light is adapted to an exact white.
    The illuminant is band-averaged the way :func:`hsra_cli.synth.illuminant_library` does it.
    """
    import colour

    from .synth import _illuminant_library_cached

    name = str(illuminant).strip()
    known = {n.lower(): n for n in colour.SDS_ILLUMINANTS}
    if name.lower() not in known:
        raise UsageError(
            f"unknown illuminant {illuminant!r}; expected a CIE illuminant name such as D65, D50, A, E or FL2 "
            "(see hsra_cli.render.illuminant_names())"
        )
    name = known[name.lower()]
    wavelengths = np.asarray(wavelengths_nm, dtype=np.float64)
    weights = _xyz_weights(wavelengths)
    if name == "E":
        light = np.ones(wavelengths.size)
    else:
        light = np.asarray(_illuminant_library_cached(tuple(wavelengths.tolist()), (name,))[name], dtype=np.float64)
    white = light @ weights
    if white[1] <= 0:
        raise ValueRangeError(f"illuminant {name} gives no light in the bands {wavelengths.min():g}–{wavelengths.max():g} nm")
    return white / white[1]


def _adaptation(source_white: np.ndarray) -> np.ndarray:
    """3 × 3 von Kries matrix (colour-science, CAT02) taking ``source_white`` to sRGB's D65 white.

    Cone responses of the source white below :data:`WHITE_BALANCE_FLOOR` of its strongest are raised to it
    first: a band set that barely covers a channel (e.g. no band below 500 nm) must not amplify it unboundedly.
    """
    import colour

    cat = np.asarray(colour.adaptation.CHROMATIC_ADAPTATION_TRANSFORMS[ADAPTATION_TRANSFORM], dtype=np.float64)
    cones = cat @ np.asarray(source_white, dtype=np.float64)
    cones = np.maximum(cones, WHITE_BALANCE_FLOOR * cones.max())
    source = np.linalg.solve(cat, cones)
    return np.asarray(colour.adaptation.matrix_chromatic_adaptation_VonKries(
        source, _srgb_white_xyz(), transform=ADAPTATION_TRANSFORM), dtype=np.float64)


def _white_balance_mode(white_balance) -> str:
    if white_balance is True:
        return "illuminant"
    if white_balance is False or white_balance is None:
        return "none"
    mode = str(white_balance).strip().lower().replace("_", "-")
    mode = {"grey": "grey-world", "gray-world": "grey-world", "grayworld": "grey-world", "greyworld": "grey-world",
            "gray-patch": "patch", "grey-patch": "patch"}.get(mode, mode)
    if mode not in WHITE_BALANCE_MODES:
        raise UsageError(f"unknown white balance {white_balance!r}; expected one of: {', '.join(WHITE_BALANCE_MODES)}")
    return mode


def white_balance_choice(white_balance=None, grey_patch=None) -> str:
    """The white balance mode of a render: ``"patch"`` when a grey patch is given, else ``white_balance`` (None:
    ``"illuminant"``). The grey patch decides the balance alone, so a grey patch together with another explicit
    mode is refused (:class:`UsageError`) instead of that mode being ignored."""
    if grey_patch is None:
        return _white_balance_mode("illuminant" if white_balance is None else white_balance)
    if white_balance is not None and _white_balance_mode(white_balance) != "patch":
        raise UsageError(
            f"--grey-patch and --white-balance {white_balance} conflict: the grey patch sets the white balance "
            "itself; give only one of them (Python: grey_patch= or white_balance=)"
        )
    return "patch"


def check_grey_patch(grey_patch, height: int, width: int) -> tuple[int, int, int]:
    """``(x, y)`` or ``(x, y, radius)`` (x = column, y = row) of a grey patch inside an ``height × width`` image."""
    try:
        values = tuple(int(v) for v in grey_patch)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (2, 3):
        raise UsageError(f"a grey patch is x,y or x,y,radius (pixels), got {grey_patch!r}")
    x, y = check_points([values[:2]], height, width, what="the grey patch centre")[0]
    radius = values[2] if len(values) == 3 else GREY_PATCH_RADIUS
    if radius < 0:
        raise UsageError(f"the grey patch radius must be ≥ 0, got {radius}")
    return x, y, radius


def colour_matrix(wavelengths_nm, *, illuminant: str = DEFAULT_ILLUMINANT, white_balance=None, cube=None,
                  grey_patch=None) -> np.ndarray:
    """``C × 3`` matrix taking a spectrum (one value per band) to linear sRGB, white balance included.

    Steps: CIE 1931 XYZ with band-width weights (a perfect white under illuminant E has Y = 1); chromatic
    adaptation (colour-science's von Kries, CAT02) from the chosen white point to sRGB's D65 white; XYZ →
    linear sRGB. The white point is that of ``illuminant`` (mode ``illuminant``), the mean colour of ``cube``
    (``grey-world``) or of the ``grey_patch`` square of ``cube`` (``patch``); mode ``none`` skips adaptation.
    The mode is :func:`white_balance_choice`'s: ``patch`` when a grey patch is given, else ``white_balance`` (None:
    ``illuminant``); a grey patch with another explicit mode is a :class:`UsageError`. Adaptation keeps Y, so
    exposure is unchanged by it.
    """
    wavelengths = _as_wavelengths(np.asarray(wavelengths_nm, dtype=np.float64), np.size(wavelengths_nm))
    bands = wavelengths.size
    weights = _xyz_weights(wavelengths)
    mode = white_balance_choice(white_balance, grey_patch)
    if mode == "illuminant":
        source = illuminant_white(illuminant, wavelengths)
    elif mode in ("grey-world", "patch"):
        if cube is None:
            raise UsageError(f"white balance {mode!r} needs the cube whose colours it balances")
        array = np.clip(_as_cube(cube), 0.0, None)
        if mode == "patch":
            if grey_patch is None:
                raise UsageError("white balance 'patch' needs a grey patch x,y (--grey-patch)")
            x, y, radius = check_grey_patch(grey_patch, array.shape[0], array.shape[1])
            array = array[max(y - radius, 0): y + radius + 1, max(x - radius, 0): x + radius + 1]
        source = array.reshape(-1, bands).mean(axis=0) @ weights
        if not source[1] > 0:
            raise ValueRangeError(f"the {'grey patch' if mode == 'patch' else 'image'} is black; "
                                  "cannot balance its colour (use --white-balance illuminant)")
        source = source / source[1]
    else:
        source = None
    to_rgb = _xyz_to_linear_srgb_matrix()
    xyz_matrix = weights if source is None else weights @ _adaptation(source).T
    return xyz_matrix @ to_rgb.T


_SRGB_LUT_SIZE = 1 << 16


@functools.lru_cache(maxsize=1)
def _srgb_lut() -> np.ndarray:
    """uint8 sRGB codes of linear values i / (N − 1): colour-science's IEC 61966-2-1 curve, tabulated once."""
    import colour

    linear = np.linspace(0.0, 1.0, _SRGB_LUT_SIZE)
    return np.round(np.asarray(colour.cctf_encoding(linear, function="sRGB")) * 255.0).astype(np.uint8)


def encode_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB values (clipped to [0, 1]) -> 8-bit sRGB codes, via a 65 536-entry table of the sRGB curve."""
    index = np.clip(linear, 0.0, 1.0) * np.float32(_SRGB_LUT_SIZE - 1)
    return _srgb_lut()[np.rint(index).astype(np.int32)]


def false_color(cube, wavelengths_nm=None, exposure: Exposure = "auto", white_balance=None,
                illuminant: str = DEFAULT_ILLUMINANT, grey_patch=None) -> np.ndarray:
    """Render a cube as an sRGB image the way an eye would see the scene.

    Args:
        cube: ``H × W × C`` radiance or reflectance, nominally in [0, 1]; negative values are clipped to 0 first.
        wavelengths_nm: ``(C,)`` band centres in nm, strictly increasing (default: the project's band list, for
            a cube of its 28 bands; any other band count needs them: :class:`ShapeError` without).
        exposure: ``"auto"`` scales the image so the 99.5th percentile of the luminance Y lands at 0.95;
            a number is a plain gain on the linear values, so ``1.0`` renders a perfect white reflector at
            Y = 1 (full white) and a 20 % grey at Y = 0.2.
        white_balance: ``"illuminant"`` (or True; the default without a grey patch): the cube is radiance lit by
            ``illuminant`` (or reflectance seen under it) and that light's white point, as the bands sample it, is
            adapted to sRGB's D65 white, so a grey reflector renders neutral (R = G = B) despite the truncated
            band range;
            ``"grey-world"``: the image's mean colour is taken as grey; ``"patch"``: the ``grey_patch`` square is;
            ``"none"`` (or False): the plain CIE colours, no adaptation (with the field's 453.5–648 nm bands a
            flat spectrum then renders yellow: the deep blue is missing). Channels the band set barely covers
            are amplified at most 20× (see :data:`WHITE_BALANCE_FLOOR`).
        illuminant: a CIE illuminant name (``D65`` default, ``D50``, ``A``, ``E``, ``FL2`` …, see
            :func:`illuminant_names`). ``E`` treats the cube as reflectance under equal-energy light.
        grey_patch: ``(x, y)`` or ``(x, y, radius)`` of a neutral region: it sets white balance ``"patch"``
            (:func:`white_balance_choice`; another explicit ``white_balance`` with it is a :class:`UsageError`).

    Returns:
        ``H × W × 3`` uint8 sRGB (IEC 61966-2-1 transfer curve, D65 white).

    Steps: one ``C × 3`` matrix (:func:`colour_matrix`) takes each spectrum to linear sRGB; exposure gain from
    the luminance Y; clip to [0, 1]; sRGB encoding; 8 bits.
    """
    array = np.clip(_as_cube(cube), 0.0, None)
    wavelengths = _as_wavelengths(wavelengths_nm, array.shape[2], array.shape)
    gain = _parse_exposure(exposure)
    matrix = colour_matrix(wavelengths, illuminant=illuminant, white_balance=white_balance, cube=array,
                           grey_patch=grey_patch)
    if gain is None:
        gain = auto_exposure(array, wavelengths)
    return _render(array, matrix, gain)


def _render(array: np.ndarray, matrix: np.ndarray, gain: float) -> np.ndarray:
    """``H × W × C`` (≥ 0) -> uint8 sRGB through a :func:`colour_matrix` and an exposure gain."""
    height, width, bands = array.shape
    linear = array.reshape(-1, bands) @ (matrix * gain).astype(array.dtype, copy=False)
    return encode_srgb(linear.astype(np.float32, copy=False)).reshape(height, width, 3)


def measurement_preview(measurement) -> np.ndarray:
    """A snapshot (``H × W'``, or ``1 × H × W'``) as a grey ``uint8`` image.

    Linear grey scale with the 99.9th percentile at 255, so a few hot pixels do not darken the whole capture;
    negative values (noise) show as black.
    """
    array = np.asarray(measurement)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ShapeError(f"a measurement must be a 2-D array H×W' (one snapshot), got shape {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueRangeError("the measurement contains NaN or Inf values; cannot render it")
    array = np.clip(array, 0.0, None)
    level = float(np.percentile(array, 99.9))
    if level <= 0:
        level = float(array.max())
    if level <= 0:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round(np.clip(array / level, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------------


def prepare() -> None:
    """Import the colour and plotting libraries now (1–2 s on a loaded CPU) rather than at the first preview: a
    batch calls this on its writer thread, so the imports overlap the first capture's reconstruction."""
    import colour  # noqa: F401
    import imageio.v3  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def _new_figure(width_in: float, height_in: float, layout: str | None = "constrained") -> "Figure":
    """A figure bound to its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    quiet_missing_glyphs()
    figure = Figure(figsize=(width_in, height_in), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def quiet_missing_glyphs() -> None:
    """Silence matplotlib's "Glyph N (…) missing from font(s) DejaVu Sans" for the figures hsra draws.

    A title holding characters the font lacks (a CJK file name, say) is drawn with empty boxes for them, and
    matplotlib warns once per character and per draw: a dozen lines on stderr for one figure. The filter is
    narrow (that message, raised while hsra's own code draws: matplotlib attributes it to the first caller outside
    matplotlib) and is installed, not pushed and popped, so it is safe from the writer threads of a batch
    (``warnings.catch_warnings`` is not thread-safe). Installing it again does not add a second copy.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning,
                            module=r"hsra_cli(\.|$)")


def wavelength_label(wavelength_nm: float) -> str:
    """``453.5`` -> ``"453.5 nm"`` (one decimal, as the field lists its bands)."""
    return f"{wavelength_nm:.1f} nm"


def grid_columns(panels: int, height: int = 1, width: int = 1) -> int:
    """Columns of a close-to-square grid of ``panels`` images of ``height × width`` pixels.

    The grid leans slightly landscape (4:3), which fits screens and papers: 28 bands -> 7 × 4. Of the column
    counts next to that one, the one leaving the fewest empty cells is taken (31 bands -> 8 × 4, one empty cell).
    """
    if panels <= 1:
        return 1
    ideal = int(np.ceil(np.sqrt(panels * (4.0 / 3.0) * height / max(width, 1))))
    candidates = [c for c in (ideal, ideal + 1, ideal - 1) if 1 <= c <= panels] or [min(max(ideal, 1), panels)]
    return min(candidates, key=lambda c: (int(np.ceil(panels / c)) * c - panels, abs(c - ideal)))


def downsample(image: np.ndarray, max_side: int) -> np.ndarray:
    """Area-average an ``H × W (× C)`` array by a whole factor so its longer side is at most ``max_side``.

    Figures show bands a few hundred pixels wide; drawing a full-size band and letting the renderer resample
    costs far more than averaging blocks first (and averaging, unlike skipping pixels, does not alias).
    """
    factor = int(np.ceil(max(image.shape[0], image.shape[1]) / max(int(max_side), 1)))
    if factor <= 1:
        return image
    rows = np.arange(0, image.shape[0], factor)
    cols = np.arange(0, image.shape[1], factor)
    summed = np.add.reduceat(np.add.reduceat(image, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, image.shape[0])), np.diff(np.append(cols, image.shape[1])))
    return summed / (counts if image.ndim == 2 else counts[..., None]).astype(summed.dtype)


#: Label of a band grid's colour bar: cube values are relative (reflectance, or radiance up to a scale).
BAND_UNIT = "relative intensity (a.u.)"


def band_grid(cube, wavelengths_nm=None, columns: int | None = None, title: str | None = None,
              cmap: str = "gray", unit: str = BAND_UNIT, dpi: int = FIGURE_DPI) -> "Figure":
    """One greyscale image per band, titled with its wavelength (``"453.5 nm"``), on one shared scale.

    Args:
        cube: ``H × W × C`` cube.
        wavelengths_nm: ``(C,)`` band centres in nm.
        columns: grid columns (default :func:`grid_columns`: close to square, 7 × 4 for 28 bands).
        title: figure title.
        cmap: matplotlib colormap name.
        unit: the colour bar's label (what the values are, with their unit).
        dpi: the resolution the figure will be written at; bands are area-averaged to the panel's pixels
            (about 1.6 inches), which keeps large cubes fast to draw.

    The scale runs from 0 to the 99.9th percentile of the whole cube and is the same for every band, so
    band-to-band brightness differences are real; one colour bar beside the grid shows it. Panels sit at fixed
    spacing with no empty cells inside the grid (only the last row may be short).
    """
    array = _as_cube(cube)
    height, width, bands = array.shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands, array.shape)
    if isinstance(cmap, str):
        from matplotlib import colormaps

        if cmap not in colormaps:
            raise UsageError(f"unknown colour map (Python: cmap=) {cmap!r}; expected a matplotlib colormap name such "
                             "as gray, viridis or magma")
    if columns is None:
        columns = grid_columns(bands, height, width)
    if int(columns) != columns or columns < 1:
        raise UsageError(f"columns must be a positive integer, got {columns!r}")
    columns = int(min(columns, bands))
    rows = int(np.ceil(bands / columns))

    vmax = fast_percentile(array, 99.9)
    if vmax <= 0:
        vmax = float(array.max()) if array.max() > 0 else 1.0
    # Inches: panel height, its width by the image's aspect, and the fixed gaps between the parts.
    panel_h = 1.6
    panel_w = panel_h * width / height
    if panel_w > 3.2:
        panel_w, panel_h = 3.2, 3.2 * height / width
    panel_w, panel_h = max(panel_w, 0.4), max(panel_h, 0.4)
    label_h, col_gap, row_gap, margin = 0.2, 0.06, 0.04, 0.08
    top = margin + (0.35 if title else 0.0) + label_h
    bar_gap, bar_w, bar_label = 0.1, 0.14, 0.75
    grid_w = columns * panel_w + (columns - 1) * col_gap
    grid_h = rows * panel_h + (rows - 1) * (row_gap + label_h)
    fig_w = margin + grid_w + bar_gap + bar_w + bar_label
    fig_h = top + grid_h + margin
    figure = _new_figure(fig_w, fig_h, layout=None)
    spec = figure.add_gridspec(
        rows, columns, left=margin / fig_w, right=(margin + grid_w) / fig_w, top=1 - top / fig_h,
        bottom=margin / fig_h, wspace=col_gap / panel_w, hspace=(row_gap + label_h) / panel_h,
    )
    small = downsample(array, int(np.ceil(max(panel_w, panel_h) * dpi)))
    image = None
    for index in range(bands):
        ax = figure.add_subplot(spec[index // columns, index % columns])
        ax.set_xticks([])
        ax.set_yticks([])
        image = ax.imshow(small[:, :, index], cmap=cmap, vmin=0.0, vmax=vmax, interpolation="antialiased",
                          extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_title(wavelength_label(wavelengths[index]), fontsize=8, pad=2)
    bar = figure.add_axes([(margin + grid_w + bar_gap) / fig_w, margin / fig_h, bar_w / fig_w, grid_h / fig_h])
    figure.colorbar(image, cax=bar, label=unit, extend="max" if float(array.max()) > vmax else "neither")
    if title:
        figure.suptitle(title, y=1 - margin / fig_h, va="top")
    return figure


def _pixel_spectrum(array: np.ndarray, x: int, y: int, radius: int) -> np.ndarray:
    """Spectrum at column ``x``, row ``y``, averaged over the (2r+1)² square clipped to the image."""
    rows = slice(max(y - radius, 0), y + radius + 1)
    cols = slice(max(x - radius, 0), x + radius + 1)
    return array[rows, cols, :].reshape(-1, array.shape[2]).mean(axis=0)


def _is_point(value) -> bool:
    """Whether ``value`` is one ``(x, y)`` pair of real numbers (not a list of pairs)."""
    try:
        pair = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return pair.shape == (2,) and pair.dtype.kind in "iuf"


def check_points(points: Sequence[tuple[int, int]], height: int, width: int,
                 what: str = "pixel") -> list[tuple[int, int]]:
    """Validate ``(x, y)`` pixel coordinates (x = column, y = row) against an ``height × width`` image.

    The error names the point as row, column (every coordinate option of hsra reads ROW,COL); ``what`` says
    which point it is (``--pixel``, ``the grey patch centre``)."""
    checked = []
    for point in points:
        if not _is_point(point):
            raise UsageError(f"{what} {point!r} is not a point (x, y): expected two pixel coordinates, column then row")
        x, y = (int(value) for value in point)
        if not (0 <= x < width and 0 <= y < height):
            raise UsageError(
                f"{what} at row {y}, column {x} lies outside the {height}×{width} (rows×columns) image; "
                f"expected 0 ≤ row < {height} and 0 ≤ column < {width}"
            )
        checked.append((x, y))
    return checked


def spectra_plot(cube, points: Sequence[tuple[int, int]], wavelengths_nm=None, truth=None,
                 labels: Sequence[str] | None = None, radius: int = 0, image: np.ndarray | None = None) -> "Figure":
    """Spectra at pixels of a cube, with the true spectra dashed when ``truth`` is given, and the points
    marked (numbered, in their line's colour) on an image of the scene beside the plot.

    Args:
        cube: ``H × W × C`` cube; values are plotted as they are (no clipping).
        points: ``(x, y)`` pixel coordinates, x = column, y = row (as image viewers show them); one bare pair
            ``(x, y)`` is one point.
        wavelengths_nm: ``(C,)`` band centres in nm (the x axis).
        truth: optional ``H × W × C`` reference cube of the same shape.
        labels: one legend label per point (default ``"1 (row y, col x)"``, numbered as on the image).
        radius: average over the ``(2·radius+1)²`` square around each point, which tames noise; the square is
            drawn on the image.
        image: the ``H × W × 3`` uint8 image to mark the points on (default: :func:`false_color` of ``cube``).

    ``figure.axes[0]`` is the plot, ``figure.axes[1]`` the image.
    """
    from matplotlib.patches import Rectangle

    array = _as_cube(cube)
    height, width, bands = array.shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands, array.shape)
    reference = None
    if truth is not None:
        reference = _as_cube(truth, "truth")
        _same_shape(array, reference, "cube", "truth")
    if _is_point(points):  # one bare (x, y), not a list of them
        points = [points]
    try:
        points = list(points)
    except TypeError:
        raise UsageError(f"points (Python: points=) must be a list of (x, y) pixel coordinates, got {points!r}") from None
    if len(points) == 0:
        raise UsageError("give at least one point (x, y) to plot a spectrum")
    checked = check_points(points, height, width)
    if int(radius) != radius or radius < 0:
        raise UsageError(f"radius must be a non-negative integer, got {radius!r}")
    radius = int(radius)
    if labels is None:
        # spelled out: the CLI's coordinates are ROW,COL while the library's points are (x, y)
        labels = [f"{number} (row {y}, col {x})" for number, (x, y) in enumerate(checked, 1)]
    elif len(labels) != len(checked):
        raise UsageError(f"got {len(labels)} labels for {len(checked)} points; expected one per point")
    if image is None:
        image = false_color(array, wavelengths)
    elif image.shape[:2] != (height, width):
        raise ShapeError(f"the image to mark points on is {image.shape[:2]} but the cube is {(height, width)}")

    aspect = min(max(width / height, 0.3), 3.0)
    figure = _new_figure(6.4 + 3.6 * aspect, 4.0)
    spec = figure.add_gridspec(1, 2, width_ratios=[aspect * 1.0, 1.7])
    ax = figure.add_subplot(spec[0, 1])
    image_ax = figure.add_subplot(spec[0, 0])
    image_ax.imshow(downsample(image.astype(np.float32) / 255.0, 1024) if max(height, width) > 1024 else image,
                    interpolation="antialiased", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    image_ax.set_xticks([])
    image_ax.set_yticks([])
    for number, ((x, y), label) in enumerate(zip(checked, labels), 1):
        (line,) = ax.plot(wavelengths, _pixel_spectrum(array, x, y, radius), marker=".", label=label)
        colour = line.get_color()
        if reference is not None:
            ax.plot(wavelengths, _pixel_spectrum(reference, x, y, radius), linestyle="--", color=colour,
                    label=f"{label} truth")
        image_ax.plot([x], [y], marker="o", markersize=9, markerfacecolor="none", markeredgecolor=colour,
                      markeredgewidth=1.8, linestyle="none")
        image_ax.annotate(str(number), (x, y), xytext=(6, 6), textcoords="offset points", color=colour,
                          fontsize=9, fontweight="bold")
        if radius:
            image_ax.add_patch(Rectangle((x - radius - 0.5, y - radius - 0.5), 2 * radius + 1, 2 * radius + 1,
                                         fill=False, edgecolor=colour, linewidth=1.0))
    image_ax.set_xlim(-0.5, width - 0.5)
    image_ax.set_ylim(height - 0.5, -0.5)
    image_ax.set_title("points", fontsize=9)
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel(BAND_UNIT)
    if radius:
        ax.set_title(f"mean over {2 * radius + 1}×{2 * radius + 1} pixels")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def error_statistics(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel and per-band root-mean-square error between two ``H × W × C`` cubes.

    The prediction is clipped to [0, 1] first, as the metrics of the field do before scoring.

    Returns:
        ``(rmse_map, band_rmse)``: ``H × W`` RMSE over bands, and ``(C,)`` RMSE over pixels.
    """
    prediction = np.clip(_as_cube(pred, "prediction"), 0.0, 1.0)
    reference = _as_cube(truth, "truth")
    _same_shape(prediction, reference, "prediction", "truth")
    squared = (prediction - reference) ** 2
    return np.sqrt(squared.mean(axis=2)), np.sqrt(squared.mean(axis=(0, 1)))


def _psnr_title(pred: np.ndarray, truth: np.ndarray) -> str | None:
    """``"PSNR 34.52 dB (field convention)"`` from hsra_cli.metrics (its default, the field's convention, as the
    comparison panels, ``hsra evaluate`` and ``hsra report`` give it), or None while that module is not available."""
    try:
        from .metrics import psnr
    except ImportError:
        return None
    value = psnr(pred, truth)
    return f"PSNR {float(value):.2f} dB (field convention)"


#: The error map's colour scale ends at this percentile of the per-pixel RMSE, so a few outliers (edges,
#: saturated pixels) do not compress the rest of the map into the darkest colours.
ERROR_CLIP_PERCENTILE = 99.0


def error_map(pred, truth, wavelengths_nm=None, clip_percentile: float = ERROR_CLIP_PERCENTILE) -> "Figure":
    """Where and at which wavelengths a reconstruction is wrong.

    Left: the per-pixel RMSE over bands (``H × W``) with a colour bar running from 0 to the ``clip_percentile``
    percentile of the map (larger errors saturate; the bar's arrow says so); right: the per-band RMSE against
    wavelength. The title gives the overall RMSE and PSNR (field convention, as everywhere in hsra). ``pred`` and
    ``truth`` are ``H × W × C``; see :func:`error_statistics` for the numbers.
    """
    rmse_map, band_rmse = error_statistics(pred, truth)
    wavelengths = _as_wavelengths(wavelengths_nm, band_rmse.size, np.shape(pred))
    height, width = rmse_map.shape
    if not 0 < clip_percentile <= 100:
        raise UsageError(f"clip_percentile must be in (0, 100], got {clip_percentile!r}")

    figure = _new_figure(10.0, 4.2)
    image_ax, curve_ax = figure.subplots(1, 2, width_ratios=[max(width / height, 0.3), 1.0])
    # Fixed floor at 0 so a perfect reconstruction reads as an all-dark map, not as amplified noise.
    vmax = float(np.percentile(rmse_map, clip_percentile))
    if vmax <= 0:
        vmax = float(rmse_map.max()) if rmse_map.max() > 0 else 1.0
    clipped = float(rmse_map.max()) > vmax
    image = image_ax.imshow(rmse_map, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
    image_ax.set_title("per-pixel RMSE over bands")
    image_ax.set_xticks([])
    image_ax.set_yticks([])
    label = "RMSE" + (f" (clipped at the {clip_percentile:g}th pct.)" if clipped else "")
    figure.colorbar(image, ax=image_ax, shrink=0.85, label=label, extend="max" if clipped else "neither")
    curve_ax.plot(wavelengths, band_rmse, marker=".")
    curve_ax.set_xlabel("wavelength (nm)")
    curve_ax.set_ylabel("RMSE")
    curve_ax.set_title("per-band RMSE")
    curve_ax.set_ylim(bottom=0.0)
    curve_ax.grid(True, alpha=0.3)
    psnr_title = _psnr_title(np.asarray(pred), np.asarray(truth))
    overall = float(np.sqrt(np.mean(band_rmse ** 2)))
    figure.suptitle(f"RMSE {overall:.4f}" + (f" · {psnr_title}" if psnr_title else "")
                    + (f" · largest pixel RMSE {rmse_map.max():.3g}" if clipped else ""))
    return figure


def side_by_side(cubes: Sequence, labels: Sequence[str], wavelengths_nm=None, truth=None,
                 exposure: Exposure = "auto", white_balance=None, columns: int | None = None,
                 illuminant: str = DEFAULT_ILLUMINANT, grey_patch=None, show_psnr: bool = True,
                 title: str | None = None) -> "Figure":
    """Several reconstructions of one scene as labelled false-colour panels (the papers' comparison figure).

    Args:
        cubes: ``H × W × C`` cubes of the same scene and shape.
        labels: one title per cube (the method, e.g. ``hsra-s``, ``gap-tv``).
        wavelengths_nm: ``(C,)`` band centres in nm.
        truth: optional ``H × W × C`` ground truth, shown as the last panel ("ground truth").
        exposure: ``"auto"`` or a gain (see :func:`false_color`). Auto exposure is computed **once**, on the
            truth when given (else on the first cube), and applied to every panel so brightness compares.
        white_balance, illuminant, grey_patch: see :func:`false_color`; one white balance for every panel
            (grey-world and patch are measured on the truth when given, else on the first cube).
        columns: panels per row (default: all in one row up to 5, then more rows).
        show_psnr: with a truth, each panel's title adds its PSNR against it (the field's convention, as the
            papers' tables: uint8 levels, per band, averaged).
        title: figure title (e.g. the scene's name).
    """
    if len(cubes) == 0:
        raise UsageError("side_by_side needs at least one cube")
    if len(labels) != len(cubes):
        raise UsageError(f"got {len(labels)} labels for {len(cubes)} cubes; expected one per cube")
    arrays = [_as_cube(cube, f"cube {label!r}") for cube, label in zip(cubes, labels)]
    titles = list(labels)
    panels = list(zip(arrays, labels))
    if truth is not None:
        panels.append((_as_cube(truth, "truth"), "ground truth"))
    for array, label in panels[1:]:
        _same_shape(panels[0][0], array, f"cube {panels[0][1]!r}", f"cube {label!r}")
    height, width, bands = panels[0][0].shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands, panels[0][0].shape)
    gain = _parse_exposure(exposure)
    reference = panels[-1][0] if truth is not None else panels[0][0]
    if gain is None:
        gain = auto_exposure(reference, wavelengths)
    matrix = colour_matrix(wavelengths, illuminant=illuminant, white_balance=white_balance, cube=reference,
                           grey_patch=grey_patch)
    if truth is not None and show_psnr:
        from .metrics import psnr

        titles = [f"{label}\nPSNR {psnr(array, panels[-1][0], convention='field'):.2f} dB"
                  for array, label in zip(arrays, labels)]
    if truth is not None:
        titles.append("ground truth")

    if columns is None:
        columns = min(len(panels), 5)
    columns = int(min(max(int(columns), 1), len(panels)))
    rows = int(np.ceil(len(panels) / columns))
    panel_in = 2.6
    extra = 0.35 if title else 0.0
    figure = _new_figure(columns * panel_in * max(width / height, 0.25), rows * (panel_in + 0.55) + extra)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(panels):
            ax.set_axis_off()
            continue
        ax.imshow(_render(np.clip(panels[index][0], 0.0, None), matrix, gain), interpolation="nearest")
        ax.set_title(titles[index], fontsize=10)
    if title:
        figure.suptitle(title)
    if truth is not None and show_psnr:
        figure.supxlabel("PSNR against the ground truth, field convention (uint8, per band, averaged)", fontsize=8)
    return figure


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def check_outputs(paths: Sequence[Path], overwrite: bool = False) -> None:
    """Check every output path before anything is written, so a refusal leaves no partial output.

    Raises :class:`~hsra_cli.errors.OutputExistsError` for an existing file (unless ``overwrite``), and the
    errors of :func:`hsra_cli.io.check_writable` for folders that cannot be written.
    """
    from .io import check_writable

    for path in paths:
        check_writable(path, overwrite)


#: Formats of written figures (band grids, spectra, error maps, comparisons); false-colour images are PNG.
FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(path, figure, overwrite: bool = False, dpi: int = FIGURE_DPI) -> Path:
    """Write a Figure as PNG, PDF or SVG (from the suffix of ``path``), atomically; returns the path.

    ``dpi`` sets the pixels of a PNG and the resolution of the images embedded in a PDF or SVG (text and lines
    stay vectors there). An existing file is only replaced with ``overwrite=True``.
    """
    from .io import atomic_output

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise UsageError(f"{path}: figures are written as {', '.join(FIGURE_FORMATS)}; got {path.suffix or 'no suffix'}")
    if not hasattr(figure, "savefig"):
        raise UsageError(f"save_figure expects a matplotlib Figure, got {type(figure).__name__}")
    if int(dpi) != dpi or not 10 <= dpi <= 2400:
        raise UsageError(f"dpi must be a whole number from 10 to 2400, got {dpi!r}")
    quiet_missing_glyphs()
    with atomic_output(path, overwrite) as temporary:
        # The temporary name does not end in the format's suffix: name the format explicitly.
        # PNG at zlib level 1: 3× faster to encode than the default 6, for a slightly larger file.
        extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
        figure.savefig(temporary, format=fmt, dpi=int(dpi), metadata=_FIXED_METADATA[fmt], **extra)
    return path


#: What every image and figure hsra writes names as its creator (:func:`written_by_hsra` reads it back).
CREATOR = "hsra"
#: No creation dates in vector files, so rendering the same data twice gives the same bytes; each names hsra.
_FIXED_METADATA = {
    "png": {"Software": CREATOR},
    "pdf": {"CreationDate": None, "Creator": CREATOR},
    "svg": {"Date": None, "Creator": CREATOR},
}
#: How each format stores the creator, as bytes in the file.
_CREATOR_MARKS = {".pdf": b"/Creator (" + CREATOR.encode() + b")",
                  ".svg": b"<dc:title>" + CREATOR.encode() + b"</dc:title>"}


def written_by_hsra(path) -> bool:
    """Whether ``path`` is an image or figure hsra wrote (:func:`save_png`, :func:`save_figure`): it names hsra as
    its creator (PNG text ``Software``, PDF ``/Creator``, SVG ``dc:creator``). Any other file (the user's, or one
    from an hsra without this mark) is not, and ``--skip-existing`` never replaces it."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:  # the header and the text chunks before the pixels, not the pixels
                return image.format == "PNG" and image.info.get("Software") == CREATOR
        if suffix in _CREATOR_MARKS:
            with open(path, "rb") as handle:
                return _CREATOR_MARKS[suffix] in handle.read(64 << 20)
    except Exception:  # unreadable, damaged or not an image: not one of hsra's
        return False
    return False


def save_png(path, image_or_figure, overwrite: bool = False, dpi: int = FIGURE_DPI) -> Path:
    """Write a ``uint8`` image (``H × W`` grey, ``H × W × 3`` RGB or ``× 4`` RGBA) or a Figure as PNG.

    The file appears atomically (written under a temporary name in the same folder, then renamed); an existing
    file is only replaced with ``overwrite=True`` (else :class:`~hsra_cli.errors.OutputExistsError`).
    Figures are written at ``dpi`` dots per inch (:func:`save_figure`). Returns the path written.
    """
    from .io import atomic_output

    path = Path(path)
    if isinstance(image_or_figure, np.ndarray):
        image = image_or_figure
        if image.dtype != np.uint8:
            raise ValueRangeError(f"save_png writes uint8 images; got dtype {image.dtype} (render it first, e.g. "
                                  "with false_color)")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ShapeError(f"an image must be H×W, H×W×3 or H×W×4, got shape {image.shape}")
        import imageio.v3 as iio

        with atomic_output(path, overwrite) as temporary:
            # The temporary name may not end in .png: name the format explicitly. Level 1 compresses a
            # 660×660 preview 3× faster than the default 6, for a file ~10 % larger.
            from PIL.PngImagePlugin import PngInfo

            text = PngInfo()
            text.add_text("Software", CREATOR)  # how written_by_hsra knows it
            iio.imwrite(temporary, image, extension=".png", compress_level=1, pnginfo=text)
        return path
    if not hasattr(image_or_figure, "savefig"):
        raise UsageError(f"save_png expects a uint8 array or a matplotlib Figure, got {type(image_or_figure).__name__}")
    return save_figure(path.with_suffix(".png") if path.suffix.lower() != ".png" else path, image_or_figure,
                       overwrite, dpi)


def preview_paths(out_dir, stem: str, figure_format: str = "png") -> list[Path]:
    """The files :func:`write_previews` writes: ``<stem>_rgb.png`` and ``<stem>_bands.<figure_format>``."""
    out_dir = Path(out_dir)
    return [out_dir / f"{stem}_rgb.png", out_dir / f"{stem}_bands.{figure_format}"]


def write_previews(cube, wavelengths_nm, out_dir, stem: str, overwrite: bool = False,
                   exposure: Exposure = "auto", white_balance=None, illuminant: str = DEFAULT_ILLUMINANT,
                   grey_patch=None, figure_format: str = "png", dpi: int = FIGURE_DPI) -> list[Path]:
    """Write the standard previews of a cube: ``<stem>_rgb.png`` (false colour) and ``<stem>_bands.<format>``.

    ``cube`` is ``H × W × C``; ``out_dir`` is created if missing. Both paths are checked before anything is
    written, so an existing file (without ``overwrite``) leaves no partial output. Colour options: see
    :func:`false_color`. Returns the paths written.
    """
    rgb_path, bands_path = preview_paths(out_dir, stem, figure_format)
    check_outputs([rgb_path, bands_path], overwrite)
    array = _as_cube(cube)
    rgb = false_color(array, wavelengths_nm, exposure=exposure, white_balance=white_balance, illuminant=illuminant,
                      grey_patch=grey_patch)
    grid = band_grid(array, wavelengths_nm, title=stem, dpi=dpi)
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a folder that refuses files (permissions, a read-only or pseudo file system)
        from .io import _os_reason

        raise HsraError(f"cannot create output folder {out_dir}: {_os_reason(exc)}") from None
    return [save_png(rgb_path, rgb, overwrite), save_figure(bands_path, grid, overwrite, dpi)]
