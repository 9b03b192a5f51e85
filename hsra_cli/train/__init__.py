"""Training HSRA networks: the field's recipe (see docs/training.md), resumable, multi-GPU under torchrun.

Library entry point: :func:`train` with a :class:`TrainConfig`. ``hsra train`` is a thin layer over it, and
``python -m hsra_cli.train ...`` runs the same command (the form to give ``torchrun``).

Modules: ``config`` (the options), ``data`` (cube files, stacks, synthetic scenes, the mask), ``sampler``
(batches: crops, rot90/flips, mosaics, mask crops, simulated snapshots with shot noise), ``model`` (a fresh
network or pretrained weights), ``schedule`` (warm-up + cosine), ``ema``, ``runtime`` (AMP, losses, RNG states,
stop signals), ``checkpoint`` (safetensors + JSON, nothing unpickled), ``distributed`` (torch.distributed from
the environment), ``report`` (progress, CSV log, learning curve), ``loop`` (the run).
"""

from __future__ import annotations

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str):
    # Lazy: `hsra --help` imports the option vocabulary (config) without torch and the training loop.
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("TrainResult", "train"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
