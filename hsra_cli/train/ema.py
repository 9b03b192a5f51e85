"""Exponential moving average of a model's weights (the weights that get validated and exported)."""

from __future__ import annotations

import copy

import torch


class WeightEma:
    """A frozen copy of ``model`` whose floating-point parameters and buffers track an EMA of the live ones.

    ``update(model, step)`` applies ``ema ← d·ema + (1−d)·live`` with ``d = min(decay, (1+step)/(10+step))``:
    the ramp keeps the average from being dominated by the random initial weights in short runs (with a fixed
    0.999 the first thousand steps would mostly average noise). Integer buffers (counters) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def effective_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.effective_decay(step)
        live = model.state_dict()
        averaged_float, current_float = [], []
        for name, averaged in self.module.state_dict().items():
            current = live[name].detach()
            if averaged.is_floating_point():
                averaged_float.append(averaged)
                current_float.append(current.to(averaged.dtype))
            else:
                averaged.copy_(current)
        if averaged_float:  # one fused launch for all tensors (hundreds of small ones: matters on a GPU)
            torch._foreach_mul_(averaged_float, decay)
            torch._foreach_add_(averaged_float, current_float, alpha=1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
