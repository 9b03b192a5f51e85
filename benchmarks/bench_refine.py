"""How many refinement iterations (and how much TV) help a network, per kind of coded aperture.

    python benchmarks/bench_refine.py --model hsra-dum-2stg.any --scenes 8 --threads 1 --iterations 0,10,20,30 \
        --tv-weights 0.003,0.005 --correction-tv-weight 0.05          # the refinement `hsra reconstruct` runs
    python benchmarks/bench_refine.py --plain --iterations 0,10 --tv-weights 0.003   # the earlier one

Tuning data only: procedural scenes (:func:`hsra_cli.synth.procedural_scene`) drawn from ``--seed`` (by default
987654, a stream no shipped recipe trains on), never KAIST scene 05 or the bundled sample. Each scene is measured
(noiselessly, or with ``--noise shot``) through each mask kind:

* ``binary``: a random binary code, fill 0.5, a fresh seed per scene (the sample's kind, not its seed);
* ``kaist``: the KAIST 256² grey-level mask (needs ../shared/data, else skipped);
* ``real``: a random 256² window of the real 660² grey-level mask, away from the centre window that
  ``bench_cases.py`` validates on (needs ../shared/data, else skipped).

The network runs once per scene and mask; every (iterations, TV weight) pair then refines that same estimate.
Prints the mean field-convention PSNR and SSIM per mask kind and pair, and their gains over the network alone
(mean and worst scene).
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
          noise: str = "none", correction_tv_weight: float | None = None, plain: bool = False,
          final_tv_weight: float | None = None) -> dict:
    """{kind: {(iterations, tv_weight): [(psnr, ssim) per scene]}}; iterations 0 is the network alone.

    ``correction_tv_weight`` None is the default refinement's; ``plain``: the earlier refinement (plain GAP-TV
    iterations from the network's cube, TV on the cube alone)."""
    from hsra_cli.solvers.gap_tv import REFINE_CORRECTION_TV_WEIGHT, REFINE_FINAL_TV_WEIGHT

    if correction_tv_weight is None:
        correction_tv_weight = 0.0 if plain else REFINE_CORRECTION_TV_WEIGHT
    if final_tv_weight is None:
        final_tv_weight = 0.0 if plain else REFINE_FINAL_TV_WEIGHT
    from hsra_cli.metrics import psnr, ssim
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
                        cube = refine(x0.clone(), y, op, count, tv_weight=weight,
                                      correction_tv_weight=correction_tv_weight,
                                      accelerate=not plain, final_tv_weight=final_tv_weight)[0].permute(1, 2, 0).cpu().numpy()
                    scores.setdefault((count, weight if count else 0.0), []).append(
                        (psnr(cube, truth, convention="field"), ssim(cube, truth, convention="field")))
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
    parser.add_argument("--iterations", default="0,10,20,40")
    parser.add_argument("--tv-weights", default="0.003,0.005,0.01", help="TV weights on the cube")
    parser.add_argument("--correction-tv-weight", type=float, default=None,
                        help="TV weight on the correction to the network's cube (default: the refinement's, 0.05)")
    parser.add_argument("--final-tv-weight", type=float, default=None,
                        help="weight of the last TV denoising of the cube (default: the refinement's, 0.01)")
    parser.add_argument("--plain", action="store_true",
                        help="the earlier refinement: plain GAP-TV iterations, TV on the cube alone")
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
                    args.device, args.noise, args.correction_tv_weight, args.plain, args.final_tv_weight)
    if args.json:
        print(json.dumps({kind: {f"{n}@{w}": [float(m) for m in np.mean(v, axis=0)] for (n, w), v in scores.items()}
                          for kind, scores in results.items()}, indent=2))
        return 0
    print(f"{args.model}{' (' + str(weights) + ')' if weights else ''}: {args.scenes} procedural scenes from seed "
          f"{args.seed}, field convention, {'noiseless' if args.noise == 'none' else args.noise + ' noise'}, {torch.get_num_threads()} threads, "
          f"{time.perf_counter() - start:.0f} s")
    method = ("plain GAP-TV, TV on the cube alone" if args.plain else
              f"accelerated GAP, TV weight {args.correction_tv_weight if args.correction_tv_weight is not None else 'default'} "
              "on the correction, then the weight below on the cube, final TV "
              f"{args.final_tv_weight if args.final_tv_weight is not None else 'default'}")
    print(f"refinement: {method}")
    print(f"{'mask':<8}{'iterations':>11}{'tv weight':>10}{'PSNR dB':>9}{'gain':>7}{'worst gain':>11}"
          f"{'SSIM':>8}{'gain':>8}{'worst':>8}")
    for kind, scores in results.items():
        alone = np.array(scores[(0, 0.0)])
        for (count, weight), values in scores.items():
            values = np.array(values)
            gain = values - alone
            print(f"{kind:<8}{count:>11}{weight:>10.3f}{values[:, 0].mean():>9.2f}{gain[:, 0].mean():>+7.2f}"
                  f"{gain[:, 0].min():>+11.2f}{values[:, 1].mean():>8.4f}{gain[:, 1].mean():>+8.4f}{gain[:, 1].min():>+8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
