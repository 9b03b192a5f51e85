"""Held-out accuracy of a method on the three validation cases of the shipped weights.

    python benchmarks/bench_cases.py --model hsra-s                 # network alone and as `hsra reconstruct` gives it
    python benchmarks/bench_cases.py --model gap-tv
    python benchmarks/bench_cases.py --model hsra-s --weights runs/x/hsra-s/model.safetensors --json

The cases (none of them is ever trained on by the shipped recipes, which hold KAIST scene 05 out):

* ``kaist05``: KAIST scene 05 through the KAIST mask (``mask_256.mat``), the field's benchmark setting;
* ``sample``: the bundled colour-chart sample (``samples/colorchecker``) through its random binary mask;
* ``kaist05-real``: KAIST scene 05 through the centre 256² window (offset 202,202) of the real 660² mask.

``--cases unseen`` (or the names) adds scene 05 through masks no shipped recipe trained on, to judge weights that
claim "any mask": ``kaist05-binary11`` and ``kaist05-binary12`` (generated random binary masks, seeds 11 and 12),
``kaist05-grey13`` (a generated random grey mask, seed 13), and two other windows of the real mask,
``kaist05-real0`` (offset 0,0) and ``kaist05-real404`` (offset 404,404; the any-mask recipes draw random
windows of the real mask, so these two are less unseen than the generated ones).

Measurements are noiseless, simulated with the project's operator; metrics are the field convention (uint8,
as the papers' tables). For a network, ``alone`` is ``--refine 0`` and ``default`` is what ``hsra reconstruct``
gives without options (``ensemble``: with ``--self-ensemble``; ``adapted``: with ``--adapt STEPS``). Needs ../shared/data (skips cleanly without it, except the sample case).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REAL_WINDOW = (202, 202)
CASES = ("kaist05", "sample", "kaist05-real")
UNSEEN = {  # case -> ("generated", kind, seed) or ("real", top, left)
    "kaist05-binary11": ("generated", "random-binary", 11),
    "kaist05-binary12": ("generated", "random-binary", 12),
    "kaist05-grey13": ("generated", "random-grey", 13),
    "kaist05-real0": ("real", 0, 0),
    "kaist05-real404": ("real", 404, 404),
}


def load_case(name: str):
    """(measurement H×W' field scale, mask H×W, truth H×W×C) of a case, or None when its data is absent."""
    from hsra_cli.io import read_cube, read_mask, read_measurement
    from hsra_cli.simulate import generate_mask, simulate_measurement

    if name == "sample":
        sample = ROOT / "samples" / "colorchecker"
        measurement, _ = read_measurement(sample / "meas" / "colorchecker.mat")
        mask, _ = read_mask(sample / "meas" / "mask.mat")
        truth, _ = read_cube(sample / "cube" / "colorchecker.mat")
        return measurement.astype(np.float32), mask.astype(np.float32), truth.astype(np.float32)
    truth_file = DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz"
    if not truth_file.exists():
        return None
    with np.load(truth_file) as data:
        truth = data["truth"][4].astype(np.float32) / 255
    if name not in ("kaist05", "kaist05-real") and name not in UNSEEN:
        raise SystemExit(f"unknown case {name!r}; expected: {', '.join([*CASES, *UNSEEN, 'unseen'])}")
    kind = UNSEEN.get(name, ("kaist",) if name == "kaist05" else ("real", *REAL_WINDOW))
    if kind[0] == "kaist":
        mask, _ = read_mask(DATA / "kaist" / "mask_256.mat")
    elif kind[0] == "generated":
        mask = generate_mask(256, 256, kind[1], kind[2])
    else:
        if not (DATA / "tsa-real" / "mask_660.mat").exists():
            return None
        big, _ = read_mask(DATA / "tsa-real" / "mask_660.mat")
        top, left = kind[1], kind[2]
        mask = big[top : top + 256, left : left + 256]
    mask = np.ascontiguousarray(mask, dtype=np.float32)
    measurement, _ = simulate_measurement(truth, mask)
    return measurement, mask, truth


def score(reconstructor, case) -> dict:
    from hsra_cli.metrics import psnr, ssim

    measurement, mask, truth = case
    start = time.perf_counter()
    cube = reconstructor.reconstruct(measurement, mask, normalize="none").cube
    seconds = time.perf_counter() - start
    return {"psnr": psnr(cube, truth, convention="field"), "ssim": ssim(cube, truth, convention="field"),
            "seconds": seconds}


def evaluate(model: str, weights: Path | None = None, cases=CASES, device: str = "auto",
             self_ensemble: bool = False, adapt: int = 0) -> dict:
    """{case: {"alone": scores, "default": scores}} for a network, {case: {"default": scores}} for a solver;
    ``self_ensemble`` adds "ensemble" (the default with ``--self-ensemble``) and ``adapt`` adds "adapted" (the
    default with ``--adapt STEPS``) for a network."""
    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.registry import get_entry

    variants = {"default": None}
    if get_entry(model).needs_weights:
        variants = {"alone": 0, "default": None}
    reconstructors = {k: Reconstructor(model, weights=weights, device=device, refine=v) for k, v in variants.items()}
    if self_ensemble and "alone" in variants:
        reconstructors["ensemble"] = Reconstructor(model, weights=weights, device=device, self_ensemble=True)
    if adapt and "alone" in variants:
        reconstructors["adapted"] = Reconstructor(model, weights=weights, device=device, adapt=adapt)
    results = {}
    for name in cases:
        case = load_case(name)
        if case is None:
            continue
        results[name] = {k: score(r, case) for k, r in reconstructors.items()}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hsra-s")
    parser.add_argument("--weights", type=Path, default=None, help="another .safetensors file (or a model folder)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--self-ensemble", action="store_true", help="also score the default with --self-ensemble")
    parser.add_argument("--adapt", type=int, default=0, metavar="STEPS", help="also score the default with --adapt STEPS")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights
    if weights is not None and weights.is_dir():
        weights = weights / "model.safetensors"
    cases = [c for part in args.cases.split(",") if part for c in (UNSEEN if part == "unseen" else [part])]
    results = evaluate(args.model, weights, cases, args.device, args.self_ensemble, args.adapt)
    if not results:
        print(f"skipped: no case's data is present ({DATA})", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps({"model": args.model, "weights": str(weights) if weights else None, "cases": results},
                         indent=2))
        return 0
    print(f"{args.model}{' (' + str(weights) + ')' if weights else ''}: field convention, noiseless, "
          f"{torch.get_num_threads()} threads")
    print(f"{'case':<18}{'variant':<9}{'PSNR dB':>9}{'SSIM':>8}{'seconds':>9}")
    for name, variants in results.items():
        for variant, s in variants.items():
            print(f"{name:<18}{variant:<9}{s['psnr']:>9.2f}{s['ssim']:>8.3f}{s['seconds']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
