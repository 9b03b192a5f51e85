"""How many GAP-TV refinement iterations (and how much TV) help a network, per kind of coded aperture.

    python benchmarks/bench_refine.py --model hsra-dum-2stg.any --scenes 10 --threads 1
    python benchmarks/bench_refine.py --model hsra-s.any --iterations 0,5,20 --tv-weights 0.01

Tuning data only: procedural scenes (:func:`hsra_cli.synth.procedural_scene`) drawn from ``--seed`` (by default
987654, a stream no shipped recipe trains on), never KAIST scene 05 or the bundled sample. Each scene is measured
(noiselessly, or with ``--noise shot``) through each mask kind:

* ``binary``: a random binary code, fill 0.5, a fresh seed per scene (the sample's kind, not its seed);
* ``kaist``: the KAIST 256² grey-level mask (needs ../shared/data, else skipped);
* ``real``: a random 256² window of the real 660² grey-level mask, away from the centre window that
  ``bench_cases.py`` validates on (needs ../shared/data, else skipped).

The network runs once per scene and mask; every (iterations, TV weight) pair then refines that same estimate.
Prints the mean field-convention PSNR per mask kind and pair, and the gain over the network alone.
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
HELD_OUT_WINDOW = (202, 202)  # bench_cases.py's real-mask window: never drawn here


def masks_for(scene_index: int, seed: int, kinds, size: int = 256) -> dict:
    from hsra_cli.io import read_mask
    from hsra_cli.simulate import generate_mask

    rng = np.random.default_rng(seed + 7919 * scene_index)
    masks = {}
    if "binary" in kinds:
        masks["binary"] = generate_mask(size, size, "random-binary", seed=int(rng.integers(1, 2**31)), fill=0.5)
    if "kaist" in kinds and (DATA / "kaist" / "mask_256.mat").exists():
        masks["kaist"] = np.ascontiguousarray(read_mask(DATA / "kaist" / "mask_256.mat")[0][:size, :size],
                                              dtype=np.float32)
    if "real" in kinds and (DATA / "tsa-real" / "mask_660.mat").exists():
        big = read_mask(DATA / "tsa-real" / "mask_660.mat")[0]
        while True:
            top, left = (int(v) for v in rng.integers(0, big.shape[0] - size + 1, size=2))
            if max(abs(top - HELD_OUT_WINDOW[0]), abs(left - HELD_OUT_WINDOW[1])) >= size // 2:
                break
        masks["real"] = np.ascontiguousarray(big[top : top + size, left : left + size], dtype=np.float32)
    return masks


def study(model: str, weights, scenes: int, seed: int, kinds, iterations, tv_weights, device: str = "auto",
          noise: str = "none") -> dict:
    """{kind: {(iterations, tv_weight): [psnr per scene]}}; iterations 0 is the network alone."""
    from hsra_cli.metrics import psnr
    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.simulate import simulate_measurement
    from hsra_cli.solvers.gap_tv import refine
    from hsra_cli.synth import procedural_scene

    network = Reconstructor(model, weights=weights, device=device, refine=0)
    results: dict = {}
    for index in range(scenes):
        truth = procedural_scene(256, 256, rng=np.random.default_rng(seed + index))
        for kind, mask in masks_for(index, seed, kinds).items():
            measurement, _ = simulate_measurement(truth, mask, noise=noise, seed=seed + index)
            estimate = network.reconstruct(measurement, mask, normalize="none").cube
            op, _ = network.operator_for(measurement, mask)
            x0 = torch.from_numpy(np.ascontiguousarray(estimate.transpose(2, 0, 1)))[None].to(network.device)
            y = torch.from_numpy(np.asarray(measurement, dtype=np.float32))[None].to(network.device)
            scores = results.setdefault(kind, {})
            for count in iterations:
                for weight in (tv_weights if count else tv_weights[:1]):
                    with torch.inference_mode():
                        cube = refine(x0.clone(), y, op, count, tv_weight=weight)[0].permute(1, 2, 0).cpu().numpy()
                    scores.setdefault((count, weight if count else 0.0), []).append(
                        psnr(cube, truth, convention="field"))
        print(f"scene {index + 1}/{scenes} done", file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hsra-dum-2stg.any")
    parser.add_argument("--weights", type=Path, default=None, help="another .safetensors file (or a model folder)")
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=987654)
    parser.add_argument("--masks", default="binary,kaist,real")
    parser.add_argument("--noise", choices=("none", "shot"), default="none",
                        help="shot: the field's real-data noise model (QE 0.4, 2048 levels) on every measurement")
    parser.add_argument("--iterations", default="0,5,10,20,40")
    parser.add_argument("--tv-weights", default="0.005,0.01,0.02")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights
    if weights is not None and weights.is_dir():
        weights = weights / "model.safetensors"
    iterations = sorted({int(v) for v in args.iterations.split(",")} | {0})
    tv_weights = [float(v) for v in args.tv_weights.split(",")]
    start = time.perf_counter()
    results = study(args.model, weights, args.scenes, args.seed, args.masks.split(","), iterations, tv_weights,
                    args.device, args.noise)
    if args.json:
        print(json.dumps({kind: {f"{n}@{w}": float(np.mean(v)) for (n, w), v in scores.items()}
                          for kind, scores in results.items()}, indent=2))
        return 0
    print(f"{args.model}{' (' + str(weights) + ')' if weights else ''}: {args.scenes} procedural scenes from seed "
          f"{args.seed}, field convention, {'noiseless' if args.noise == 'none' else args.noise + ' noise'}, {torch.get_num_threads()} threads, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'mask':<8}{'iterations':>11}{'tv weight':>10}{'PSNR dB':>9}{'gain':>7}{'worst gain':>11}")
    for kind, scores in results.items():
        alone = np.array(scores[(0, 0.0)])
        for (count, weight), values in scores.items():
            gain = np.array(values) - alone
            print(f"{kind:<8}{count:>11}{weight:>10.3f}{np.mean(values):>9.2f}{gain.mean():>+7.2f}{gain.min():>+11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
