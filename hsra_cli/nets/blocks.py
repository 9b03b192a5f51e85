"""Building blocks of the HSRA prior: channel LayerNorm, FFN, MK-PTM, LWIM, HM-SSA (and the ablation mixers).

Every module here works on feature maps ``B × C × H × W`` (float, unbounded values) and returns the same
shape. The prior keeps them in channels-last *memory* (same logical shape), where oneDNN's CPU convolutions are
fastest and the channel LayerNorm and window partition are cheap; any memory layout gives the same result. Blocks are pre-norm with residuals: ``x + mixer(norm(x))`` then, where the block has
one, ``x + ffn(norm(x))``.

Attention is computed with ``torch.nn.functional.scaled_dot_product_attention`` for speed; inside
:func:`math_attention` the same attention is written with plain matmuls, which is what fvcore can count
(it does not see the fused kernel). Both paths compute the same function (pinned by a test).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .config import HsraConfig

_math_attention = False


@contextmanager
def math_attention():
    """Compute attention as ``softmax(q kᵀ / √d) v`` with explicit matmuls (for FLOP counting)."""
    global _math_attention
    previous, _math_attention = _math_attention, True
    try:
        yield
    finally:
        _math_attention = previous


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over the token axis: ``(B, H, N, d)`` each -> ``(B, H, N, d)``."""
    if not _math_attention:
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    return scores.softmax(dim=-1) @ v


def window_attention(qkv: torch.Tensor, heads: int, window: tuple[int, int]) -> torch.Tensor:
    """Multi-head self-attention inside non-overlapping windows.

    Args:
        qkv: ``B × 3C × H × W``, the queries, keys and values stacked on the channel axis (q first); fastest in
            channels-last memory, where the channel axis is innermost.
        heads: number of heads; each head gets ``C / heads`` channels.
        window: (rows, cols) of a window; H and W must be multiples of them.

    Returns:
        ``B × C × H × W`` (channels-last memory): every pixel's attention output within its window.
    """
    b, c3, h, w = qkv.shape
    c = c3 // 3
    d = c // heads
    wh, ww = window
    nh, nw = h // wh, w // ww
    # Work on the B × H × W × 3C view (free for channels-last memory). One copy brings q, k and v into
    # (3, B·heads, windows, tokens, d). Keep them 4-D: torch's fused CPU attention kernel only takes 4-D inputs
    # (3-D falls back to a slower path).
    t = qkv.permute(0, 2, 3, 1).reshape(b, nh, wh, nw, ww, 3, heads, d)
    t = t.permute(5, 0, 6, 1, 3, 2, 4, 7).reshape(3, b * heads, nh * nw, wh * ww, d)
    out = attend(t[0], t[1], t[2])
    out = out.reshape(b, heads, nh, nw, wh, ww, d).permute(0, 2, 4, 3, 5, 1, 6).reshape(b, h, w, c)
    return out.permute(0, 3, 1, 2)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``B × C × H × W`` features (affine, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm normalises trailing axes: move channels last (a view), normalise, move back.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class FFN(nn.Module):
    """Feed-forward: 1×1 (C → eC), GELU, depthwise 3×3, GELU, 1×1 (eC → C)."""

    def __init__(self, channels: int, expansion: int = 4):
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.reduce = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(F.gelu(self.depthwise(F.gelu(self.expand(x)))))


class MKPTM(nn.Module):
    """Multi-kernel partial token mixer (fine local spectral–spatial detail, tied to the mask).

    1×1 (C → 2C), GELU; the first ``ratio·2C`` channels go through depthwise k×k convolutions, one per kernel
    size, summed; the other channels pass through unchanged; 1×1 (2C → C).
    """

    def __init__(self, channels: int, ratio: float = 1.0, kernels: tuple[int, ...] = (3, 9)):
        super().__init__()
        hidden = 2 * channels
        self.mixed = max(1, min(hidden, int(round(ratio * hidden))))
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.ModuleList(
            nn.Conv2d(self.mixed, self.mixed, k, padding=k // 2, groups=self.mixed) for k in kernels
        )
        self.reduce = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.expand(x))
        if self.mixed == h.shape[1]:
            return self.reduce(self._mix(h))
        mixed, passed = h.split([self.mixed, h.shape[1] - self.mixed], dim=1)
        return self.reduce(torch.cat([self._mix(mixed), passed], dim=1))

    def _mix(self, h: torch.Tensor) -> torch.Tensor:
        out = self.depthwise[0](h)
        for conv in self.depthwise[1:]:
            out = out + conv(h)
        return out


class LWIM(nn.Module):
    """Light-weight mid-scale latent interaction ("dispersion-aware reasoning", tied to the dispersion).

    1×1 (C → 2C) split into u, v. Latent path: u average-pooled ``pool``×, 1×1 qkv, attention in latent windows
    of ``latent_window`` = (across, along) the dispersion axis — 4 × 16 latent pixels, a 16 × 64 pixel footprint
    that spans the 54-pixel spread of 28 bands at step 2 — then 1×1 and bilinear ``pool``× up-sampling.
    Gate path: depthwise 5×5 on v, sigmoid. Output: 1×1 of (latent ⊙ gate).
    """

    def __init__(
        self,
        channels: int,
        head_dim: int = 28,
        pool: int = 4,
        latent_window: tuple[int, int] = (4, 16),
        gate_kernel: int = 5,
        axis: str = "width",
    ):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.pool = pool
        across, along = latent_window
        # (rows, cols) of a latent window: the long side follows the dispersion.
        self.window = (across, along) if axis == "width" else (along, across)
        self.expand = nn.Conv2d(channels, 2 * channels, 1)
        self.latent_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.latent_proj = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Conv2d(channels, channels, gate_kernel, padding=gate_kernel // 2, groups=channels)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.expand(x).chunk(2, dim=1)
        latent = F.avg_pool2d(u, self.pool)
        latent = window_attention(self.latent_qkv(latent), self.heads, self.window)
        latent = F.interpolate(self.latent_proj(latent), scale_factor=self.pool, mode="bilinear", align_corners=False)
        return self.out(latent * torch.sigmoid(self.gate(v)))


class HMSSA(nn.Module):
    """Hierarchical multi-granularity self-attention (tied to dispersion ∘ shear).

    A shared 1×1 qkv; every head (head dim 28) attends in w×w windows and in 2w×2w windows; the two outputs are
    concatenated (2C) and fused by a 1×1 (2C → C). With ``use_2w=False`` it is plain w×w window attention
    (Swin-style, no shift) with a 1×1 (C → C) projection.
    """

    def __init__(self, channels: int, head_dim: int = 28, window: int = 8, use_2w: bool = True):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.windows = (window, 2 * window) if use_2w else (window,)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(len(self.windows) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        outs = [window_attention(qkv, self.heads, (w, w)) for w in self.windows]
        return self.proj(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))


class SepConv(nn.Module):
    """ConvFormer's separable-convolution mixer (ablation): 1×1 (C → 2C), GELU, depthwise 7×7, 1×1 (2C → C)."""

    def __init__(self, channels: int, kernel: int = 7):
        super().__init__()
        hidden = 2 * channels
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.reduce = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.depthwise(F.gelu(self.expand(x))))


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(LN(x))``, then ``x + FFN(LN(x))`` when it has an FFN."""

    def __init__(self, channels: int, mixer: nn.Module, ffn_expansion: int | None = 4):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.mixer = mixer
        if ffn_expansion:
            self.norm2 = ChannelLayerNorm(channels)
            self.ffn = FFN(channels, ffn_expansion)
        else:
            self.norm2 = self.ffn = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm2(x))
        return x


def make_block(kind: str, channels: int, config: HsraConfig, axis: str = "width") -> Block:
    """One block of ``kind`` at ``channels`` channels.

    Kinds: "mkptm" (the design's MK-PTM: one residual unit, no FFN), "lwim", "hmssa", and for the token-mixer
    ablations "mkptm+ffn", "swin" (w×w windows only) and "convformer".
    """
    expansion = config.ffn_expansion
    if kind == "mkptm":
        return Block(channels, MKPTM(channels, config.ratio, config.kernels), None)
    if kind == "mkptm+ffn":
        return Block(channels, MKPTM(channels, config.ratio, config.kernels), expansion)
    if kind == "lwim":
        mixer = LWIM(channels, config.head_dim, config.latent_pool, config.latent_window, config.gate_kernel, axis)
        return Block(channels, mixer, expansion)
    if kind == "hmssa":
        return Block(channels, HMSSA(channels, config.head_dim, config.window, config.use_2w), expansion)
    if kind == "swin":
        return Block(channels, HMSSA(channels, config.head_dim, config.window, use_2w=False), expansion)
    if kind == "convformer":
        return Block(channels, SepConv(channels), expansion)
    raise ValueError(f"unknown block kind {kind!r}")
