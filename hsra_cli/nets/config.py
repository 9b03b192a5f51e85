"""The architecture settings of the HSRA family: one frozen dataclass, serialisable to JSON.

The physics settings (bands, dispersion step and axis) are *not* part of this configuration: they are
constructor arguments of every model (``bands=28, step=2, axis="width"``) because one architecture can be
trained for several optical systems. See docs/architecture.md for the design.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from ..errors import UsageError

#: Level-1 encoder choices. "hsra" is the design (n_mk MK-PTM units then n_lwim LWIM blocks); the others are
#: the token-mixer ablations, where the whole level-1 encoder becomes one pre-norm block (mixer + FFN) with
#: that mixer.
LEVEL1_MIXERS = ("hsra", "convformer", "mkptm", "swin", "hmssa")


@dataclass(frozen=True)
class HsraConfig:
    """Architecture of an HSRA network (end-to-end when ``stages == 0``, HSRA-DUM-k when ``stages == k``).

    Block counts follow the doc's notation (n_mk, n_lwim | n2 | n3 | n2d | n1d): encoder level 1 (full
    resolution, ``dim`` channels), encoder level 2 (1/2, 2·dim), bottleneck (1/4, 4·dim), decoder level 2, decoder
    level 1. Every block count except ``n_mk + n_lwim`` applies to HM-SSA blocks.
    """

    #: channels C at level 1 (2C and 4C at levels 2 and 3)
    dim: int = 28
    #: attention head width; heads = channels / head_dim at every level
    head_dim: int = 28
    n_mk: int = 1
    n_lwim: int = 1
    n2: int = 1
    n3: int = 1
    n2d: int = 1
    n1d: int = 1
    #: fraction r of the MK-PTM's expanded channels that the depthwise kernels mix (the rest pass through)
    ratio: float = 1.0
    #: MK-PTM depthwise kernel sizes, summed
    kernels: tuple[int, ...] = (3, 9)
    #: HM-SSA window w (pixels); the second granularity is 2w
    window: int = 8
    #: HM-SSA attends at both w and 2w (False: w only, the "no-2w" ablation)
    use_2w: bool = True
    #: level-1 encoder: "hsra" or a token-mixer ablation (see LEVEL1_MIXERS)
    level1_mixer: str = "hsra"
    #: LWIM: average-pooling factor of the latent path
    latent_pool: int = 4
    #: LWIM latent window (across, along) the dispersion axis, in latent pixels
    latent_window: tuple[int, int] = (4, 16)
    #: LWIM gate: depthwise kernel size
    gate_kernel: int = 5
    #: FFN hidden channels = ffn_expansion × channels
    ffn_expansion: int = 4
    #: 0: end-to-end network; k ≥ 1: deep unfolding with k stages, one prior per stage
    stages: int = 0

    def __post_init__(self):
        # JSON turns tuples into lists; accept both so a config read back from config.json is equal to the original.
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "latent_window", tuple(int(k) for k in self.latent_window))
        object.__setattr__(self, "ratio", float(self.ratio))
        self._validate()

    def _validate(self) -> None:
        def bad(message: str):
            raise UsageError(f"invalid HSRA configuration: {message}")

        for name in ("dim", "head_dim", "window", "latent_pool", "gate_kernel", "ffn_expansion"):
            if int(getattr(self, name)) < 1:
                bad(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("n_mk", "n_lwim", "n2", "n3", "n2d", "n1d", "stages"):
            if int(getattr(self, name)) < 0:
                bad(f"{name} must be zero or more, got {getattr(self, name)!r}")
        if self.dim % self.head_dim:
            bad(f"dim ({self.dim}) must be a multiple of head_dim ({self.head_dim})")
        if not 0.0 < self.ratio <= 1.0:
            bad(f"ratio must be in (0, 1], got {self.ratio}")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            bad(f"kernels must be odd sizes, got {self.kernels}")
        if len(self.latent_window) != 2 or min(self.latent_window) < 1:
            bad(f"latent_window must be two positive sizes, got {self.latent_window}")
        if self.level1_mixer not in LEVEL1_MIXERS:
            bad(f"level1_mixer must be one of {', '.join(LEVEL1_MIXERS)}, got {self.level1_mixer!r}")

    # ------------------------------------------------------------------------------------------------
    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to a multiple of this many pixels (both axes).

        It must hold a whole number of the bottleneck's largest windows (2w at 1/4 resolution: 64 px for w = 8)
        and of LWIM's latent windows (latent_pool × latent_window: 16 × 64 px).
        """
        largest = 4 * (2 * self.window if self.use_2w else self.window)
        latent = self.latent_pool * max(self.latent_window)
        multiple = largest
        while multiple % latent:
            multiple += largest
        return multiple

    @property
    def blocks(self) -> str:
        """Block counts in the doc's notation, e.g. ``(1,1 | 1 | 1 | 1 | 1)``."""
        return f"({self.n_mk},{self.n_lwim} | {self.n2} | {self.n3} | {self.n2d} | {self.n1d})"

    def to_dict(self) -> dict:
        """Plain JSON-ready data (tuples as lists)."""
        data = asdict(self)
        data["kernels"] = list(self.kernels)
        data["latent_window"] = list(self.latent_window)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "HsraConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown HSRA configuration keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def digest(self) -> str:
        """Short stable hash of the configuration (keys the GFLOP cache)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
