"""The metric formulas (hsra_cli.metrics): the field's conventions of docs/metrics.md, pinned.

PSNR and SSIM are cross-checked against scikit-image; SAM, ERGAS and LPSNR against hand-computed cases; the
whole set against a published peer's reconstructions of the real KAIST scenes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hsra_cli import metrics
from hsra_cli.errors import ShapeError, UsageError, ValueRangeError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAIST_TRUTH = DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz"
KAIST_GAPCCOT = DATA / "kaist" / "kaist_scenes01-05_gapccot_recon_uint8.npz"
# GAP-CCoT's published PSNR on KAIST scenes 01-05 (computed on float truth; ours is the 8-bit copy).
GAPCCOT_PUBLISHED_PSNR = (35.17, 35.90, 36.91, 42.25, 32.61)


def noisy_pair(shape=(40, 33, 3), noise=0.1, seed=0):
    """A truth in [0, 1] and a noisy prediction that strays outside [0, 1] (so clipping matters)."""
    rng = np.random.default_rng(seed)
    truth = rng.random(shape)
    pred = truth + noise * rng.standard_normal(shape)
    return pred, truth


def field_levels(cube):
    return np.rint(np.clip(cube, 0, 1) * 255).astype(np.uint8)


# --- PSNR -----------------------------------------------------------------------------------------------


def test_psnr_field_equals_skimage_mean_of_band_psnrs_on_uint8():
    skm = pytest.importorskip("skimage.metrics")
    pred, truth = noisy_pair()
    pred_u8, truth_u8 = field_levels(pred), field_levels(truth)
    expected = np.mean([
        skm.peak_signal_noise_ratio(truth_u8[..., b], pred_u8[..., b], data_range=255) for b in range(3)
    ])
    assert metrics.psnr(pred, truth) == pytest.approx(expected, abs=1e-9)
    assert metrics.psnr(pred, truth, convention="field") == pytest.approx(expected, abs=1e-9)


def test_psnr_float_equals_skimage_on_clipped_floats_with_peak_1():
    skm = pytest.importorskip("skimage.metrics")
    pred, truth = noisy_pair()
    clipped = np.clip(pred, 0, 1)
    expected = np.mean([
        skm.peak_signal_noise_ratio(truth[..., b], clipped[..., b], data_range=1.0) for b in range(3)
    ])
    assert metrics.psnr(pred, truth, convention="float") == pytest.approx(expected, abs=1e-9)


def test_psnr_is_a_mean_of_band_psnrs_not_the_psnr_of_the_pooled_error():
    truth = np.full((8, 8, 2), 0.5)
    pred = truth.copy()
    pred[..., 0] += 0.1  # MSE 0.01 -> 20 dB
    pred[..., 1] += 0.01  # MSE 1e-4 -> 40 dB
    assert metrics.psnr(pred, truth, "float") == pytest.approx(30.0)


def test_psnr_band_with_zero_error_counts_as_100_db():
    truth = np.full((8, 8, 2), 0.5)
    assert metrics.psnr(truth, truth, "float") == metrics.PSNR_CAP_DB == 100.0
    pred = truth.copy()
    pred[..., 0] += 0.1  # 20 dB; band 1 is perfect
    assert metrics.psnr(pred, truth, "float") == pytest.approx((20.0 + 100.0) / 2)


def test_psnr_field_quantises_so_sub_level_errors_vanish():
    truth = np.full((8, 8, 1), 100 / 255)
    pred = truth + 0.3 / 255  # rounds back to level 100
    assert metrics.psnr(pred, truth, "field") == 100.0
    assert metrics.psnr(pred, truth, "float") < 70.0


def test_psnr_clips_the_prediction_to_unit_range():
    truth = np.ones((8, 8, 2))
    assert metrics.psnr(truth + 0.4, truth, "float") == 100.0  # an overshoot to 1.4, as a network's
    assert metrics.psnr(truth + 0.4, truth, "field") == 100.0


# --- SSIM -----------------------------------------------------------------------------------------------


def _skimage_ssim(pred, truth, data_range):
    skm = pytest.importorskip("skimage.metrics")
    return np.array([
        skm.structural_similarity(
            pred[..., b], truth[..., b], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=data_range,
        )
        for b in range(pred.shape[-1])
    ])


def test_ssim_field_matches_skimage_gaussian_ssim_on_uint8_per_band():
    # skimage averages its map after cropping 5 px on each side: exactly the valid region.
    pred, truth = noisy_pair(shape=(37, 29, 4), noise=0.15, seed=1)
    expected = _skimage_ssim(field_levels(pred), field_levels(truth), 255)
    np.testing.assert_allclose(metrics.ssim_per_band(pred, truth, "field"), expected, atol=1e-6)
    assert metrics.ssim(pred, truth) == pytest.approx(expected.mean(), abs=1e-6)


def test_ssim_float_matches_skimage_on_clipped_floats_with_l_1():
    pred, truth = noisy_pair(shape=(23, 31, 3), noise=0.05, seed=2)
    expected = _skimage_ssim(np.clip(pred, 0, 1), truth, 1.0)
    np.testing.assert_allclose(metrics.ssim_per_band(pred, truth, "float"), expected, atol=1e-6)


def test_ssim_of_identical_cubes_is_one_and_of_a_worse_prediction_lower():
    pred, truth = noisy_pair(shape=(20, 20, 2), noise=0.02, seed=3)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)
    worse, _ = noisy_pair(shape=(20, 20, 2), noise=0.2, seed=3)
    assert metrics.ssim(worse, truth) < metrics.ssim(pred, truth) < 1.0


def test_ssim_ignores_the_border_outside_the_valid_region_only_through_its_windows():
    # A change at the very corner pixel is inside exactly one valid window (the top-left one).
    truth = np.full((11, 11, 1), 0.5)
    pred = truth.copy()
    pred[0, 0, 0] = 0.9
    assert metrics.ssim(pred, truth, "float") < 1.0
    # On an 11 × 11 image the valid map is a single value: no padding is involved.
    assert metrics.ssim_per_band(pred, truth, "float").shape == (1,)


def test_ssim_needs_at_least_one_full_window():
    cube = np.zeros((10, 40, 2))
    with pytest.raises(ShapeError, match="11"):
        metrics.ssim(cube, cube)


# --- SAM ------------------------------------------------------------------------------------------------


def test_sam_of_orthogonal_spectra_is_90_degrees():
    truth = np.zeros((2, 2, 2))
    pred = np.zeros((2, 2, 2))
    truth[..., 0] = 1.0
    pred[..., 1] = 0.5
    assert metrics.sam(pred, truth, "float") == pytest.approx(90.0)


def test_sam_ignores_brightness_and_measures_the_angle_in_degrees():
    truth = np.zeros((1, 2, 2))
    truth[0, 0] = [0.8, 0.4]
    truth[0, 1] = [1.0, 0.0]
    pred = np.zeros((1, 2, 2))
    pred[0, 0] = [0.4, 0.2]  # same direction, half as bright: 0°
    pred[0, 1] = [0.5, 0.5]  # 45°
    assert metrics.sam(pred, truth, "float") == pytest.approx((0.0 + 45.0) / 2)


def test_sam_skips_pixels_whose_spectrum_is_all_zero():
    truth = np.zeros((1, 3, 2))
    pred = np.zeros((1, 3, 2))
    truth[0, 0] = [1.0, 0.0]
    pred[0, 0] = [0.0, 1.0]  # 90°
    truth[0, 1] = [0.5, 0.5]  # prediction all zero there: skipped
    pred[0, 2] = [0.3, 0.3]  # truth all zero there: skipped
    assert metrics.sam(pred, truth, "float") == pytest.approx(90.0)
    assert math.isnan(metrics.sam(np.zeros((2, 2, 3)), np.zeros((2, 2, 3))))


# --- ERGAS ----------------------------------------------------------------------------------------------


def test_ergas_matches_the_formula_on_a_known_case():
    truth = np.empty((4, 4, 2))
    truth[..., 0], truth[..., 1] = 0.5, 0.25
    pred = truth + 0.05  # RMSE 0.05 in both bands: ratios 0.1 and 0.2
    expected = 100 * math.sqrt((0.1**2 + 0.2**2) / 2)
    assert metrics.ergas(pred, truth, "float") == pytest.approx(expected)


def test_ergas_skips_bands_whose_truth_mean_is_zero():
    truth = np.zeros((4, 4, 3))
    truth[..., 0], truth[..., 1] = 0.5, 0.25
    pred = truth + 0.05
    expected = 100 * math.sqrt((0.1**2 + 0.2**2) / 2)
    assert metrics.ergas(pred, truth, "float") == pytest.approx(expected)
    assert math.isnan(metrics.ergas(pred, np.zeros_like(truth), "float"))


def test_ergas_does_not_depend_on_the_convention_scale():
    truth = np.empty((4, 4, 2))
    truth[..., 0], truth[..., 1] = 100 / 255, 50 / 255  # exact uint8 levels, so quantisation changes nothing
    pred = truth + 10 / 255
    assert metrics.ergas(pred, truth, "field") == pytest.approx(metrics.ergas(pred, truth, "float"))


# --- LPSNR ----------------------------------------------------------------------------------------------


def test_lpsnr_is_the_mean_of_tile_psnrs_over_all_bands():
    truth = np.full((16, 16, 2), 0.5)
    pred = truth.copy()
    pred[:8, :8, 0] += 0.1  # one 8×8 tile: MSE over its 8·8·2 values = 0.01 / 2 -> 10·log10(200) dB
    tile_psnr = 10 * math.log10(1 / 0.005)
    assert metrics.lpsnr(pred, truth, 8, "float") == pytest.approx((tile_psnr + 3 * 100.0) / 4)
    assert metrics.lpsnr(pred, truth, 16, "float") == pytest.approx(10 * math.log10(1 / (0.01 / 8)))


def test_lpsnr_drops_incomplete_edge_tiles():
    truth = np.full((20, 21, 1), 0.5)
    pred = truth.copy()
    pred[16:, :, 0] = 0.0  # only the bottom 4 rows and right 5 columns lie outside the 8×8 tiles...
    pred[:, 16:, 0] = 0.0
    assert metrics.lpsnr(pred, truth, 8, "float") == 100.0
    pred[15, 15, 0] = 0.0  # ...while this pixel is inside the last complete tile
    assert metrics.lpsnr(pred, truth, 8, "float") < 100.0


def test_lpsnr_rejects_bad_patches_and_images_smaller_than_one_tile():
    cube = np.zeros((12, 12, 2))
    with pytest.raises(ShapeError, match="16"):
        metrics.lpsnr(cube, cube, 16)
    for patch in (0, -8, 2.5, True):
        with pytest.raises(UsageError):
            metrics.lpsnr(cube, cube, patch)


# --- evaluate_cube and input checks ---------------------------------------------------------------------


def test_evaluate_cube_returns_every_metric_in_metric_keys_order():
    pred, truth = noisy_pair(shape=(32, 32, 3), noise=0.05)
    result = metrics.evaluate_cube(pred, truth)
    assert tuple(result) == metrics.METRIC_KEYS == ("psnr", "ssim", "sam", "ergas", "lpsnr8", "lpsnr16")
    assert result["psnr"] == pytest.approx(metrics.psnr(pred, truth))
    assert result["ssim"] == pytest.approx(metrics.ssim(pred, truth))
    assert result["sam"] == pytest.approx(metrics.sam(pred, truth))
    assert result["ergas"] == pytest.approx(metrics.ergas(pred, truth))
    assert result["lpsnr8"] == pytest.approx(metrics.lpsnr(pred, truth, 8))
    assert result["lpsnr16"] == pytest.approx(metrics.lpsnr(pred, truth, 16))
    assert all(isinstance(value, float) for value in result.values())


def test_field_and_float_conventions_differ_only_slightly():
    pred, truth = noisy_pair(shape=(32, 32, 3), noise=0.03, seed=5)
    field = metrics.evaluate_cube(pred, truth, "field")
    floats = metrics.evaluate_cube(pred, truth, "float")
    assert field["psnr"] != floats["psnr"]
    assert abs(field["psnr"] - floats["psnr"]) < 0.2


def test_shape_mismatch_raises_shape_error_naming_both_shapes():
    with pytest.raises(ShapeError, match=r"\(16, 16, 3\).*\(16, 17, 3\)"):
        metrics.evaluate_cube(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))
    with pytest.raises(ShapeError, match=r"\(16, 16\)"):
        metrics.psnr(np.zeros((16, 16)), np.zeros((16, 16)))


def test_torch_tensors_give_the_same_numbers_as_numpy():
    torch = pytest.importorskip("torch")
    pred, truth = noisy_pair(shape=(24, 24, 3), noise=0.05)
    from_numpy = metrics.evaluate_cube(pred, truth)
    from_torch = metrics.evaluate_cube(torch.from_numpy(pred).float(), torch.from_numpy(truth).float())
    for key in metrics.METRIC_KEYS:
        assert from_torch[key] == pytest.approx(from_numpy[key], rel=1e-4)


def test_inputs_that_are_not_floats_in_unit_range_are_refused():
    truth = np.full((16, 16, 2), 0.5)
    with pytest.raises(ValueRangeError, match="255"):
        metrics.psnr(truth, (truth * 255).astype(np.uint8))
    with pytest.raises(ValueRangeError, match=r"\[0, 1\]"):
        metrics.psnr(truth, truth * 255)
    bad = truth.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueRangeError, match="NaN"):
        metrics.psnr(bad, truth)
    with pytest.raises(UsageError, match="convention"):
        metrics.psnr(truth, truth, convention="uint8")


def test_mean_over_scenes_averages_each_metric_and_skips_nan():
    scenes = [dict.fromkeys(metrics.METRIC_KEYS, 1.0), dict.fromkeys(metrics.METRIC_KEYS, 3.0)]
    scenes[1]["sam"] = math.nan
    mean = metrics.mean_over_scenes(scenes)
    assert tuple(mean) == metrics.METRIC_KEYS
    assert mean["psnr"] == 2.0 and mean["sam"] == 1.0


def test_defined_counts_say_how_many_scenes_each_mean_is_over():
    scenes = [dict.fromkeys(metrics.METRIC_KEYS, 1.0), dict.fromkeys(metrics.METRIC_KEYS, 3.0)]
    scenes[1]["sam"] = math.nan
    counts = metrics.defined_counts(scenes)
    assert tuple(counts) == metrics.METRIC_KEYS
    assert counts["sam"] == 1 and counts["psnr"] == 2
    assert set(metrics.UNDEFINED_WHEN) <= set(metrics.METRIC_KEYS)


def test_an_all_zero_prediction_leaves_sam_undefined_and_counted_out():
    truth = np.random.default_rng(0).random((16, 16, 4))
    result = metrics.evaluate_cube(np.zeros_like(truth), truth)
    assert math.isnan(result["sam"]) and not math.isnan(result["ergas"])
    assert metrics.defined_counts([result, metrics.evaluate_cube(truth, truth)])["sam"] == 1


def test_evaluate_cube_refuses_a_prediction_off_the_unit_scale_but_clips_overshoot():
    truth = np.random.default_rng(1).random((16, 16, 4))
    with pytest.raises(ValueRangeError, match=r"the prediction has values in .*expected \[0, 1\].*255"):
        metrics.evaluate_cube(truth * 255, truth)
    with pytest.raises(ValueRangeError, match=r"^the prediction x\.npy has values"):
        metrics.check_prediction(truth * 255, "the prediction x.npy")
    with pytest.raises(ValueRangeError, match=r"100 % of them outside \[-0\.5, 1\.5\]"):
        metrics.evaluate_cube(truth - 3, truth)
    # a network's overshoot, and a few hot pixels, are clipped as documented
    assert metrics.evaluate_cube(truth * 1.05, truth)["psnr"] > 20
    hot = truth.copy()
    hot[0, 0, :] = 40.0  # 4 of 1024 values
    assert metrics.evaluate_cube(hot, truth)["psnr"] > 30
    # every single metric refuses it too (it used to clip it to a meaningless 5 dB)
    for metric in (metrics.psnr, metrics.ssim, metrics.sam, metrics.ergas, metrics.ssim_per_band):
        with pytest.raises(ValueRangeError, match="the prediction has values in"):
            metric(truth * 255, truth)
    with pytest.raises(ValueRangeError, match="the prediction has values in"):
        metrics.lpsnr(truth * 255, truth, 8)
    assert metrics.psnr(truth * 1.05, truth) == metrics.evaluate_cube(truth * 1.05, truth)["psnr"]


def test_check_truth_names_what_it_checks():
    truth = np.random.default_rng(2).random((16, 16, 4))
    metrics.check_truth(truth)
    with pytest.raises(ValueRangeError, match=r"^the truth gt\.mat has values in \[.*\]; expected \[0, 1\]"):
        metrics.check_truth(truth * 255, "the truth gt.mat")


# --- real data: a published peer's reconstructions of KAIST scenes 01-05 --------------------------------


@pytest.fixture(scope="module")
def kaist_pairs():
    if not (KAIST_TRUTH.exists() and KAIST_GAPCCOT.exists()):
        pytest.skip(f"KAIST data not found under {DATA}")
    truth = np.load(KAIST_TRUTH)["truth"].astype(np.float32) / 255
    recon = np.load(KAIST_GAPCCOT)["recon"].astype(np.float32) / 255
    return [metrics.evaluate_cube(recon[i], truth[i]) for i in range(truth.shape[0])]


def test_kaist_gapccot_field_psnr_is_close_to_the_published_numbers(kaist_pairs):
    psnrs = [scene["psnr"] for scene in kaist_pairs]
    # Published on the float truth; ours is the 8-bit copy of truth and reconstruction.
    np.testing.assert_allclose(psnrs, GAPCCOT_PUBLISHED_PSNR, atol=0.5)


def test_kaist_gapccot_local_psnr_orders_lpsnr8_over_lpsnr16_over_psnr(kaist_pairs):
    for scene in kaist_pairs:
        assert scene["lpsnr8"] > scene["lpsnr16"] > scene["psnr"]
        assert 0.9 < scene["ssim"] < 1.0 and 0.0 < scene["sam"] < 20.0 and scene["ergas"] > 0.0


def test_mean_over_scenes_takes_results_with_some_metrics_only():
    means = metrics.mean_over_scenes([{"psnr": 30.0}, {"psnr": 32.0, "ssim": 0.9}])
    assert means == {"psnr": 31.0, "ssim": 0.9}
    assert metrics.defined_counts([{"psnr": 30.0}, {"psnr": 32.0, "ssim": 0.9}]) == {"psnr": 2, "ssim": 1}
    with pytest.raises(UsageError, match="mappings of metric to value"):
        metrics.mean_over_scenes([30.0])
