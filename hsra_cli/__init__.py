"""hsra: hyperspectral reconstruction from coded-aperture snapshot captures (CASSI).

Public API (imported lazily so the CLI starts fast):

- :class:`CassiOperator` — the single-disperser CASSI forward model and its adjoint;
- :func:`create_model` (``pretrained=True`` for the installed weights), :func:`list_models` — the registry of
  methods (``gap-tv`` and the HSRA networks);
- :func:`load_pretrained` — a network with its installed weights;
- :class:`Reconstructor` — measurement + mask -> cube at any size (tiling, normalisation, records); without a
  model it runs ``auto``, as ``hsra reconstruct`` does (the shipped network for its geometry, else GAP-TV);
- :mod:`hsra_cli.io`, :mod:`hsra_cli.metrics`, :mod:`hsra_cli.render`, :mod:`hsra_cli.simulate`,
  :mod:`hsra_cli.calibrate` — files, metrics, previews, simulation, geometry from captures.

``help(hsra_cli.Reconstructor)`` (and each name above) has the details.
"""

__version__ = "0.1.0"

_LAZY = {
    "CassiOperator": ("physics", "CassiOperator"),
    "create_model": ("registry", "create_model"),
    "list_models": ("registry", "list_models"),
    "load_pretrained": ("weights", "load_pretrained"),
    "Reconstructor": ("reconstruct", "Reconstructor"),
}

#: Submodules named above: ``hsra_cli.metrics`` works after a bare ``import hsra_cli`` (imported on first use).
_SUBMODULES = ("io", "metrics", "render", "simulate", "calibrate")

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hsra_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy public names too, so ``dir(hsra_cli)`` and a REPL's completion show them."""
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
