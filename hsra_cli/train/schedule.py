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
        # a run extended while decaying: ``[[start_step, start_ratio, end_step], …]``, one cosine per piece, each
        # from the multiplier the schedule had at its start down to the floor at its end (None: one piece)
        self.pieces: list | None = None

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        start, ratio, end = self.warmup_steps, 1.0, self.total_steps
        for piece in self.pieces or ():
            if step >= piece[0]:
                start, ratio, end = piece
        if step == start:
            return ratio
        progress = min(1.0, (step - start) / max(1, end - start))
        return self.min_ratio + (ratio - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def extend(self, total_steps: int, at_step: int) -> None:
        """Plan ``total_steps`` instead, continuing from ``at_step``: the multiplier goes on from where it is, without
        a jump, and decays to the floor at the new end; steps before ``at_step`` keep their values."""
        if total_steps <= self.total_steps:
            raise ValueError(f"extend to {total_steps} steps: the schedule already plans {self.total_steps}")
        if at_step >= self.total_steps:
            raise ValueError(f"step {at_step} is past the schedule's end ({self.total_steps}); there is nothing to extend")
        if self.pieces is None:
            self.pieces = [[self.warmup_steps, 1.0, self.total_steps]]
        start = max(int(at_step), self.warmup_steps)
        self.pieces.append([start, self(start), int(total_steps)])
        self.total_steps = int(total_steps)


def default_warmup_steps(total_steps: int) -> int:
    """5 % of the run, at most 1000 steps: long enough to protect Adam's first moments, short for short runs."""
    return min(1000, max(0, total_steps // 20))
