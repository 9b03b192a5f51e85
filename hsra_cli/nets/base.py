"""What every HSRA network shares: the physics settings, the ``model(measurement, mask)`` call and its input."""

from __future__ import annotations

import torch
from torch import nn

from ..bands import DEFAULT_AXIS, DEFAULT_BANDS, DEFAULT_STEP
from ..errors import ShapeError
from ..physics import CassiOperator, as_operator, check_settings, network_input
from .config import HsraConfig


class CassiNetwork(nn.Module):
    """Base of the HSRA networks: physics attributes, the operator for a call, the fused first estimate.

    Args:
        config: the architecture (:class:`HsraConfig`).
        bands, step, axis: the optical system the network is built for (band count, dispersion in pixels per
            band, dispersion axis "width" or "height").

    Called as ``model(measurement, mask)``:

    * ``measurement``: ``B × H × W'`` (width axis; ``B × H' × W`` for the height axis) at field scale, i.e. the
      plain sum over bands of the masked, sheared cube (values roughly 0 … bands/2 for a [0, 1] cube). The
      network applies the field's ``y · 2 / bands`` itself. A 2-D measurement is one sample.
    * ``mask``: anything :func:`hsra_cli.physics.as_operator` accepts — a 2-D ``H × W`` aperture, ``B × H × W``
      apertures, a 3-D shifted mask Φ, or a :class:`CassiOperator`.

    Both may be torch tensors or numpy arrays (any float dtype or byte order; cast to the network's parameter
    type). Arrays and integer tensors follow ``hsra reconstruct``'s rules for files
    (:func:`hsra_cli.physics.input_values`): NaN/Inf and empty arrays are refused, an integer measurement is scaled
    by its type's full scale (as the CLI does; a real capture then still needs the field's scaling, which
    :class:`~hsra_cli.reconstruct.Reconstructor` applies), a mask must lie in [0, 1] (an integer mask beyond 0/1
    is scaled as :func:`hsra_cli.io.mask_full_scale` says: an 8/16-bit type by its full scale, a wider one by 255
    or 65535). Floating-point tensors on the CPU are checked the same way; on an
    accelerator they are used as given.

    Returns the cube ``B × bands × H × W`` (``bands × H × W`` for a 2-D measurement), values about [0, 1].
    """

    def __init__(self, config: HsraConfig, bands: int = DEFAULT_BANDS, step: int = DEFAULT_STEP, axis: str = DEFAULT_AXIS):
        super().__init__()
        check_settings(bands, step, axis)
        self.config = config
        self.bands = int(bands)
        self.step = int(step)
        self.axis = axis
        # X₀: the un-sheared measurement and the per-band mask, fused by a 1×1 convolution (2·bands → bands).
        self.fusion = nn.Conv2d(2 * self.bands, self.bands, 1).to(memory_format=torch.channels_last)

    @property
    def input_scale(self) -> float:
        """The field's network-side normalisation of a measurement: 2 / bands."""
        return 2.0 / self.bands

    @property
    def physics(self) -> dict:
        return {"bands": self.bands, "dispersion_step": self.step, "dispersion_axis": self.axis}

    def operator(self, measurement: torch.Tensor, mask) -> CassiOperator:
        """The CASSI operator of this call, checked against the network's physics and the measurement. A mask that
        is not an operator is checked as ``hsra reconstruct`` checks mask files (:func:`~hsra_cli.physics.network_input`)."""
        if isinstance(mask, CassiOperator):
            if (mask.bands, mask.step, mask.axis) != (self.bands, self.step, self.axis):
                raise ShapeError(
                    f"the operator is for {mask.bands} bands at step {mask.step} along the {mask.axis}, but the "
                    f"network was built for {self.bands} bands at step {self.step} along the {self.axis}"
                )
            mask.check_measurement(measurement)
            return mask
        mask = network_input(mask, "mask", "mask", device=measurement.device)
        return as_operator(mask, measurement, self.bands, self.step, self.axis)

    def _batched(self, measurement) -> tuple[torch.Tensor, bool]:
        param = next(self.parameters())
        measurement = network_input(measurement, "measurement", "measurement", dtype=param.dtype,
                                    device=None if isinstance(measurement, torch.Tensor) else param.device)
        if measurement.dim() not in (2, 3):
            raise ShapeError(
                f"measurement of shape {tuple(measurement.shape)}: expected B×H×W' (or one H×W' measurement)"
            )
        unbatched = measurement.dim() == 2
        return (measurement[None] if unbatched else measurement), unbatched

    def initial_estimate(self, measurement: torch.Tensor, op: CassiOperator) -> torch.Tensor:
        """X₀ = fusion(shift_back(y · 2/bands), per-band mask): ``B × bands × H × W``."""
        scaled = measurement * self.input_scale
        back = op.shift_back(scaled)
        masks = op.band_masks().to(back)
        masks = masks.expand(back.shape[0], *masks.shape[1:]) if masks.shape[0] == 1 else masks
        return self.fusion(torch.cat([back, masks], dim=1))

    def example_inputs(self, height: int = 256, width: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """A random ``(measurement, mask)`` pair for an ``height × width`` cube (batch 1).

        The mask is a 2-D aperture with values in [0, 1); the measurement is the field-scale measurement of a
        random [0, 1) cube through it (``1 × H × W'``, or ``1 × H' × W`` for the height axis).
        """
        param = next(self.parameters())
        mask = torch.rand(height, width, device=param.device)
        cube = torch.rand(1, self.bands, height, width, device=param.device)
        measurement = CassiOperator(mask, self.bands, self.step, self.axis).A(cube)
        return measurement, mask

    def extra_repr(self) -> str:
        return f"bands={self.bands}, step={self.step}, axis={self.axis!r}, blocks={self.config.blocks}"
