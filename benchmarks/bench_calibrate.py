"""Calibration accuracy and time: does `hsra calibrate` find the geometry a capture was taken with?

    python benchmarks/bench_calibrate.py                  # 40 simulated offsets + the 5 real captures
    python benchmarks/bench_calibrate.py --trials 20 --threads 2 --model gap-tv

Part 1 (simulated): KAIST scenes 01–05 (../shared/data/kaist) through 256² windows of the real 660² mask
(../shared/data/tsa-real/mask_660.mat) at random offsets, random step (1–3) and axis, with the field's shot noise
(QE 0.4, 2048 levels). A trial is recovered when offset, step and axis are all exact.

Part 2 (real): each real capture with the real mask embedded at a random place in a larger random mask (its pixels
drawn from the real mask's values). Recovered when the embedding offset, step 2 and the width axis are found; then
the capture is reconstructed with the found and with the true geometry (--model) and both residuals
‖A x̂ − y‖/‖y‖ are printed. Seconds are wall-clock for one calibration (numpy FFTs; torch threads as given).

Skips cleanly when the data is absent. A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hsra_cli.calibrate import calibrate
from hsra_cli.io import read_mask, read_measurement
from hsra_cli.simulate import simulate_measurement

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def simulated(trials: int, seed: int) -> list[dict]:
    with np.load(DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz") as data:
        truth = data["truth"].astype(np.float32) / 255
    mask, _ = read_mask(DATA / "tsa-real" / "mask_660.mat")
    rng = np.random.default_rng(seed)
    rows = []
    size = truth.shape[1]
    for trial in range(trials):
        scene = trial % len(truth)
        top, left = (int(v) for v in rng.integers(0, mask.shape[0] - size + 1, 2))
        step = int(rng.integers(1, 4))
        axis = ("width", "height")[int(rng.integers(0, 2))]
        measurement, _ = simulate_measurement(truth[scene], mask[top : top + size, left : left + size], step=step,
                                              axis=axis, noise="shot", seed=trial)
        start = time.perf_counter()
        result = calibrate([measurement], mask)
        seconds = time.perf_counter() - start
        rows.append({"scene": scene + 1, "true": (top, left, step, axis),
                     "found": (*result.offset, result.step, result.axis), "confident": result.confident,
                     "margin": result.margin, "seconds": seconds})
    return rows


def real(seed: int, model: str, threads: int | None) -> list[dict]:
    from hsra_cli.reconstruct import Reconstructor

    mask, _ = read_mask(DATA / "tsa-real" / "mask_660.mat")
    rng = np.random.default_rng(seed)
    big_shape = (mask.shape[0] + 240, mask.shape[1] + 340)
    reconstructor = Reconstructor(model, device="cpu")
    rows = []
    for number in range(1, 6):
        larger = rng.choice(mask.ravel(), size=big_shape).astype(np.float32)
        top = int(rng.integers(0, big_shape[0] - mask.shape[0] + 1))
        left = int(rng.integers(0, big_shape[1] - mask.shape[1] + 1))
        larger[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
        measurement, loaded = read_measurement(DATA / "tsa-real" / f"scene{number}.mat")
        start = time.perf_counter()
        result = calibrate([measurement], larger)
        seconds = time.perf_counter() - start
        residuals = {}
        for name, offset in (("found", result.offset), ("true", (top, left))):
            if name == "true" and tuple(offset) == tuple(result.offset) and "found" in residuals:
                residuals[name] = residuals["found"]
                continue
            recon = reconstructor.reconstruct(measurement, larger, mask_offset=tuple(offset), key=loaded.key)
            residuals[name] = recon.record["residual"]
        rows.append({"capture": f"scene{number}", "true": (top, left, 2, "width"),
                     "found": (*result.offset, result.step, result.axis), "subpixel": result.subpixel_offset,
                     "confident": result.confident, "margin": result.margin, "seconds": seconds,
                     "mask_shape": big_shape, **{f"residual_{k}": v for k, v in residuals.items()}})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="simulated offsets (KAIST scenes cycled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default="s", help="reconstruction used for the residuals of part 2")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    if not (DATA / "kaist").is_dir() or not (DATA / "tsa-real").is_dir():
        print(f"skipped: {DATA} is not present", file=sys.stderr)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"Simulated: KAIST scenes through 256² windows of mask_660, shot noise; torch threads {torch.get_num_threads()}")
    print(f"{'trial':>5}{'scene':>6}  {'true (row, col, step, axis)':<28}{'found':<28}{'ok':>4}{'margin':>8}{'s':>6}")
    rows = simulated(args.trials, args.seed)
    for i, row in enumerate(rows):
        ok = row["true"] == row["found"]
        print(f"{i:>5}{row['scene']:>6}  {str(row['true']):<28}{str(row['found']):<28}{'yes' if ok else 'NO':>4}"
              f"{row['margin']:>8.3f}{row['seconds']:>6.2f}")
    recovered = sum(r["true"] == r["found"] for r in rows)
    confident = sum(r["confident"] for r in rows)
    times = [r["seconds"] for r in rows]
    print(f"recovered exactly: {recovered}/{len(rows)}; marked confident: {confident}/{len(rows)}; "
          f"seconds per calibration: median {np.median(times):.2f}, max {max(times):.2f}")
    if args.skip_real:
        return 0
    print()
    print(f"Real captures, mask_660 embedded in a larger random mask; residuals with {args.model}")
    print(f"{'capture':<8}{'mask':>10}  {'true':<24}{'found':<24}{'sub-pixel':>16}{'ok':>4}{'s':>6}"
          f"{'res. found':>11}{'res. true':>10}")
    rows = real(args.seed, args.model, args.threads)
    for row in rows:
        ok = row["true"] == row["found"]
        sub = f"{row['subpixel'][0]:.2f},{row['subpixel'][1]:.2f}"
        shape = f"{row['mask_shape'][0]}×{row['mask_shape'][1]}"
        print(f"{row['capture']:<8}{shape:>10}  {str(row['true']):<24}{str(row['found']):<24}{sub:>16}"
              f"{'yes' if ok else 'NO':>4}{row['seconds']:>6.2f}{row['residual_found']:>11.4f}{row['residual_true']:>10.4f}")
    recovered = sum(r["true"] == r["found"] for r in rows)
    print(f"recovered: {recovered}/{len(rows)}; seconds per capture: max {max(r['seconds'] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
