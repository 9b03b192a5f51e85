"""Specification of the synthetic scene generator (hsra_cli.synth).

Sizes are tiny on purpose: the behaviour pinned here does not depend on 256 × 256.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from hsra_cli import synth
from hsra_cli.bands import default_wavelengths
from hsra_cli.errors import OutputExistsError, ShapeError, UsageError, ValueRangeError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WL = default_wavelengths()


def spectral_curvature(cube: np.ndarray) -> float:
    """Mean |second difference along bands| relative to the mean value: ~0 for smooth spectra, >1 for noise."""
    return float(np.abs(np.diff(cube, n=2, axis=-1)).mean() / cube.mean())


def adjacent_band_correlation(cube: np.ndarray) -> float:
    """Mean Pearson correlation between neighbouring bands over pixels."""
    pixels = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    pixels = (pixels - pixels.mean(0)) / (pixels.std(0) + 1e-12)
    return float(np.mean(pixels[:, :-1] * pixels[:, 1:]))


def patch_mean(cube: np.ndarray, number: int) -> np.ndarray:
    """Mean spectrum of ColorChecker patch ``number`` (1-based, chart order)."""
    top, left, bottom, right = synth.colorchecker_patch_boxes(*cube.shape[:2])[number - 1]
    return cube[top:bottom, left:right].mean(axis=(0, 1))


def assert_valid_cube(cube: np.ndarray, height: int, width: int, bands: int = 28) -> None:
    assert cube.shape == (height, width, bands)
    assert cube.dtype == np.float32
    assert np.all(np.isfinite(cube))
    assert cube.min() >= 0.0 and cube.max() <= 1.0


# ---------------------------------------------------------------------------------------------- spectra


def test_reflectance_library_holds_hundreds_of_distinct_real_spectra_in_unit_range():
    library = synth.reflectance_library()
    assert library.dtype == np.float32 and library.shape[1] == 28
    assert library.shape[0] >= 250  # six sets, about 300 samples after removing exact repeats
    assert library.min() >= 0.0 and library.max() <= 1.0
    # Real reflectances span many shapes: more than three significant spectral dimensions.
    singular = np.linalg.svd(library, compute_uv=False)
    assert singular[3] / singular[0] > 0.03
    # No exact duplicates survive (the two ColorChecker measurements differ, but not by nothing).
    distances = np.abs(library[:, None, :] - library[None, :, :]).max(-1)
    np.fill_diagonal(distances, 1.0)
    assert distances.min() > 1e-4


def test_reflectance_library_spectra_are_spectrally_smooth():
    library = synth.reflectance_library()
    curvature = np.abs(np.diff(library, n=2, axis=1)).mean(1) / np.maximum(library.mean(1), 1e-3)
    assert curvature.mean() < 0.05
    assert curvature.max() < 0.2


def test_reflectance_library_first_rows_are_the_ohta_colorchecker_with_a_flat_white():
    chart = synth.reflectance_library(sets=["ColorChecker N Ohta"])
    assert chart.shape == (24, 28)
    white, black = chart[18], chart[23]
    assert white.min() > 0.8 and white.max() / white.min() < 1.1
    assert black.max() < 0.05
    np.testing.assert_array_equal(synth.reflectance_library()[:24], chart)


def test_spectra_follow_other_band_lists():
    wavelengths = np.linspace(400, 700, 31)
    assert synth.reflectance_library(wavelengths).shape[1] == 31
    assert synth.illuminant_library(wavelengths)["D65"].shape == (31,)
    assert synth.reflectance_library([550.0]).shape[1] == 1


@pytest.mark.parametrize(
    ("wavelengths", "error"),
    [([380.0, 450.0, 500.0], ValueRangeError), ([500.0, 800.0], ValueRangeError),
     ([500.0, 480.0], ValueRangeError), (np.ones((2, 2)) * 500, ShapeError)],
)
def test_unusable_band_lists_are_refused(wavelengths, error):
    with pytest.raises(error):
        synth.reflectance_library(wavelengths)


def test_unknown_reflectance_set_or_illuminant_is_a_usage_error():
    with pytest.raises(UsageError, match="reflectance set"):
        synth.reflectance_library(sets=["Munsell"])
    with pytest.raises(UsageError, match="illuminant"):
        synth.illuminant_library(names=["D99"])


def test_illuminants_are_normalised_and_physically_ordered():
    lights = synth.illuminant_library()
    assert tuple(lights) == synth.ILLUMINANTS
    for spectrum in lights.values():
        assert spectrum.shape == (28,) and spectrum.min() > 0 and spectrum.max() == pytest.approx(1.0)
    # Incandescent light (A) rises toward red; north-sky daylight (D75) is bluer than D50.
    assert lights["A"][-1] > 2 * lights["A"][0]
    assert lights["D75"][0] / lights["D75"][-1] > lights["D50"][0] / lights["D50"][-1]


def test_a_band_is_the_box_average_between_midpoints_to_its_neighbours():
    import colour

    source = colour.SDS_ILLUMINANTS["FL11"]  # line spectrum: point sampling would differ by up to 2x
    edges = np.concatenate([[WL[0] - (WL[1] - WL[0]) / 2], (WL[1:] + WL[:-1]) / 2, [WL[-1] + (WL[-1] - WL[-2]) / 2]])
    expected = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        fine = np.linspace(lo, hi, 2001)
        expected.append(np.interp(fine, source.wavelengths, source.values).mean())
    expected = np.asarray(expected) / max(expected)
    np.testing.assert_allclose(synth.illuminant_library()["FL11"], expected, rtol=2e-3, atol=1e-4)


def test_band_averaging_tames_fluorescent_lines_without_hiding_them():
    fl11 = synth.illuminant_library()["FL11"]
    d65 = synth.illuminant_library()["D65"]
    # The narrow-band lamp stays spiky compared with daylight, yet no band is a near-zero gap.
    assert spectral_curvature(fl11) > 10 * spectral_curvature(d65)
    assert fl11.min() > 0.01


# ---------------------------------------------------------------------------------------------- colour chart


def test_colorchecker_scene_layout_and_brightness():
    cube = synth.colorchecker_scene(48, 72)
    assert_valid_cube(cube, 48, 72)
    assert cube.max() == pytest.approx(0.9, abs=1e-6)
    boxes = synth.colorchecker_patch_boxes(48, 72)
    assert len(boxes) == 24
    covered = np.zeros((48, 72), dtype=int)
    for top, left, bottom, right in boxes:
        assert 0 <= top < bottom <= 48 and 0 <= left < right <= 72
        covered[top:bottom, left:right] += 1
    assert covered.max() == 1  # patches never overlap
    # Row-major order: patch 2 is right of patch 1, patch 7 below it.
    assert boxes[1][1] > boxes[0][1] and boxes[6][0] > boxes[0][0]


def test_colorchecker_white_is_flat_and_far_brighter_than_black():
    cube = synth.colorchecker_scene(64, 96, illuminant="E")  # equal-energy light shows the bare reflectance
    white, black = patch_mean(cube, 19), patch_mean(cube, 24)
    assert white.max() / white.min() < 1.1
    assert white.mean() > 10 * black.mean()
    # Under D65 the white patch takes the illuminant's shape.
    d65_cube = synth.colorchecker_scene(64, 96, illuminant="D65")
    ratio = patch_mean(d65_cube, 19) / synth.illuminant_library()["D65"]
    assert ratio.max() / ratio.min() < 1.1


def test_colorchecker_patches_are_coloured_as_named():
    cube = synth.colorchecker_scene(64, 96, illuminant="E")
    blue, green, red = patch_mean(cube, 13), patch_mean(cube, 14), patch_mean(cube, 15)
    short, middle, long_ = WL < 490, (WL > 510) & (WL < 570), WL > 600
    assert blue[short].mean() > blue[long_].mean()
    assert green[middle].mean() > green[short].mean() and green[middle].mean() > green[long_].mean()
    assert red[long_].mean() > 3 * red[short].mean()


def test_colorchecker_seed_changes_only_the_shading():
    first, same, other = (synth.colorchecker_scene(32, 48, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first, other)
    np.testing.assert_allclose(first, other, atol=0.15)


def test_colorchecker_takes_an_illuminant_vector_of_the_right_length_only():
    flat = np.ones(28)
    np.testing.assert_allclose(
        synth.colorchecker_scene(32, 48, illuminant=flat), synth.colorchecker_scene(32, 48, illuminant="E"), atol=1e-5
    )
    with pytest.raises(ShapeError):
        synth.colorchecker_scene(32, 48, illuminant=np.ones(10))
    with pytest.raises(ShapeError):
        synth.colorchecker_scene(4, 4)


# ---------------------------------------------------------------------------------------------- procedural


@pytest.mark.parametrize(("height", "width"), [(1, 1), (7, 13), (32, 48)])
def test_procedural_scene_shape_type_and_range(height, width):
    for seed in range(3):
        assert_valid_cube(synth.procedural_scene(height, width, rng=seed), height, width)


def test_procedural_scene_is_deterministic_from_its_seed_and_varies_between_seeds():
    a = synth.procedural_scene(32, 32, rng=5)
    b = synth.procedural_scene(32, 32, rng=np.random.default_rng(5))
    c = synth.procedural_scene(32, 32, rng=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


def test_procedural_scenes_have_natural_scene_statistics():
    scenes = [synth.procedural_scene(64, 64, rng=seed) for seed in range(6)]
    for cube in scenes:
        # Exposed so the brightest value is between 0.55 and 0.95 (no clipping at 1).
        assert 0.55 <= cube.max() <= 0.95
        # Spatially varied but piecewise smooth: neighbouring pixels mostly agree (white noise gives ~0.6).
        assert cube.std(axis=(0, 1)).mean() > 0.01
        assert np.abs(np.diff(cube, axis=1)).mean() / cube.mean() < 0.3
        # Correlated bands (natural scenes: > 0.99) and more than one spectrum in the scene.
        assert adjacent_band_correlation(cube) > 0.95
        singular = np.linalg.svd(cube.reshape(-1, 28), compute_uv=False)
        assert singular[2] / singular[0] > 1e-3
    # Spectrally smooth: well below white noise's ~1.5 even with the occasional fluorescent lamp.
    assert np.median([spectral_curvature(cube) for cube in scenes]) < 0.15


def test_procedural_scene_follows_the_band_list():
    cube = synth.procedural_scene(16, 16, np.linspace(400, 700, 31), rng=0)
    assert_valid_cube(cube, 16, 16, bands=31)


# ---------------------------------------------------------------------------------------------- lifted


def test_lifting_maps_grey_to_the_illuminant_spectrum():
    grey = np.full((4, 5, 3), 128, dtype=np.uint8)
    flat = synth.lifted_image_scene(grey, illuminant="E", rng=0)
    assert_valid_cube(flat, 4, 5)
    assert flat.max() / flat.min() < 1.01  # the basis sums to one: grey is a flat reflectance
    lit = synth.lifted_image_scene(grey, illuminant="A", rng=0)[0, 0]
    np.testing.assert_allclose(lit / lit.max(), synth.illuminant_library()["A"], atol=0.01)


def test_lifting_decodes_srgb_before_weighting_the_basis():
    image = np.array([[[255, 255, 255], [128, 128, 128]]], dtype=np.uint8)
    cube = synth.lifted_image_scene(image, illuminant="E", rng=0)
    # sRGB 128/255 is 21.6 % linear light, not 50 %.
    assert cube[0, 1].mean() / cube[0, 0].mean() == pytest.approx(0.2158, abs=0.002)


def test_lifting_keeps_colours_where_they_belong():
    red = np.zeros((2, 2, 3), dtype=np.float32)
    red[..., 0] = 1.0
    spectrum = synth.lifted_image_scene(red, illuminant="E", rng=0)[0, 0]
    assert spectrum[WL > 600].mean() > 5 * spectrum[WL < 490].mean()


def test_lifted_pixels_have_exactly_three_spectral_degrees_of_freedom():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cube = synth.lifted_image_scene(rgb, illuminant="D65", rng=0)
    singular = np.linalg.svd(cube.reshape(-1, 28).astype(np.float64), compute_uv=False)
    assert singular[2] / singular[0] > 1e-2
    assert singular[3] / singular[0] < 1e-5


def test_lifting_rejects_non_rgb_input():
    with pytest.raises(ShapeError):
        synth.lifted_image_scene(np.zeros((8, 8)))
    with pytest.raises(ValueRangeError):
        synth.lifted_image_scene(np.full((4, 4, 3), 2.0))


# ---------------------------------------------------------------------------------------------- SyntheticScenes


def test_scene_source_is_deterministic_in_seed_and_index_whatever_the_order():
    own_images = [np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)]
    forward = synth.SyntheticScenes(24, 20, seed=3, images=own_images)
    backward = synth.SyntheticScenes(24, 20, seed=3, images=own_images)
    later = [backward[i] for i in (3, 2, 1, 0)][::-1]
    for i in range(4):
        np.testing.assert_array_equal(forward.scene(i), later[i])
        assert_valid_cube(later[i], 24, 20)
    assert not np.array_equal(forward[0], forward[2])
    other_seed = synth.SyntheticScenes(24, 20, seed=4, images=own_images)
    assert not np.array_equal(forward[0], other_seed[0])


def test_scene_kinds_alternate_with_the_index():
    scenes = synth.SyntheticScenes(24, 36, kinds=("procedural", "colorchecker"))
    assert [scenes.kind(i) for i in range(4)] == ["procedural", "colorchecker"] * 2
    assert scenes[1].max() == pytest.approx(0.9, abs=1e-6)  # the chart's fixed exposure
    assert scenes.bands == 28


def test_default_lifted_scenes_use_bundled_photographs():
    pytest.importorskip("skimage")
    scenes = synth.SyntheticScenes(32, 32, kinds="lifted", seed=0)
    for i in range(3):
        assert_valid_cube(scenes[i], 32, 32)
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in synth.natural_images())


def test_scene_source_refuses_bad_arguments():
    with pytest.raises(UsageError, match="scene kind"):
        synth.SyntheticScenes(8, 8, kinds=("photos",))
    with pytest.raises(UsageError):
        synth.SyntheticScenes(8, 8).scene(-1)
    with pytest.raises(ShapeError):
        synth.SyntheticScenes(0, 8)


def test_synth_module_keeps_torch_out():
    tree = ast.parse(Path(synth.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "torch" not in imported


# ---------------------------------------------------------------------------------------------- files


def test_write_scenes_writes_regenerable_npy_files_and_a_manifest(tmp_path):
    out = tmp_path / "scenes"
    paths = synth.write_scenes(out, 3, height=12, width=10, seed=7, kinds=("procedural",))
    assert [p.name for p in paths] == ["scene_0000.npy", "scene_0001.npy", "scene_0002.npy"]
    source = synth.SyntheticScenes(12, 10, kinds=("procedural",), seed=7)
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(np.load(path), source[i])
    record = json.loads((out / "scenes.json").read_text())
    assert record["seed"] == 7 and record["count"] == 3 and record["kinds"] == ["procedural"]
    np.testing.assert_allclose(record["wavelengths_nm"], WL)
    assert not list(out.glob("*.tmp"))


def test_write_scenes_never_overwrites_unless_asked(tmp_path):
    paths = synth.write_scenes(tmp_path, 2, height=8, width=8, seed=0, kinds=("procedural",))
    before = np.load(paths[0])
    with pytest.raises(OutputExistsError):
        synth.write_scenes(tmp_path, 2, height=8, width=8, seed=1, kinds=("procedural",))
    np.testing.assert_array_equal(np.load(paths[0]), before)
    synth.write_scenes(tmp_path, 2, height=8, width=8, seed=1, kinds=("procedural",), overwrite=True)
    assert not np.array_equal(np.load(paths[0]), before)


# ---------------------------------------------------------------------------------------------- real data


def test_synthetic_statistics_sit_near_real_kaist_scenes():
    path = DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    truth = np.load(path)["truth"][:, ::4, ::4].astype(np.float32) / 255.0
    real_curvature = max(spectral_curvature(cube) for cube in truth)
    real_correlation = min(adjacent_band_correlation(cube) for cube in truth)
    source = synth.SyntheticScenes(64, 64, kinds=("procedural",), seed=0)
    scenes = [source[i] for i in range(6)]
    assert np.median([spectral_curvature(cube) for cube in scenes]) < 2 * real_curvature
    assert np.median([adjacent_band_correlation(cube) for cube in scenes]) > real_correlation - 0.01
    # Brightness in the same range as the real scenes (their means are 0.04-0.15).
    assert 0.02 < np.mean([cube.mean() for cube in scenes]) < 0.3
