"""Previews: false colour, band grid, spectra, error maps, PNG writing, and `hsra render`."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from hsra_cli import render
from hsra_cli.bands import CASSI28_WAVELENGTHS_NM, default_wavelengths
from hsra_cli.errors import OutputExistsError, ShapeError, UsageError, ValueRangeError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WAVELENGTHS = default_wavelengths(28)


def narrow_band_cube(low_nm: float, high_nm: float, size: int = 4) -> np.ndarray:
    """A cube that is 1 only in the bands between ``low_nm`` and ``high_nm``."""
    selected = (WAVELENGTHS >= low_nm) & (WAVELENGTHS <= high_nm)
    assert selected.any(), "the test's band range must select at least one band"
    cube = np.zeros((size, size, 28))
    cube[..., selected] = 1.0
    return cube


def random_cube(height: int = 12, width: int = 10, bands: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (height, width, bands)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# false colour


@pytest.mark.parametrize("illuminant", ["E", "D65", "D50", "A", "FL2"])
def test_a_grey_lit_by_the_illuminant_renders_neutral(illuminant):
    from hsra_cli.synth import illuminant_library

    light = np.ones(28) if illuminant == "E" else illuminant_library(WAVELENGTHS, [illuminant])[illuminant]
    image = render.false_color(np.full((3, 3, 28), 0.4) * light, WAVELENGTHS, exposure="auto", illuminant=illuminant)
    assert image.dtype == np.uint8 and image.shape == (3, 3, 3)
    red, green, blue = (int(v) for v in image[1, 1])
    assert max(red, green, blue) - min(red, green, blue) <= 1


def test_the_default_white_point_is_d65_so_a_flat_spectrum_renders_warm():
    # A flat spectrum is white under illuminant E, which is redder than daylight: by default it renders warm.
    red, green, blue = (int(v) for v in render.false_color(np.full((2, 2, 28), 0.4), exposure=1.0)[0, 0])
    assert red > green > blue
    assert render.DEFAULT_ILLUMINANT == "D65"


def test_grey_world_and_grey_patch_white_balance_neutralise_a_cast():
    cube = np.random.default_rng(2).uniform(0.2, 0.8, (20, 20, 28))
    cube *= np.linspace(1.5, 0.5, 28)  # a strong blue cast on every pixel
    cube[:5, :5] = 0.5 * np.linspace(1.5, 0.5, 28)  # a grey patch under the same light
    grey_world = render.false_color(cube, WAVELENGTHS, white_balance="grey-world").reshape(-1, 3).mean(axis=0)
    assert np.ptp(grey_world) < 0.05 * grey_world.mean()
    patch = render.false_color(cube, WAVELENGTHS, white_balance="patch", grey_patch=(2, 2, 2))[2, 2].astype(int)
    assert np.ptp(patch) <= 2
    cast = render.false_color(cube, WAVELENGTHS, white_balance="illuminant")[2, 2].astype(int)
    assert cast[2] > cast[0] + 40  # without balancing from the image the blue cast shows
    with pytest.raises(UsageError, match="grey patch"):
        render.false_color(cube, WAVELENGTHS, white_balance="patch")
    with pytest.raises(UsageError, match="outside"):
        render.false_color(cube, WAVELENGTHS, white_balance="patch", grey_patch=(30, 2))
    with pytest.raises(UsageError, match="illuminant"):
        render.false_color(cube, WAVELENGTHS, illuminant="D66")


def test_the_bundled_chart_renders_its_neutral_patches_neutral_by_default():
    from hsra_cli.io import read_cube
    from hsra_cli.synth import colorchecker_patch_boxes

    cube, loaded = read_cube(Path(__file__).resolve().parents[1] / "samples/colorchecker/cube/colorchecker.mat")
    image = render.false_color(cube, loaded.metadata["wavelengths_nm"])
    linear = (image / 255.0 + 0.055) / 1.055
    linear = np.where(image / 255.0 <= 0.04045, image / 255.0 / 12.92, linear ** 2.4)  # sRGB decoding
    for top, left, bottom, right in colorchecker_patch_boxes(*cube.shape[:2])[18:]:  # the six greys
        margin_y, margin_x = (bottom - top) // 4, (right - left) // 4
        red, green, blue = linear[top + margin_y: bottom - margin_y, left + margin_x: right - margin_x].reshape(-1, 3).mean(axis=0)
        assert abs(red / green - 1) < 0.03 and abs(blue / green - 1) < 0.03, (red / green, blue / green)


def test_flat_spectrum_is_not_neutral_without_white_balance():
    # The 453.5-648 nm bands miss the deep blue: an unbalanced white leans yellow (blue well below red/green).
    red, green, blue = (int(v) for v in render.false_color(np.full((2, 2, 28), 0.4), white_balance=False)[0, 0])
    assert blue < min(red, green) - 40


@pytest.mark.parametrize(
    "low_nm, high_nm, dominant",
    [(610.0, 650.0, 0), (530.0, 550.0, 1), (453.0, 466.0, 2)],
    ids=["red-610-650nm", "green-530-550nm", "blue-455-466nm"],
)
@pytest.mark.parametrize("white_balance", [True, False])
def test_narrow_band_spectra_render_their_hue(low_nm, high_nm, dominant, white_balance):
    pixel = render.false_color(narrow_band_cube(low_nm, high_nm), WAVELENGTHS, white_balance=white_balance)[0, 0]
    others = [int(pixel[c]) for c in range(3) if c != dominant]
    assert int(pixel[dominant]) > max(others) + 60, f"pixel {pixel} is not dominated by channel {dominant}"


def test_auto_exposure_puts_bright_content_near_white_and_fixed_exposure_keeps_levels():
    dark, bright = np.full((4, 4, 28), 0.1), np.full((4, 4, 28), 0.8)
    assert np.array_equal(render.false_color(dark), render.false_color(bright))
    # Y = 0.95 after auto exposure -> sRGB level round(255 * encode(0.95)) = 249 (a grey under illuminant E).
    assert int(render.false_color(bright, illuminant="E")[0, 0, 1]) == 249
    # exposure 1: a 20 % grey is linear 0.2 -> sRGB-encoded 0.4845 -> 124; exposure 2 doubles the linear value.
    assert int(render.false_color(np.full((2, 2, 28), 0.2), exposure=1.0, illuminant="E")[0, 0, 1]) == 124
    assert np.array_equal(render.false_color(np.full((2, 2, 28), 0.2), exposure=2.0),
                          render.false_color(np.full((2, 2, 28), 0.4), exposure=1.0))


def test_auto_exposure_ignores_the_brightest_half_percent():
    cube = np.full((20, 20, 28), 0.3)
    cube[0, 0] = 50.0  # one hot pixel (0.25 %) must not darken the rest
    image = render.false_color(cube, illuminant="E")
    assert int(image[5, 5, 1]) == 249 and tuple(image[0, 0]) == (255, 255, 255)


def test_false_color_clips_negative_values_and_rejects_nan():
    cube = np.full((2, 2, 28), 0.5)
    cube[0, 0] = -0.3
    assert tuple(render.false_color(cube, exposure=1.0)[0, 0]) == (0, 0, 0)
    cube[1, 1, 3] = np.nan
    with pytest.raises(ValueRangeError):
        render.false_color(cube)


def test_false_color_checks_wavelengths_and_exposure():
    with pytest.raises(ShapeError, match="27 wavelengths"):
        render.false_color(np.zeros((2, 2, 28)), WAVELENGTHS[:27])
    with pytest.raises(ShapeError, match="H×W×C"):
        render.false_color(np.zeros((2, 28)))
    with pytest.raises(ValueRangeError, match="increasing"):
        render.false_color(np.zeros((2, 2, 28)), WAVELENGTHS[::-1])
    with pytest.raises(ValueRangeError, match="360"):
        render.false_color(np.ones((2, 2, 3)), [900.0, 950.0, 1000.0])
    with pytest.raises(UsageError, match="exposure"):
        render.false_color(np.ones((2, 2, 28)), exposure=-1.0)


def test_bands_outside_the_visible_range_do_not_change_the_colour():
    wavelengths = [480.0, 530.0, 580.0, 630.0, 900.0]
    cube = np.random.default_rng(1).uniform(0, 1, (3, 3, 5))
    dark_infrared, bright_infrared = cube.copy(), cube.copy()
    dark_infrared[..., 4], bright_infrared[..., 4] = 0.0, 1.0
    assert np.array_equal(render.false_color(dark_infrared, wavelengths),
                          render.false_color(bright_infrared, wavelengths))


def test_measurement_preview_scales_to_the_999th_percentile():
    measurement = np.linspace(0.0, 2.0, 100 * 110).reshape(100, 110)
    image = render.measurement_preview(measurement)
    assert image.dtype == np.uint8 and image.shape == (100, 110)
    level = np.percentile(measurement, 99.9)
    assert image[0, 0] == 0 and image[-1, -1] == 255
    assert abs(int(image[50, 55]) - round(255 * measurement[50, 55] / level)) <= 1
    assert not render.measurement_preview(np.zeros((4, 6))).any()
    with pytest.raises(ShapeError):
        render.measurement_preview(np.zeros((2, 4, 6)))


# --------------------------------------------------------------------------------------------------------------
# figures


def test_band_grid_has_one_axis_per_band_titled_with_its_wavelength_on_a_7_by_4_grid():
    figure = render.band_grid(random_cube(8, 8), WAVELENGTHS, title="scene")
    images = [ax for ax in figure.axes if ax.get_images()]
    assert [ax.get_title() for ax in images] == [f"{w:.1f} nm" for w in CASSI28_WAVELENGTHS_NM]
    assert images[0].get_title() == "453.5 nm" and images[-1].get_title() == "648.0 nm"
    assert images[0].get_subplotspec().get_gridspec().get_geometry() == (4, 7)
    # One shared intensity scale for every band.
    assert len({ax.get_images()[0].get_clim() for ax in images}) == 1


def test_band_grid_colour_bar_names_its_unit_and_sits_beside_the_grid():
    figure = render.band_grid(random_cube(8, 8), WAVELENGTHS, unit="reflectance (0–1)")
    bar = [ax for ax in figure.axes if not ax.get_images()]
    assert len(bar) == 1 and bar[0].get_ylabel() == "reflectance (0–1)"
    assert render.band_grid(random_cube(8, 8)).axes[-1].get_ylabel() == render.BAND_UNIT
    panels = [ax for ax in figure.axes if ax.get_images()]
    right_edge = max(ax.get_position().x1 for ax in panels)
    # The bar follows the last column after a small gap (no empty band of figure between them).
    assert 0 < bar[0].get_position().x0 - right_edge < 0.03


def test_band_grid_draws_large_cubes_area_averaged_to_the_panel_size():
    cube = random_cube(900, 700, 4)
    figure = render.band_grid(cube, [450.0, 500.0, 550.0, 600.0], dpi=100)
    shown = figure.axes[0].get_images()[0].get_array()
    assert max(shown.shape) <= 160 + 10  # 1.6 inch panels at 100 dpi
    assert np.isclose(shown.mean(), cube[..., 0].mean(), atol=2e-3)  # averaging keeps the level
    assert figure.axes[0].get_images()[0].get_extent() == [-0.5, 699.5, 899.5, -0.5]  # pixel coordinates kept


@pytest.mark.parametrize("bands, grid", [(1, (1, 1)), (24, (4, 6)), (31, (4, 8))])
def test_band_grid_layout_stays_close_to_square(bands, grid):
    figure = render.band_grid(random_cube(6, 6, bands), default_wavelengths(bands))
    images = [ax for ax in figure.axes if ax.get_images()]
    assert len(images) == bands
    assert images[0].get_subplotspec().get_gridspec().get_geometry() == grid


def test_spectra_plot_reads_x_as_column_and_y_as_row_and_dashes_the_truth():
    cube = random_cube(12, 10)
    truth = random_cube(12, 10, seed=1)
    figure = render.spectra_plot(cube, [(7, 2), (0, 11)], WAVELENGTHS, truth=truth, labels=["a", "b"])
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "a truth", "b", "b truth"]
    assert np.allclose(lines[0].get_xdata(), WAVELENGTHS)
    assert np.allclose(lines[0].get_ydata(), cube[2, 7])
    assert np.allclose(lines[1].get_ydata(), truth[2, 7]) and lines[1].get_linestyle() == "--"
    # the default labels spell the coordinates out: the CLI's --pixel is ROW,COL, the library's points (x, y)
    figure = render.spectra_plot(cube, [(7, 2)], WAVELENGTHS)
    assert figure.axes[0].get_lines()[0].get_label() == "1 (row 2, col 7)"
    assert np.allclose(lines[2].get_ydata(), cube[11, 0])
    assert "wavelength (nm)" in figure.axes[0].get_xlabel()


def test_spectra_plot_radius_averages_a_square_clipped_at_the_border():
    cube = random_cube(12, 10)
    lines = render.spectra_plot(cube, [(5, 5), (0, 0)], radius=1).axes[0].get_lines()
    assert np.allclose(lines[0].get_ydata(), cube[4:7, 4:7].mean(axis=(0, 1)))
    assert np.allclose(lines[1].get_ydata(), cube[0:2, 0:2].mean(axis=(0, 1)))


def test_spectra_plot_marks_its_points_on_an_image_of_the_scene():
    cube = random_cube(12, 10)
    figure = render.spectra_plot(cube, [(7, 2), (0, 11)], WAVELENGTHS, radius=1)
    curves, image_ax = figure.axes
    assert np.array_equal(image_ax.get_images()[0].get_array(), render.false_color(cube, WAVELENGTHS))
    markers = image_ax.get_lines()
    assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in markers] == [(7, 2), (0, 11)]
    # Each marker has its spectrum's colour and number.
    assert [m.get_markeredgecolor() for m in markers] == [line.get_color() for line in curves.get_lines()]
    assert [t.get_text() for t in image_ax.texts] == ["1", "2"]
    assert len(image_ax.patches) == 2  # the averaged squares


def test_spectra_plot_rejects_points_outside_the_image():
    with pytest.raises(UsageError, match="outside"):
        render.spectra_plot(random_cube(12, 10), [(10, 3)])


def test_error_statistics_of_identical_cubes_are_zero():
    cube = random_cube()
    rmse_map, band_rmse = render.error_statistics(cube, cube.copy())
    assert rmse_map.shape == (12, 10) and band_rmse.shape == (28,)
    assert not rmse_map.any() and not band_rmse.any()


def test_error_statistics_measure_a_known_offset_and_clip_the_prediction():
    truth = np.full((4, 5, 28), 0.5)
    prediction = truth.copy()
    prediction[..., 3] += 0.28  # RMSE over 28 bands: sqrt(0.28² / 28) = 0.0529
    prediction[0, 0, 0] = 7.0  # clipped to 1 as the metrics do: error 0.5
    rmse_map, band_rmse = render.error_statistics(prediction, truth)
    assert np.isclose(rmse_map[2, 2], 0.28 / np.sqrt(28))
    assert np.isclose(band_rmse[3], 0.28)
    assert np.isclose(rmse_map[0, 0], np.sqrt((0.28 ** 2 + 0.5 ** 2) / 28))
    with pytest.raises(ShapeError):
        render.error_statistics(prediction, truth[:, :4])


def test_error_map_shows_the_map_the_band_curve_and_the_psnr():
    truth = random_cube(8, 8)
    figure = render.error_map(np.clip(truth + 0.01, 0, 1), truth)
    image_axes = [ax for ax in figure.axes if ax.get_images()]
    assert len(image_axes) == 1 and image_axes[0].get_images()[0].get_array().shape == (8, 8)
    curve = [ax for ax in figure.axes if ax.get_lines()][0].get_lines()[0]
    assert np.allclose(curve.get_xdata(), WAVELENGTHS)
    title = figure.get_suptitle()
    assert "RMSE" in title
    pytest.importorskip("hsra_cli.metrics")
    assert "PSNR" in title and "dB" in title


def test_error_map_psnr_is_the_field_convention_of_evaluate_and_the_comparison_panels():
    from hsra_cli.metrics import psnr

    truth = random_cube(8, 8)
    pred = np.clip(truth + 0.03, 0, 1)
    title = render.error_map(pred, truth).get_suptitle()
    assert f"PSNR {psnr(pred, truth):.2f} dB (field convention)" in title
    assert f"{psnr(pred, truth, convention='float'):.2f}" not in title


def test_error_map_colour_bar_is_clipped_at_a_percentile():
    truth = random_cube(20, 20)
    prediction = np.clip(truth + 0.01, 0, 1)
    prediction[0, 0] = 1.0 - truth[0, 0]  # one large outlier
    figure = render.error_map(prediction, truth)
    image = figure.axes[0].get_images()[0]
    rmse_map, _ = render.error_statistics(prediction, truth)
    assert np.isclose(image.get_clim()[1], np.percentile(rmse_map, 99))
    assert image.get_clim()[1] < 0.5 * rmse_map.max()
    bar = figure.axes[-1]
    assert "99th pct" in bar.get_ylabel() and "largest pixel RMSE" in figure.get_suptitle()
    unclipped = render.error_map(prediction, truth, clip_percentile=100).axes[0].get_images()[0]
    assert np.isclose(unclipped.get_clim()[1], rmse_map.max())


def test_side_by_side_labels_every_cube_and_puts_the_truth_last():
    truth = random_cube(8, 8)
    figure = render.side_by_side([truth * 0.9, truth * 0.5], ["mst", "gap-tv"], truth=truth)
    panels = [ax for ax in figure.axes if ax.get_images()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["mst", "gap-tv", "ground truth"]
    # Each method's panel shows its PSNR against the truth (field convention), computed by hsra_cli.metrics.
    from hsra_cli.metrics import psnr

    assert panels[0].get_title() == f"mst\nPSNR {psnr(truth * 0.9, truth):.2f} dB"
    assert panels[2].get_title() == "ground truth"
    assert "PSNR" not in render.side_by_side([truth], ["a"]).axes[0].get_title()
    # One exposure for all panels: the half-bright cube renders darker than the truth.
    assert panels[1].get_images()[0].get_array().mean() < panels[2].get_images()[0].get_array().mean() - 20
    with pytest.raises(ShapeError):
        render.side_by_side([truth, truth[:4]], ["a", "b"])


# --------------------------------------------------------------------------------------------------------------
# writing PNGs


def test_save_png_writes_images_and_figures_with_the_expected_sizes(tmp_path):
    image = render.false_color(random_cube(12, 10))
    path = render.save_png(tmp_path / "rgb.png", image)
    assert np.array_equal(iio.imread(path), image)
    grey = render.measurement_preview(np.arange(30.0).reshape(5, 6))
    assert iio.imread(render.save_png(tmp_path / "meas.png", grey)).shape == (5, 6)
    figure = render.spectra_plot(random_cube(), [(1, 1)])
    width_in, height_in = figure.get_size_inches()
    written = iio.imread(render.save_png(tmp_path / "spectra.png", figure, dpi=100))
    assert written.shape[:2] == (round(height_in * 100), round(width_in * 100))
    written = iio.imread(render.save_figure(tmp_path / "spectra300.png", figure, dpi=300))
    assert written.shape[:2] == (round(height_in * 300), round(width_in * 300))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meas.png", "rgb.png", "spectra.png", "spectra300.png"]


def test_figures_are_written_as_pdf_and_svg_too(tmp_path):
    figure = render.band_grid(random_cube(8, 8), WAVELENGTHS)
    pdf = render.save_figure(tmp_path / "bands.pdf", figure)
    svg = render.save_figure(tmp_path / "bands.svg", figure)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert b"<svg" in svg.read_bytes()[:2000] and b"453.5 nm" in svg.read_bytes()
    with pytest.raises(UsageError, match="png, pdf, svg"):
        render.save_figure(tmp_path / "bands.jpg", figure)
    with pytest.raises(UsageError, match="dpi"):
        render.save_figure(tmp_path / "bands.png", figure, dpi=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.pdf", "bands.svg"]


def test_save_png_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "rgb.png"
    path.write_bytes(b"old")
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(OutputExistsError):
        render.save_png(path, image)
    assert path.read_bytes() == b"old"
    render.save_png(path, image, overwrite=True)
    assert iio.imread(path).shape == (4, 4, 3)
    with pytest.raises(ValueRangeError, match="uint8"):  # a project error, not a plain TypeError
        render.save_png(tmp_path / "float.png", np.zeros((4, 4, 3)))


def test_write_previews_writes_rgb_and_band_grid_and_leaves_nothing_partial(tmp_path):
    cube = random_cube(16, 12)
    paths = render.write_previews(cube, WAVELENGTHS, tmp_path / "out", "scene01")
    assert [p.name for p in paths] == ["scene01_rgb.png", "scene01_bands.png"]
    assert iio.imread(paths[0]).shape == (16, 12, 3)
    assert iio.imread(paths[1]).ndim == 3
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "scene01_bands.png").write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        render.write_previews(cube, WAVELENGTHS, fresh, "scene01")
    assert sorted(p.name for p in fresh.iterdir()) == ["scene01_bands.png"]  # no rgb written either


# --------------------------------------------------------------------------------------------------------------
# `hsra render`


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from hsra_cli.cli import main

    code = main(["render", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def cube_files(tmp_path):
    """Two reconstructions of one 16×12 scene and its truth, as .npy files (H×W×C float in [0, 1])."""
    truth = random_cube(16, 12, seed=3)
    paths = {}
    for name, cube in {"truth": truth, "mst": np.clip(truth + 0.02, 0, 1), "gaptv": truth * 0.8}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], cube.astype(np.float32))
    return paths


def test_cli_writes_previews_and_prints_their_paths(cube_files, tmp_path, capsys):
    out = tmp_path / "previews"
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "-o", out, "--point", "3,4", "--point", "11,15",
                                   "--truth", cube_files["truth"], "-q")
    assert code == 0, stderr
    names = ["mst_rgb.png", "mst_bands.png", "mst_spectra.png", "mst_error.png"]
    assert stdout.splitlines() == [str(out / name) for name in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert iio.imread(out / "mst_rgb.png").shape == (16, 12, 3)
    assert stderr == ""


def test_cli_side_by_side_writes_one_comparison(cube_files, tmp_path, capsys):
    out = tmp_path / "figs"
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], cube_files["gaptv"], "--truth", cube_files["truth"],
                                   "--pair-by-position", "--side-by-side", "-o", out, "-q")
    assert code == 0, stderr
    # Named after the scene: the truth's name when the cubes' names differ.
    assert stdout.splitlines()[-1] == str(out / "truth_comparison.png")
    assert {"mst_error.png", "gaptv_error.png", "truth_comparison.png"} <= {p.name for p in out.iterdir()}


def _comparison_titles(monkeypatch, run):
    """Run ``run()`` and return the panel titles of the comparison figure it saved."""
    seen = {}
    original = render.side_by_side

    def spy(*args, **kwargs):
        figure = original(*args, **kwargs)
        seen["titles"] = [ax.get_title() for ax in figure.axes if ax.get_images()]
        seen["suptitle"] = figure.get_suptitle()
        return figure

    monkeypatch.setattr(render, "side_by_side", spy)
    run()
    return seen


def test_cli_side_by_side_compares_same_named_cubes_labelled_by_their_records(tmp_path, capsys, monkeypatch):
    import json

    from hsra_cli.metrics import psnr

    truth = random_cube(16, 12, seed=3)
    cubes = {"hsra-s": np.clip(truth + 0.02, 0, 1), "gap-tv": truth * 0.8}
    for method, cube in cubes.items():  # as `hsra reconstruct --model M -o M/` leaves them
        folder = tmp_path / method
        folder.mkdir()
        np.save(folder / "scene07.npy", cube.astype(np.float32))
        (folder / "scene07.json").write_text(json.dumps({"model": method}))
    (tmp_path / "truth").mkdir()
    np.save(tmp_path / "truth" / "scene07.npy", truth)
    out = tmp_path / "figs"
    seen = _comparison_titles(monkeypatch, lambda: run_cli(
        capsys, tmp_path / "hsra-s" / "scene07.npy", tmp_path / "gap-tv" / "scene07.npy",
        "--truth", tmp_path / "truth" / "scene07.npy", "--side-by-side", "-o", out, "-q"))
    names = {p.name for p in out.iterdir()}
    assert {"scene07_comparison.png", "scene07_hsra-s_rgb.png", "scene07_gap-tv_rgb.png",
            "scene07_hsra-s_error.png"} <= names
    expected = [f"{m}\nPSNR {psnr(cube.astype(np.float32), truth):.2f} dB" for m, cube in cubes.items()]
    assert seen["titles"] == [*expected, "ground truth"]
    assert seen["suptitle"] == "scene07"


def test_cli_label_overrides_and_must_match_the_cube_count(cube_files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "figs"
    seen = _comparison_titles(monkeypatch, lambda: run_cli(
        capsys, cube_files["mst"], cube_files["gaptv"], "--label", "MST-L", "--label", "GAP-TV",
        "--side-by-side", "-o", out, "-q"))
    assert seen["titles"] == ["MST-L", "GAP-TV"]  # no truth: no PSNR
    code, _, stderr = run_cli(capsys, cube_files["mst"], cube_files["gaptv"], "--label", "a", "-o", tmp_path / "x")
    assert code == 2 and "--label" in stderr and len(stderr.splitlines()) == 1


def test_cli_colour_options_and_vector_figures(cube_files, tmp_path, capsys):
    out = tmp_path / "figs"
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "--illuminant", "A", "--white-balance", "grey-world",
                                   "--point", "3,4", "--figure-format", "svg", "--dpi", "200", "-o", out, "-q")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["mst_bands.svg", "mst_rgb.png", "mst_spectra.svg"]
    expected = render.false_color(np.load(cube_files["mst"]), white_balance="grey-world", illuminant="A")
    assert np.array_equal(iio.imread(out / "mst_rgb.png"), expected)
    code, _, stderr = run_cli(capsys, cube_files["mst"], "--grey-patch", "2,3", "-o", tmp_path / "p", "-q")
    assert code == 0, stderr
    patched = render.false_color(np.load(cube_files["mst"]), white_balance="patch", grey_patch=(3, 2))  # ROW,COL 2,3 is (x, y) = (3, 2)
    assert np.array_equal(iio.imread(tmp_path / "p" / "mst_rgb.png"), patched)
    for bad in (["--illuminant", "D66"], ["--white-balance", "auto"], ["--grey-patch", "2"], ["--dpi", "0"],
                ["--figure-format", "jpg"]):
        code, _, stderr = run_cli(capsys, cube_files["mst"], *bad, "-o", tmp_path / "bad", "-q")
        assert code == 2 and stderr.startswith("hsra: error:") and len(stderr.splitlines()) == 1, (bad, stderr)
        assert not (tmp_path / "bad").exists()


def test_cli_refuses_to_overwrite_and_keeps_the_old_file(cube_files, tmp_path, capsys):
    out = tmp_path / "previews"
    out.mkdir()
    (out / "mst_bands.png").write_bytes(b"old")
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "-o", out)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("hsra: error:") and "--overwrite" in stderr and len(stderr.splitlines()) == 1
    assert (out / "mst_bands.png").read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == ["mst_bands.png"]  # checked up front: nothing else written
    code, _, stderr = run_cli(capsys, cube_files["mst"], "-o", out, "--overwrite", "-q")
    assert code == 0, stderr
    assert iio.imread(out / "mst_bands.png").ndim == 3


@pytest.mark.parametrize("point", ["3;4", "a,b", "3", "99,1"])
def test_cli_rejects_a_bad_point_with_one_line_and_exit_code_2(cube_files, tmp_path, capsys, point):
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "-o", tmp_path / "p", "--point", point, "-q")
    assert code == 2
    assert stderr.startswith("hsra: error:") and len(stderr.splitlines()) == 1
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_cli_checks_truth_count_and_wavelengths(cube_files, tmp_path, capsys):
    code, _, stderr = run_cli(capsys, cube_files["mst"], cube_files["gaptv"], "-o", tmp_path / "x",
                              "--truth", cube_files["truth"], "--truth", cube_files["mst"],
                              "--truth", cube_files["gaptv"], "--pair-by-position")
    assert code == 2 and "--pair-by-position got 2 cube(s) and 3 truth(s)" in stderr
    assert not (tmp_path / "x").exists()
    wavelengths = tmp_path / "wl.txt"
    wavelengths.write_text("\n".join(str(w) for w in WAVELENGTHS[:27]))
    code, _, stderr = run_cli(capsys, cube_files["mst"], "-o", tmp_path / "y", "--wavelengths", wavelengths, "-q")
    assert code == 2 and "--wavelengths gives 27" in stderr and len(stderr.splitlines()) == 1
    assert not (tmp_path / "y").exists()
    code, _, stderr = run_cli(capsys, cube_files["mst"], "-o", tmp_path / "w", "--wavelengths", "500,490,480", "-q")
    assert code == 2 and "increasing" in stderr
    code, _, stderr = run_cli(capsys, cube_files["mst"], "-o", tmp_path / "z", "--exposure", "bright")
    assert code == 2 and "--exposure" in stderr


def test_cli_scales_integer_cubes_and_uses_the_wavelengths_stored_in_the_file(tmp_path, capsys):
    cube = np.random.default_rng(5).integers(0, 256, (10, 9, 4), dtype=np.uint8)
    wavelengths = np.array([470.0, 520.0, 570.0, 620.0])
    np.savez(tmp_path / "scene.npz", cube=cube, wavelengths_nm=wavelengths)
    code, _, stderr = run_cli(capsys, tmp_path / "scene.npz", "-o", tmp_path / "out")
    assert code == 0, stderr
    assert "scaled by 1/255" in stderr
    expected = render.false_color(cube / 255.0, wavelengths)
    assert np.array_equal(iio.imread(tmp_path / "out" / "scene_rgb.png"), expected)


def test_cli_refuses_cubes_whose_previews_would_collide(cube_files, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "mst.npy", np.load(cube_files["mst"]))
    code, _, stderr = run_cli(capsys, cube_files["mst"], other / "mst.npy", "--label", "a", "--label", "a",
                              "-o", tmp_path / "out")
    assert code == 2 and "collide" in stderr
    assert not (tmp_path / "out").exists()
    # Without labels the folders' names tell them apart.
    code, _, stderr = run_cli(capsys, cube_files["mst"], other / "mst.npy", "-o", tmp_path / "out", "-q")
    assert code == 0, stderr
    assert {f"mst_{tmp_path.name}_rgb.png", "mst_other_rgb.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_cli_help_has_examples():
    from typer.testing import CliRunner

    from hsra_cli.cli import app

    result = CliRunner().invoke(app, ["render", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "--side-by-side" in result.output


# --------------------------------------------------------------------------------------------------------------
# real data


def test_kaist_scene_renders_colourful_but_balanced():
    path = DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    with np.load(path) as data:
        truth = data["truth"][0, ::2, ::2].astype(np.float32) / 255.0  # 128×128 keeps the test fast
        wavelengths = data["wavelengths_nm"]
    image = render.false_color(truth, wavelengths)
    assert image.shape == (128, 128, 3)
    means = image.reshape(-1, 3).mean(axis=0)
    # A natural scene: no channel is starved (white balance works) and the image is neither black nor blown out.
    assert means.min() > 0.5 * means.max()
    assert 40 < means.mean() < 200
    # ... and it is in colour: a good share of pixels is clearly saturated.
    spread = image.max(axis=2).astype(int) - image.min(axis=2).astype(int)
    assert (spread > 40).mean() > 0.05


# --------------------------------------------------------------------------------------------------------------
# `hsra render`: option conflicts, wording, one-line failures


@pytest.mark.parametrize("balance", ["none", "grey-world", "illuminant"])
def test_cli_refuses_grey_patch_with_an_explicit_white_balance(cube_files, tmp_path, capsys, balance):
    from test_cli_pipeline import one_line_error

    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "--grey-patch", "2,3", "--white-balance", balance,
                                   "-o", tmp_path / "p")
    assert code == 2 and stdout == ""
    line = one_line_error(stderr)
    assert "--grey-patch" in line and f"--white-balance {balance}" in line
    assert not (tmp_path / "p").exists()


def test_cli_help_marks_out_as_required(capsys):
    import re

    from typer.testing import CliRunner

    from hsra_cli.cli import app

    result = CliRunner().invoke(app, ["render", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert re.search(r"│ \* +--out +-o ", result.output), result.output
    code, stdout, stderr = run_cli(capsys, "cube.npy")
    assert code == 2 and "Missing option '-o' / '--out'" in stderr and len(stderr.splitlines()) == 1


def test_cli_names_a_pixel_outside_the_image_by_row_and_column(cube_files, tmp_path, capsys):
    from test_cli_pipeline import one_line_error

    code, _, stderr = run_cli(capsys, cube_files["mst"], "--pixel", "-1,5", "-o", tmp_path / "p")
    line = one_line_error(stderr)
    assert code == 2
    assert "--pixel at row -1, column 5 lies outside the 16×12 (rows×columns) image" in line
    assert "x=" not in line and "W×H" not in line
    code, _, stderr = run_cli(capsys, cube_files["mst"], "--grey-patch", "20,1", "-o", tmp_path / "p")
    assert code == 2 and "--grey-patch at row 20, column 1 lies outside" in one_line_error(stderr)
    assert not (tmp_path / "p").exists()


def test_cli_a_single_bad_cube_gives_only_the_error_line(tmp_path, capsys):
    from test_cli_pipeline import one_line_error

    (tmp_path / "bad.mat").write_text("not a MATLAB file")
    code, stdout, stderr = run_cli(capsys, tmp_path / "bad.mat", "-o", tmp_path / "r")
    assert code == 1 and stdout == ""
    assert "bad.mat" in one_line_error(stderr)
    assert not (tmp_path / "r").exists()


def test_cli_an_output_folder_that_cannot_be_created_is_one_line(cube_files, tmp_path, capsys, monkeypatch):
    from test_cli_pipeline import one_line_error

    target = tmp_path / "locked" / "previews"
    original = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self in (target, target.parent):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "-o", target)
    assert code == 1 and stdout == ""
    line = one_line_error(stderr)
    assert str(target) in line and "Permission denied" in line and "internal error" not in line
    assert not (tmp_path / "locked").exists()


def test_cli_a_cube_whose_files_cannot_be_written_fails_alone(tmp_path, capsys, monkeypatch):
    """In a run of several cubes, one whose previews fail to write (a full disk) fails alone: its begun files
    are removed, the others are written, the summary counts it (it used to stop the whole run)."""
    import errno
    import os

    import hsra_cli.render as render
    from hsra_cli.errors import HsraError
    from hsra_cli.io import write_cube
    from test_cli_pipeline import run, smooth_cube

    for name in ("a", "b", "c"):
        write_cube(tmp_path / f"{name}.mat", smooth_cube(16, 16))
    real = render.save_figure

    def full_for_b(path, *args, **kwargs):
        if Path(path).name.startswith("b_"):
            raise HsraError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(render, "save_figure", full_for_b)
    code, out, err = run(["render", tmp_path / "a.mat", tmp_path / "b.mat", tmp_path / "c.mat", "-o", tmp_path / "r"],
                         capsys)
    assert code == 1 and "No space left on device" in err
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert not [n for n in names if n.startswith("b_")]  # b's false-colour PNG, written first, is gone again
    assert any(n.startswith("a_") for n in names) and any(n.startswith("c_") for n in names)


# --------------------------------------------------------------------------------------------------------------
# `hsra render`: the inputs of every command (--truth paired by name, stack scenes), wavelengths, formats


def _error_map_pairs(monkeypatch):
    """Spy on the error maps drawn: a list that fills with (cube, truth) as each is drawn."""
    drawn = []
    original = render.error_map

    def spy(cube, truth, *args, **kwargs):
        drawn.append((np.asarray(cube).copy(), np.asarray(truth).copy()))
        return original(cube, truth, *args, **kwargs)

    monkeypatch.setattr(render, "error_map", spy)
    return drawn


@pytest.fixture()
def two_scenes(tmp_path):
    """Truths a_0, a_1 of two different scenes (as files in truth/ and as a stack), reconstructions in rec/."""
    truths = [random_cube(16, 12, seed=10 + i) for i in range(2)]
    (tmp_path / "truth").mkdir()
    (tmp_path / "rec").mkdir()
    for i, truth in enumerate(truths):
        np.save(tmp_path / "truth" / f"a_{i}.npy", truth)
        np.save(tmp_path / "rec" / f"a_{i}.npy", np.clip(truth + 0.01, 0, 1).astype(np.float32))
    np.savez(tmp_path / "stack.npz", truth=np.stack(truths))
    return tmp_path, truths


def test_cli_truth_takes_the_inputs_of_evaluate_and_pairs_by_name(two_scenes, capsys, monkeypatch):
    tmp_path, truths = two_scenes
    rec = [tmp_path / "rec" / "a_0.npy", tmp_path / "rec" / "a_1.npy"]
    drawn = _error_map_pairs(monkeypatch)

    def own_truths():  # each cube's error map was drawn against its own scene's truth
        assert len(drawn) == 2
        for cube, truth in drawn:
            assert np.array_equal(truth, truths[int(np.argmin([np.abs(cube - t).mean() for t in truths]))])
        drawn.clear()

    # Given in the other order, the truths still pair by name (they used to pair by position, crossed).
    code, _, stderr = run_cli(capsys, *rec, "--truth", tmp_path / "truth" / "a_1.npy",
                              "--truth", tmp_path / "truth" / "a_0.npy", "-o", tmp_path / "o1", "-q")
    assert code == 0, stderr
    own_truths()
    for spec in (tmp_path / "truth", str(tmp_path / "truth" / "*.npy")):  # a folder, a quoted pattern
        code, _, stderr = run_cli(capsys, *rec, "--truth", spec, "-o", tmp_path / f"o{len(str(spec))}", "-q")
        assert code == 0, stderr
        own_truths()
    # A stack's scenes: in the order given with --pair-by-position, as in hsra evaluate.
    code, _, stderr = run_cli(capsys, *rec, "--truth", f"{tmp_path / 'stack.npz'}:0-1", "--pair-by-position",
                              "-o", tmp_path / "o3", "-q")
    assert code == 0, stderr
    own_truths()
    # One truth of one of the scenes: the other cube is not drawn against it, it fails naming itself.
    code, stdout, stderr = run_cli(capsys, *rec, "--truth", tmp_path / "truth" / "a_1.npy", "-o", tmp_path / "o4")
    assert code == 1
    assert "a_0" in stderr and "no truth is named like 'a_0'" in stderr
    assert sorted(p.name for p in (tmp_path / "o4").iterdir()) == ["a_1_bands.png", "a_1_error.png", "a_1_rgb.png"]
    assert len(drawn) == 1 and np.array_equal(drawn[0][1], truths[1])
    drawn.clear()
    # One cube without a truth of its name: one line naming it, nothing written.
    code, stdout, stderr = run_cli(capsys, rec[0], "--truth", tmp_path / "truth" / "a_1.npy",
                                   "--truth", f"{tmp_path / 'stack.npz'}:1", "-o", tmp_path / "o5")
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert "no truth is named like 'a_0'" in stderr and "--pair-by-position" in stderr
    assert not (tmp_path / "o5").exists()
    code, stdout, stderr = run_cli(capsys, rec[0], "--truth", f"{tmp_path / 'stack.npz'}:1", "-o", tmp_path / "o6")
    assert code == 0, stderr  # one cube file and one truth file pair whatever their names
    # A truth spec that names nothing is one line before anything is drawn: a usage error, as in hsra evaluate.
    code, stdout, stderr = run_cli(capsys, *rec, "--truth", str(tmp_path / "none" / "*.npy"), "-o", tmp_path / "o7")
    assert code == 2 and "matches no" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o7").exists()


def test_cli_one_truth_serves_several_methods_of_one_scene(cube_files, tmp_path, capsys, monkeypatch):
    drawn = _error_map_pairs(monkeypatch)
    truth = np.load(cube_files["truth"])
    code, _, stderr = run_cli(capsys, cube_files["mst"], cube_files["gaptv"], "--truth", cube_files["truth"],
                              "--pair-by-position", "-o", tmp_path / "o", "-q")
    assert code == 0, stderr
    assert len(drawn) == 2 and all(np.array_equal(t, truth) for _, t in drawn)
    drawn.clear()
    # Without --pair-by-position, paired as hsra evaluate pairs: names that are not the truth's are refused.
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], cube_files["gaptv"], "--truth", cube_files["truth"],
                                   "--side-by-side", "-o", tmp_path / "p")
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert "no truth is named like 'mst'" in stderr and "--pair-by-position" in stderr
    assert not (tmp_path / "p").exists() and drawn == []


def test_cli_one_truth_is_not_drawn_against_cubes_named_after_other_scenes(tmp_path, capsys, monkeypatch):
    # As hsra evaluate refuses them: scene01 and scene02 are not scene03, whatever the count of truths.
    from hsra_cli.cli import main

    drawn = _error_map_pairs(monkeypatch)
    for name in ("scene01", "scene02", "scene03"):
        np.save(tmp_path / f"{name}.npy", random_cube(16, 12, seed=len(name) + int(name[-1])))
    cubes = [tmp_path / "scene01.npy", tmp_path / "scene02.npy"]
    code, _, stderr = run_cli(capsys, *cubes, "--truth", tmp_path / "scene03.npy", "-o", tmp_path / "x")
    assert code == 1 and drawn == []
    assert "no truth is named like 'scene01'" in stderr and "no truth is named like 'scene02'" in stderr
    assert not any(p.name.endswith("_error.png") for p in (tmp_path / "x").glob("*"))
    assert main(["evaluate", *map(str, cubes), "--truth", str(tmp_path / "scene03.npy")]) != 0
    capsys.readouterr()
    # The README's example still pairs by name.
    for method in ("hsra-s", "gap-tv"):
        (tmp_path / method).mkdir()
        np.save(tmp_path / method / "scene07.npy", random_cube(16, 12, seed=7))
    (tmp_path / "truth").mkdir()
    np.save(tmp_path / "truth" / "scene07.npy", random_cube(16, 12, seed=7))
    code, _, stderr = run_cli(capsys, tmp_path / "hsra-s" / "scene07.npy", tmp_path / "gap-tv" / "scene07.npy",
                              "--truth", tmp_path / "truth" / "scene07.npy", "--side-by-side", "-o", tmp_path / "f",
                              "-q")
    assert code == 0, stderr
    assert (tmp_path / "f" / "scene07_comparison.png").exists() and len(drawn) == 2


def test_cli_renders_scenes_of_a_stack_named_stem_n(tmp_path, capsys):
    stack = np.stack([random_cube(16, 12, seed=20 + i) for i in range(3)])
    np.savez(tmp_path / "stack.npz", truth=(stack * 255).astype(np.uint8), wavelengths_nm=WAVELENGTHS)
    code, stdout, stderr = run_cli(capsys, f"{tmp_path / 'stack.npz'}:1", "-o", tmp_path / "one", "-q")
    assert code == 0, stderr
    assert stdout.splitlines() == [str(tmp_path / "one" / name) for name in ("stack_1_rgb.png", "stack_1_bands.png")]
    expected = render.false_color((stack[1] * 255).astype(np.uint8) / 255.0, WAVELENGTHS)
    assert np.array_equal(iio.imread(tmp_path / "one" / "stack_1_rgb.png"), expected)
    code, stdout, stderr = run_cli(capsys, tmp_path / "stack.npz", "-o", tmp_path / "all", "-q")  # all its scenes
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"stack_{i}_{kind}.png" for i in range(3) for kind in ("rgb", "bands"))
    code, _, stderr = run_cli(capsys, f"{tmp_path / 'stack.npz'}:5", "-o", tmp_path / "beyond")
    assert code == 2 and "holds 3 scenes" in stderr and len(stderr.strip().splitlines()) == 1


def test_cli_stack_scenes_pair_with_the_truths_they_came_from(two_scenes, capsys, monkeypatch):
    tmp_path, truths = two_scenes
    drawn = _error_map_pairs(monkeypatch)
    for i in range(2):  # stack_N, as simulate and reconstruct name a stack's scenes
        np.save(tmp_path / f"stack_{i}.npy", np.clip(truths[i] + 0.01, 0, 1))
    code, _, stderr = run_cli(capsys, tmp_path / "stack_1.npy", tmp_path / "stack_0.npy",
                              "--truth", tmp_path / "stack.npz", "-o", tmp_path / "o", "-q")
    assert code == 0, stderr
    assert len(drawn) == 2 and all(np.abs(cube - truth).max() <= 0.0101 for cube, truth in drawn)


def test_cli_refuses_a_band_count_without_wavelengths(tmp_path, capsys):
    from test_cli_pipeline import one_line_error

    np.save(tmp_path / "x31.npy", random_cube(20, 24, bands=31))
    code, stdout, stderr = run_cli(capsys, tmp_path / "x31.npy", "--bands", "31", "-o", tmp_path / "r")
    line = one_line_error(stderr)
    assert code == 1 and stdout == ""
    assert "31 bands" in line and "--wavelengths" in line and "comma list" in line
    assert not (tmp_path / "r").exists()
    listing = tmp_path / "wl.txt"
    listing.write_text("\n".join(str(400 + 10 * i) for i in range(31)))
    code, _, stderr = run_cli(capsys, tmp_path / "x31.npy", "--bands", "31", "--wavelengths", listing,
                              "-o", tmp_path / "r", "-q")
    assert code == 0, stderr
    expected = render.false_color(np.load(tmp_path / "x31.npy"), 400.0 + 10 * np.arange(31))
    assert np.array_equal(iio.imread(tmp_path / "r" / "x31_rgb.png"), expected)


def test_cli_names_a_set_written_in_another_figure_format(cube_files, tmp_path, capsys):
    from test_cli_pipeline import one_line_error

    out = tmp_path / "cmp"
    code, _, stderr = run_cli(capsys, cube_files["mst"], "--truth", cube_files["truth"], "--figure-format", "svg",
                              "-o", out, "-q")
    assert code == 0, stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, stderr = run_cli(capsys, cube_files["mst"], "-o", out)
    line = one_line_error(stderr)
    assert code == 2 and stdout == ""
    assert "--figure-format svg" in line and "interrupted" not in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, stderr = run_cli(capsys, cube_files["mst"], "-o", out, "--overwrite", "-q")
    assert code == 0, stderr
    assert {"mst_bands.png", "mst_bands.svg"} <= {p.name for p in out.iterdir()}
    # A set left incomplete by an interrupted run is still said to be one.
    code, _, stderr = run_cli(capsys, cube_files["gaptv"], "-o", out, "-q")
    assert code == 0, stderr
    (out / "gaptv_bands.png").unlink()
    code, _, stderr = run_cli(capsys, cube_files["gaptv"], "-o", out)
    assert code == 2 and "interrupted" in one_line_error(stderr)


# --------------------------------------------------------------------------------------------------------------
# `hsra render`: one comparison per scene, off-scale cubes, bad --wavelengths


@pytest.fixture()
def mixed_scenes(tmp_path):
    """Two methods' cubes of two scenes in mix/ (scene01_gap-tv …) and truths of five scenes in kt/."""
    (tmp_path / "mix").mkdir()
    (tmp_path / "kt").mkdir()
    truths = {f"scene0{i}": random_cube(16, 12, seed=40 + i) for i in range(1, 6)}
    for name, truth in truths.items():
        np.save(tmp_path / "kt" / f"{name}.npy", truth)
    for scene in ("scene01", "scene02"):
        np.save(tmp_path / "mix" / f"{scene}_gap-tv.npy", truths[scene] * 0.9)
        np.save(tmp_path / "mix" / f"{scene}_hsra-s.npy", np.clip(truths[scene] + 0.02, 0, 1))
    return tmp_path, truths


def _all_comparisons(monkeypatch):
    """Spy on side_by_side: a list of (labels, truth, title) for each comparison drawn."""
    drawn = []
    original = render.side_by_side

    def spy(cubes, labels, *args, truth=None, title=None, **kwargs):
        drawn.append((list(labels), None if truth is None else np.asarray(truth).copy(), title, list(cubes)))
        return original(cubes, labels, *args, truth=truth, title=title, **kwargs)

    monkeypatch.setattr(render, "side_by_side", spy)
    return drawn


def test_cli_side_by_side_writes_one_comparison_per_scene_against_its_own_truth(mixed_scenes, capsys, monkeypatch):
    from hsra_cli.metrics import psnr

    tmp_path, truths = mixed_scenes
    drawn = _all_comparisons(monkeypatch)
    out = tmp_path / "rM"
    code, stdout, stderr = run_cli(capsys, tmp_path / "mix", "--truth", tmp_path / "kt", "--side-by-side", "-o", out,
                                   "-q")
    assert code == 0, stderr
    assert {"scene01_comparison.png", "scene02_comparison.png"} <= {p.name for p in out.iterdir()}
    assert not (out / "scene_comparison.png").exists()
    assert sorted(title for _, _, title, _ in drawn) == ["scene01", "scene02"]
    for labels, truth, title, cubes in drawn:
        assert np.array_equal(truth, truths[title]) and all(label.startswith(title) for label in labels)
        assert len(cubes) == 2 and all(psnr(cube, truth) > 18 for cube in cubes)  # another scene: ~8 dB
    # Without truths the cubes group by their scene's name.
    drawn.clear()
    code, stdout, stderr = run_cli(capsys, tmp_path / "mix", "--side-by-side", "-o", tmp_path / "nt", "-q")
    assert code == 0, stderr
    assert sorted(title for _, _, title, _ in drawn) == ["scene01", "scene02"]
    assert all(truth is None and len(labels) == 2 for labels, truth, _, _ in drawn)
    # Cubes whose names group no further, without truths: the one figure asked for (no PSNR is claimed).
    drawn.clear()
    code, stdout, stderr = run_cli(capsys, tmp_path / "kt" / "scene01.npy", tmp_path / "kt" / "scene02.npy",
                                   "--side-by-side", "-o", tmp_path / "one", "-q")
    assert code == 0, stderr
    assert [title for _, _, title, _ in drawn] == ["scene"] and drawn[0][1] is None


def test_cli_refuses_an_off_scale_cube_against_a_truth_and_warns_without(tmp_path, capsys):
    truth = random_cube(16, 12, seed=3)
    np.save(tmp_path / "t.npy", truth)
    np.save(tmp_path / "offscale.npy", truth * 255)
    code, stdout, stderr = run_cli(capsys, tmp_path / "offscale.npy", "--truth", tmp_path / "t.npy",
                                   "-o", tmp_path / "x")
    assert code == 1 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert "expected [0, 1]" in stderr and "255" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x").exists()
    code, stdout, stderr = run_cli(capsys, tmp_path / "offscale.npy", "-o", tmp_path / "y")
    assert code == 0, stderr
    assert "warning:" in stderr and "values span" in stderr and "expected [0, 1]" in stderr


@pytest.mark.parametrize("value", ["0.4,0.41,0.42,0.43", "1000,1100,1200,1300"])
def test_cli_wavelengths_outside_the_visible_range_are_a_usage_error(tmp_path, capsys, value):
    np.save(tmp_path / "c.npy", random_cube(8, 8, bands=4))
    code, stdout, stderr = run_cli(capsys, tmp_path / "c.npy", "--wavelengths", value, "-o", tmp_path / "x")
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1 and "--wavelengths" in stderr
    assert not (tmp_path / "x").exists()


def test_cli_wavelengths_file_that_does_not_exist_is_named_so(tmp_path, capsys):
    np.save(tmp_path / "c.npy", random_cube(8, 8, bands=4))
    code, _, stderr = run_cli(capsys, tmp_path / "c.npy", "--wavelengths", tmp_path / "nofile.txt",
                              "-o", tmp_path / "x")
    assert code == 2 and "does not exist" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli(capsys, tmp_path / "c.npy", "--wavelengths", "450,abc", "-o", tmp_path / "x")
    assert code == 2 and "comma list" in stderr and "does not exist" not in stderr


def test_cli_side_by_side_without_truth_compares_cubes_whose_names_tell_no_scene(cube_files, tmp_path, capsys):
    """Two checkpoints of one scene (epoch10, epoch20) side by side, no truth: the one figure asked for."""
    for name in ("epoch10", "epoch20"):
        (tmp_path / f"{name}.npy").write_bytes(cube_files["mst"].read_bytes())
    code, _, stderr = run_cli(capsys, tmp_path / "epoch10.npy", tmp_path / "epoch20.npy", "--side-by-side",
                              "-o", tmp_path / "cmp", "-q")
    assert code == 0, stderr
    assert (tmp_path / "cmp" / "scene_comparison.png").is_file()


def test_the_module_docstring_names_the_default_illuminant():
    """The false colour's default light is D65 (not an equal-energy white), and the module says so."""
    assert render.DEFAULT_ILLUMINANT == "D65"
    assert f"CIE {render.DEFAULT_ILLUMINANT}" in render.__doc__
    assert "under an **equal-energy illuminant" not in render.__doc__


def test_cli_a_result_file_holding_pred_and_truth_draws_pred_against_truth(tmp_path, capsys, monkeypatch):
    """MST's Test_result.mat: ``pred`` is the cube drawn, ``truth`` (of the same file) its truth."""
    import scipy.io

    truth = np.stack([random_cube(16, 12, seed=20 + i) for i in range(2)]).astype(np.float32)
    scipy.io.savemat(tmp_path / "T.mat", {"pred": truth * 0.5, "truth": truth})
    drawn = _error_map_pairs(monkeypatch)
    code, stdout, stderr = run_cli(capsys, tmp_path / "T.mat", "--truth", tmp_path / "T.mat", "-o", tmp_path / "o",
                                   "-q")
    assert code == 0, stderr
    assert [Path(line).name for line in stdout.splitlines()] == [
        f"T_{i}_{kind}.png" for i in range(2) for kind in ("rgb", "bands", "error")]
    assert len(drawn) == 2
    for index, (cube, true) in enumerate(drawn):
        assert np.allclose(cube, truth[index] * 0.5) and np.allclose(true, truth[index])


def test_cli_an_off_scale_truth_is_named_and_nothing_of_its_cube_is_written(tmp_path, capsys):
    cube = random_cube(16, 12, seed=3)
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "c_big.npy", 3 + cube * 105)
    code, stdout, stderr = run_cli(capsys, tmp_path / "c.npy", "--truth", tmp_path / "c_big.npy",
                                   "--pair-by-position", "-o", tmp_path / "rt5")
    assert code == 1 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert f"the truth {tmp_path / 'c_big.npy'} has values in" in stderr and "expected [0, 1]" in stderr
    assert not (tmp_path / "rt5").exists()
    # In a batch the cubes paired with it fail alone, their files unwritten; the others are drawn.
    (tmp_path / "rec").mkdir()
    (tmp_path / "truth").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "rec" / f"{name}.npy", cube)
    np.save(tmp_path / "truth" / "a.npy", cube)
    np.save(tmp_path / "truth" / "b.npy", 3 + cube * 105)
    code, _, stderr = run_cli(capsys, tmp_path / "rec", "--truth", tmp_path / "truth", "-o", tmp_path / "o", "-q")
    assert code == 1
    assert f"failed {tmp_path / 'rec' / 'b.npy'}: the truth {tmp_path / 'truth' / 'b.npy'} has values" in stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_bands.png", "a_error.png", "a_rgb.png"]


def test_cli_an_all_zero_truth_is_refused_as_evaluate_refuses_it(tmp_path, capsys):
    from hsra_cli.cli import main

    np.save(tmp_path / "c.npy", random_cube(16, 16, seed=3))  # big enough for evaluate's LPSNR(16)
    np.save(tmp_path / "z.npy", np.zeros((16, 16, 28), np.float32))
    code, stdout, stderr = run_cli(capsys, tmp_path / "c.npy", "--truth", tmp_path / "z.npy", "-o", tmp_path / "o")
    assert code == 1 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert main(["evaluate", str(tmp_path / "c.npy"), "--truth", str(tmp_path / "z.npy")]) == 1
    assert capsys.readouterr().err == stderr  # the same one line
    assert "all zero" in stderr and str(tmp_path / "z.npy") in stderr


@pytest.mark.parametrize("spec", ["nothere.npy", "empty"])
def test_cli_a_truth_that_names_nothing_is_a_usage_error_as_in_evaluate(tmp_path, capsys, spec):
    from hsra_cli.cli import main

    np.save(tmp_path / "c.npy", random_cube(8, 8, seed=3))
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = run_cli(capsys, tmp_path / "c.npy", "--truth", tmp_path / spec, "-o", tmp_path / "z")
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("hsra: error: --truth: ") and spec in stderr
    assert not (tmp_path / "z").exists()
    assert main(["evaluate", str(tmp_path / "c.npy"), "--truth", str(tmp_path / spec)]) == 2


def test_cli_comparisons_of_a_stack_scene_are_named_without_a_colon(tmp_path, capsys):
    cubes = [random_cube(16, 12, seed=30 + i) for i in range(2)]
    np.savez(tmp_path / "cubes.npz", np.stack(cubes))
    (tmp_path / "cmp").mkdir()
    np.save(tmp_path / "cmp" / "cubes_0_mst.npy", cubes[0])
    np.save(tmp_path / "cmp" / "cubes_0_gaptv.npy", np.clip(cubes[0] + 0.01, 0, 1))
    code, stdout, stderr = run_cli(capsys, tmp_path / "cmp", "--truth", tmp_path / "cubes.npz", "--side-by-side",
                                   "-o", tmp_path / "cmpr", "-q")
    assert code == 0, stderr
    assert stdout.splitlines()[-1] == str(tmp_path / "cmpr" / "cubes_0_comparison.png")
    assert not any(":" in p.name for p in (tmp_path / "cmpr").iterdir())
    # Paired by position with one scene of the stack: that scene's name, as its row in evaluate's table.
    code, stdout, stderr = run_cli(capsys, tmp_path / "cmp" / "cubes_0_mst.npy", tmp_path / "cmp" / "cubes_0_gaptv.npy",
                                   "--truth", f"{tmp_path / 'cubes.npz'}:1", "--pair-by-position", "--side-by-side",
                                   "-o", tmp_path / "cmpr2", "-q")
    assert code == 0, stderr
    assert stdout.splitlines()[-1] == str(tmp_path / "cmpr2" / "cubes_1_comparison.png")  # the cubes' names differ
    # Pairing errors name the scenes as the tables and the files do: stack_0, never stack:0.
    np.save(tmp_path / "other.npy", cubes[0])
    code, _, stderr = run_cli(capsys, tmp_path / "cubes.npz", "--truth", tmp_path / "other.npy",
                              "--truth", tmp_path / "cmp" / "cubes_0_mst.npy", "-o", tmp_path / "x")
    assert "no truth is named like 'cubes_1'" in stderr and "cubes:1" not in stderr


def test_cli_a_bad_file_of_a_folder_is_named_itself(tmp_path, capsys):
    (tmp_path / "bm").mkdir()
    np.save(tmp_path / "bm" / "good.npy", random_cube(8, 8, seed=3))
    (tmp_path / "bm" / "empty.mat").write_bytes(b"")
    code, _, stderr = run_cli(capsys, tmp_path / "bm", "-o", tmp_path / "bo", "-q")
    assert code == 1
    assert f"failed {tmp_path / 'bm' / 'empty.mat'}: " in stderr
    assert sorted(p.name for p in (tmp_path / "bo").iterdir()) == ["good_bands.png", "good_rgb.png"]
