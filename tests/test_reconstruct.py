"""Reconstruction at any size: normalisation, mask cropping, CASSI-aware tiling, networks through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hsra_cli.bands import default_wavelengths
from hsra_cli.cli import main
from hsra_cli.errors import ShapeError, UsageError
from hsra_cli.io import read_cube, write_array
from hsra_cli.metrics import psnr
from hsra_cli.reconstruct import (
    DEFAULT_REFINE,
    REAL_CAPTURE_PEAK,
    Reconstructor,
    crop_mask,
    gaussian_weights,
    normalise_measurement,
    resolve_device,
    tile_starts,
)
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene


@pytest.mark.parametrize("size,tile,overlap", [(100, 32, 0.25), (64, 64, 0.5), (70, 32, 0.0), (33, 16, 0.5)])
def test_tiles_cover_the_image_and_end_at_the_border(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == size - tile
    assert all(b - a <= tile for a, b in zip(starts, starts[1:]))


def test_gaussian_weights_peak_in_the_middle_and_stay_positive():
    w = gaussian_weights(32, 48)
    assert w.shape == (32, 48) and float(w.min()) > 0
    assert float(w[15:17, 23:25].min()) == pytest.approx(float(w.max()), rel=0.01)
    assert float(w[0, 0]) < 0.01


def test_real_capture_normalisation_follows_the_field():
    y = np.random.default_rng(0).uniform(0, 0.9, (8, 20)).astype(np.float32)
    scaled, info = normalise_measurement(y, 28, "auto", key="meas")
    assert info["mode"] == "max"  # peaks ≤ 1: not a field-scale sum
    # The network sees y·2/bands; after scaling that peaks at 0.8.
    assert float((scaled * 2 / 28).max()) == pytest.approx(REAL_CAPTURE_PEAK)
    field = y * 20
    same, info = normalise_measurement(field, 28, "auto")
    assert info["mode"] == "none" and same is field
    assert normalise_measurement(field, 28, "auto", key="meas_real")[1]["mode"] == "max"
    counts = y * 4000  # a float capture in counts, under no telling key: above any field-scale sum over 28 bands
    scaled, info = normalise_measurement(counts, 28, "auto", key="meas")
    assert info["mode"] == "max" and "counts" in info["reason"]
    assert float((scaled * 2 / 28).max()) == pytest.approx(REAL_CAPTURE_PEAK)
    bright = y / y.max() * 45.0  # a simulation at gain 4 (hsra_cli.simulate.simulate_measurement): still field scale
    assert normalise_measurement(bright, 28, "auto", key="meas")[1]["mode"] == "none"
    with pytest.raises(UsageError):
        normalise_measurement(y, 28, "weird")
    # a dark simulated scene peaks below 1 too: the scale its file records (hsra simulate's) decides
    from hsra_cli.simulate import MEASUREMENT_SCALE

    kept, info = normalise_measurement(y, 28, "auto", key="meas", recorded_scale=MEASUREMENT_SCALE)
    assert info["mode"] == "none" and kept is y and "records" in info["reason"]
    assert normalise_measurement(y, 28, "max", recorded_scale=MEASUREMENT_SCALE)[1]["mode"] == "max"  # as asked


def test_mask_crop_needs_an_offset_inside_the_mask():
    mask = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    cropped, info = crop_mask(mask, 10, 12, (5, 7))
    np.testing.assert_array_equal(cropped, mask[5:15, 7:19])
    assert info == {"cropped": True, "offset": [5, 7], "mask_shape": [20, 30]}
    with pytest.raises(ShapeError, match="--mask-offset"):
        crop_mask(mask, 10, 12, None)
    with pytest.raises(UsageError, match="outside"):
        crop_mask(mask, 10, 12, (15, 0))
    with pytest.raises(ShapeError, match="at least"):
        crop_mask(mask, 25, 12, (0, 0))


def test_cuda_without_a_gpu_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="no CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("axis", ["width", "height"])
def test_tiled_gap_tv_agrees_with_the_whole_image(axis):
    # 8 bands at step 2: a 14-pixel dispersion spread, so 48-pixel tiles are meaningful on a small scene.
    cube = procedural_scene(72, 88, wavelengths_nm=default_wavelengths(8), rng=np.random.default_rng(3))
    mask = generate_mask(72, 88, "random-binary", seed=2)
    y, _ = simulate_measurement(cube, mask, axis=axis)
    whole = Reconstructor("gap-tv", bands=8, axis=axis, tile_size=0).reconstruct(y, mask).cube
    tiled_result = Reconstructor("gap-tv", bands=8, axis=axis, tile_size=48, tile_overlap=0.25).reconstruct(y, mask)
    assert tiled_result.record["tiling"]["tile_size"] == 48
    tiled = tiled_result.cube
    assert tiled.shape == whole.shape == cube.shape
    gap = abs(psnr(whole, cube, "float") - psnr(tiled, cube, "float"))
    assert gap < 0.3, f"tiled and whole differ by {gap:.2f} dB"


def test_tiles_smaller_than_twice_the_dispersion_spread_are_refused():
    mask = generate_mask(64, 200, "random-binary", seed=2)
    y, _ = simulate_measurement(np.full((64, 200, 28), 0.5, np.float32), mask)
    with pytest.raises(UsageError, match="too small for the dispersion spread of 54"):
        Reconstructor("gap-tv", tile_size=96).reconstruct(y, mask)


def test_auto_tiling_follows_the_memory_cap():
    r = Reconstructor("gap-tv", memory_cap_gb=0.5)
    assert r.plan_tiles(64, 64) == 0
    assert r.smallest_tile() <= r.plan_tiles(2048, 2048) <= 512
    # A cap whose tiles could not hold the dispersion margins names --memory-cap and the least that works
    # (it used to blame a --tile-size the user never gave).
    tiny = Reconstructor("gap-tv", memory_cap_gb=0.001)
    assert tiny.plan_tiles(8, 8) == 0
    with pytest.raises(UsageError, match=r"--memory-cap 0.001 GB fits tiles of \d+ px, smaller than the 172 px") as caught:
        tiny.plan_tiles(2048, 2048)
    import re

    least = float(re.search(r"give at least --memory-cap ([0-9.]+)", str(caught.value)).group(1))
    assert "--tile-size (at least 116)" in str(caught.value)  # what a chosen tile may be, told apart
    assert Reconstructor("gap-tv", memory_cap_gb=least).plan_tiles(2048, 2048) >= 172
    assert Reconstructor("gap-tv", memory_cap_gb=100).plan_tiles(660, 660) == 0
    assert Reconstructor("gap-tv", tile_size=0, memory_cap_gb=0.001).plan_tiles(2048, 2048) == 0
    # a tile covering the whole image is no tiling (the record says so, not "tile_size 100000")
    assert Reconstructor("gap-tv", tile_size=100000).plan_tiles(660, 714) == 0
    assert Reconstructor("gap-tv", tile_size=700).plan_tiles(660, 714) == 700


def test_network_reconstructs_an_odd_sized_capture_through_the_cli(installed_hsra_s, tmp_path, capsys):
    mask = generate_mask(40, 50, "random-grey", seed=1)
    y, _ = simulate_measurement(procedural_scene(40, 50, rng=np.random.default_rng(1)), mask)
    write_array(tmp_path / "cap.mat", y, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "s",
                 "-o", str(tmp_path / "out"), "--no-previews", "--refine", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    cube, _ = read_cube(tmp_path / "out" / "cap.mat")
    assert cube.shape == (40, 50, 28)
    record = json.loads((tmp_path / "out" / "cap.json").read_text())
    assert record["model"] == "hsra-s" and len(record["weights"]["sha256"]) == 64
    assert record["refine"] is None and record["arguments"]["refine"] == 0
    # The library gives the same cube as the network called directly.
    with torch.inference_mode():
        direct = installed_hsra_s(torch.from_numpy(y)[None], torch.from_numpy(mask))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(cube, direct, atol=1e-4)
    # By default a network's cube is refined: it then agrees better with the measurement.
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "s",
                 "-o", str(tmp_path / "refined"), "--no-previews"])
    assert code == 0, capsys.readouterr().err
    refined = json.loads((tmp_path / "refined" / "cap.json").read_text())
    assert refined["refine"]["iterations"] == DEFAULT_REFINE and refined["arguments"]["refine"] == DEFAULT_REFINE
    assert refined["residual"] < 0.5 * record["residual"]


def test_network_physics_must_match_its_card(installed_hsra_s):
    with pytest.raises(UsageError, match="step=2"):
        Reconstructor("s", step=1)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HSRA_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("hsra_cli.weights.models_search_path", lambda: [tmp_path / "empty"])
    write_array(tmp_path / "cap.mat", np.ones((16, 70), np.float32), key="meas")
    write_array(tmp_path / "mask.mat", np.ones((16, 16), np.float32), key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "dum3",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "hsra train" in err and "HSRA_MODELS_DIR" in err
    assert len(err.strip().splitlines()) == 1


def test_refine_is_for_networks_and_counts_iterations(installed_hsra_s, tmp_path, capsys):
    assert Reconstructor("s").refine == DEFAULT_REFINE and Reconstructor("gap-tv").refine == 0
    assert Reconstructor("s", refine=0).refine == 0
    for bad in (-1, 2.5, True):
        with pytest.raises(UsageError, match="--refine"):
            Reconstructor("s", refine=bad)
    write_array(tmp_path / "cap.mat", np.ones((16, 70), np.float32), key="meas")
    write_array(tmp_path / "mask.mat", np.ones((16, 16), np.float32), key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "gap-tv",
                 "--refine", "3", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "iterative solver" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_refine_help_states_the_default_the_library_uses():
    import inspect

    from hsra_cli.cli.reconstruct_cmd import reconstruct
    from hsra_cli.solvers.gap_tv import REFINE_CORRECTION_TV_WEIGHT, REFINE_FINAL_TV_WEIGHT, REFINE_TV_WEIGHT

    text = inspect.signature(reconstruct).parameters["refine"].default.help
    assert f"default {DEFAULT_REFINE} for networks" in text
    assert f"on the correction, weight {REFINE_CORRECTION_TV_WEIGHT:g}, then on the cube, {REFINE_TV_WEIGHT:g}; a final TV at {REFINE_FINAL_TV_WEIGHT:g}" in text


def test_refined_network_tiles_agree_with_the_whole_image(installed_hsra_s):
    mask = generate_mask(48, 160, "random-binary", seed=3)
    truth = procedural_scene(48, 160, rng=np.random.default_rng(3))
    y, _ = simulate_measurement(truth, mask)
    whole = Reconstructor("s", tile_size=0).reconstruct(y, mask, normalize="none").cube
    tiled = Reconstructor("s", tile_size=128, tile_overlap=0.25).reconstruct(y, mask, normalize="none").cube
    assert abs(psnr(truth, np.clip(whole, 0, 1)) - psnr(truth, np.clip(tiled, 0, 1))) < 0.3


@pytest.mark.parametrize("name", ["hsra-dum-2stg.any", "hsra-s.any", "hsra-s.kaist", "hsra-dum-2stg.kaist"])
def test_shipped_weights_reproduce_their_card_and_refining_helps_on_the_held_out_scene(kaist, monkeypatch, name):
    from pathlib import Path

    from hsra_cli.metrics import evaluate_cube

    repo_models = Path(__file__).resolve().parents[1] / "hsra_cli" / "models"
    if not (repo_models / name / "model.safetensors").is_file():
        pytest.skip(f"the shipped {name} weights are not in this checkout")
    monkeypatch.setenv("HSRA_MODELS_DIR", str(repo_models))
    card = json.loads((repo_models / name / "config.json").read_text())
    held_out = card["validation"]["scenes"][0]
    assert held_out["name"].endswith(":4")  # KAIST scene 05
    truth, mask, _ = kaist
    y, _ = simulate_measurement(truth[4], mask)
    alone = Reconstructor(name, refine=0).reconstruct(y, mask, normalize="none").cube
    refined = Reconstructor(name).reconstruct(y, mask, normalize="none").cube
    alone_psnr = evaluate_cube(alone, truth[4], convention="field")["psnr"]
    assert alone_psnr == pytest.approx(held_out["psnr_field"], abs=0.05)
    # measured with 10 iterations at TV weight 0.003: +0.47 (s.any), +0.52 (s.kaist), +0.27 (dum-2stg.any),
    # +0.21 (dum-2stg.kaist): the better the network alone fits the measurement, the less the iterations add
    assert evaluate_cube(refined, truth[4], convention="field")["psnr"] > alone_psnr + 0.10


def test_self_ensemble_averages_the_capture_and_its_mirror_image(installed_hsra_s, tmp_path, capsys):
    mask = generate_mask(40, 144, "random-grey", seed=5)
    y, _ = simulate_measurement(procedural_scene(40, 144, rng=np.random.default_rng(5)), mask)
    plain = Reconstructor("s", refine=0)
    both = Reconstructor("s", refine=0, self_ensemble=True)
    mirrored = plain.reconstruct(np.ascontiguousarray(y[::-1]), np.ascontiguousarray(mask[::-1]), normalize="none")
    expected = (plain.reconstruct(y, mask, normalize="none").cube + mirrored.cube[::-1]) / 2
    result = both.reconstruct(y, mask, normalize="none")
    np.testing.assert_allclose(result.cube, expected, atol=1e-5)
    assert result.record["self_ensemble"]["members"] == 2 and plain.reconstruct(y, mask).record["self_ensemble"] is None
    # so the ensemble of the mirrored capture is the mirrored ensemble
    again = both.reconstruct(np.ascontiguousarray(y[::-1]), np.ascontiguousarray(mask[::-1]), normalize="none").cube
    np.testing.assert_allclose(again[::-1], result.cube, atol=1e-5)
    # tiles run the ensemble too
    tiled = Reconstructor("s", refine=0, self_ensemble=True, tile_size=128, tile_overlap=0.25)
    assert tiled.reconstruct(y, mask, normalize="none").record["tiling"]["tile_size"] == 128
    # a solver has nothing to average: one clear usage error, no output
    write_array(tmp_path / "cap.mat", y, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "gap-tv",
                 "--self-ensemble", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "solver" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "s",
                 "--self-ensemble", "--no-previews", "-o", str(tmp_path / "ens")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "ens" / "cap.json").read_text())
    assert record["arguments"]["self_ensemble"] is True and record["self_ensemble"]["members"] == 2


def test_self_ensemble_sharpens_the_shipped_default_on_the_bundled_sample(sample_with_shipped_default):
    y, mask, truth = sample_with_shipped_default
    scores = [psnr(Reconstructor("hsra-s.any", self_ensemble=flag).reconstruct(y, mask, normalize="none").cube,
                   truth, convention="field") for flag in (False, True)]
    assert scores[1] > scores[0] + 0.1  # measured +0.27 dB (phase 5 weights), +0.17 (phase 6)


def test_auto_chooses_the_network_for_its_geometry_and_gap_tv_otherwise(monkeypatch):
    import hsra_cli.weights as weights
    from hsra_cli.reconstruct import choose_model

    if weights.find_model_folder("hsra-dum-2stg") is None:
        pytest.skip("the shipped default weights are not installed")
    assert choose_model()[0] == "hsra-dum-2stg"
    assert choose_model(bands=28, step=2, axis="width")[0] == "hsra-dum-2stg"
    for asked, said in (({"bands": 31}, "bands=31"), ({"step": 1}, "step=1"), ({"axis": "height"}, "axis=height")):
        name, reason = choose_model(**asked)
        assert name == "gap-tv" and said in reason and "28 bands, step 2 along the width" in reason
    auto = Reconstructor(bands=8)
    assert auto.name == "gap-tv" and auto.bands == 8 and auto.refine == 0 and auto.choice["requested"] == "auto"
    with pytest.raises(UsageError, match="--adapt needs a network"):
        Reconstructor(step=3, adapt=5)
    # An install without the default weights still reconstructs, with the solver, and says why.
    monkeypatch.setattr(weights, "find_model_folder", lambda name: None)
    name, reason = choose_model()
    assert name == "gap-tv" and "no weights" in reason
