"""HSRA networks: blocks, the U-shaped prior, the unfolding network and their registered configurations.

Each registration below is one line: a name, its aliases, a description and the architecture as
:class:`HsraConfig` fields. Every factory also takes the physics (``bands=28, step=2, axis="width"``) and any
configuration field as a keyword (which is how ``hsra_cli.weights`` rebuilds a model from its config.json).
"""

from __future__ import annotations

from ..registry import register_model, register_pretrained_tags
from .config import HsraConfig
from .e2e import HsraNet
from .unfolding import HsraUnfolding

__all__ = ["HsraConfig", "HsraNet", "HsraUnfolding", "build"]


def build(config: HsraConfig, bands: int = 28, step: int = 2, axis: str = "width"):
    """The network for ``config``: :class:`HsraUnfolding` when ``config.stages`` ≥ 1, else :class:`HsraNet`."""
    network = HsraUnfolding if config.stages else HsraNet
    return network(config, bands=bands, step=step, axis=axis)


def _register(name: str, aliases: tuple[str, ...], description: str, **arch) -> None:
    base = HsraConfig(**arch)

    def factory(bands: int = 28, step: int = 2, axis: str = "width", config=None, **overrides):
        fields = base.to_dict()
        if config is not None:
            fields.update(config.to_dict() if isinstance(config, HsraConfig) else dict(config))
        fields.update(overrides)
        return build(HsraConfig.from_dict(fields), bands=bands, step=step, axis=axis)

    factory.__name__ = name.replace("-", "_").replace(".", "_")
    kind = "unfolding" if base.stages else "e2e"
    register_model(name, aliases=aliases, description=description, kind=kind, config=base.to_dict())(factory)


_DUM = dict(n_mk=2, n_lwim=1, n2=1, n3=4, n2d=1, n1d=1)

# fmt: off
_register("hsra-s", ("s",), "HSRA-S, end-to-end, blocks (1,1|1|1|1|1)", n_mk=1, n2=1, n3=1, n2d=1, n1d=1)
_register("hsra-m", ("m",), "HSRA-M, end-to-end, blocks (3,1|1|4|1|1)", n_mk=3, n2=1, n3=4, n2d=1, n1d=1)
_register("hsra-l", ("l",), "HSRA-L, end-to-end, blocks (3,1|5|6|5|2)", n_mk=3, n2=5, n3=6, n2d=5, n1d=2)
_register("hsra-dum-3stg", ("dum3",), "HSRA-DUM, 3 unfolding stages, priors (2,1|1|4|1|1)", stages=3, **_DUM)
_register("hsra-dum-4stg", ("dum4",), "HSRA-DUM, 4 unfolding stages, priors (2,1|1|4|1|1)", stages=4, **_DUM)
# An unfolding network at CPU-trainable cost: 2 stages, each with HSRA-S's prior.
_register("hsra-dum-2stg", ("dum2",), "HSRA-DUM, 2 unfolding stages, HSRA-S priors (1,1|1|1|1|1)",
          stages=2, n_mk=1, n2=1, n3=1, n2d=1, n1d=1)
# One stage more, same priors: grown from hsra-dum-2stg weights (hsra train --model hsra-dum-3stg-s
# --pretrained hsra-dum-2stg.any starts as exactly that network).
_register("hsra-dum-3stg-s", ("dum3s",), "HSRA-DUM, 3 unfolding stages, HSRA-S priors (1,1|1|1|1|1)",
          stages=3, n_mk=1, n2=1, n3=1, n2d=1, n1d=1)
# Ablations of the poster, at HSRA-S level (same skeleton).
_register("hsra-s-all-convformer", (), "ablation: level-1 encoder is one ConvFormer block", level1_mixer="convformer")
_register("hsra-s-all-mkptm", (), "ablation: level-1 encoder is one MK-PTM + FFN block", level1_mixer="mkptm")
_register("hsra-s-all-swin", (), "ablation: level-1 encoder is one 8×8-window attention block", level1_mixer="swin")
_register("hsra-s-all-hmssa", (), "ablation: level-1 encoder is one HM-SSA block", level1_mixer="hmssa")
_register("hsra-s-mkptm-r0.5", (), "ablation: MK-PTM mixes half of its channels (r = 0.5)", ratio=0.5)
_register("hsra-s-mkptm-3x3", (), "ablation: MK-PTM with the 3×3 kernel only", kernels=(3,))
_register("hsra-s-no-lwim", (), "ablation: HSRA-S without LWIM", n_lwim=0)
_register("hsra-s-no-2w", (), "ablation: HM-SSA attends in w×w windows only (no 2w)", use_2w=False)
# fmt: on

# Published weights (folders models/NAME.TAG): the first tag is what the bare name loads.
register_pretrained_tags("hsra-s", ("any", "kaist"))
register_pretrained_tags("hsra-dum-2stg", ("any", "kaist"))
