"""The end-to-end HSRA network (HSRA-S/M/L and the ablations): fused first estimate, then one prior."""

from __future__ import annotations

import torch

from .base import CassiNetwork
from .config import HsraConfig
from .prior import HsraPrior


class HsraNet(CassiNetwork):
    """End-to-end HSRA: ``model(measurement, mask)`` -> cube ``B × bands × H × W`` (see :class:`CassiNetwork`).

    X₀ = 1×1 fusion of (shift_back(y · 2/bands), per-band mask); the cube is ``prior(X₀)``, whose global residual
    adds X₀ back.
    """

    def __init__(self, config: HsraConfig | None = None, bands: int = 28, step: int = 2, axis: str = "width"):
        super().__init__(config or HsraConfig(), bands, step, axis)
        self.prior = HsraPrior(self.config, self.bands, self.axis)

    def forward(self, measurement: torch.Tensor, mask) -> torch.Tensor:
        measurement, unbatched = self._batched(measurement)
        op = self.operator(measurement, mask)
        cube = self.prior(self.initial_estimate(measurement, op))
        return cube[0] if unbatched else cube
