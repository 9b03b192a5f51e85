"""Test-time adaptation: fine-tune a network on the capture it is about to reconstruct, from that capture alone.

A network trained on other scenes meets a lab's capture as something new: a different kind of scene, a different
mask. Two self-supervised losses let it learn from the capture itself, without any ground truth:

* **measurement consistency**: ``‖A f(y) − y‖²``, the estimate must explain what the sensor recorded;
* **equivariance** (equivariant imaging, Chen, Tachella & Davies, ICCV 2021): a shifted or flipped scene is still
  a scene, but the coded aperture does not move with it, so the network must also recover ``T x̂`` from the
  simulated capture ``A T x̂`` for random shifts and flips ``T``. This is what teaches it about the part of the
  scene the mask hides (the null space of ``A``), which consistency alone cannot see.

Each step works on a random crop of the capture (a window of the cube, its mask crop and the measurement window it
disperses onto), so a step costs the same at any sensor size. Measurement columns that light from outside the
crop reaches are left out of the consistency loss. Every capture adapts a fresh copy of the weights: the
shipped ones are never changed, and the same capture gives the same result (the crops are drawn from ``seed``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch

from .errors import UsageError
from .physics import CassiOperator

__all__ = ["AdaptConfig", "adapt_network"]


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of :func:`adapt_network` (``hsra reconstruct --adapt STEPS``)."""

    steps: int = 100
    lr: float = 1e-4
    warmup: int = 20
    crop: int = 128
    ei_weight: float = 0.3
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise UsageError(f"--adapt (Python: adapt=) must be a whole number of steps >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise UsageError(f"the adaptation learning rate must be > 0, got {self.lr}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise UsageError(f"the adaptation warm-up must be a whole number of steps >= 0, got {self.warmup!r}")
        if self.crop < 16:
            raise UsageError(f"the adaptation crop must be at least 16 pixels, got {self.crop}")
        if self.ei_weight < 0:
            raise UsageError(f"the equivariance weight must be >= 0, got {self.ei_weight}")


def _valid_columns(op: CassiOperator, width: int, at_start: bool, at_end: bool, device) -> torch.Tensor:
    """1-D weights over the measurement window's dispersion axis: 1 where only light from inside the crop lands."""
    spread = op.step * (op.bands - 1)
    valid = torch.zeros(width + spread, device=device)
    valid[spread:width] = 1
    if at_start:
        valid[:spread] = 1
    if at_end:
        valid[width:] = 1
    return valid


def _random_transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random cyclic shift of both spatial axes and random flips of a ``B×C×H×W`` cube."""
    h, w = x.shape[-2:]
    shifts = (int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(1, max(w, 2), (1,), generator=gen)))
    x = torch.roll(x, shifts, dims=(-2, -1))
    flips = torch.randint(0, 2, (2,), generator=gen)
    dims = [d for d, f in zip((-2, -1), flips.tolist()) if f]
    return x.flip(dims) if dims else x


def adapt_network(model: torch.nn.Module, measurement: torch.Tensor, op: CassiOperator,
                  config: AdaptConfig = AdaptConfig(), progress=None) -> tuple[torch.nn.Module, dict]:
    """A copy of ``model`` fine-tuned on this capture (``measurement`` ``H×W'`` in the network's scale, ``op`` its
    operator). Returns the copy (in eval mode) and a record: the settings, seconds, and the losses at the start
    and the end. ``progress(done, total)`` is called after each step."""
    net = copy.deepcopy(model)
    if config.steps == 0:
        return net.eval(), {**asdict(config), "seconds": 0.0}
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    # a linear warm-up: Adam's first steps move every weight by about the full learning rate
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup)))
    gen = torch.Generator().manual_seed(config.seed)
    height, width = op.cube_shape
    # along the dispersion a crop's first step·(C−1) measurement lines also hold light from outside it: the crop
    # is made wide enough that most lines it disperses onto are its own
    spread = op.step * (op.bands - 1)
    disp_crop = max(config.crop, 2 * spread)
    ch = min(disp_crop if op.axis == "height" else config.crop, height)
    cw = min(config.crop if op.axis == "height" else disp_crop, width)
    disp_size, disp_crop = (height, ch) if op.axis == "height" else (width, cw)
    scale = 2.0 / op.bands  # field-scale sums -> the network's units, so the loss weights do not depend on C
    y = measurement.float()
    losses = []
    start = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():
        for step in range(config.steps):
            top = int(torch.randint(0, height - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - cw + 1, (1,), generator=gen))
            sub = op.crop(top, left, ch, cw)
            window = op.measurement_window(y, top, left, ch, cw)[None].clone()
            first = (top if op.axis == "height" else left)
            valid = _valid_columns(sub, disp_crop, first == 0, first + disp_crop == disp_size, y.device)
            valid = valid[:, None] if op.axis == "height" else valid[None, :]
            estimate = net(window, sub)
            residual = (sub.A(estimate) - window) * scale * valid
            loss = residual.pow(2).sum() / (valid.sum() * window.shape[-2 if op.axis == "width" else -1])
            if config.ei_weight:
                target = _random_transform(estimate.detach().clamp(0, 1), gen)
                loss = loss + config.ei_weight * (net(sub.A(target), sub) - target).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if progress:
                progress(step + 1, config.steps)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    return net, {**asdict(config), "seconds": time.perf_counter() - start,
                 "loss_first_tenth": sum(head) / len(head), "loss_last_tenth": sum(tail) / len(tail)}
