"""Test-time adaptation (hsra_cli.adapt): learning from the capture alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hsra_cli.adapt import AdaptConfig, _valid_columns, adapt_network
from hsra_cli.cli import main
from hsra_cli.errors import UsageError
from hsra_cli.io import write_array
from hsra_cli.physics import CassiOperator
from hsra_cli.reconstruct import Reconstructor
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene


@pytest.mark.parametrize("axis", ["width", "height"])
def test_consistency_uses_only_measurement_lines_the_crop_explains(axis):
    torch.manual_seed(1)
    op = CassiOperator(torch.rand(30, 40), bands=6, step=2, axis=axis)
    x = torch.rand(1, 6, 30, 40)
    y = op.A(x)
    top, left, h, w = 5, 12, 16, 18
    sub = op.crop(top, left, h, w)
    window = op.measurement_window(y, top, left, h, w)
    first, size, crop = (top, 30, h) if axis == "height" else (left, 40, w)
    valid = _valid_columns(sub, crop, first == 0, first + crop == size, y.device)
    valid = valid[:, None] if axis == "height" else valid[None, :]
    residual = (sub.A(x[..., top : top + h, left : left + w]) - window).abs()
    assert float((residual * valid).max()) < 1e-5  # what the crop explains, it explains exactly
    assert float((residual * (1 - valid)).max()) > 1e-2  # light from outside lands elsewhere: left out
    # at the capture's edge nothing lies beyond it, so those lines count too
    full = _valid_columns(op, 40 if axis == "width" else 30, True, True, y.device)
    assert bool(full.all())


def test_adaptation_fits_the_capture_on_a_copy_and_is_repeatable(installed_hsra_s):
    mask = generate_mask(32, 48, "random-binary", seed=2)
    truth = procedural_scene(32, 48, rng=np.random.default_rng(2))
    y, _ = simulate_measurement(truth, mask)
    op = CassiOperator(mask)
    before = {k: v.clone() for k, v in installed_hsra_s.state_dict().items()}
    config = AdaptConfig(steps=30, lr=1e-3, warmup=5, crop=32)
    first, info = adapt_network(installed_hsra_s, torch.from_numpy(y), op, config)
    second, _ = adapt_network(installed_hsra_s, torch.from_numpy(y), op, config)
    assert all(torch.equal(v, installed_hsra_s.state_dict()[k]) for k, v in before.items())  # original untouched
    assert any(not torch.equal(v, first.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())  # same seed, same net
    assert all(torch.isfinite(v).all() for v in first.state_dict().values())
    assert info["steps"] == 30 and info["loss_last_tenth"] < 0.5 * info["loss_first_tenth"]
    assert not first.training and not any(p.requires_grad for p in first.parameters())


def test_adapt_option_through_the_library_and_the_cli(installed_hsra_s, tmp_path, capsys):
    for bad in (-1, 2.5, True):
        with pytest.raises(UsageError, match="--adapt"):
            Reconstructor("s", adapt=bad)
    with pytest.raises(UsageError, match="solver"):
        Reconstructor("gap-tv", adapt=3)
    mask = generate_mask(24, 40, "random-grey", seed=4)
    y, _ = simulate_measurement(procedural_scene(24, 40, rng=np.random.default_rng(4)), mask)
    rec = Reconstructor("s", adapt=AdaptConfig(steps=4, crop=24))
    shipped = {k: v.clone() for k, v in rec.model.state_dict().items()}
    one, two = (rec.reconstruct(y, mask, normalize="none") for _ in range(2))
    np.testing.assert_array_equal(one.cube, two.cube)  # each capture adapts a fresh copy of the weights
    assert np.isfinite(one.cube).all()
    assert one.record["adapt"]["steps"] == 4 and Reconstructor("s").reconstruct(y, mask).record["adapt"] is None
    assert all(torch.equal(v, shipped[k]) for k, v in rec.model.state_dict().items())
    write_array(tmp_path / "cap.mat", y, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "gap-tv",
                 "--adapt", "5", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "solver" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "s",
                 "--adapt", "3", "--no-previews", "-o", str(tmp_path / "ad")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "ad" / "cap.json").read_text())
    assert record["arguments"]["adapt"] == 3 and record["adapt"]["steps"] == 3 and record["adapt"]["seconds"] > 0


def test_adapting_the_shipped_default_sharpens_the_bundled_sample(sample_with_shipped_default):
    from hsra_cli.metrics import psnr

    y, mask, truth = sample_with_shipped_default
    scores = [psnr(Reconstructor("hsra-s.any", adapt=steps).reconstruct(y, mask, normalize="none").cube, truth,
                   convention="field") for steps in (0, 100)]
    assert scores[1] > scores[0] + 0.3  # measured +0.65 dB (the settings were chosen on other scenes and masks)
