"""How fast one CPU core makes synthetic-stream scenes, and how many stream workers a training rate needs.

    python benchmarks/bench_synth.py                                   # 128² and 256², 30 scenes each
    python benchmarks/bench_synth.py --target 500 --patch 256 --synthetic-fraction 0.5 --mosaic

`hsra train --synthetic-stream` draws a fresh scene (``hsra_cli.synth.SyntheticScenes``) for every synthetic
crop: with mosaics on, half of the samples are one ``P²`` crop and half are four ``(P/2)²`` crops, so a sample
needs on average ``f · (½·1 + ½·4)`` scenes (``f`` the synthetic share), ``f/2`` of them at ``P²`` and ``2f`` at
``(P/2)²``. On a GPU the worker processes (``--workers``) make them ahead; when they cannot keep up, the
step waits and the data share of ``bench_train.py`` rises. This script measures the time per scene on one core
(in this process, one thread, the same function the workers run) and prints the core-seconds per second
that ``--target`` samples/s would cost, i.e. the number of fully busy workers it needs. A benchmark, not a
test: the numbers depend on the machine and its load (other jobs on the same cores slow it down).

``--lookahead`` also replays the queue of the stream against a simulated device step: a sampler with
``--workers`` workers draws ``--batches`` batches, sleeping ``--step-ms`` after each (the GPU's step, which the
host does not wait for), once with the old fixed look-ahead of 8 scenes per size and once with today's default
(:func:`hsra_cli.train.sampler.stream_lookahead`), and prints the share of the time spent waiting for scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def time_scenes(size: int, count: int, seed: int = 1) -> dict:
    """Seconds per scene of the stream's scene maker at ``size``², over ``count`` scenes (after two warm-ups)."""
    from hsra_cli.bands import default_wavelengths
    from hsra_cli.synth import stream_scene

    wavelengths = tuple(float(w) for w in default_wavelengths(28))
    for index in range(2):  # libraries, caches, the natural images
        stream_scene(size, index, wavelengths, seed)
    start = time.perf_counter()
    for index in range(2, 2 + count):
        stream_scene(size, index, wavelengths, seed)
    seconds = (time.perf_counter() - start) / count
    return {"size": size, "scenes": count, "ms_per_scene": 1000 * seconds, "scenes_per_s_per_core": 1 / seconds}


def lookahead_wait(prefetch: int | None, workers: int, batch: int, patch: int, step_s: float, batches: int) -> dict:
    """Share of wall time a sampler waits for stream scenes when each batch is followed by a device step."""
    import numpy as np

    from hsra_cli.train.sampler import MeasurementModel, PatchSampler, SyntheticStream

    stream = SyntheticStream(28, 1.0, seed=3, workers=workers, prefetch=prefetch, batch_size=batch)
    sampler = PatchSampler([], np.ones((2 * patch, 2 * patch), np.float32), MeasurementModel(bands=28),
                           patch_size=patch, batch_size=batch, stream=stream, seed=3)
    try:
        sampler.next_batch()
        time.sleep(2.0)  # workers started, first queue filled
        stream.wait_s = 0.0
        start = time.perf_counter()
        for _ in range(batches):
            sampler.next_batch()
            time.sleep(step_s)
        total = time.perf_counter() - start
    finally:
        sampler.close()
    return {"prefetch": stream.prefetch, "wait_s": stream.wait_s, "total_s": total, "wait_share": stream.wait_s / total}


def demand(patch: int, fraction: float, mosaic: bool) -> dict[int, float]:
    """Synthetic scenes per training sample, by scene side."""
    if not mosaic:
        return {patch: fraction}
    return {patch: fraction / 2, patch // 2: 2 * fraction}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=256, help="training patch side (default 256)")
    parser.add_argument("--synthetic-fraction", type=float, default=0.5, help="share of crops from the stream")
    parser.add_argument("--mosaic", action=argparse.BooleanOptionalAction, default=True, help="four-crop mosaics")
    parser.add_argument("--target", type=float, default=500.0, help="training samples/s to plan for (default 500)")
    parser.add_argument("--scenes", type=int, default=30, help="scenes timed per size")
    parser.add_argument("--lookahead", action="store_true", help="also replay the stream's queue (see above)")
    parser.add_argument("--workers", type=int, default=1, help="--lookahead: worker processes")
    parser.add_argument("--batch", type=int, default=16, help="--lookahead: samples per batch")
    parser.add_argument("--lookahead-patch", type=int, default=64, help="--lookahead: patch side")
    parser.add_argument("--step-ms", type=float, default=300.0, help="--lookahead: simulated device step")
    parser.add_argument("--batches", type=int, default=10, help="--lookahead: batches timed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    needs = demand(args.patch, args.synthetic_fraction, args.mosaic)
    rows = [time_scenes(size, args.scenes) for size in sorted(needs)]
    core_seconds = sum(needs[row["size"]] * row["ms_per_scene"] / 1000 for row in rows)
    plan = {
        "patch": args.patch, "synthetic_fraction": args.synthetic_fraction, "mosaic": args.mosaic,
        "scenes_per_sample": needs, "core_s_per_sample": core_seconds, "target_samples_per_s": args.target,
        "busy_workers_needed": core_seconds * args.target, "samples_per_s_per_worker": 1 / core_seconds,
        "load_average": os.getloadavg()[0],
    }
    waits = []
    if args.lookahead:
        waits = [lookahead_wait(prefetch, args.workers, args.batch, args.lookahead_patch, args.step_ms / 1000,
                                args.batches) for prefetch in (8, None)]
    if args.json:
        print(json.dumps({"scenes": rows, "plan": plan, "lookahead": waits}, indent=1))
        return 0
    for row in rows:
        print(f"{row['size']:>4}²  {row['ms_per_scene']:7.1f} ms/scene  {row['scenes_per_s_per_core']:7.1f} scenes/s per core")
    per_sample = ", ".join(f"{n:g} at {size}²" for size, n in sorted(needs.items()))
    print(f"patch {args.patch}², {args.synthetic_fraction:.0%} synthetic, mosaics {'on' if args.mosaic else 'off'}: "
          f"{per_sample} scenes per sample = {1000 * core_seconds:.1f} core-ms per sample")
    print(f"one worker feeds {plan['samples_per_s_per_worker']:.0f} samples/s; {args.target:g} samples/s needs "
          f"{plan['busy_workers_needed']:.1f} fully busy workers (load average here {plan['load_average']:.1f})")
    for row in waits:
        print(f"look-ahead {row['prefetch']:>3} scenes per size ({args.workers} worker(s), batch {args.batch} at "
              f"{args.lookahead_patch}², {args.step_ms:g} ms device step): waited {row['wait_s']:.2f} s of "
              f"{row['total_s']:.2f} s ({row['wait_share']:.0%})")
    return 0


if __name__ == "__main__":  # the guard matters: stream workers are spawned and import this module
    raise SystemExit(main())
