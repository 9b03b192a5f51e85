"""Could each capture choose its own refinement? Cross-validation on the measurement against fixed settings.

    python benchmarks/bench_refine_select.py --scenes 6 --masks binary,kaist,real --threads 1
    python benchmarks/bench_refine_select.py --scenes 6 --noise shot
    python benchmarks/bench_refine_select.py --held-out          # scene 05, the chart, the real window

For every capture the network runs once; then each candidate refinement (TV weight × iterations, plain GAP-TV
from the network's cube, TV on the cube alone, as the refinement before 2026-12-01 ran it) is scored twice: against the truth (what a
fixed setting or an oracle would get) and by cross-validation on the measurement alone: a share of the
measurement pixels is held out, the refinement's projection ignores them, and the candidate's error in predicting
them is its score. The cross-validated pick is then the candidate with the least held-out error. Tuning data are
the procedural scenes of ``bench_refine.py`` (seed 987654, never scene 05 or the chart). A study, not a test;
docs/training.md ("Refinement chosen per capture") records its numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

WEIGHTS = (0.001, 0.002, 0.003, 0.005)
CHECKPOINTS = (10, 20, 40)
DEFAULT = (10, 0.003)


def trajectory(x0, y, op, weight, keep=None, truth=None) -> list[float]:
    """Refine ``x0`` at ``weight`` for max(CHECKPOINTS) iterations; at each checkpoint, the PSNR against
    ``truth`` (when given) or the squared error on the measurement pixels that ``keep`` holds out."""
    from hsra_cli.metrics import psnr
    from hsra_cli.solvers.gap_tv import REFINE_PHI_FLOOR, tv_denoise

    phi = op.phi_s().to(y)
    phi = phi.clamp(min=REFINE_PHI_FLOOR * float(phi.median()))
    x, dual, scores = x0.clone().contiguous(), None, []
    for iteration in range(1, max(CHECKPOINTS) + 1):
        residual = (y - op.A(x)) / phi
        if keep is not None:
            residual = residual * keep
        x.add_(op.A_adjoint(residual))
        x, dual = tv_denoise(x, weight, 5, dual, out=x)
        if iteration in CHECKPOINTS:
            if truth is not None:
                scores.append(psnr(x[0].permute(1, 2, 0).numpy(), truth, convention="field"))
            else:
                scores.append(float((((y - op.A(x)) ** 2) * (1 - keep)).sum()))
    return scores


def score_capture(network, truth, measurement, mask, folds: int, held_share: float):
    """(PSNR per candidate, cross-validation error per candidate) for one capture."""
    estimate = network.reconstruct(measurement, mask, normalize="none").cube
    op, _ = network.operator_for(measurement, mask)
    x0 = torch.from_numpy(np.ascontiguousarray(estimate.transpose(2, 0, 1)))[None]
    y = torch.from_numpy(np.asarray(measurement, dtype=np.float32))[None]
    with torch.inference_mode():
        psnrs = np.array([p for w in WEIGHTS for p in trajectory(x0, y, op, w, truth=truth)])
        draw = torch.rand(y.shape, generator=torch.Generator().manual_seed(0))
        if folds == 1:
            keeps = [(draw >= held_share).float()]
        else:
            keeps = [((draw * folds).floor() != f).float() for f in range(folds)]
        errors = np.zeros(len(psnrs))
        for keep in keeps:
            errors += np.array([e for w in WEIGHTS for e in trajectory(x0, y, op, w, keep=keep)])
    return psnrs, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hsra-dum-2stg.any")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=987654)
    parser.add_argument("--masks", default="binary,kaist,real")
    parser.add_argument("--noise", choices=("none", "shot"), default="none")
    parser.add_argument("--folds", type=int, default=1, help="1: one held-out share (--held-share); K: K folds")
    parser.add_argument("--held-share", type=float, default=0.2)
    parser.add_argument("--held-out", action="store_true", help="the three validation cases instead")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.simulate import simulate_measurement
    from hsra_cli.synth import procedural_scene

    import bench_cases
    from bench_refine import masks_for

    weights = args.weights / "model.safetensors" if args.weights and args.weights.is_dir() else args.weights
    network = Reconstructor(args.model, weights=weights, refine=0)
    candidates = [(n, w) for w in WEIGHTS for n in CHECKPOINTS]
    base = candidates.index(DEFAULT)
    start = time.perf_counter()
    if args.held_out:
        for name in bench_cases.CASES:
            case = bench_cases.load_case(name)
            if case is None:
                continue
            measurement, mask, truth = case
            psnrs, errors = score_capture(network, truth, measurement, mask, args.folds, args.held_share)
            pick = int(errors.argmin())
            print(f"{name:<14} default {psnrs[base]:.2f}  cross-validated {candidates[pick]} {psnrs[pick]:.2f}  "
                  f"oracle {candidates[int(psnrs.argmax())]} {psnrs.max():.2f}", flush=True)
        return 0
    print(f"{args.model}: {args.scenes} procedural scenes from seed {args.seed}, {args.noise} noise, "
          f"{args.folds} fold(s){f' of {args.held_share:.0%}' if args.folds == 1 else ''}")
    print(f"{'mask':<8}{'default':>9}{'best fixed':>22}{'cross-val':>11}{'worst vs default':>18}{'oracle':>9}")
    for kind in args.masks.split(","):
        rows = []
        for index in range(args.scenes):
            truth = procedural_scene(256, 256, rng=np.random.default_rng(args.seed + index))
            mask = masks_for(index, args.seed, [kind]).get(kind)
            if mask is None:
                break
            measurement, _ = simulate_measurement(truth, mask, noise=args.noise, seed=args.seed + index)
            rows.append(score_capture(network, truth, measurement, mask, args.folds, args.held_share))
        if not rows:
            print(f"{kind:<8} skipped: its mask needs ../shared/data")
            continue
        psnrs = np.array([r[0] for r in rows])
        picks = psnrs[np.arange(len(rows)), np.array([r[1] for r in rows]).argmin(1)]
        best = int(psnrs.mean(0).argmax())
        print(f"{kind:<8}{psnrs[:, base].mean():>9.2f}{psnrs.mean(0)[best]:>9.2f} {str(candidates[best]):>12}"
              f"{picks.mean():>11.2f}{(picks - psnrs[:, base]).min():>+18.2f}{psnrs.max(1).mean():>9.2f}", flush=True)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
