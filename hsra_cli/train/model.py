"""The network a run trains: a fresh registered model, or pretrained weights to fine-tune."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UsageError


def build_model(name: str | None, pretrained: str | None, physics: dict, seed: int) -> tuple[str, torch.nn.Module, dict | None]:
    """``(canonical name, model on the CPU, pretrained description or None)`` for ``physics``
    (``{"bands", "step", "axis"}``).

    ``torch.manual_seed(seed)`` comes first, so every process of a run builds the same initial weights (DDP
    broadcasts rank 0's anyway). A model the run could not export at the end is refused now, not after hours.
    """
    from ..registry import create_model, get_entry

    torch.manual_seed(seed)
    if pretrained:
        return load_pretrained(pretrained, name, physics)
    entry = get_entry(name)
    if not entry.needs_weights:
        raise UsageError(f"{entry.name} is a solver without weights; nothing to train")
    model = create_model(entry.name, **physics)
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(f"{entry.name} has no trainable parameters")
    if getattr(model, "config", None) is None or not hasattr(model.config, "to_dict"):
        raise UsageError(f"{entry.name} has no architecture config (model.config), so it cannot be exported")
    return entry.name, model, None


def load_pretrained(source: str, model_name: str | None, physics: dict) -> tuple[str, torch.nn.Module, dict]:
    """The starting weights for fine-tuning: ``(canonical name, model on the CPU, description)``.

    ``source`` is a registered name with published weights or a model folder (both via
    :func:`hsra_cli.weights.load_model`), or a bare ``.safetensors`` file of weights for ``--model``. The
    model's physics (bands, step, axis) must be those of the training data and options.
    """
    from ..registry import get_entry
    from ..weights import load_model

    path = Path(source)
    if path.suffix.lower() == ".safetensors":
        if model_name is None:
            raise UsageError("--pretrained with a bare .safetensors file needs --model NAME (the architecture)")
        if not path.is_file():
            raise UsageError(f"--pretrained {source!r} does not exist")
        model, card = load_model(get_entry(model_name).name, weights=path, device="cpu")
    else:
        model, card = load_model(source, device="cpu")
    name = getattr(model, "hsra_name", None) or get_entry(model_name or source).name
    warm_started = None
    if model_name is not None and get_entry(model_name).name != name:
        warm_started = name
        name, model = get_entry(model_name).name, unfold_from_e2e(model, get_entry(model_name).name, source)
    have = {"bands": model.bands, "step": model.step, "axis": model.axis}
    if have != physics:
        raise UsageError(
            f"--pretrained {source!r} was built for bands={have['bands']}, step={have['step']}, axis={have['axis']} "
            f"but this training uses bands={physics['bands']}, step={physics['step']}, axis={physics['axis']}"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.train()
    info = {"source": str(source), "sha256": (card or {}).get("sha256")}
    if warm_started:
        info["warm_start"] = (
            f"input fusion and priors from {warm_started}; later priors start as the identity, data steps at 0"
        )
    return name, model, info


def unfold_from_e2e(e2e: torch.nn.Module, target: str, source: str) -> torch.nn.Module:
    """An unfolding network ``target`` whose input fusion and every stage's prior start as a trained end-to-end
    network's (same prior architecture), the warm start of an unfolding model from, e.g., HSRA-S weights.

    It starts as exactly the end-to-end network: the first stage's prior is the trained one, every later prior
    is the trained one with its output map zeroed (its global residual makes it the identity), and every data
    step size starts at 0 (a full-size gradient step would feed the trained prior inputs it never saw:
    measured on KAIST scene 05, 26.19 dB with this start, 15.8 dB with the default step sizes). Fine-tuning
    then opens the data steps and the later priors.
    """
    from ..nets import HsraNet, HsraUnfolding
    from ..registry import create_model

    built = create_model(target, bands=e2e.bands, step=e2e.step, axis=e2e.axis)
    same_prior = isinstance(e2e, HsraNet) and isinstance(built, HsraUnfolding) and {
        k: v for k, v in built.config.to_dict().items() if k != "stages"
    } == {k: v for k, v in e2e.config.to_dict().items() if k != "stages"}
    if not same_prior:
        raise UsageError(
            f"--pretrained {source!r} holds a {getattr(e2e, 'hsra_name', 'different')} model but --model is {target}; "
            "weights carry over only to the same architecture, or from an end-to-end network to an unfolding one "
            "with the same prior (e.g. hsra-s -> hsra-dum-2stg)"
        )
    built.fusion.load_state_dict(e2e.fusion.state_dict())
    with torch.no_grad():
        for index, prior in enumerate(built.priors):
            prior.load_state_dict(e2e.prior.state_dict())
            if index:
                prior.map.weight.zero_()
                prior.map.bias.zero_()
        built.step_sizes.zero_()
    built.hsra_name = target
    return built
