"""The trust map: the measurement residual |A x̂ − y| brought back to scene coordinates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hsra_cli.physics import CassiOperator
from hsra_cli.reconstruct import Reconstructor
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene
from hsra_cli.trust import map_statistics, measurement_residual


@pytest.mark.parametrize("axis", ["width", "height"])
def test_one_wrong_sensor_pixel_lands_on_the_scene_pixels_that_disperse_onto_it(axis):
    bands, step = 5, 2
    mask = torch.from_numpy(generate_mask(12, 14, "random-grey", seed=0))
    op = CassiOperator(mask, bands=bands, step=step, axis=axis)
    cube = torch.rand(bands, 12, 14, generator=torch.Generator().manual_seed(0))
    y = op.A(cube).clone()
    i, u = 9, 9  # (row, column) on the sensor; bands land 0, 2, …, 8 pixels before it along `axis`
    y[i, u] += 1.0
    residual, trust = measurement_residual(op, cube, y)
    rms = float(torch.linalg.vector_norm(y)) / y.numel() ** 0.5
    expected = np.zeros((12, 14), np.float32)
    for b in range(bands):
        if axis == "width":
            expected[i, u - step * b] = 1.0 / (bands * rms)
        else:
            expected[i - step * b, u] = 1.0 / (bands * rms)
    np.testing.assert_allclose(trust, expected, atol=1e-5)
    assert residual == pytest.approx(1.0 / float(torch.linalg.vector_norm(y)), rel=1e-4)


@pytest.mark.parametrize("refine", [0, None])
def test_a_corrupted_block_of_the_measurement_stands_out_in_the_map(refine, least=2.0):
    """hsra-s alone and with its default refinement. The block is wider than the dispersion spread, so some scene
    pixels send every band into it. Measured with the shipped hsra-s.any weights (phase 6): 2.3× alone; the
    any-mask network alone fits every measurement less tightly than the KAIST-mask one (4.3× alone). The default
    refinement (accelerated, as GAP-TV is) fits such a corruption into the cube: the refined cube's own residual
    shows the block at 0.4× the rest, which is why a refined reconstruction's map is the network's residual before
    refinement (the same 2.3×)."""
    rng = np.random.default_rng(0)
    cube = procedural_scene(64, 128, rng=rng)
    mask = generate_mask(64, 128, "random-binary", seed=1)
    measurement, _ = simulate_measurement(cube, mask)
    top, left, height, width = 20, 60, 24, 72
    block = measurement[top : top + height, left : left + width]
    # a sensor fault: noise at the mean level over the block, clipped at 0 as a sensor reads (no negative light)
    noisy = block + measurement.mean() * rng.standard_normal(block.shape)
    measurement[top : top + height, left : left + width] = np.clip(noisy, 0, None)
    result = Reconstructor("hsra-s", refine=refine, device="cpu").reconstruct(measurement, mask, normalize="none")
    trust = result.residual_map
    assert trust.shape == (64, 128)
    spread = 2 * 27
    inside = np.zeros(trust.shape, dtype=bool)  # every band of these scene pixels lands in the block
    inside[top : top + height, left : left + width - spread] = True
    touched = np.zeros(trust.shape, dtype=bool)  # some band of these does
    touched[top : top + height, max(0, left - spread) : left + width] = True
    ratio = trust[inside].mean() / trust[~touched].mean()
    assert ratio > least, f"block residual only {ratio:.2f}× the rest"
    stats = result.record["residual_map"]
    assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert {k: v for k, v in stats.items() if k not in ("cube", "residual")} == map_statistics(trust)
    # refined, the map is the network's residual before refinement; the record says so and keeps both scalars
    assert stats["cube"] == ("the reconstruction" if refine == 0 else "the network's cube before refinement")
    assert (stats["residual"] == result.record["residual"]) == (refine == 0)


def test_reconstruct_writes_the_trust_map_beside_the_previews(tmp_path, capsys):
    from hsra_cli.cli import main
    from hsra_cli.io import write_array

    cube = procedural_scene(32, 40, rng=np.random.default_rng(2))
    mask = generate_mask(32, 40, "random-binary", seed=2)
    measurement, _ = simulate_measurement(cube, mask)
    write_array(tmp_path / "cap.mat", measurement, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "-o",
                 str(tmp_path / "out"), "-q"])
    assert code == 0, capsys.readouterr().err
    png = tmp_path / "out" / "cap_residual.png"
    assert png.stat().st_size > 1000
    record = json.loads((tmp_path / "out" / "cap.json").read_text())
    assert record["outputs"]["residual"] == str(png)
    assert set(record["residual_map"]) >= {"p50", "p90", "p99", "max", "definition"}
