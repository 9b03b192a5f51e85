"""Previews of cubes and measurements: false colour, band grids, spectra, error maps, comparisons.

Used by ``hsra render``, ``hsra simulate`` and ``hsra reconstruct``. Everything here works on numpy arrays:

* cubes are ``H × W × C`` floats, nominally reflectance in [0, 1]. Reconstructions may stray slightly below 0
  or above 1; images clip for display, plots of numbers (spectra, errors) show the values as they are;
* wavelengths are band centres in nm, shape ``(C,)``; ``None`` means :func:`hsra_cli.bands.default_wavelengths`;
* images are returned as ``uint8`` arrays, plots as :class:`matplotlib.figure.Figure` objects drawn with the Agg
  canvas directly (never pyplot), so rendering neither needs a display nor touches matplotlib's global state.

:func:`save_png` writes either kind atomically through :func:`hsra_cli.io.atomic_output`.

Colour rendering (:func:`false_color`) treats the cube as reflectance under an **equal-energy illuminant
(CIE E)**, integrates it against the CIE 1931 2° colour-matching functions at the band wavelengths and encodes
the result as sRGB. The field's 28 bands span only 453.5–648 nm, so the blue and red ends of the visible range
are missing; the default white balance compensates for that (see :func:`false_color`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .bands import default_wavelengths
from .errors import ShapeError, UsageError, ValueRangeError

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


# --------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------


def _as_cube(cube, what: str = "cube") -> np.ndarray:
    """Validate an ``H × W × C`` cube and return it as float64 (values unchanged)."""
    array = np.asarray(cube)
    if array.ndim != 3:
        raise ShapeError(f"{what} must be a 3-D array H×W×C (bands last), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1 or array.shape[2] < 1:
        raise ShapeError(f"{what} has an empty dimension: shape {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueRangeError(f"{what} contains NaN or Inf values; cannot render it")
    return array


def _as_wavelengths(wavelengths_nm, bands: int) -> np.ndarray:
    """Band centres in nm for a cube of ``bands`` bands (default list when ``None``)."""
    if wavelengths_nm is None:
        return default_wavelengths(bands)
    wavelengths = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    if wavelengths.size != bands:
        raise ShapeError(f"got {wavelengths.size} wavelengths for a cube of {bands} bands; expected one per band")
    if not np.isfinite(wavelengths).all():
        raise ValueRangeError("wavelengths contain NaN or Inf values")
    if bands > 1 and not np.all(np.diff(wavelengths) > 0):
        raise ValueRangeError("wavelengths must be strictly increasing (band centres in nm, shortest first)")
    return wavelengths


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


def _xyz_to_linear_srgb_matrix() -> np.ndarray:
    import colour

    return np.asarray(colour.RGB_COLOURSPACES["sRGB"].matrix_XYZ_to_RGB, dtype=np.float64)


def _auto_gain(luminance: np.ndarray) -> float:
    """Gain that puts the 99.5th percentile of ``luminance`` at 0.95 (1 for an all-dark image)."""
    level = float(np.percentile(luminance, AUTO_EXPOSURE_PERCENTILE))
    if level <= 0:
        # Mostly black image with a few lit pixels: expose for the brightest one instead.
        level = float(luminance.max())
    return AUTO_EXPOSURE_TARGET / level if level > 0 else 1.0


def auto_exposure(cube, wavelengths_nm=None) -> float:
    """The gain ``false_color(..., exposure="auto")`` would apply to ``cube`` (H×W×C, reflectance).

    Use it to render several cubes of one scene with the same exposure, so that their brightness compares.
    """
    array = np.clip(_as_cube(cube), 0.0, None)
    weights = _xyz_weights(_as_wavelengths(wavelengths_nm, array.shape[2]))
    return _auto_gain(array @ weights[:, 1])


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


def false_color(cube, wavelengths_nm=None, exposure: Exposure = "auto", white_balance: bool = True) -> np.ndarray:
    """Render a cube as an sRGB image the way an eye would see the scene.

    Args:
        cube: ``H × W × C`` reflectance, nominally in [0, 1]; negative values are clipped to 0 first.
        wavelengths_nm: ``(C,)`` band centres in nm, strictly increasing (default: the project's band list).
        exposure: ``"auto"`` scales the image so the 99.5th percentile of the luminance Y lands at 0.95;
            a number is a plain gain on the linear values, so ``1.0`` renders a perfect white reflector at
            Y = 1 (full white) and a 20 % grey at Y = 0.2.
        white_balance: divide each linear sRGB channel by the response to a flat spectrum, so a grey reflector
            renders neutral (R = G = B). Without it the colours are the plain CIE colours of the *truncated*
            spectrum under illuminant E, with no chromatic adaptation: with the field's 453.5–648 nm bands the
            missing deep blue makes white render as a yellow. Channels the band set barely covers are
            amplified at most 20× (see :data:`WHITE_BALANCE_FLOOR`).

    Returns:
        ``H × W × 3`` uint8 sRGB (IEC 61966-2-1 transfer curve, D65 white).

    Steps: XYZ = Σ_b x_b · CMF(λ_b) · Δλ_b, normalised so a perfect white reflector has Y = 1; exposure gain;
    XYZ → linear sRGB; white balance; clip to [0, 1]; sRGB encoding; round to 8 bits.
    """
    import colour

    array = np.clip(_as_cube(cube), 0.0, None)
    weights = _xyz_weights(_as_wavelengths(wavelengths_nm, array.shape[2]))
    gain = _parse_exposure(exposure)
    xyz = array @ weights  # H × W × 3
    if gain is None:
        gain = _auto_gain(xyz[..., 1])
    to_rgb = _xyz_to_linear_srgb_matrix()
    rgb = (xyz * gain) @ to_rgb.T
    if white_balance:
        white_rgb = to_rgb @ weights.sum(axis=0)
        # The white's luminance is 1 by construction, so dividing keeps a grey's level and only removes the cast.
        floor = WHITE_BALANCE_FLOOR * white_rgb.max()
        rgb = rgb / np.maximum(white_rgb, floor)
    encoded = colour.cctf_encoding(np.clip(rgb, 0.0, 1.0), function="sRGB")
    return np.round(np.asarray(encoded) * 255.0).astype(np.uint8)


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


def _new_figure(width_in: float, height_in: float) -> "Figure":
    """A figure bound to its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def wavelength_label(wavelength_nm: float) -> str:
    """``453.5`` -> ``"453.5 nm"`` (one decimal, as the field lists its bands)."""
    return f"{wavelength_nm:.1f} nm"


def grid_columns(panels: int, height: int = 1, width: int = 1) -> int:
    """Columns of a close-to-square grid of ``panels`` images of ``height × width`` pixels.

    The grid leans slightly landscape (4:3), which fits screens and papers: 28 bands -> 7 × 4.
    """
    if panels <= 1:
        return 1
    columns = int(np.ceil(np.sqrt(panels * (4.0 / 3.0) * height / max(width, 1))))
    return int(min(max(columns, 1), panels))


def band_grid(cube, wavelengths_nm=None, columns: int | None = None, title: str | None = None,
              cmap: str = "gray") -> "Figure":
    """One greyscale image per band, titled with its wavelength (``"453.5 nm"``), on one shared scale.

    Args:
        cube: ``H × W × C`` reflectance.
        wavelengths_nm: ``(C,)`` band centres in nm.
        columns: grid columns (default: close to square, 7 × 4 for 28 bands).
        title: figure title.
        cmap: matplotlib colormap name.

    The scale runs from 0 to the 99.9th percentile of the whole cube and is the same for every band, so
    band-to-band brightness differences are real; one colorbar shows it.
    """
    array = _as_cube(cube)
    height, width, bands = array.shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands)
    if columns is None:
        columns = grid_columns(bands, height, width)
    if int(columns) != columns or columns < 1:
        raise UsageError(f"columns must be a positive integer, got {columns!r}")
    columns = int(min(columns, bands))
    rows = int(np.ceil(bands / columns))

    vmax = float(np.percentile(array, 99.9))
    if vmax <= 0:
        vmax = float(array.max()) if array.max() > 0 else 1.0
    panel_in = 1.6
    figure = _new_figure(columns * panel_in * max(width / height, 0.25) + 0.8, rows * (panel_in + 0.25) + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False)
    image = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= bands:
            ax.set_axis_off()
            continue
        image = ax.imshow(array[:, :, index], cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(wavelength_label(wavelengths[index]), fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.6, label="intensity")
    if title:
        figure.suptitle(title)
    return figure


def _pixel_spectrum(array: np.ndarray, x: int, y: int, radius: int) -> np.ndarray:
    """Spectrum at column ``x``, row ``y``, averaged over the (2r+1)² square clipped to the image."""
    rows = slice(max(y - radius, 0), y + radius + 1)
    cols = slice(max(x - radius, 0), x + radius + 1)
    return array[rows, cols, :].reshape(-1, array.shape[2]).mean(axis=0)


def check_points(points: Sequence[tuple[int, int]], height: int, width: int) -> list[tuple[int, int]]:
    """Validate ``(x, y)`` pixel coordinates (x = column, y = row) against an ``height × width`` image."""
    checked = []
    for point in points:
        x, y = (int(value) for value in point)
        if not (0 <= x < width and 0 <= y < height):
            raise UsageError(
                f"point x={x}, y={y} lies outside the {width}×{height} (W×H) image; "
                f"expected 0 ≤ x < {width}, 0 ≤ y < {height}"
            )
        checked.append((x, y))
    return checked


def spectra_plot(cube, points: Sequence[tuple[int, int]], wavelengths_nm=None, truth=None,
                 labels: Sequence[str] | None = None, radius: int = 0) -> "Figure":
    """Spectra at pixels of a cube, with the true spectra dashed when ``truth`` is given.

    Args:
        cube: ``H × W × C`` cube; values are plotted as they are (no clipping).
        points: ``(x, y)`` pixel coordinates, x = column, y = row (as image viewers show them).
        wavelengths_nm: ``(C,)`` band centres in nm (the x axis).
        truth: optional ``H × W × C`` reference cube of the same shape.
        labels: one legend label per point (default ``"(x, y)"``).
        radius: average over the ``(2·radius+1)²`` square around each point, which tames noise.
    """
    array = _as_cube(cube)
    height, width, bands = array.shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands)
    reference = None
    if truth is not None:
        reference = _as_cube(truth, "truth")
        _same_shape(array, reference, "cube", "truth")
    if len(points) == 0:
        raise UsageError("give at least one point (x, y) to plot a spectrum")
    checked = check_points(points, height, width)
    if int(radius) != radius or radius < 0:
        raise UsageError(f"radius must be a non-negative integer, got {radius!r}")
    if labels is None:
        labels = [f"({x}, {y})" for x, y in checked]
    elif len(labels) != len(checked):
        raise UsageError(f"got {len(labels)} labels for {len(checked)} points; expected one per point")

    figure = _new_figure(6.4, 4.0)
    ax = figure.add_subplot()
    for (x, y), label in zip(checked, labels):
        (line,) = ax.plot(wavelengths, _pixel_spectrum(array, x, y, int(radius)), marker=".", label=label)
        if reference is not None:
            ax.plot(wavelengths, _pixel_spectrum(reference, x, y, int(radius)), linestyle="--",
                    color=line.get_color(), label=f"{label} truth")
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("intensity")
    if radius:
        ax.set_title(f"mean over {2 * int(radius) + 1}×{2 * int(radius) + 1} pixels")
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
    """``"PSNR 34.52 dB (float)"`` from hsra_cli.metrics, or None while that module is not available."""
    try:
        from .metrics import psnr
    except ImportError:
        return None
    value = psnr(pred, truth, convention="float")
    return f"PSNR {float(value):.2f} dB (float convention)"


def error_map(pred, truth, wavelengths_nm=None) -> "Figure":
    """Where and at which wavelengths a reconstruction is wrong.

    Left: the per-pixel RMSE over bands (``H × W``) with a colorbar; right: the per-band RMSE against
    wavelength. The title gives the overall PSNR (float convention) when :mod:`hsra_cli.metrics` is available.
    ``pred`` and ``truth`` are ``H × W × C``; see :func:`error_statistics` for the numbers.
    """
    rmse_map, band_rmse = error_statistics(pred, truth)
    wavelengths = _as_wavelengths(wavelengths_nm, band_rmse.size)
    height, width = rmse_map.shape

    figure = _new_figure(10.0, 4.2)
    image_ax, curve_ax = figure.subplots(1, 2, width_ratios=[max(width / height, 0.3), 1.0])
    # Fixed floor at 0 so a perfect reconstruction reads as an all-dark map, not as amplified noise.
    vmax = float(rmse_map.max()) if rmse_map.max() > 0 else 1.0
    image = image_ax.imshow(rmse_map, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
    image_ax.set_title("per-pixel RMSE over bands")
    image_ax.set_xticks([])
    image_ax.set_yticks([])
    figure.colorbar(image, ax=image_ax, shrink=0.85, label="RMSE")
    curve_ax.plot(wavelengths, band_rmse, marker=".")
    curve_ax.set_xlabel("wavelength (nm)")
    curve_ax.set_ylabel("RMSE")
    curve_ax.set_title("per-band RMSE")
    curve_ax.set_ylim(bottom=0.0)
    curve_ax.grid(True, alpha=0.3)
    psnr_title = _psnr_title(np.asarray(pred), np.asarray(truth))
    overall = float(np.sqrt(np.mean(band_rmse ** 2)))
    figure.suptitle(f"RMSE {overall:.4f}" + (f" · {psnr_title}" if psnr_title else ""))
    return figure


def side_by_side(cubes: Sequence, labels: Sequence[str], wavelengths_nm=None, truth=None,
                 exposure: Exposure = "auto", white_balance: bool = True, columns: int | None = None) -> "Figure":
    """Several reconstructions of one scene as labelled false-colour panels (the papers' comparison figure).

    Args:
        cubes: ``H × W × C`` cubes of the same scene and shape.
        labels: one title per cube (e.g. the method or file name).
        wavelengths_nm: ``(C,)`` band centres in nm.
        truth: optional ``H × W × C`` ground truth, shown as the last panel ("ground truth").
        exposure: ``"auto"`` or a gain (see :func:`false_color`). Auto exposure is computed **once**, on the
            truth when given (else on the first cube), and applied to every panel so brightness compares.
        white_balance: see :func:`false_color`.
        columns: panels per row (default: all in one row up to 5, then more rows).
    """
    if len(cubes) == 0:
        raise UsageError("side_by_side needs at least one cube")
    if len(labels) != len(cubes):
        raise UsageError(f"got {len(labels)} labels for {len(cubes)} cubes; expected one per cube")
    arrays = [_as_cube(cube, f"cube {label!r}") for cube, label in zip(cubes, labels)]
    panels = list(zip(arrays, labels))
    if truth is not None:
        panels.append((_as_cube(truth, "truth"), "ground truth"))
    for array, label in panels[1:]:
        _same_shape(panels[0][0], array, f"cube {panels[0][1]!r}", f"cube {label!r}")
    height, width, bands = panels[0][0].shape
    wavelengths = _as_wavelengths(wavelengths_nm, bands)
    gain = _parse_exposure(exposure)
    if gain is None:
        gain = auto_exposure(panels[-1][0] if truth is not None else panels[0][0], wavelengths)

    if columns is None:
        columns = min(len(panels), 5)
    columns = int(min(max(int(columns), 1), len(panels)))
    rows = int(np.ceil(len(panels) / columns))
    panel_in = 2.6
    figure = _new_figure(columns * panel_in * max(width / height, 0.25), rows * (panel_in + 0.35))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(panels):
            ax.set_axis_off()
            continue
        array, label = panels[index]
        ax.imshow(false_color(array, wavelengths, exposure=gain, white_balance=white_balance),
                  interpolation="nearest")
        ax.set_title(label, fontsize=10)
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


def save_png(path, image_or_figure, overwrite: bool = False, dpi: int = FIGURE_DPI) -> Path:
    """Write a ``uint8`` image (``H × W`` grey, ``H × W × 3`` RGB or ``× 4`` RGBA) or a Figure as PNG.

    The file appears atomically (written under a temporary name in the same folder, then renamed); an existing
    file is only replaced with ``overwrite=True`` (else :class:`~hsra_cli.errors.OutputExistsError`).
    Figures are written at ``dpi`` dots per inch. Returns the path written.
    """
    from .io import atomic_output

    path = Path(path)
    if isinstance(image_or_figure, np.ndarray):
        image = image_or_figure
        if image.dtype != np.uint8:
            raise TypeError(f"save_png writes uint8 images; got dtype {image.dtype} (render it first)")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ShapeError(f"an image must be H×W, H×W×3 or H×W×4, got shape {image.shape}")
        import imageio.v3 as iio

        with atomic_output(path, overwrite) as temporary:
            # The temporary name may not end in .png: name the format explicitly.
            iio.imwrite(temporary, image, extension=".png")
    else:
        figure = image_or_figure
        if not hasattr(figure, "savefig"):
            raise TypeError(f"save_png expects a uint8 array or a matplotlib Figure, got {type(figure).__name__}")
        with atomic_output(path, overwrite) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
    return path


def preview_paths(out_dir, stem: str) -> list[Path]:
    """The files :func:`write_previews` writes: ``<stem>_rgb.png`` and ``<stem>_bands.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return [out_dir / f"{stem}_rgb.png", out_dir / f"{stem}_bands.png"]


def write_previews(cube, wavelengths_nm, out_dir, stem: str, overwrite: bool = False,
                   exposure: Exposure = "auto", white_balance: bool = True) -> list[Path]:
    """Write the standard previews of a cube: ``<stem>_rgb.png`` (false colour) and ``<stem>_bands.png``.

    ``cube`` is ``H × W × C``; ``out_dir`` is created if missing. Both paths are checked before anything is
    written, so an existing file (without ``overwrite``) leaves no partial output. Returns the paths written.
    """
    rgb_path, bands_path = preview_paths(out_dir, stem)
    check_outputs([rgb_path, bands_path], overwrite)
    array = _as_cube(cube)
    rgb = false_color(array, wavelengths_nm, exposure=exposure, white_balance=white_balance)
    grid = band_grid(array, wavelengths_nm, title=stem)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [save_png(rgb_path, rgb, overwrite), save_png(bands_path, grid, overwrite)]
