"""The Python API applies the CLI's input rules: simulate_measurement as `hsra simulate`, the metrics and the
renderers refuse a cube laid out C×H×W, a grey patch is never ignored, and wrong inputs give hsra's own errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hsra_cli import render
from hsra_cli.bands import default_wavelengths
from hsra_cli.calibrate import calibrate
from hsra_cli.errors import ShapeError, UsageError, ValueRangeError
from hsra_cli.io import read_measurement
from hsra_cli.metrics import evaluate_cube, psnr, sam
from hsra_cli.simulate import generate_mask, simulate_measurement
from test_cli_pipeline import run


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    cube = (rng.random((24, 24, 28)) * 0.5).astype(np.float32)
    mask = rng.random((24, 24)) > 0.5
    return cube, mask


# --- simulate_measurement: the rules of hsra simulate ----------------------------------------------------------


def test_simulate_measurement_scales_integer_cubes_and_masks_as_hsra_simulate_does(scene, tmp_path, capsys):
    cube, mask = scene
    cube_u8, mask_u8 = np.round(cube * 255).astype(np.uint8), mask.astype(np.uint8) * 255
    np.save(tmp_path / "cube.npy", cube_u8)
    np.save(tmp_path / "mask.npy", mask_u8)
    code, _, err = run(["simulate", tmp_path / "cube.npy", "--mask", tmp_path / "mask.npy", "-o", tmp_path / "sim",
                        "-q", "--no-previews"], capsys)
    assert code == 0, err
    from_cli, _ = read_measurement(tmp_path / "sim" / "cube.mat")
    from_library, _ = simulate_measurement(cube_u8, mask_u8)
    np.testing.assert_array_equal(from_library, from_cli)
    # a 0/255 mask is the 0/1 mask; a uint8 cube is the cube / 255
    np.testing.assert_array_equal(simulate_measurement(cube, mask_u8)[0], simulate_measurement(cube, mask)[0])
    np.testing.assert_allclose(from_library, simulate_measurement(cube_u8 / np.float32(255), mask)[0], rtol=1e-6)
    # the noise too: the same keyword arguments as the flags give the same draw
    code, _, err = run(["simulate", tmp_path / "cube.npy", "--mask", tmp_path / "mask.npy", "-o", tmp_path / "shot",
                        "-q", "--no-previews", "--qe", "0.5", "--seed", "3"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(simulate_measurement(cube_u8, mask_u8, qe=0.5, seed=3)[0],
                                  read_measurement(tmp_path / "shot" / "cube.mat")[0])


@pytest.mark.parametrize("bad, match", [(-0.5, "negative"), (2.0, "up to 2")])
def test_simulate_measurement_refuses_a_mask_off_the_transmission_scale(scene, bad, match):
    cube, mask = scene
    with pytest.raises(ValueRangeError, match=match):
        simulate_measurement(cube, np.where(mask, 1.0, bad) if bad < 0 else mask * bad)


def test_simulate_measurement_takes_lists_and_tensors(scene):
    import torch

    cube, mask = scene
    expected = simulate_measurement(cube, mask)[0]
    np.testing.assert_array_equal(simulate_measurement(cube.tolist(), mask.tolist())[0], expected)
    np.testing.assert_array_equal(simulate_measurement(torch.from_numpy(cube), torch.from_numpy(mask))[0], expected)
    with pytest.raises(ValueRangeError, match="NaN"):
        simulate_measurement(np.full((4, 4, 28), np.nan), mask[:4, :4])


def test_simulate_measurement_warns_about_a_cube_off_the_unit_scale(scene):
    cube, mask = scene
    said = []
    measurement, _ = simulate_measurement(cube - 0.3, mask, on_warning=said.append)
    assert measurement.min() < 0 and len(said) == 1 and "values span" in said[0] and "[0, 1]" in said[0]
    with pytest.warns(UserWarning, match="values span"):
        simulate_measurement(cube * 4, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate_measurement(cube, mask)  # in range: nothing said


@pytest.mark.parametrize("kwargs, named", [
    ({"noise": "gaussian"}, "noise_sigma="),
    ({"noise": "none", "noise_sigma": 0.5}, "noise_sigma="),
    ({"noise": "gaussian", "noise_sigma": -1.0}, "noise_sigma="),
    ({"noise": "shot", "noise_sigma": 0.1}, "noise_sigma="),
    ({"noise": "gaussian", "noise_sigma": 0.1, "qe": 0.5}, "qe="),
    ({"noise": "hiss"}, "noise="),
])
def test_simulate_measurement_refuses_noise_settings_it_would_ignore(scene, kwargs, named):
    cube, mask = scene
    with pytest.raises(UsageError, match=named):
        simulate_measurement(cube, mask, **kwargs)


def test_simulate_measurement_noise_options_imply_their_model(scene):
    cube, mask = scene
    clean = simulate_measurement(cube, mask)[0]
    gaussian = simulate_measurement(cube, mask, noise_sigma=0.05)[0]
    np.testing.assert_array_equal(gaussian, simulate_measurement(cube, mask, noise="gaussian", noise_sigma=0.05)[0])
    assert not np.allclose(gaussian, clean)
    assert not np.allclose(simulate_measurement(cube, mask, noise="shot")[0], clean)


def test_simulate_measurement_takes_a_mask_offset_as_the_cli_does(scene):
    cube, _ = scene
    big = generate_mask(40, 50, seed=3)
    with pytest.raises(ShapeError, match=r"mask_offset=\(row, column\)"):
        simulate_measurement(cube, big)
    np.testing.assert_array_equal(simulate_measurement(cube, big, mask_offset=(5, 7))[0],
                                  simulate_measurement(cube, big[5:29, 7:31])[0])


# --- generate_mask and calibrate: hsra's errors ------------------------------------------------------------------


@pytest.mark.parametrize("args, kwargs, error", [
    ((8, 8), {"seed": -1}, UsageError),
    ((8, 8), {"seed": 1.5}, UsageError),
    ((2.5, 64), {}, ShapeError),
    ((0, 64), {}, ShapeError),
])
def test_generate_mask_refuses_bad_sizes_and_seeds_with_hsra_errors(args, kwargs, error):
    with pytest.raises(error):
        generate_mask(*args, **kwargs)


def test_calibrate_takes_a_stack_of_captures_as_several():
    from test_calibrate import BANDS, _capture

    measurement, mask = _capture(11, 37, 2, "width", seed=11)
    as_list = calibrate([measurement, measurement], mask, bands=BANDS, steps=2, axes="width")
    as_stack = calibrate(np.stack([measurement, measurement]), mask, bands=BANDS, steps=2, axes="width")
    assert (as_stack.offset, as_stack.step, as_stack.axis) == (as_list.offset, as_list.step, as_list.axis) == ((11, 37), 2, "width")
    with pytest.raises(ShapeError, match="stack"):
        calibrate(measurement[None, None], mask, bands=BANDS)


# --- metrics: H×W×C only ---------------------------------------------------------------------------------------


def test_metrics_refuse_a_cube_laid_out_bands_first(scene):
    truth, _ = scene
    pred = np.clip(truth + 0.02, 0, 1)
    evaluate_cube(pred, truth)  # H×W×C
    for shape_of in (lambda a: np.resize(a, (64, 64, 28)).transpose(2, 0, 1),  # what a network returns
                     lambda a: np.moveaxis(np.resize(a, (64, 64, 31)), -1, 0),
                     lambda a: np.moveaxis(np.resize(a, (64, 96, 28)), -1, 0)):
        with pytest.raises(ShapeError, match=r"C × H × W.*permute\(1, 2, 0\)"):
            evaluate_cube(shape_of(pred), shape_of(truth))
        with pytest.raises(ShapeError, match="moveaxis"):
            sam(shape_of(pred), shape_of(truth))


@pytest.mark.parametrize("shape", [(12, 64, 31), (16, 16, 28), (28, 64, 28), (1, 3, 2), (3, 40, 40), (64, 64, 4),
                                   (28, 28, 31), (28, 50, 31), (12, 40, 31), (20, 31, 31)])
def test_metrics_keep_h_w_c_cubes_with_a_small_height(shape):
    cube = np.random.default_rng(0).random(shape)
    assert psnr(cube, cube) == 100.0


# --- render: wavelengths, grey patch, wrong inputs --------------------------------------------------------------


def test_render_invents_no_wavelengths_for_a_band_count_without_a_default(scene):
    cube, _ = scene
    assert render.false_color(cube).shape == (24, 24, 3)  # 28 bands: the field's list
    other = np.random.default_rng(1).random((16, 16, 31))
    for draw in (render.false_color, render.band_grid, render.auto_exposure,
                 lambda c: render.side_by_side([c], ["a"]), lambda c: render.spectra_plot(c, [(1, 1)])):
        with pytest.raises(ShapeError, match="wavelengths_nm="):
            draw(other)
    assert render.false_color(other, default_wavelengths(31)).shape == (16, 16, 3)  # given: rendered
    with pytest.raises(ShapeError, match=r"C×H×W.*moveaxis"):
        render.false_color(cube.transpose(2, 0, 1))


def test_a_grey_patch_sets_the_white_balance(scene):
    cube, _ = scene
    cube = cube * np.linspace(1.5, 0.5, 28, dtype=np.float32)  # a colour cast, so the balance shows
    patch = (10, 12, 2)
    balanced = render.false_color(cube, grey_patch=patch)
    np.testing.assert_array_equal(balanced, render.false_color(cube, white_balance="patch", grey_patch=patch))
    assert not np.array_equal(balanced, render.false_color(cube))
    with pytest.raises(UsageError, match="grey_patch="):
        render.false_color(cube, white_balance="illuminant", grey_patch=patch)
    figure = render.side_by_side([cube], ["a"], grey_patch=patch)
    assert figure is not None


def test_render_wrong_inputs_are_hsra_errors(scene, tmp_path):
    cube, _ = scene
    with pytest.raises(UsageError, match="cmap="):
        render.band_grid(cube, cmap="nope")
    with pytest.raises(UsageError, match="not a point"):
        render.spectra_plot(cube, [(1, 2, 3)])
    with pytest.raises(UsageError, match="grey patch"):
        render.false_color(cube, grey_patch=5)
    with pytest.raises(ValueRangeError, match="uint8"):
        render.save_png(tmp_path / "x.png", cube[..., :3])
    with pytest.raises(UsageError, match="Figure"):
        render.save_png(tmp_path / "x.png", "not an image")
    # one bare (x, y) is one point
    one = render.spectra_plot(cube, (10, 20))
    assert [line.get_label() for line in one.axes[0].get_lines()] == ["1 (row 20, col 10)"]
