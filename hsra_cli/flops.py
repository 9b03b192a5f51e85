"""The one FLOP counter of the project, and the committed cache of the registered models' counts.

Convention of the field (docs/metrics.md, *Compute*): fvcore's count — one multiply-add is one FLOP, element-wise
ops, softmax and shifts count zero, LayerNorm 5 per element, bilinear up-sampling 4 per output element — at
batch 1 for a 28 × 256 × 256 cube (measurement 1 × 256 × 310 and a 256 × 256 mask), in units of 10⁹.

Counting all registered models takes minutes on a small CPU, so ``hsra models`` reads
``hsra_cli/nets/gflops.json``, keyed by model name and a hash of its configuration and physics. Refresh it with
``python -m hsra_cli.flops --update`` after changing an architecture; a test checks it against fresh counts.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

CACHE_PATH = Path(__file__).parent / "nets" / "gflops.json"
#: The size every cached count refers to.
REFERENCE_SIZE = (256, 256)


class _Traced(nn.Module):
    """fvcore traces ``forward(*tensors)``: hold the operator so the traced call takes the measurement only."""

    def __init__(self, model: nn.Module, operator: nn.Module):
        super().__init__()
        self.model = model
        self.operator = operator

    def forward(self, measurement: torch.Tensor) -> torch.Tensor:
        return self.model(measurement, self.operator)


def count_gflops(model: nn.Module, height: int = 256, width: int = 256) -> float:
    """fvcore GFLOPs (10⁹ multiply-adds) of one ``model(measurement, mask)`` call for a ``height × width`` cube.

    Uses ``model.example_inputs(height, width)`` (batch 1). Attention is counted on its explicit-matmul path
    (fvcore cannot see fused attention kernels); unsupported-op warnings are silenced.
    """
    with warnings.catch_warnings():  # fvcore's import uses torch.jit.script, deprecated in recent torch
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    from .nets.blocks import math_attention
    from .physics import as_operator

    measurement, mask = model.example_inputs(height, width)
    bands, step, axis = getattr(model, "bands", 28), getattr(model, "step", 2), getattr(model, "axis", "width")
    operator = as_operator(mask, measurement, bands, step, axis)
    traced = _Traced(model, operator)
    was_training = model.training
    model.eval()
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), math_attention(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(traced, (measurement,))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            total = analysis.total()
    finally:
        fvcore_logger.setLevel(level)
        model.train(was_training)
    return total / 1e9


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------------
# cache of the registered models' counts
def cache_key(name: str) -> str:
    """``name@hash``: the hash covers the registered configuration and the reference physics and size."""
    import hashlib

    from .registry import get_entry

    entry = get_entry(name)
    payload = json.dumps({"config": entry.config, "size": REFERENCE_SIZE, "bands": 28, "step": 2}, sort_keys=True)
    return f"{entry.name}@{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def read_cache(path: Path = CACHE_PATH) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cached_entry(name: str, path: Path = CACHE_PATH) -> dict | None:
    """``{"name", "gflops", "params"}`` of a registered model from the cache; None when absent or stale."""
    return read_cache(path).get("models", {}).get(cache_key(name))


def cached_gflops(name: str, path: Path = CACHE_PATH) -> float | None:
    """The cached GFLOPs of a registered model, or None when absent or stale (configuration changed)."""
    entry = cached_entry(name, path)
    return None if entry is None else float(entry["gflops"])


def update_cache(names: list[str] | None = None, path: Path = CACHE_PATH, progress=None) -> dict:
    """Count the registered networks (all that need weights, or ``names``) and write the cache atomically."""
    from .registry import create_model, get_entry, list_models

    names = names or [n for n in list_models() if get_entry(n).needs_weights]
    data = read_cache(path)
    models = {k: v for k, v in data.get("models", {}).items() if k.split("@")[0] not in names}
    for name in names:
        torch.manual_seed(0)
        model = create_model(name)
        gflops = count_gflops(model, *REFERENCE_SIZE)
        models[cache_key(name)] = {
            "name": name,
            "gflops": round(gflops, 4),
            "params": count_parameters(model),
        }
        if progress:
            progress(name, gflops)
    data = {
        "about": "fvcore GFLOPs at batch 1, 28×256×256 cube; written by `python -m hsra_cli.flops --update`",
        "models": dict(sorted(models.items())),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return data


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hsra_cli.flops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="recount the registered models and rewrite the cache")
    parser.add_argument("names", nargs="*", help="only these models (default: all networks)")
    args = parser.parse_args(argv)
    if args.update:
        update_cache(args.names or None, progress=lambda n, g: print(f"{n:24s} {g:8.3f} GFLOPs", flush=True))
    else:
        from .registry import create_model

        for name in args.names or ["hsra-s"]:
            print(f"{name:24s} {count_gflops(create_model(name)):8.3f} GFLOPs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
