"""Accuracy and time of a method on the KAIST scenes in ../shared/data (simulated with mask_256.mat).

    python benchmarks/bench_kaist.py --model gap-tv
    python benchmarks/bench_kaist.py --model s --scenes 5 --json
    python benchmarks/bench_kaist.py --model s --refine 0      # the network alone

Prints PSNR/SSIM (field convention, the papers' tables) and seconds per scene. Skips cleanly when the data is
absent. A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io
import torch

from hsra_cli.metrics import evaluate_cube
from hsra_cli.reconstruct import Reconstructor
from hsra_cli.simulate import simulate_measurement

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaist"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gap-tv")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenes", default="1,2,3,4,5", help="1-based scene numbers, comma separated")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--refine", type=int, default=None, help="refinement iterations after a network (default: hsra reconstruct's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not present", file=sys.stderr)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    with np.load(DATA / "kaist_scenes01-05_truth_uint8.npz") as data:
        truth = data["truth"].astype(np.float32) / 255
    mask = scipy.io.loadmat(DATA / "mask_256.mat")["mask"].astype(np.float32)
    reconstructor = Reconstructor(args.model, weights=args.weights, device=args.device, refine=args.refine)
    rows = []
    for number in (int(s) for s in args.scenes.split(",")):
        cube = truth[number - 1]
        measurement, _ = simulate_measurement(cube, mask)
        start = time.perf_counter()
        result = reconstructor.reconstruct(measurement, mask, normalize="none")
        seconds = time.perf_counter() - start
        scores = evaluate_cube(result.cube, cube, convention="field")
        rows.append({"scene": f"scene{number:02d}", "seconds": seconds, **scores})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "scene"}
    if args.json:
        print(json.dumps({"model": reconstructor.entry.name, "refine": reconstructor.refine, "device": str(reconstructor.device),
                          "threads": torch.get_num_threads(), "scenes": rows, "mean": mean}, indent=2))
        return 0
    refined = f" + {reconstructor.refine} refinement iterations" if reconstructor.refine else ""
    print(f"{reconstructor.entry.name}{refined} on {reconstructor.device} ({torch.get_num_threads()} threads), field convention")
    print(f"{'scene':<10}{'PSNR dB':>9}{'SSIM':>8}{'SAM °':>8}{'seconds':>9}")
    for r in rows + [{"scene": "mean", **mean}]:
        print(f"{r['scene']:<10}{r['psnr']:>9.2f}{r['ssim']:>8.3f}{r['sam']:>8.2f}{r['seconds']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
