"""`hsra train` and hsra_cli.train: the recipe's pieces, the exact resume, the outputs, the refusals.

Everything runs on a tiny registered network (one 3×3 convolution on Aᵀy), 8-band 40×40 cubes and 16-pixel
patches, so the whole file takes seconds on two CPU cores.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hsra_cli.cli import main
from hsra_cli.errors import ShapeError, UsageError, ValueRangeError
from hsra_cli.physics import CassiOperator, as_operator
from hsra_cli.registry import create_model, list_models, register_model, unregister_model

TINY = "test-train-tiny"
BANDS = 8


class TinyConfig:
    """Architecture record for the model folder (the tiny net has no settings)."""

    def to_dict(self):
        return {}


class TinyNet(nn.Module):
    """The smallest model of the registry's contract: Aᵀ(y·2/C), dropout, one 3×3 convolution.

    The dropout draws from torch's global RNG, so an exact resume must restore that state too.
    """

    def __init__(self, bands: int = 28, step: int = 2, axis: str = "width"):
        super().__init__()
        self.bands, self.step, self.axis = bands, step, axis
        self.config = TinyConfig()
        self.conv = nn.Conv2d(bands, bands, 3, padding=1)
        self.dropout = nn.Dropout(0.1)

    def forward(self, measurement, mask):
        op = as_operator(mask, measurement, self.bands, self.step, self.axis)
        return self.conv(self.dropout(op.A_adjoint(measurement * (2.0 / self.bands))))

    def example_inputs(self, height, width):
        mask = torch.rand(height, width)
        cube = torch.rand(1, self.bands, height, width)
        return CassiOperator(mask, self.bands, self.step, self.axis).A(cube), mask


def ensure_registered() -> None:
    """Register the tiny net (also called in the worker processes, which import this module afresh)."""
    if TINY not in list_models():
        register_model(TINY, description="test network for hsra train")(TinyNet)


@pytest.fixture(autouse=True, scope="module")
def tiny_model():
    # Registered only while this module's tests run: other test modules list every registered network.
    ensure_registered()
    yield
    unregister_model(TINY)


# --------------------------------------------------------------------------------------------------
# fixtures: a stack of 3 cubes (2 to train, 1 held out) and a mask, as .npy files
@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(1)
    smooth = np.cumsum(rng.random((3, 40, 40, BANDS), dtype=np.float32), axis=1)
    stack = (smooth / smooth.max()).astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "mask.npy", rng.random((40, 40), dtype=np.float32))
    return tmp_path


def train_args(files, out, *extra):
    return [
        "train", "--model", TINY,
        "--data", f"{files / 'stack.npy'}:0-1", "--val-data", f"{files / 'stack.npy'}:2",
        "--mask", str(files / "mask.npy"), "-o", str(out),
        "--patch-size", "16", "--batch-size", "2", "--steps", "6", "--log-every", "2", "--val-every", "3",
        "--ckpt-every", "3", "--threads", "1", *extra,
    ]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------------
# data sources
def test_scene_selectors_pick_scenes_of_a_stack(files):
    from hsra_cli.train.data import load_scenes, parse_source

    assert parse_source("kaist.npz:0-3")[1] == [0, 1, 2, 3]
    assert parse_source("a.h5:0,2,5-6")[1] == [0, 2, 5, 6]
    assert parse_source(str(files / "stack.npy"))[1] is None
    with pytest.raises(UsageError, match="backwards"):
        parse_source("a.npz:3-1")
    stack = np.load(files / "stack.npy")
    held_out = load_scenes([f"{files / 'stack.npy'}:2"])
    assert [s.name for s in held_out] == ["stack.npy:2"]
    np.testing.assert_array_equal(held_out[0].cube, stack[2])
    assert len(load_scenes([str(files / "stack.npy")])) == 3
    with pytest.raises(UsageError, match="holds 3 scenes"):
        load_scenes([f"{files / 'stack.npy'}:3"])


def test_integer_cubes_are_scaled_and_float_cubes_outside_unit_range_refused(tmp_path):
    from hsra_cli.train.data import load_scenes

    folder = tmp_path / "cubes"
    folder.mkdir()
    np.save(folder / "b.npy", np.full((20, 20, BANDS), 255, np.uint8))
    np.save(folder / "a.npy", np.full((20, 20, BANDS), 65535, np.uint16))
    scenes = load_scenes([str(folder)])
    assert [s.name for s in scenes] == ["a.npy", "b.npy"]  # a folder is read in name order
    assert all(s.cube.dtype == np.float32 and s.cube.max() == 1.0 for s in scenes)
    np.save(tmp_path / "radiance.npy", np.full((20, 20, BANDS), 3.0, np.float32))
    with pytest.raises(ValueRangeError, match=r"expects cubes in \[0, 1\]"):
        load_scenes([str(tmp_path / "radiance.npy")])


def test_a_shifted_3d_mask_gives_back_its_aperture():
    from hsra_cli.train.data import aperture_from_mask

    aperture = np.random.default_rng(0).random((20, 24), dtype=np.float32)
    phi = CassiOperator(aperture, bands=BANDS).phi()[0].permute(1, 2, 0).numpy()  # H × W' × C
    np.testing.assert_allclose(aperture_from_mask(phi, BANDS, 2, "width"), aperture)
    # band b sees the aperture scaled by b + 1: a valid Φ, but no single aperture
    per_band_phi = CassiOperator(aperture, bands=BANDS).phi()[0].numpy() * (np.arange(BANDS)[:, None, None] + 1)
    with pytest.raises(ShapeError, match="different aperture"):
        aperture_from_mask(per_band_phi.astype(np.float32), BANDS, 2, "width")


# --------------------------------------------------------------------------------------------------
# the recipe's pieces
def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    from hsra_cli.train.schedule import WarmupCosine

    schedule = WarmupCosine(total_steps=100, warmup_steps=10, base_lr=4e-4, min_lr=1e-6)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(55) == pytest.approx((1 + 1e-6 / 4e-4) / 2)  # half-way through the decay
    assert schedule(100) * 4e-4 == pytest.approx(1e-6)
    decay = [schedule(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_an_extended_schedule_goes_on_without_a_jump_and_ends_at_the_floor():
    import torch

    from hsra_cli.train.schedule import WarmupCosine

    schedule = WarmupCosine(total_steps=100, warmup_steps=10, base_lr=4e-4, min_lr=1e-6)
    before = [schedule(s) for s in range(0, 61)]
    schedule.extend(300, at_step=60)
    assert [schedule(s) for s in range(0, 61)] == pytest.approx(before, rel=1e-12)  # the past is unchanged, step 60 included
    assert schedule(61) < schedule(60) and schedule(61) > before[-1] * 0.999  # slower decay, no jump
    assert schedule(300) * 4e-4 == pytest.approx(1e-6) and schedule(100) * 4e-4 > 1e-5
    tail = [schedule(s) for s in range(60, 301)]
    assert all(a >= b for a, b in zip(tail, tail[1:]))
    # what the checkpoint keeps of it (LambdaLR's state) brings the extension back
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=4e-4)
    saved = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule).state_dict()
    fresh = WarmupCosine(total_steps=100, warmup_steps=10, base_lr=4e-4, min_lr=1e-6)
    torch.optim.lr_scheduler.LambdaLR(optimizer, fresh).load_state_dict(saved)
    assert [fresh(s) for s in range(301)] == [schedule(s) for s in range(301)]
    # during warm-up the cosine just starts later; past the end there is nothing to extend
    warming = WarmupCosine(total_steps=100, warmup_steps=10, base_lr=1.0, min_lr=0.0)
    warming.extend(200, at_step=5)
    assert warming(5) == pytest.approx(0.6) and warming(105) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        WarmupCosine(total_steps=100, warmup_steps=10, base_lr=1.0, min_lr=0.0).extend(200, at_step=100)


def _sampler(scenes, mask, **kw):
    from hsra_cli.train.sampler import MeasurementModel, PatchSampler

    physics = MeasurementModel(
        bands=scenes[0].shape[-1],
        mask_mode=kw.pop("mask_mode", "fixed"),
        mask_offset=kw.pop("mask_offset", (0, 0)),
        gain=kw.pop("gain", 1.0),
        shot_noise=kw.pop("shot_noise", False),
    )
    return PatchSampler(scenes, mask, physics, patch_size=kw.pop("patch_size", 16), batch_size=kw.pop("batch_size", 4), **kw)


def test_half_of_each_batch_is_a_mosaic_of_four_crops_from_random_scenes():
    # 8 flat scenes of distinct values: a plain crop is flat, a mosaic has four flat quadrants.
    scenes = [np.full((32, 32, BANDS), (k + 1) / 10, np.float32) for k in range(8)]
    sampler = _sampler(scenes, np.ones((32, 32), np.float32), batch_size=4)
    for _ in range(5):
        cube = sampler.next_batch().cube
        flat = [bool(torch.all(sample == sample.flatten()[0])) for sample in cube]
        assert flat[:2] == [True, True] and flat[2:] == [False, False]
        for sample in cube[2:]:
            for quadrant in (sample[:, :8, :8], sample[:, :8, 8:], sample[:, 8:, :8], sample[:, 8:, 8:]):
                assert torch.all(quadrant == quadrant.flatten()[0])


def test_each_rank_draws_its_own_stream_and_a_restored_state_replays_it():
    rng = np.random.default_rng(0)
    scenes = [rng.random((24, 24, BANDS), dtype=np.float32) for _ in range(3)]
    mask = rng.random((24, 24), dtype=np.float32)
    a, b, other_rank = (_sampler(scenes, mask, seed=5, rank=r, shot_noise=True) for r in (0, 0, 1))
    first = a.next_batch()
    assert torch.equal(first.cube, b.next_batch().cube)
    assert not torch.equal(first.cube, other_rank.next_batch().cube)
    state = json.loads(json.dumps({"numpy_generator": a.state_dict()["numpy_generator"]}))
    saved_noise = a.state_dict()["noise_generator"]
    expected = a.next_batch()
    b.load_state_dict({**state, "noise_generator": saved_noise})
    replay = b.next_batch()
    assert torch.equal(replay.cube, expected.cube) and torch.equal(replay.measurement, expected.measurement)


def test_fixed_mode_measures_through_the_same_mask_crop_with_the_cassi_operator():
    rng = np.random.default_rng(0)
    scenes = [rng.random((24, 24, BANDS), dtype=np.float32)]
    mask = rng.random((30, 30), dtype=np.float32)
    batch = _sampler(scenes, mask, mask_offset=(3, 5), batch_size=3).next_batch()
    window = torch.from_numpy(mask[3:19, 5:21])
    assert all(torch.equal(m, window) for m in batch.mask)
    expected = CassiOperator(window, bands=BANDS).A(batch.cube)
    torch.testing.assert_close(batch.measurement, expected)


def test_random_mode_crops_the_mask_per_sample_and_adds_the_fields_shot_noise():
    rng = np.random.default_rng(0)
    scenes = [rng.random((24, 24, BANDS), dtype=np.float32)]
    mask = rng.random((20, 20), dtype=np.float32)
    batch = _sampler(scenes, mask, mask_mode="random", gain=1.2, shot_noise=True, batch_size=6).next_batch()
    windows = {(r, c): mask[r : r + 16, c : c + 16] for r in range(5) for c in range(5)}
    positions = []
    for m in batch.mask:
        positions.append(next(p for p, w in windows.items() if np.array_equal(w, m.numpy())))
    assert len(set(positions)) > 1
    clean = CassiOperator(batch.mask[:, None], bands=BANDS).A(batch.cube)
    # Binomial(⌊y_n·bit/QE⌋, QE)/bit on y_n = 1.2·y·2/C: integer photon counts, mean 1.2·y
    counts = batch.measurement * (2.0 / BANDS) * 2048
    torch.testing.assert_close(counts, counts.round(), atol=1e-3, rtol=0)
    assert not torch.allclose(batch.measurement, 1.2 * clean)
    ratio = float(batch.measurement.sum() / clean.sum())
    assert ratio == pytest.approx(1.2, rel=0.01)


def test_losses_and_ema_follow_their_definitions():
    from hsra_cli.train.ema import WeightEma
    from hsra_cli.train.runtime import make_loss

    pred, target = torch.zeros(2, 3), torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    assert make_loss("rmse", 1e-3)(pred, target) == pytest.approx(math.sqrt(25 / 6))
    assert make_loss("l1", 1e-3)(pred, target) == pytest.approx(7 / 6)
    assert make_loss("charbonnier", 1e-3)(pred, target) == pytest.approx(
        (math.sqrt(9 + 1e-6) + math.sqrt(16 + 1e-6) + 4 * 1e-3) / 6
    )
    live = nn.Linear(2, 1)
    ema = WeightEma(live, decay=0.999)
    start = ema.module.weight.clone()
    with torch.no_grad():
        live.weight.add_(1.0)
    ema.update(live, step=1)  # the ramp: d = min(0.999, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, d * start + (1 - d) * live.weight)
    assert ema.effective_decay(10**6) == 0.999


def test_checkpoint_codec_round_trips_without_pickle_and_refuses_a_torn_pair(tmp_path):
    from safetensors.torch import load_file

    from hsra_cli.train.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, save_checkpoint

    state = {
        "step": 7,
        "optimizer": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(3)}},
                      "param_groups": [{"betas": (0.9, 0.999), "params": [0]}]},
        "half": torch.ones(2, dtype=torch.bfloat16),
        "numpy_rng": ("MT19937", np.arange(4, dtype=np.uint32), 2),
        "nothing": None,
    }
    save_checkpoint(tmp_path, state, step=7)
    tensors_path, state_path = checkpoint_paths(tmp_path)
    json.loads(state_path.read_text())  # plain JSON
    assert set(load_file(str(tensors_path))) == {"optimizer.state.0.step", "optimizer.state.0.exp_avg", "half"}
    back = load_checkpoint(tmp_path)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert back["half"].dtype == torch.bfloat16
    np.testing.assert_array_equal(back["numpy_rng"][1], np.arange(4))
    assert back["numpy_rng"][1].dtype == np.uint32 and back["nothing"] is None
    save_checkpoint(tmp_path / "other", {"step": 8, "x": torch.zeros(1)}, step=8)
    tensors_path.write_bytes((tmp_path / "other" / "checkpoints" / "last.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="interrupted"):
        load_checkpoint(tmp_path)


# --------------------------------------------------------------------------------------------------
# the command
def test_train_writes_log_checkpoint_and_model_folder_with_card(files, capsys, monkeypatch):
    out = files / "run"
    assert main(train_args(files, out)) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / TINY)
    assert "step 6/6" in captured.err and "final validation (field convention)" in captured.err
    rows = read_csv(out / "log.csv")
    assert list(rows[0]) == ["step", "loss", "lr", "val_psnr", "val_ssim", "samples_per_s", "elapsed_s", "data_share"]
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert [bool(r["val_psnr"]) for r in rows] == [False, True, False, True]
    assert float(rows[-1]["lr"]) == pytest.approx(1e-6)
    assert (out / "checkpoints" / "last.safetensors").is_file() and (out / "checkpoints" / "last.json").is_file()
    assert (out / TINY / "learning_curve.png").stat().st_size > 1000
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["step"] == 6
    config = json.loads((out / TINY / "config.json").read_text())
    assert config["name"] == TINY and config["physics"]["bands"] == BANDS
    assert config["training"]["steps"] == 6 and config["training"]["samples_seen"] == 12
    assert "stack.npy:0-1" in config["training"]["data"] and config["training"]["hardware"].startswith("CPU")
    assert config["validation"]["scenes"][0]["name"] == "stack.npy:2"
    assert config["validation"]["psnr_field"] == pytest.approx(record["validation"]["field"]["psnr"])
    assert "## Measured accuracy\n- PSNR" in (out / TINY / "README.md").read_text()
    # ... and after the refinement `hsra reconstruct` adds by default, scored independently here
    from hsra_cli.metrics import psnr as psnr_of
    from hsra_cli.reconstruct import Reconstructor

    from hsra_cli.solvers.gap_tv import DEFAULT_REFINE, refine_card_fields

    assert config["validation"]["refine"] == DEFAULT_REFINE
    assert {key: config["validation"][key] for key in refine_card_fields()} == refine_card_fields()
    stack, aperture = np.load(files / "stack.npy"), np.load(files / "mask.npy")  # fixed mask, no noise
    measurement = CassiOperator(torch.from_numpy(aperture), BANDS).A(
        torch.from_numpy(stack[2]).permute(2, 0, 1)[None])[0].numpy()
    monkeypatch.setenv("HSRA_MODELS_DIR", str(out))  # the run's model folder, as a user would install it
    refined = Reconstructor(TINY).reconstruct(measurement, aperture, normalize="none").cube
    assert config["validation"]["psnr_field_refined"] == pytest.approx(
        psnr_of(refined, stack[2], convention="field"), abs=0.01)
    assert "refinement iterations `hsra reconstruct` adds by default" in (out / TINY / "README.md").read_text()
    # the exported weights are the EMA's, which the final validation measured
    from hsra_cli.weights import load_model

    exported, _ = load_model(out / TINY)
    from safetensors.torch import load_file

    ema = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert torch.equal(exported.conv.weight, ema["ema.conv.weight"])
    assert not torch.equal(exported.conv.weight, ema["model.conv.weight"])


def test_pretrained_folder_is_the_starting_point_of_fine_tuning(files, capsys):
    first = files / "first"
    assert main(train_args(files, first)) == 0
    start = load_weights(first / TINY)
    tuned = files / "tuned"
    args = train_args(files, tuned, "--pretrained", str(first / TINY), "--lr", "1e-12", "--min-lr", "0", "--ema", "0")
    args[args.index("--steps") + 1] = "1"
    assert main(args) == 0
    after = load_weights(tuned / TINY)
    for key in start:
        torch.testing.assert_close(after[key], start[key], atol=1e-9, rtol=0)
    card = json.loads((tuned / TINY / "config.json").read_text())
    assert card["training"]["pretrained"]["source"] == TINY  # the folder, without where it lay
    capsys.readouterr()
    bare = [a for a in train_args(files, files / "bare", "--pretrained", str(first / TINY / "model.safetensors"))]
    del bare[bare.index("--model") : bare.index("--model") + 2]
    assert main(bare) == 2
    assert "needs --model NAME" in capsys.readouterr().err


def load_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_resume_continues_exactly_as_an_uninterrupted_run(files):
    from safetensors.torch import load_file

    whole, split = files / "whole", files / "split"
    assert main(train_args(files, whole, "--mask-mode", "random", "--no-mosaic")) == 0
    assert main(train_args(files, split, "--mask-mode", "random", "--no-mosaic", "--stop-after", "4")) == 0
    stopped = json.loads((split / "run.json").read_text())
    assert stopped["status"] == "stopped" and stopped["step"] == 4 and not (split / TINY).exists()
    assert main(train_args(files, split, "--mask-mode", "random", "--no-mosaic", "--resume")) == 0
    a = load_file(str(whole / "checkpoints" / "last.safetensors"))
    b = load_file(str(split / "checkpoints" / "last.safetensors"))
    assert set(a) == set(b)
    for key in a:  # model, EMA, Adam moments, RNG states: bit for bit
        assert torch.equal(a[key], b[key]), key
    losses = lambda run: [(r["step"], r["loss"]) for r in read_csv(run / "log.csv")]  # noqa: E731
    assert losses(whole) == losses(split)


def test_resume_refuses_changed_options_and_a_missing_checkpoint(files, capsys):
    out = files / "run"
    assert main(train_args(files, out, "--stop-after", "2")) == 0
    capsys.readouterr()
    assert main(train_args(files, out, "--resume", "--lr", "1e-3")) == 2
    err = capsys.readouterr().err
    assert err.startswith("hsra: error: --resume needs the options") and "--lr" in err and err.count("\n") == 1
    assert main(train_args(files, files / "empty", "--resume")) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    # `-o OUT --resume` alone where no run is: said so, not "no training data"
    assert main(["train", "-o", str(files / "none"), "--resume", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds no run to resume" in err and "no training data" not in err and err.count("\n") == 1


def test_resume_with_more_steps_extends_a_run_that_is_still_decaying(files, capsys):
    from safetensors.torch import load_file

    whole, split = files / "whole", files / "split"
    for out in (whole, split):
        assert main(train_args(files, out, "--stop-after", "3")) == 0
    capsys.readouterr()
    assert main(train_args(files, whole, "--steps", "10", "--resume")) == 0
    assert "decays to the floor at step 10" in capsys.readouterr().err
    # the extension is part of the run: a later resume (without repeating it twice) continues it exactly
    assert main(train_args(files, split, "--steps", "10", "--resume", "--stop-after", "7")) == 0
    assert main(train_args(files, split, "--steps", "10", "--resume")) == 0
    a = load_file(str(whole / "checkpoints" / "last.safetensors"))
    b = load_file(str(split / "checkpoints" / "last.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    record = json.loads((whole / "run.json").read_text())
    assert record["status"] == "completed" and record["step"] == 10 and record["config"]["steps"] == 10
    card = json.loads((whole / TINY / "config.json").read_text())["training"]
    assert card["steps"] == 10 and card["optimizer"]["schedule_extended"] == [
        {"step": 3, "steps_before": 6, "steps": 10}
    ]
    lrs = [float(r["lr"]) for r in read_csv(whole / "log.csv")]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))
    # a run that finished its schedule is not stretched (its rate is at the floor): fine-tune it instead
    capsys.readouterr()
    assert main(train_args(files, whole, "--steps", "20", "--resume")) == 2
    err = capsys.readouterr().err
    assert "finished its 10 steps" in err and "--pretrained" in err and err.count("\n") == 1
    # fewer steps than planned is still a changed option
    assert main(train_args(files, split, "--steps", "4", "--resume")) == 2
    assert "--steps (checkpoint 10, now 4)" in capsys.readouterr().err


def test_resume_matches_the_network_by_the_name_it_resolves_to(files, capsys):
    first = files / "first"
    assert main(train_args(files, first, "--steps", "2")) == 0
    # a fine-tune whose network comes from its --pretrained folder, stopped, then resumed naming the network
    tuned = files / "tuned"
    args = train_args(files, tuned, "--pretrained", str(first / TINY), "--stop-after", "2")
    del args[args.index("--model") : args.index("--model") + 2]
    assert main(args) == 0
    resume = [*args, "--resume"]
    del resume[resume.index("--stop-after") : resume.index("--stop-after") + 2]
    assert main([*resume[:1], "--model", TINY, *resume[1:]]) == 0
    assert json.loads((tuned / "run.json").read_text())["status"] == "completed"
    # a run started with --model resumes without it; another network is refused in one line
    out = files / "run"
    assert main(train_args(files, out, "--stop-after", "2")) == 0
    bare = train_args(files, out, "--steps", "6", "--resume")
    del bare[bare.index("--model") : bare.index("--model") + 2]
    assert main(bare) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
    capsys.readouterr()
    other = files / "other"
    assert main(train_args(files, other, "--stop-after", "2")) == 0
    capsys.readouterr()
    swapped = train_args(files, other, "--resume")
    swapped[swapped.index("--model") + 1] = "hsra-s"
    assert main(swapped) == 2
    err = capsys.readouterr().err
    assert "--resume: the checkpoint trains" in err and err.count("\n") == 1


def test_an_existing_run_is_not_overwritten_without_the_flag(files, capsys):
    out = files / "run"
    assert main(train_args(files, out, "--stop-after", "2")) == 0
    before = (out / "log.csv").read_bytes()
    capsys.readouterr()
    assert main(train_args(files, out)) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert (out / "log.csv").read_bytes() == before


@pytest.mark.parametrize(
    "change, code, message",
    [
        (["--data", "missing.npy"], 1, "does not exist"),
        (["--patch-size", "64"], 1, "smaller than the 64×64 patch"),
        (["--model", "no-such-net"], 2, "unknown model"),
        (["--mask-offset", "30,0"], 1, "does not fit in the 40×40 mask"),
        (["--amp", "bf16", "--device", "cpu"], 2, "needs a CUDA device"),
        (["--loss", "huber"], 2, "is not one of 'rmse', 'l1', 'charbonnier'"),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(files, capsys, change, code, message):
    out = files / "bad"
    args = train_args(files, out)
    for flag, value in zip(change[::2], change[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.startswith("hsra: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_synthetic_pool_or_stream_can_train_without_cubes(files, capsys):
    for option, name in ((["--synthetic", "2", "--synthetic-size", "24"], "pool"), (["--synthetic-stream"], "stream")):
        out = files / name
        args = [
            "train", "--model", TINY, *option, "--mask", str(files / "mask.npy"), "-o", str(out),
            "--patch-size", "16", "--batch-size", "2", "--steps", "2", "--threads", "1",
        ]
        assert main(args) == 0, capsys.readouterr().err
        training = json.loads((out / TINY / "config.json").read_text())["training"]
        assert json.loads((out / TINY / "config.json").read_text())["physics"]["bands"] == 28
        if name == "pool":
            assert training["synthetic_scenes"] == 2 and "2 synthetic 24² scenes" in training["data"]
        else:
            # 2 steps × (1 plain crop + 1 mosaic of 4 crops): every crop is a fresh scene
            assert training["synthetic_stream_scenes"] == 10
    assert main(train_args(files, files / "both", "--synthetic", "2", "--synthetic-stream")) == 2
    assert "exclude each other" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the batched sampler: geometry, mask sources, noise share, devices
def _dihedral(window):
    """The 8 rot90/flip versions of a square window, as ``augment`` would make them (numpy reference)."""
    out = []
    for k in range(4):
        rotated = np.rot90(window, k=k, axes=(0, 1))
        for flip_rows in (False, True):
            for flip_cols in (False, True):
                version = rotated[::-1] if flip_rows else rotated
                out.append(version[:, ::-1] if flip_cols else version)
    return out


def test_batched_crops_are_windows_of_a_scene_rotated_and_flipped_like_numpy():
    # every pixel holds a unique value (its scene and position), so a crop identifies its window exactly
    scenes = [np.arange(s * 1000, s * 1000 + 30 * 26, dtype=np.float32).reshape(30, 26, 1).repeat(BANDS, -1) / 1e4
              for s in range(3)]
    sampler = _sampler(scenes, np.ones((20, 20), np.float32), patch_size=12, batch_size=5)
    seen_k = set()
    for _ in range(8):
        cube = sampler.next_batch().cube.permute(0, 2, 3, 1).numpy()
        for sample_index, sample in enumerate(cube):
            tiles = [sample] if sample_index < 2 else [sample[:6, :6], sample[:6, 6:], sample[6:, :6], sample[6:, 6:]]
            for tile in tiles:
                n = tile.shape[0]
                scene = scenes[int(round(float(tile.min()) * 1e4)) // 1000]
                matches = [
                    index for top in range(scene.shape[0] - n + 1) for left in range(scene.shape[1] - n + 1)
                    for index, version in enumerate(_dihedral(scene[top : top + n, left : left + n]))
                    if np.array_equal(version, tile)
                ]
                assert matches, "a crop is not a rotated/flipped window of its scene"
                seen_k.add(matches[0])
    assert len(seen_k) == 8  # all eight rot90/flip combinations occur


def test_several_masks_and_generated_masks_each_serve_a_share_of_the_patches():
    rng = np.random.default_rng(0)
    scenes = [rng.random((24, 24, BANDS), dtype=np.float32)]
    first, second = np.full((20, 20), 0.3, np.float32), np.full((40, 30), 0.7, np.float32)
    sampler = _sampler(scenes, [first, second], mask_mode="random", batch_size=50, generated_masks=0.4)
    masks = torch.cat([sampler.next_batch().mask for _ in range(4)])
    constant = [float(m[0, 0]) if torch.all(m == m[0, 0]) else None for m in masks]
    from_first = sum(c == pytest.approx(0.3) for c in constant if c is not None)
    from_second = sum(c == pytest.approx(0.7) for c in constant if c is not None)
    generated = [m for m, c in zip(masks, constant) if c is None]
    assert 0.3 < len(generated) / len(masks) < 0.5 and from_first > 30 and from_second > 30
    kinds = {"binary": 0, "blurred": 0, "grey": 0}
    for mask in generated:
        assert float(mask.min()) >= 0 and float(mask.max()) <= 1
        values = torch.unique(mask)
        if len(values) <= 2:
            kinds["binary"] += 1
        elif float(mask.min()) >= 0.005 - 1e-6 and len(values) <= 10:  # 3×3 means of 0/1: multiples of 1/9
            kinds["blurred"] += 1
        else:
            kinds["grey"] += 1
    assert all(count > 5 for count in kinds.values()), kinds


def test_exposure_scales_each_sample_within_its_range_and_never_past_one():
    # one flat scene at 0.4: a sample's value is its gain × 0.4; the cap holds it at 1 (gain ≤ 2.5)
    scenes = [np.full((24, 24, BANDS), 0.4, np.float32)]
    mask = np.ones((24, 24), np.float32)
    plain = _sampler(scenes, mask, batch_size=64, mosaic=False).next_batch()
    assert torch.all(plain.cube == 0.4)
    sampler = _sampler(scenes, mask, batch_size=200, mosaic=False, exposure=3.0)
    batch = sampler.next_batch()
    gains = batch.cube.amax(dim=(1, 2, 3)) / 0.4
    assert torch.all(batch.cube == batch.cube.amax(dim=(1, 2, 3), keepdim=True))  # one gain per sample
    assert float(gains.min()) >= 1 / 3.0 - 1e-5 and float(batch.cube.max()) <= 1.0 + 1e-6
    assert float(gains.min()) < 0.6 and (gains > 1.5).any() and (gains < 1).sum() > 60
    assert torch.isclose(gains, torch.tensor(2.5)).sum() > 5  # draws above 2.5 are capped at the peak 1
    # the measurement is made from the scaled cube
    clean = CassiOperator(batch.mask[:, None], bands=BANDS).A(batch.cube)
    torch.testing.assert_close(batch.measurement, clean)
    with pytest.raises(Exception, match="--exposure"):
        _sampler(scenes, mask, exposure=0.5)


def test_noise_fraction_measures_that_share_of_patches_with_gain_and_photon_noise():
    rng = np.random.default_rng(0)
    scenes = [rng.random((24, 24, BANDS), dtype=np.float32) * 0.5 + 0.25]
    mask = rng.random((24, 24), dtype=np.float32)
    from hsra_cli.train.sampler import MeasurementModel, PatchSampler

    physics = MeasurementModel(bands=BANDS, mask_mode="random", gain=1.2, shot_noise=True, noise_fraction=0.5)
    sampler = PatchSampler(scenes, mask, physics, patch_size=16, batch_size=40, mosaic=False)
    batch = sampler.next_batch()
    clean = CassiOperator(batch.mask[:, None], bands=BANDS).A(batch.cube)
    exact = [bool(torch.allclose(m, c)) for m, c in zip(batch.measurement, clean)]
    assert 10 < sum(exact) < 30
    for measured, reference, is_clean in zip(batch.measurement, clean, exact):
        if not is_clean:  # integer photon counts around 1.2 × the clean snapshot
            counts = measured * (2.0 / BANDS) * 2048
            torch.testing.assert_close(counts, counts.round(), atol=1e-3, rtol=0)
            assert float(measured.sum() / reference.sum()) == pytest.approx(1.2, rel=0.03)


def test_synthetic_stream_workers_give_the_same_batches_as_the_inline_stream():
    from hsra_cli.train.sampler import MeasurementModel, PatchSampler, SyntheticStream

    batches = []
    for workers in (0, 2):
        stream = SyntheticStream(BANDS, 1.0, seed=3, workers=workers, prefetch=3)
        sampler = PatchSampler([], np.ones((16, 16), np.float32), MeasurementModel(bands=BANDS), patch_size=16,
                               batch_size=2, stream=stream, seed=3)
        batches.append([sampler.next_batch().cube for _ in range(3)])
        assert stream.draws_by_size == {16: 3, 8: 12}
        sampler.close()
    for a, b in zip(*batches):
        assert torch.equal(a, b)


def test_the_stream_queues_two_batches_of_scenes_ahead_and_two_per_worker():
    from hsra_cli.train.sampler import SyntheticStream, stream_lookahead

    # a batch of 32 at most draws 2·32 (+4) mosaic tiles of one size: prefetch 8 would make a GPU step wait
    assert stream_lookahead(32, 14) == 128 and stream_lookahead(2, 0) == 8 and stream_lookahead(2, 12) == 24
    stream = SyntheticStream(BANDS, 1.0, seed=3, workers=1, batch_size=3)
    try:
        assert stream.prefetch == 12
        stream.draw(8)
        assert len(stream._queues[8]) == 12  # scenes 1..12 of this size are being made while the step runs
    finally:
        stream.close()


def test_stream_workers_leave_ctrl_c_and_sigterm_to_the_trainer():
    # Ctrl-C, `timeout` and schedulers signal the whole process group; a worker that died of it would break the
    # pool while the trainer is stopping cleanly
    import os
    import signal

    from hsra_cli.synth import stream_scene
    from hsra_cli.train.sampler import SyntheticStream

    stream = SyntheticStream(BANDS, 1.0, seed=3, workers=1, prefetch=2)
    try:
        stream.draw(8)
        for pid in list(stream._pool._processes):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        later = [stream.draw(8) for _ in range(3)]
        assert all(p.is_alive() for p in stream._pool._processes.values())
        np.testing.assert_array_equal(later[-1], stream_scene(8, 3, stream.wavelengths, stream.seed))
    finally:
        stream.close()


@pytest.mark.cuda
def test_cuda_sampler_makes_the_cpu_batches_on_the_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from hsra_cli.train.sampler import MeasurementModel, PatchSampler

    rng = np.random.default_rng(0)
    scenes = [rng.random((40, 40, BANDS), dtype=np.float32) for _ in range(3)]
    masks = [rng.random((40, 40), dtype=np.float32), rng.random((48, 48), dtype=np.float32)]
    physics = MeasurementModel(bands=BANDS, mask_mode="random")
    cpu, gpu = (PatchSampler(scenes, masks, physics, patch_size=16, batch_size=6, seed=4, device=d)
                for d in ("cpu", "cuda"))
    for _ in range(3):
        a, b = cpu.next_batch(), gpu.next_batch()
        assert b.cube.is_cuda and b.measurement.is_cuda
        assert torch.equal(a.cube, b.cube.cpu()) and torch.equal(a.mask, b.mask.cpu())
        torch.testing.assert_close(a.measurement, b.measurement.cpu())


@pytest.mark.cuda
def test_cuda_training_runs_with_bf16_autocast_and_exports(files):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = files / "cuda"
    assert main(train_args(files, out, "--device", "cuda", "--mask-mode", "random", "--generated-masks", "0.5")) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["device"].startswith("cuda") and record["status"] == "completed"
    assert json.loads((out / TINY / "config.json").read_text())["training"]["amp"] in ("bfloat16", "float16")


# --------------------------------------------------------------------------------------------------
# time budgets, SIGTERM, learning-rate scaling, old checkpoints
def test_max_time_stops_validates_checkpoints_and_exports_then_resume_finishes(files, capsys):
    from hsra_cli.train.config import parse_duration

    assert [parse_duration(t) for t in ("90s", "8m", "2h", "1h30m", "45")] == [90, 480, 7200, 5400, 45]
    out = files / "timed"
    args = train_args(files, out, "--max-time", "0.001s")
    args[args.index("--steps") + 1] = "50"
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "--max-time reached" in captured.err and captured.out.strip() == str(out / TINY)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "time limit" and 1 <= record["step"] < 50
    assert record["validation"]["field"]["psnr"] > 0
    card = json.loads((out / TINY / "config.json").read_text())
    assert card["training"]["stopped_by"] == "time" and card["training"]["steps"] == record["step"]
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == record["step"]
    resumed = [a for a in args if a not in ("--max-time", "0.001s")] + ["--resume"]
    assert main(resumed) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
    assert json.loads((out / TINY / "config.json").read_text())["training"]["steps"] == 50
    assert main(train_args(files, files / "bad", "--max-time", "soon")) == 2
    assert "--max-time 'soon' is not a duration" in capsys.readouterr().err


def test_max_time_counts_from_the_commands_start_and_keeps_room_for_the_end(files, monkeypatch):
    """The console script's budget includes the interpreter's start and the imports (process age, from /proc); a
    main([...]) call in a longer process counts from the call. The stop keeps room for the final phase."""
    import time

    from hsra_cli import provenance
    from hsra_cli.train.config import TrainConfig
    from hsra_cli.train.loop import train

    provenance.set_command_line(["hsra", "train"], whole_process=True)
    age = time.perf_counter() - provenance.command_started()
    assert age == pytest.approx(provenance.process_age_s(), abs=0.5) and age > 0.5  # pytest has run a while
    provenance.set_command_line(["hsra", "train"])
    assert time.perf_counter() - provenance.command_started() < 0.5
    # a budget already spent before the trainer was made: the run stops after its first step, exported
    args = dict(model=TINY, data=[f"{files / 'stack.npy'}:0-1"], val_data=[f"{files / 'stack.npy'}:2"],
                mask=[str(files / "mask.npy")], out=str(files / "late"), patch_size=16, batch_size=2, steps=50,
                threads=1, max_time=600.0)
    result = train(TrainConfig(**args), started=time.perf_counter() - 599.0)
    assert result.stopped_by == "time" and result.step == 1 and result.model_folder is not None
    # with a whole budget ahead, it runs to the end
    assert train(TrainConfig(**{**args, "out": str(files / "early")})).step == 50


def test_sigterm_ends_the_run_like_its_last_step_and_exits_143(files):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = files / "term"
    args = train_args(files, out)
    args[args.index("--steps") + 1] = "100000"
    script = (
        "import sys; sys.path.insert(0, %r); import test_train; test_train.ensure_registered(); "
        "from hsra_cli.cli import main; sys.exit(main(sys.argv[1:]))" % str(Path(__file__).parent)
    )
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr.decode()
    assert stdout.decode().strip() == str(out / TINY)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "SIGTERM" and record["validation"]["float"]["psnr"] > 0
    assert (out / TINY / "model.safetensors").is_file()
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == record["step"]


def test_learning_rate_scales_with_the_square_root_of_the_batch(files):
    from hsra_cli.train import TrainConfig

    config = TrainConfig(out="x", lr=4e-4)
    assert config.lr_for(5) == pytest.approx(4e-4) and config.lr_for(20) == pytest.approx(8e-4)
    assert TrainConfig(out="x", lr=4e-4, lr_scaling="linear").lr_for(20) == pytest.approx(1.6e-3)
    assert TrainConfig(out="x", lr=4e-4, lr_scaling="none").lr_for(20) == pytest.approx(4e-4)
    out = files / "lr"
    assert main(train_args(files, out, "--warmup-steps", "1")) == 0  # batch 2: 4e-4 · sqrt(2/5)
    optimizer = json.loads((out / TINY / "config.json").read_text())["training"]["optimizer"]
    assert optimizer["peak_lr"] == pytest.approx(4e-4 * (2 / 5) ** 0.5)
    first = read_csv(out / "log.csv")[0]  # step 2 of 6: on the cosine just after the peak
    assert float(first["lr"]) < optimizer["peak_lr"] and float(first["lr"]) > 0.8 * optimizer["peak_lr"]


def test_a_checkpoint_from_before_the_new_options_still_resumes(files, capsys):
    out = files / "old"
    assert main(train_args(files, out, "--stop-after", "3", "--lr-scaling", "none")) == 0
    state_file = out / "checkpoints" / "last.json"
    state = json.loads(state_file.read_text())
    for key in ("generated_masks", "noise_fraction", "lr_scaling", "max_time", "workers"):
        del state["state"]["config"][key]
    state["state"]["config"]["mask"] = state["state"]["config"]["mask"][0]  # one mask, as a string
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert main(train_args(files, out, "--resume")) == 0, capsys.readouterr().err
    card = json.loads((out / TINY / "config.json").read_text())["training"]
    assert card["optimizer"]["lr_scaling"] == "none" and card["steps"] == 6


def test_an_unfolding_network_warm_started_from_hsra_s_starts_as_that_network(tmp_path):
    from hsra_cli.train.model import load_pretrained
    from hsra_cli.weights import load_model, save_model_folder

    torch.manual_seed(0)
    e2e = create_model("hsra-s")
    folder = save_model_folder(e2e, tmp_path / "hsra-s", card={})
    name, unfolding, info = load_pretrained(str(folder), "hsra-dum-2stg", {"bands": 28, "step": 2, "axis": "width"})
    assert name == "hsra-dum-2stg" and "warm_start" in info
    source, _ = load_model(folder)
    measurement, mask = source.example_inputs(32, 48)
    with torch.no_grad():
        torch.testing.assert_close(unfolding.eval()(measurement, mask), source(measurement, mask))
    with pytest.raises(UsageError, match="weights carry over only"):
        load_pretrained(str(folder), "hsra-m", {"bands": 28, "step": 2, "axis": "width"})


def test_an_unfolding_network_grows_stages_starting_as_the_smaller_one_plus_a_data_step(tmp_path):
    from hsra_cli.train.model import load_pretrained
    from hsra_cli.weights import load_model, save_model_folder

    physics = {"bands": 28, "step": 2, "axis": "width"}
    torch.manual_seed(0)
    small = create_model("hsra-dum-2stg")
    with torch.no_grad():
        small.step_sizes.copy_(torch.tensor([0.3, 0.7]))
    folder = save_model_folder(small, tmp_path / "dum2", card={})
    name, grown, info = load_pretrained(str(folder), "hsra-dum-3stg-s", physics)
    assert name == "hsra-dum-3stg-s" and "1 added stage" in info["warm_start"]
    assert grown.step_sizes.tolist() == pytest.approx([0.3, 0.7, 0.7])
    source, _ = load_model(folder)
    measurement, mask = source.example_inputs(32, 48)
    with torch.no_grad():
        smaller = source(measurement, mask)
        op = grown.operator(measurement, mask)
        expected = grown.data_step(smaller, measurement * grown.input_scale, op, grown.mu[2])
        torch.testing.assert_close(grown.eval()(measurement, mask), expected)
        assert not torch.allclose(expected, smaller)
    # the added stage is not dead: its data step and output map get gradients
    grown.train()
    grown(measurement, mask).square().mean().backward()
    assert grown.step_sizes.grad[2] != 0 and grown.priors[2].map.weight.grad.abs().sum() > 0
    # fewer stages, or other priors, do not carry over
    three = save_model_folder(grown, tmp_path / "dum3s", card={})
    with pytest.raises(UsageError, match="weights carry over only"):
        load_pretrained(str(three), "hsra-dum-2stg", physics)
    with pytest.raises(UsageError, match="weights carry over only"):
        load_pretrained(str(folder), "hsra-dum-3stg", physics)


def test_a_config_file_or_a_runs_record_replays_the_run_and_flags_override_it(files, capsys):
    first = files / "first"
    assert main(train_args(files, first, "--lr", "3e-4", "--mask-mode", "random", "--no-mosaic")) == 0
    replay = files / "replay"
    assert main(["train", "--config", str(first / "run.json"), "-o", str(replay)]) == 0
    for key in ("lr", "mask_mode", "mosaic", "steps", "data", "mask", "patch_size"):
        assert json.loads((replay / "run.json").read_text())["config"][key] == \
            json.loads((first / "run.json").read_text())["config"][key], key
    from safetensors.torch import load_file

    a, b = load_file(str(first / TINY / "model.safetensors")), load_file(str(replay / TINY / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same options, same seed: the same weights
    toml = files / "run.toml"
    toml.write_text(
        f'model = "{TINY}"\ndata = ["{files / "stack.npy"}:0-1"]\nmask = "{files / "mask.npy"}"\n'
        'patch-size = 16\nbatch-size = 2\nsteps = 3\nmax-time = "1h"\nthreads = 1\n'
    )
    assert main(["train", "--config", str(toml), "-o", str(files / "toml"), "--steps", "2"]) == 0
    record = json.loads((files / "toml" / "run.json").read_text())["config"]
    assert record["steps"] == 2 and record["max_time"] == 3600 and record["patch_size"] == 16
    capsys.readouterr()
    toml.write_text('modle = "x"\n')
    assert main(["train", "--config", str(toml), "-o", str(files / "bad")]) == 2
    err = capsys.readouterr().err
    assert "unknown option(s) modle" in err and "patch-size" in err and "synthetic-stream" in err  # every name
    assert err.count("\n") == 1 and "resume" not in err
    toml.write_text("resume = true\n")  # a session's choice: ignored, with a note
    from hsra_cli.train.config import load_config_file

    assert load_config_file(toml) == {}
    assert "resume is not taken from a file" in capsys.readouterr().err


@pytest.mark.parametrize("model, words", [
    ("zz", "unknown model 'zz'"), ("gap-tv", "nothing to train"),
    ("s.kaist", "give --pretrained hsra-s.kaist (or --model hsra-s to train from scratch)"),
])
def test_a_model_that_cannot_be_trained_is_a_usage_error_before_any_data_is_read(tmp_path, capsys, model, words):
    missing = tmp_path / "no-such-data"  # read first, this would be a data error (exit 1)
    code = main(["train", "--model", model, "--data", str(missing), "--mask", str(missing / "m.mat"), "-o",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# the end of a session: checkpoint first, then validation and export
@pytest.mark.parametrize("broken", ["validate", "_export"])
def test_a_failing_final_validation_or_export_keeps_the_checkpoint_and_says_so(files, capsys, monkeypatch, broken):
    from hsra_cli.train import loop

    original = getattr(loop._Run, broken)

    def fail(self, *args, **kwargs):
        if broken == "_export" or "field" in (kwargs.get("conventions") or (args[0] if args else ())):
            raise ValueError("refused an off-scale prediction")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop._Run, broken, fail)
    out = files / "run"
    assert main(train_args(files, out)) == 1
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "off-scale" in record["error"] and record["checkpoint_step"] == 6
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == 6
    assert "checkpoint of step 6 is saved" in capsys.readouterr().err
    monkeypatch.setattr(loop._Run, broken, original)
    assert main(train_args(files, out, "--resume")) == 0  # nothing to train: validates and exports
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
    assert json.loads((out / TINY / "config.json").read_text())["training"]["steps"] == 6


def test_resume_alone_takes_the_runs_recorded_options(files, capsys):
    out = files / "run"
    assert main(train_args(files, out, "--mask-mode", "random", "--no-mosaic", "--stop-after", "2",
                           "--max-time", "1h")) == 0
    capsys.readouterr()
    assert main(["train", "-o", str(out), "--resume", "--threads", "1"]) == 0, capsys.readouterr().err
    assert "note:" not in capsys.readouterr().err  # a session's stop is never resumed: no need to say so
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["step"] == 6
    assert record["config"]["mask_mode"] == "random" and record["config"]["mosaic"] is False
    assert record["config"]["max_time"] is None
    capsys.readouterr()
    # checkpoints whose run.json is gone (only checkpoints/ copied over): the checkpoint's options are replayed
    moved = files / "moved"
    assert main(train_args(files, moved, "--mask-mode", "random", "--no-mosaic", "--stop-after", "2")) == 0
    (moved / "run.json").unlink()
    capsys.readouterr()
    assert main(["train", "-o", str(moved), "--resume", "--threads", "1"]) == 0
    assert "has no run.json: resuming with the options its checkpoint records" in capsys.readouterr().err
    record = json.loads((moved / "run.json").read_text())
    assert record["status"] == "completed" and record["step"] == 6 and record["config"]["mosaic"] is False
    # a flag given still overrides, and a changed computation is still refused
    out2 = files / "run2"
    assert main(train_args(files, out2, "--stop-after", "2")) == 0
    capsys.readouterr()
    assert main(["train", "-o", str(out2), "--resume", "--lr", "1e-3"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_a_fine_tune_resumes_without_its_pretrained_source(files, capsys):
    import shutil

    first = files / "first"
    assert main(train_args(files, first, "--steps", "2")) == 0
    source = files / "source"
    shutil.copytree(first / TINY, source)
    tuned = files / "tuned"
    args = train_args(files, tuned, "--pretrained", str(source), "--stop-after", "2")
    del args[args.index("--model") : args.index("--model") + 2]
    assert main(args) == 0
    shutil.rmtree(source)  # the checkpoint holds every weight
    capsys.readouterr()
    resume = list(args)
    for flag in ("--pretrained", "--stop-after"):
        del resume[resume.index(flag) : resume.index(flag) + 2]
    resume.append("--resume")
    assert main(resume) == 0, capsys.readouterr().err
    record = json.loads((tuned / "run.json").read_text())
    assert record["status"] == "completed" and record["config"]["pretrained"] == str(source)
    card = json.loads((tuned / TINY / "config.json").read_text())["training"]
    assert card["pretrained"]["source"] == "source" and card["pretrained"]["sha256"]


def test_overwrite_removes_what_the_previous_run_wrote_and_nothing_else(files, capsys):
    out = files / "run"
    assert main(train_args(files, out, "--steps", "2")) == 0
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "keep.txt").write_text("mine")
    assert main(train_args(files, out, "--overwrite", "--stop-after", "2")) == 0
    assert not (out / TINY).exists()  # the old export is gone: `hsra models` would list it as this run's
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoints" / "keep.txt").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    capsys.readouterr()
    # a model folder holding the user's own files keeps them (and stops being a model)
    assert main(train_args(files, out, "--overwrite", "--steps", "2")) == 0
    (out / TINY / "extra.txt").write_text("mine")
    assert main(train_args(files, out, "--overwrite", "--stop-after", "2")) == 0
    assert sorted(p.name for p in (out / TINY).iterdir()) == ["extra.txt"]
    # a run.json hsra did not write is never deleted: refused in one line
    (out / "run.json").write_text('{"mine": 1}')
    capsys.readouterr()
    assert main(train_args(files, out, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "is not a training run's record" in err and err.count("\n") == 1
    assert (out / "run.json").read_text() == '{"mine": 1}'


def test_resuming_a_completed_run_says_so_and_rewrites_nothing(files, capsys):
    out = files / "run"
    assert main(train_args(files, out, "--steps", "2")) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert main(["train", "-o", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"{out} is complete at step 2 of 2; nothing to do (to train on, fine-tune its "
                                    f"weights: --pretrained {out / TINY} -o NEW_OUT)")
    assert captured.out.strip() == str(out / TINY)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_replaying_a_run_json_does_not_repeat_its_sessions_stop(files, capsys):
    first = files / "first"
    assert main(train_args(files, first, "--stop-after", "2", "--max-time", "1h")) == 0
    capsys.readouterr()
    replay = files / "replay"
    assert main(["train", "--config", str(first / "run.json"), "-o", str(replay)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--stop-after and --max-time of the recorded session not taken" in notes[0]
    record = json.loads((replay / "run.json").read_text())
    assert record["status"] == "completed" and record["step"] == 6 and (replay / TINY).is_dir()
    # given again on the command line, they hold (and the note names only the other)
    again = files / "again"
    assert main(["train", "--config", str(first / "run.json"), "-o", str(again), "--stop-after", "2"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--max-time of" in notes[0] and "--stop-after" not in notes[0]
    assert json.loads((again / "run.json").read_text())["status"] == "stopped"


def test_a_list_option_given_one_path_means_that_one_path():
    from pathlib import Path

    from hsra_cli.train import TrainConfig

    config = TrainConfig(out=Path("x"), data="kaist.npz:0-3", val_data=Path("v.npz"), mask=Path("m.mat"))
    assert (config.data, config.val_data, config.mask, config.out) == (["kaist.npz:0-3"], ["v.npz"], ["m.mat"], "x")
    config = TrainConfig(out="x", data=("a.mat", Path("b.mat")), mask=None)
    assert (config.data, config.mask) == (["a.mat", "b.mat"], [])
