"""The U-shaped HSRA prior: local → mid → global scale reconciliation on an un-sheared cube.

Layout (C = ``config.dim`` channels at level 1)::

    embed 3×3 (bands → C) → level 1: MK-PTM ×n_mk + LWIM ×n_lwim → down 4×4/2 (C → 2C)
    → level 2: HM-SSA ×n2 → down (2C → 4C) → bottleneck: HM-SSA ×n3
    → up 2×2ᵀ (4C → 2C) ⊕ skip → 1×1 → HM-SSA ×n2d → up (2C → C) ⊕ skip → 1×1 → HM-SSA ×n1d
    → map 3×3 (C → bands) + the input (global residual)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import make_block
from .config import HsraConfig


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two axes at the bottom/right to multiples of ``multiple``.

    Each axis is reflect-padded (no artificial edge) where it is longer than its pad, and replicate-padded
    otherwise (reflection cannot pad more than the image is long, e.g. a 20-pixel strip to 64).
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < w else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < h else "replicate")
    return x


def level1_kinds(config: HsraConfig) -> list[str]:
    """Block kinds of the level-1 encoder (the design, or a token-mixer ablation)."""
    if config.level1_mixer == "hsra":
        return ["mkptm"] * config.n_mk + ["lwim"] * config.n_lwim
    if config.level1_mixer == "mkptm":
        return ["mkptm+ffn"]
    return [config.level1_mixer]


class HsraPrior(nn.Module):
    """The HSRA denoising prior: cube estimate ``B×bands×H×W`` -> refined cube of the same shape.

    Any H × W: the input is reflect-padded to a multiple of ``config.pad_multiple`` (64 px for the design) and
    the output cropped back. Values are in the network's scale (cube values about [0, 1]).
    """

    def __init__(self, config: HsraConfig, bands: int = 28, axis: str = "width"):
        super().__init__()
        self.config = config
        c = config.dim

        def stage(kinds: list[str], channels: int) -> nn.Sequential:
            return nn.Sequential(*(make_block(kind, channels, config, axis) for kind in kinds))

        self.embed = nn.Conv2d(bands, c, 3, padding=1)
        self.encoder1 = stage(level1_kinds(config), c)
        self.down1 = nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)
        self.encoder2 = stage(["hmssa"] * config.n2, 2 * c)
        self.down2 = nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1)
        self.bottleneck = stage(["hmssa"] * config.n3, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.fuse2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.decoder2 = stage(["hmssa"] * config.n2d, 2 * c)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.fuse1 = nn.Conv2d(2 * c, c, 1)
        self.decoder1 = stage(["hmssa"] * config.n1d, c)
        self.map = nn.Conv2d(c, bands, 3, padding=1)
        # Channels-last memory throughout: oneDNN's convolutions are several times faster on CPU in this layout,
        # channel LayerNorm becomes a view, and window attention needs one copy instead of two.
        self.to(memory_format=torch.channels_last)

    def forward(self, cube: torch.Tensor) -> torch.Tensor:
        height, width = cube.shape[-2:]
        x = pad_to_multiple(cube, self.config.pad_multiple).contiguous(memory_format=torch.channels_last)
        level1 = self.encoder1(self.embed(x))
        level2 = self.encoder2(self.down1(level1))
        features = self.bottleneck(self.down2(level2))
        features = self.decoder2(self.fuse2(torch.cat([self.up2(features), level2], dim=1)))
        features = self.decoder1(self.fuse1(torch.cat([self.up1(features), level1], dim=1)))
        out = self.map(features) + x
        return out[..., :height, :width]
