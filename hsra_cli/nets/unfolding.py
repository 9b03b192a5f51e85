"""HSRA-DUM-k: deep unfolding with the project's CASSI operator and one HSRA prior per stage.

With the network normalisation s = 2/bands the operator is A_s(x) = s·A(x), A_sᵀ(r) = s·Aᵀ(r), and the
measurement the network sees is Y = s·y (``A``/``Aᵀ`` from :mod:`hsra_cli.physics`, the one implementation of
the shear). Stage k:

    X = Z − μ_k · A_sᵀ(A_s Z − Y)        (data step, learnable scalar μ_k)
    Z = prior_k(X)                         (HSRA prior, un-sheared H × W domain, no input fusion)

starting from Z = X₀, the fused first estimate. μ_k = (bands/4)·m_k with the stored parameter m_k
(``step_sizes``, initially 1): kept relative to its natural size so the optimiser moves it in proportion. The data step runs at the measurement's true size; each prior
pads and crops internally.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from ..physics import CassiOperator
from .base import CassiNetwork
from .config import HsraConfig
from .prior import HsraPrior


class HsraUnfolding(CassiNetwork):
    """HSRA-DUM-k: ``model(measurement, mask)`` -> cube ``B × bands × H × W`` (see :class:`CassiNetwork`)."""

    def __init__(self, config: HsraConfig | None = None, bands: int = 28, step: int = 2, axis: str = "width"):
        config = config or HsraConfig(n_mk=2, n3=4, stages=3)
        if config.stages < 1:
            raise UsageError(f"an unfolding network needs stages ≥ 1, got {config.stages}")
        super().__init__(config, bands, step, axis)
        self.priors = nn.ModuleList(HsraPrior(config, self.bands, self.axis) for _ in range(config.stages))
        # μ's natural size: one step is at most a full step on the brightest pixel, μ·s²·Φs ≤ 1 for Φs ≤ bands
        # (mask ≤ 1), i.e. μ = 1 / (s² · bands) = bands / 4. The parameter holds μ in that unit (an Adam step
        # of lr moves μ by lr·bands/4, not by lr, so a fine-tuned μ can travel its range in a short run).
        self.step_size_scale = self.bands / 4.0
        self.step_sizes = nn.Parameter(torch.ones(config.stages))

    @property
    def mu(self) -> torch.Tensor:
        """The data steps' sizes μ_k (``stages``)."""
        return self.step_size_scale * self.step_sizes

    def data_step(self, estimate: torch.Tensor, scaled_measurement: torch.Tensor, op: CassiOperator,
                  step_size: torch.Tensor) -> torch.Tensor:
        """X = Z − μ · A_sᵀ(A_s Z − Y) with A_s = (2/bands)·A; ``estimate`` B×C×H×W, ``scaled_measurement`` = Y."""
        s = self.input_scale
        residual = s * op.A(estimate) - scaled_measurement
        return estimate - step_size * (s * op.A_adjoint(residual))

    def forward(self, measurement: torch.Tensor, mask) -> torch.Tensor:
        measurement, unbatched = self._batched(measurement)
        op = self.operator(measurement, mask)
        scaled = measurement * self.input_scale
        estimate = self.initial_estimate(measurement, op)
        for prior, step_size in zip(self.priors, self.mu):
            estimate = prior(self.data_step(estimate, scaled, op, step_size))
        return estimate[0] if unbatched else estimate
