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
    from ..weights import load_model, not_a_model_problem

    path = Path(source)
    if not (path.suffix.lower() == ".safetensors" and path.is_file()) and not _names_a_model(source):
        # an existing file or folder that is no model: say what is accepted (pickles are never read)
        problem = not_a_model_problem(path, f"--pretrained {source!r}")
        if problem is not None:
            raise UsageError(problem)
    if path.suffix.lower() == ".safetensors":
        if model_name is None:
            raise UsageError("--pretrained with a bare .safetensors file needs --model NAME (the architecture)")
        if not path.is_file():
            raise UsageError(f"--pretrained {source!r} does not exist")
        optics = {"bands": physics.get("bands"), "dispersion_step": physics.get("step"),
                  "dispersion_axis": physics.get("axis")}  # what a bare file is for: this training's optics
        model, card = load_model(get_entry(model_name).name, weights=path, device="cpu", physics=optics)
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
        info["warm_start"] = getattr(model, "warm_start_note")
    return name, model, info


def _names_a_model(source: str) -> bool:
    """Whether ``source`` is a registered name (which wins over a same-named folder without config.json)."""
    from ..registry import get_entry

    try:
        get_entry(source)
    except UsageError:
        return False
    return True


def unfold_from_e2e(trained: torch.nn.Module, target: str, source: str) -> torch.nn.Module:
    """An unfolding network ``target`` that starts as exactly ``trained``: an end-to-end network with the same
    prior architecture (e.g. HSRA-S -> ``hsra-dum-2stg``), or an unfolding network with the same priors and
    fewer stages (``hsra-dum-2stg`` -> ``hsra-dum-3stg-s``: the network grows stages).

    From an end-to-end network, the first stage's prior is the trained one and its data step size starts at 0
    (a full-size gradient step would feed the trained prior inputs it never saw: measured on KAIST scene 05,
    26.19 dB with this start, 15.8 dB with the default step sizes). From an unfolding network, its stages
    (priors and step sizes) carry over as they are. Every added stage's prior copies the last trained prior with
    its output map zeroed (its global residual makes it the identity). An added stage's data step starts at 0
    after an end-to-end network (the network starts as exactly that one), and at the last trained stage's size
    after an unfolding network: it then starts as that network followed by one more data step. (A step of 0
    barely opens under Adam, by at most lr per update: 0.004 after 200 steps at lr 6e-5. The extra data step
    at full size already helps the network alone: ``hsra-dum-2stg.any`` phase 11 grown to 3 stages, 28.18 →
    28.25 dB on KAIST scene 05 and 28.81 → 28.96 on the bundled chart, unchanged after the default refinement.)
    Fine-tuning then opens the added priors.
    """
    from ..nets import HsraNet, HsraUnfolding
    from ..registry import create_model

    built = create_model(target, bands=trained.bands, step=trained.step, axis=trained.axis)
    same_prior = isinstance(trained, (HsraNet, HsraUnfolding)) and isinstance(built, HsraUnfolding) and {
        k: v for k, v in built.config.to_dict().items() if k != "stages"
    } == {k: v for k, v in trained.config.to_dict().items() if k != "stages"}
    trained_priors = list(trained.priors) if isinstance(trained, HsraUnfolding) else [getattr(trained, "prior", None)]
    if not same_prior or len(trained_priors) >= len(built.priors):
        raise UsageError(
            f"--pretrained {source!r} holds a {getattr(trained, 'hsra_name', 'different')} model but --model is "
            f"{target}; weights carry over only to the same architecture, from an end-to-end network to an "
            "unfolding one with the same prior (e.g. hsra-s -> hsra-dum-2stg), or from an unfolding network to "
            "one with the same priors and more stages (e.g. hsra-dum-2stg -> hsra-dum-3stg-s)"
        )
    kept = len(trained_priors)
    built.fusion.load_state_dict(trained.fusion.state_dict())
    with torch.no_grad():
        built.step_sizes.zero_()
        if isinstance(trained, HsraUnfolding):
            built.step_sizes[:kept] = trained.step_sizes
            built.step_sizes[kept:] = trained.step_sizes[-1]
        for index, prior in enumerate(built.priors):
            prior.load_state_dict(trained_priors[min(index, kept - 1)].state_dict())
            if index >= kept:
                prior.map.weight.zero_()
                prior.map.bias.zero_()
    built.hsra_name = target
    from_name = getattr(trained, "hsra_name", "the pretrained network")
    added = len(built.priors) - kept
    built.warm_start_note = (
        f"input fusion and the first {kept} prior(s) from {from_name}; "
        + (f"its data step sizes kept; {added} added stage(s): a data step of the last stage's size and an "
           "identity prior (output map zeroed)" if isinstance(trained, HsraUnfolding) else
           f"the first data step at 0; {added} added stage(s) start as the identity (prior output map zeroed, "
           "data step 0)")
    )
    return built
