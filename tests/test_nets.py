"""The HSRA network family: every registered variant runs forward and backward at any size and on every
supported physics; the blocks compute what the design says; the unfolding data step is the textbook one."""

from __future__ import annotations

import json

import pytest
import torch

from hsra_cli.errors import ShapeError, UsageError
from hsra_cli.nets import HsraConfig, HsraNet, HsraUnfolding
from hsra_cli.nets.blocks import LWIM, math_attention, window_attention
from hsra_cli.nets.prior import pad_to_multiple
from hsra_cli.physics import CassiOperator
from hsra_cli.registry import create_model, get_entry, list_models

NETWORKS = [name for name in list_models() if get_entry(name).needs_weights]
MAIN = ["hsra-s", "hsra-m", "hsra-l", "hsra-dum-3stg", "hsra-dum-4stg"]
ABLATIONS = ["all-convformer", "all-mkptm", "all-swin", "all-hmssa", "mkptm-r0.5", "mkptm-3x3", "no-lwim", "no-2w"]


def small(name: str, **kwargs):
    torch.manual_seed(0)
    return create_model(name, **kwargs)


def test_every_variant_of_the_doc_is_registered_with_its_alias_and_kind():
    for name, alias in zip(MAIN, ["s", "m", "l", "dum3", "dum4"]):
        assert get_entry(alias).name == name
    assert get_entry("hsra-dum-3stg").kind == "unfolding"
    for ablation in ABLATIONS:
        entry = get_entry(f"hsra-s-{ablation}")
        assert entry.kind == "e2e" and entry.needs_weights
    # beside the poster's: a 2-stage unfolding network with HSRA-S priors, trainable on a CPU
    assert get_entry("dum2").name == "hsra-dum-2stg" and get_entry("dum2").kind == "unfolding"
    assert get_entry("hsra-dum-2stg").config["stages"] == 2
    assert sorted(NETWORKS) == sorted(MAIN + ["hsra-dum-2stg", "hsra-dum-3stg-s"] + [f"hsra-s-{a}" for a in ABLATIONS])


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_and_backward_at_a_padded_size(name):
    model = small(name)
    measurement, mask = model.example_inputs(64, 80)  # 80 is padded to 128 inside each prior
    assert measurement.shape == (1, 64, 80 + 2 * 27)
    cube = model(measurement, mask)
    assert cube.shape == (1, 28, 64, 80)
    assert torch.isfinite(cube).all()
    cube.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused[:3]}"


@pytest.mark.parametrize("name", ["hsra-s", "hsra-dum-3stg"])
@pytest.mark.parametrize("size", [(50, 70), (20, 30)])
def test_odd_sizes_come_back_at_the_input_size(name, size):
    model = small(name).eval()
    measurement, mask = model.example_inputs(*size)
    with torch.no_grad():
        cube = model(measurement, mask)
    assert cube.shape == (1, 28, *size)
    assert torch.isfinite(cube).all()


def test_inputs_are_padded_660_to_704_by_reflection():
    x = torch.arange(660.0).reshape(1, 1, 1, 660).expand(1, 1, 2, 660)
    padded = pad_to_multiple(x, 64)
    assert padded.shape[-1] == 704
    assert torch.equal(padded[..., :2, 660:], x[..., 615:659].flip(-1))  # reflect: no repeated edge pixel
    assert torch.equal(padded[..., 2:, :], padded[..., 1:2, :].expand(-1, -1, 62, -1))  # 2 rows: replicated
    assert pad_to_multiple(torch.zeros(1, 1, 20, 30), 64).shape[-2:] == (64, 64)


def test_physics_settings_are_attributes_and_reach_the_operator():
    model = small("hsra-s", bands=24, step=1)
    assert (model.bands, model.step, model.axis) == (24, 1, "width")
    measurement, mask = model.example_inputs(32, 40)
    assert measurement.shape == (1, 32, 40 + 23)
    assert model(measurement, mask).shape == (1, 24, 32, 40)


@pytest.mark.parametrize("name", ["hsra-s", "hsra-dum-3stg"])
def test_height_axis_models_run_on_height_axis_measurements(name):
    model = small(name, axis="height").eval()
    measurement, mask = model.example_inputs(40, 48)
    assert measurement.shape == (1, 40 + 54, 48)
    with torch.no_grad():
        assert model(measurement, mask).shape == (1, 28, 40, 48)
    with pytest.raises(ShapeError):
        model(torch.rand(1, 40, 48 + 54), mask)  # a width-axis measurement does not fit


def test_lwim_latent_windows_follow_the_dispersion_axis():
    assert LWIM(28, axis="width").window == (4, 16)
    assert LWIM(28, axis="height").window == (16, 4)
    model = small("hsra-s", axis="height")
    lwim = [m for m in model.modules() if isinstance(m, LWIM)]
    assert lwim and all(m.window == (16, 4) for m in lwim)


def test_every_mask_form_gives_the_same_cube():
    model = small("hsra-s").eval()
    measurement, aperture = model.example_inputs(32, 32)
    op = CassiOperator(aperture)
    with torch.no_grad():
        reference = model(measurement, aperture)
        assert torch.allclose(model(measurement, op), reference, atol=1e-6)
        assert torch.allclose(model(measurement, op.phi()[0]), reference, atol=1e-6)  # 3-D shifted mask C×H×W'
        assert torch.allclose(model(measurement, aperture.numpy()), reference, atol=1e-6)
        # an unbatched measurement gives an unbatched cube
        assert torch.allclose(model(measurement[0], aperture), reference[0], atol=1e-6)


def test_a_batch_of_apertures_is_one_mask_per_sample():
    model = small("hsra-s").eval()
    m1, a1 = model.example_inputs(32, 32)
    m2, a2 = model.example_inputs(32, 32)
    with torch.no_grad():
        both = model(torch.cat([m1, m2]), torch.stack([a1, a2]))
        assert torch.allclose(both[1], model(m2, a2)[0], atol=1e-5)


def test_wrong_inputs_are_one_line_errors():
    model = small("hsra-s")
    measurement, mask = model.example_inputs(32, 32)
    with pytest.raises(ShapeError, match="does not fit the mask"):
        model(measurement[..., :-2], mask)
    with pytest.raises(ShapeError, match="expected B×H×W'"):
        model(measurement[None, None], mask)
    with pytest.raises(ShapeError, match="network was built for 28 bands"):
        model(measurement, CassiOperator(mask, bands=28, step=1))
    with pytest.raises(UsageError, match="unknown HSRA configuration keys: widht"):
        create_model("hsra-s", widht=3)


def test_unfolding_data_step_is_the_gradient_step_of_the_normalised_operator():
    model = small("hsra-dum-3stg")
    measurement, mask = model.example_inputs(24, 32)
    op = CassiOperator(mask)
    z = torch.rand(1, 28, 24, 32)
    s = 2 / 28
    y = measurement * s
    mu = torch.tensor(3.5)
    by_hand = z - mu * (s * op.A_adjoint(s * op.A(z) - y))
    assert torch.allclose(model.data_step(z, y, op, mu), by_hand, atol=1e-6)
    # the true cube is a fixed point of the data step (A_s x = Y)
    cube = torch.rand(1, 28, 24, 32)
    assert torch.allclose(model.data_step(cube, op.A(cube) * s, op, mu), cube, atol=1e-5)
    assert model.step_sizes.shape == (3,) and model.step_sizes.requires_grad
    torch.testing.assert_close(model.mu, torch.full((3,), 28 / 4))  # μ starts at bands/4


def test_unfolding_runs_each_prior_on_the_data_step_output():
    model = small("hsra-dum-3stg").eval()
    measurement, mask = model.example_inputs(24, 32)
    op = CassiOperator(mask)
    with torch.no_grad():
        z = model.initial_estimate(measurement, op)
        for prior, mu in zip(model.priors, model.mu):
            z = prior(model.data_step(z, measurement * model.input_scale, op, mu))
        assert torch.allclose(model(measurement, mask), z, atol=1e-6)
    assert len(model.priors) == 3 and len(small("hsra-dum-4stg").priors) == 4


def test_window_attention_matches_a_per_window_reference():
    torch.manual_seed(1)
    b, c, h, w, heads, (wh, ww) = 2, 56, 8, 16, 2, (4, 8)
    qkv = torch.randn(b, 3 * c, h, w)
    out = window_attention(qkv, heads, (wh, ww))
    q, k, v = qkv.chunk(3, dim=1)
    d = c // heads
    reference = torch.empty(b, c, h, w)
    for i in range(0, h, wh):
        for j in range(0, w, ww):
            for head in range(heads):
                sl = (slice(None), slice(head * d, (head + 1) * d), slice(i, i + wh), slice(j, j + ww))
                tq, tk, tv = (t[sl].reshape(b, d, -1).transpose(1, 2) for t in (q, k, v))
                a = torch.softmax(tq @ tk.transpose(1, 2) / d**0.5, dim=-1) @ tv
                reference[sl] = a.transpose(1, 2).reshape(b, d, wh, ww)
    assert torch.allclose(out, reference, atol=1e-5)
    with math_attention():
        assert torch.allclose(window_attention(qkv, heads, (wh, ww)), reference, atol=1e-5)


def test_fused_and_math_attention_give_the_same_network_output():
    model = small("hsra-s").eval()
    measurement, mask = model.example_inputs(64, 64)
    with torch.no_grad():
        fused = model(measurement, mask)
        with math_attention():
            explicit = model(measurement, mask)
    assert torch.allclose(fused, explicit, atol=1e-4)


def test_config_is_frozen_json_serialisable_and_round_trips():
    model = small("hsra-dum-3stg")
    config = model.config
    assert isinstance(config, HsraConfig) and isinstance(model, HsraUnfolding)
    assert (config.n_mk, config.n_lwim, config.n2, config.n3, config.n2d, config.n1d, config.stages) == (2, 1, 1, 4, 1, 1, 3)
    assert HsraConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(Exception):
        config.n3 = 5
    assert isinstance(small("hsra-s"), HsraNet)
    assert small("hsra-s-mkptm-3x3").config.kernels == (3,)
    assert small("hsra-s-no-2w").config.use_2w is False
    with pytest.raises(UsageError, match="ratio"):
        HsraConfig(ratio=0)


def test_keep_freed_memory_configures_glibc_in_its_own_process():
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    code = "from hsra_cli.nets.runtime import keep_freed_memory; raise SystemExit(0 if keep_freed_memory() else 3)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
