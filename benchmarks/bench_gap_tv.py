"""GAP-TV speed and accuracy: 80 iterations on a real 660×714 capture, and the KAIST scenes 01–05.

    python benchmarks/bench_gap_tv.py                         # numba and torch TV loops, 1 and 2 threads
    python benchmarks/bench_gap_tv.py --backends numba --threads 2 --kaist-backends numba

Part 1: seconds for `Reconstructor("gap-tv")` on ../shared/data/tsa-real/scene1.mat (80 accelerated iterations,
the field's normalisation) for each TV loop (HSRA_TV_BACKEND=numba|torch) and thread count, each in a fresh
process after one warm-up call (numba compiles on first use and caches; the first call is not timed).
Part 2: PSNR/SSIM on KAIST scenes 01–05 simulated with mask_256.mat (field convention), as bench_kaist.py.
Skips cleanly when the data is absent. A benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def one(threads: int, repeats: int) -> dict:
    import torch

    from hsra_cli.io import read_mask, read_measurement
    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.solvers.gap_tv import tv_backend

    torch.set_num_threads(threads)
    measurement, loaded = read_measurement(DATA / "tsa-real" / "scene1.mat")
    mask, _ = read_mask(DATA / "tsa-real" / "mask_660.mat")
    reconstructor = Reconstructor("gap-tv", device="cpu")
    warm = Reconstructor("gap-tv", device="cpu", model_kwargs={"iterations": 1})
    warm.reconstruct(measurement[:64, :118], mask[:64, :64], key=loaded.key)  # compile / load the TV kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = reconstructor.reconstruct(measurement, mask, key=loaded.key)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "all": times, "residual": result.record["residual"],
            "backend": tv_backend(torch.zeros(1)), "threads": torch.get_num_threads()}


def kaist(backend: str) -> dict:
    env = {**os.environ, "HSRA_TV_BACKEND": backend}
    script = Path(__file__).with_name("bench_kaist.py")
    out = subprocess.run([sys.executable, str(script), "--model", "gap-tv", "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numba,torch")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kaist-backends", default="numba,torch")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.repeats)))
        return 0
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not present", file=sys.stderr)
        return 0
    print("GAP-TV, 80 iterations, real capture scene1 (660×714)")
    print(f"{'TV loop':<8}{'threads':>8}{'seconds':>9}{'residual':>10}  all runs")
    for backend in args.backends.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            env = {**os.environ, "HSRA_TV_BACKEND": backend}
            out = subprocess.run([sys.executable, __file__, "--one", str(threads), "--repeats", str(args.repeats)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            row = json.loads(out)
            runs = ", ".join(f"{t:.1f}" for t in row["all"])
            print(f"{row['backend']:<8}{row['threads']:>8}{row['seconds']:>9.2f}{row['residual']:>10.4f}  {runs}",
                  flush=True)
    if not args.kaist_backends:
        return 0
    print()
    print("KAIST scenes 01–05 (mask_256, no noise), field convention")
    print(f"{'TV loop':<8}" + "".join(f"{'scene ' + str(i):>10}" for i in range(1, 6)) + f"{'mean dB':>9}{'SSIM':>7}{'s/scene':>9}")
    for backend in args.kaist_backends.split(","):
        result = kaist(backend)
        scenes = result["scenes"]
        print(f"{backend:<8}" + "".join(f"{s['psnr']:>10.2f}" for s in scenes)
              + f"{result['mean']['psnr']:>9.2f}{result['mean']['ssim']:>7.3f}{np.mean([s['seconds'] for s in scenes]):>9.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
