"""The one registry of model configurations (timm-style).

Every reconstruction method — the GAP-TV solver and each HSRA network configuration — is registered here by
name with its aliases. Trained weights of one architecture are told apart by timm's tag convention,
``NAME.TAG`` (``hsra-s.any``, ``hsra-s.kaist``): :func:`register_pretrained_tags` lists an architecture's
published tags, the first being the default that the bare name resolves to. ``create_model(name)`` builds it; every model is a ``torch.nn.Module`` called as
``model(measurement, mask)`` returning the cube ``B×C×H×W`` for a batch of measurements ``B×H×W'`` and ``C×H×W``
for one unbatched ``H×W'`` measurement, and offers ``model.example_inputs(height, width)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import UsageError


@dataclass(frozen=True)
class ModelEntry:
    """One registered configuration: its name, aliases, what it is, and how to build it."""

    name: str
    factory: Callable[..., torch.nn.Module]
    aliases: tuple[str, ...] = ()
    description: str = ""
    #: "solver" (no weights), "e2e" (end-to-end network) or "unfolding" (deep unfolding network)
    kind: str = "e2e"
    #: False for iterative solvers that run without weights.
    needs_weights: bool = True
    #: The configuration as plain data (block counts etc.), shown on cards and in ``hsra models``.
    config: dict = field(default_factory=dict)


#: What ``hsra reconstruct`` runs without ``--model``: ``auto`` picks :data:`DEFAULT_NETWORK` when the capture's
#: geometry is the one its weights were trained for, else the solver :data:`FALLBACK_SOLVER`
#: (:func:`hsra_cli.reconstruct.choose_model`). Not a registered model: it names a choice between two.
AUTO = "auto"
#: The shipped network that ``auto``, ``make demo`` and the README use (its default tag's weights).
DEFAULT_NETWORK = "hsra-dum-2stg"
#: The method ``auto`` falls back to: it needs no weights and takes any geometry.
FALLBACK_SOLVER = "gap-tv"

_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_PRETRAINED_TAGS: dict[str, tuple[str, ...]] = {}


def register_model(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    description: str = "",
    kind: str = "e2e",
    needs_weights: bool = True,
    config: dict | None = None,
):
    """Decorator: register ``factory(**kwargs) -> nn.Module`` under ``name`` (and ``aliases``)."""

    def decorate(factory: Callable[..., torch.nn.Module]):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model name {name!r} is registered twice")
        for alias in aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise ValueError(f"model alias {alias!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            factory=factory,
            aliases=tuple(aliases),
            description=description,
            kind=kind,
            needs_weights=needs_weights,
            config=dict(config or {}),
        )
        for alias in aliases:
            _ALIASES[alias] = name
        return factory

    return decorate


def _ensure_populated() -> None:
    # Importing these modules runs their @register_model decorators.
    from . import nets  # noqa: F401
    from .solvers import gap_tv  # noqa: F401


def _lookup(key: str) -> str | None:
    if key in _REGISTRY:
        return key
    return _ALIASES.get(key)


def split_tag(name: str) -> tuple[str, str | None]:
    """``"s.kaist"`` -> ``("hsra-s", "kaist")``; ``"hsra-s"`` -> ``("hsra-s", None)`` (case-insensitive).

    A registered name that itself holds a dot (``hsra-s-mkptm-r0.5``) is a name, not a tag. Raises a
    :class:`UsageError` listing the choices for an unknown name, or for a tag on a method without weights.
    """
    _ensure_populated()
    if not isinstance(name, str):
        raise UsageError(
            f"a model is named by a string (e.g. 'gap-tv'), got {name!r} ({type(name).__name__}); available: "
            f"{', '.join(sorted(_REGISTRY))}"
        )
    key = name.strip().lower()
    if not key:
        raise UsageError(f"the model name is empty; expected one of: {', '.join(sorted(_REGISTRY))} (is a shell "
                         "variable unset?)")
    canonical = _lookup(key)
    if canonical is not None:
        return canonical, None
    arch, dot, tag = key.rpartition(".")
    canonical = _lookup(arch) if dot and arch and tag else None
    if canonical is not None:
        if not _REGISTRY[canonical].needs_weights:
            raise UsageError(f"{canonical} is a solver without weights, so it has no tags; use {canonical!r}")
        return canonical, tag
    from pathlib import Path

    if "/" in name or "\\" in name or Path(name).exists():  # a path where a model name goes
        if Path(name).exists():
            raise UsageError(
                f"{name!r} is a path, not a model name; a model folder or weights file is given as weights, with "
                "its architecture as the model (hsra reconstruct --model hsra-s --weights PATH)"
            )
        raise UsageError(f"unknown model {name!r}: no model has that name, and no such file or folder exists")
    choices = ", ".join(sorted(_REGISTRY))
    raise UsageError(
        f"unknown model {name!r}; available: {choices} (aliases: {', '.join(sorted(_ALIASES))}; "
        "weights of one architecture as NAME.TAG, e.g. hsra-s.any)"
    )


def resolve_name(name: str) -> str:
    """Canonical architecture name for a name, alias or ``NAME.TAG``; a clear error listing choices otherwise."""
    return split_tag(name)[0]


def register_pretrained_tags(name: str, tags: tuple[str, ...]) -> None:
    """Declare the published weight tags of architecture ``name``; ``tags[0]`` is its default."""
    canonical = resolve_name(name)
    if not tags or any("." in tag or not tag for tag in tags):
        raise ValueError(f"tags of {canonical} must be non-empty names without dots, got {tags!r}")
    _PRETRAINED_TAGS[canonical] = tuple(tag.lower() for tag in tags)


def pretrained_tags(name: str) -> tuple[str, ...]:
    """The published tags of an architecture (default first); empty when none are declared."""
    return _PRETRAINED_TAGS.get(resolve_name(name), ())


def default_tag(name: str) -> str | None:
    """The tag the bare architecture name resolves to, or None."""
    tags = pretrained_tags(name)
    return tags[0] if tags else None


def get_entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_name(name)]


def list_models() -> list[str]:
    """Canonical names of every registered model, in registration order."""
    _ensure_populated()
    return list(_REGISTRY)


def model_names(*, networks_only: bool = False, tags: bool = True) -> list[str]:
    """Every name the CLI takes for a model: canonical names, aliases and (``tags``) ``NAME.TAG`` of published
    weights, in registration order; for shell completion and listings."""
    _ensure_populated()
    names: list[str] = []
    for name, entry in _REGISTRY.items():
        if networks_only and not entry.needs_weights:
            continue
        names += [name, *entry.aliases]
        if tags:
            names += [f"{name}.{tag}" for tag in _PRETRAINED_TAGS.get(name, ())]
    return names


def create_model(name: str, pretrained: bool = False, **kwargs) -> torch.nn.Module:
    """Build the model registered as ``name`` (or an alias). Keyword arguments go to its factory.

    ``pretrained=False`` (the default, as in timm): a network with fresh random weights, in training mode, to
    train or to load weights into. ``pretrained=True``: the network with its installed weights (the shipped
    ones for ``hsra-s``, found as :func:`hsra_cli.weights.load_pretrained` finds them: ``$HSRA_MODELS_DIR``
    first, then the package's models), loaded strictly after the SHA-256 check, in eval mode; the weights'
    config.json decides the architecture and physics, and keyword arguments must agree with it. Its card is
    ``model.pretrained_cfg``. A :class:`~hsra_cli.errors.WeightsError` says how to get weights when none are
    installed. Solvers (``gap-tv``) need no weights: ``pretrained`` changes nothing for them.
    """
    entry = get_entry(name)
    if pretrained and entry.needs_weights:
        from .weights import load_pretrained

        model, config = load_pretrained(name)
        _check_agrees(model, entry.name, kwargs)
        model.pretrained_cfg = config
        return model
    model = entry.factory(**kwargs)
    model.hsra_name = entry.name
    return model


def _check_agrees(model, name: str, kwargs: dict) -> None:
    """A keyword argument given with ``pretrained=True`` must match the loaded model (physics or architecture)."""
    arch = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else {}
    for key, value in kwargs.items():
        have = getattr(model, key) if key in ("bands", "step", "axis") else arch.get(key, value)
        if isinstance(have, (list, tuple)) and isinstance(value, (list, tuple)):
            have, value = list(have), list(value)
        if have != value:
            raise UsageError(
                f"create_model({name!r}, pretrained=True, {key}={value!r}): the installed weights were trained "
                f"with {key}={have!r}; drop the argument, or build with pretrained=False and train (hsra train)"
            )


def unregister_model(name: str) -> None:
    """Remove ``name`` (canonical, not an alias) and its aliases; for tests and plug-ins that register
    temporary models. Unknown names are ignored."""
    entry = _REGISTRY.pop(name, None)
    _PRETRAINED_TAGS.pop(name, None)
    if entry is not None:
        for alias in entry.aliases:
            _ALIASES.pop(alias, None)
