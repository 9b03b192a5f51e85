"""Learning-rate schedule of the field's recipe: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


class WarmupCosine:
    """Multiplier of the base learning rate at optimizer step ``step`` (``torch.optim.lr_scheduler.LambdaLR``).

    Steps ``0 … warmup_steps−1`` ramp linearly from ``1/warmup_steps`` to 1 (never 0: a zero first step would
    waste a batch); after that the rate follows half a cosine from ``base_lr`` down to ``min_lr``, reached at
    ``total_steps`` and held beyond it.

    The object holds only plain numbers, so ``LambdaLR.state_dict()`` stores it as JSON-ready data.
    """

    def __init__(self, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float):
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_ratio = float(min_lr) / float(base_lr)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def default_warmup_steps(total_steps: int) -> int:
    """5 % of the run, at most 1000 steps: long enough to protect Adam's first moments, short for short runs."""
    return min(1000, max(0, total_steps // 20))
