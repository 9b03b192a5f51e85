"""Real captures (../shared/data/tsa-real, 660×714): seconds and peak memory per capture, and tiled vs whole.

    python benchmarks/bench_real.py --model gap-tv
    python benchmarks/bench_real.py --model s --tile-size 256 --tile-overlap 0.25
    python benchmarks/bench_real.py --model s --refine 0      # the network alone
    python benchmarks/bench_real.py --model s --write         # a batch with its outputs: writing vs reconstructing

Each capture runs in its own process so the peak resident memory (ru_maxrss) is that capture's own. The
tiled-vs-whole check reconstructs the same capture whole and in tiles and reports the PSNR of one against the
other (peak = the whole result's maximum), plus, on a simulated 660×660 scene with known truth, the PSNR of each
against the truth. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tsa-real"


def _psnr(a: np.ndarray, reference: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(peak**2 / mse) if mse > 0 else float("inf")


def one(args) -> dict:
    """Reconstruct one capture in this process; report seconds and peak RSS."""
    import torch

    from hsra_cli.io import read_mask, read_measurement
    from hsra_cli.reconstruct import Reconstructor

    if args.threads:
        torch.set_num_threads(args.threads)
    measurement, loaded = read_measurement(args.one)
    mask, _ = read_mask(DATA / "mask_660.mat")
    tile = args.tile_size if args.tile_size is not None else "auto"
    reconstructor = Reconstructor(args.model, device=args.device, tile_size=tile, tile_overlap=args.tile_overlap,
                                  refine=args.refine)
    start = time.perf_counter()
    result = reconstructor.reconstruct(measurement, mask, key=loaded.key)
    seconds = time.perf_counter() - start
    if args.save:
        np.save(args.save, result.cube)
    return {
        "capture": Path(args.one).stem,
        "seconds": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "residual": result.record["residual"],
        "tile_size": result.record["tiling"]["tile_size"],
        "normalization": result.record["normalization"]["mode"],
    }


def _print_rows(rows: dict) -> list[float]:
    print(f"{'capture':<10}{'reconstruct s':>15}{'write s':>9}{'write/reconstruct':>19}")
    ratios = []
    for name, (recon, write) in rows.items():
        ratios.append(write / recon)
        print(f"{name:<10}{recon:>15.2f}{write:>9.2f}{write / recon:>19.2f}")
    return ratios


def batch_writing(args) -> int:
    """Writing a capture's outputs (cube .mat, _rgb.png, _bands.png, JSON record) against reconstructing it.

    1. Per capture, one at a time in this process (nothing else of ours runs while it writes): seconds of
       reconstructing and of writing, from the JSON record. Target (issue 11): writing < 0.5 × reconstructing.
    2. The captures as one `hsra reconstruct` command (its writer thread overlaps the next reconstruction): the
       command's whole wall time, start-up and model loading included, against the sum of its reconstruction
       seconds. Target: ≤ 1.25×.
    """
    import os
    import tempfile

    import torch

    from hsra_cli.batch import reconstruct_files
    from hsra_cli.nets.runtime import keep_freed_memory
    from hsra_cli.reconstruct import Reconstructor

    try:
        from hsra_cli.render import prepare
    except ImportError:  # an hsra from before render.prepare (to compare with the old code)
        def prepare():
            import colour  # noqa: F401
            import matplotlib.figure  # noqa: F401

    captures = [DATA / f"scene{number}.mat" for number in args.captures.split(",")]
    mask = DATA / "mask_660.mat"
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `hsra reconstruct` does on the CPU
    start = time.perf_counter()
    prepare()
    imports = time.perf_counter() - start
    reconstructor = Reconstructor(args.model, device=args.device, refine=args.refine)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="hsra_bench_write_") as out:
        for capture in captures:
            def on_done(path, record, error):
                if error:
                    raise SystemExit(f"{path.name} failed: {error}")
                rows[path.stem] = (record["seconds"]["reconstruct"], record["seconds"]["write"])

            reconstruct_files([capture], mask, Path(out), reconstructor, fmt="mat", previews=True, on_done=on_done)
    print(f"{args.model} ({args.device}, {torch.get_num_threads()} torch thread(s)), one capture at a time: cube .mat "
          f"+ _rgb.png + _bands.png + .json each (plotting imports done first: {imports:.1f} s)")
    ratios = _print_rows(rows)
    print(f"write/reconstruct: max {max(ratios):.2f}, mean {sum(ratios) / len(ratios):.2f} (target < 0.5)")

    with tempfile.TemporaryDirectory(prefix="hsra_bench_batch_") as out:
        command = [sys.executable, "-m", "hsra_cli", "reconstruct", *map(str, captures), "--mask", str(mask),
                   "--model", args.model, "--device", args.device, "-o", out, "-q"]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--refine", str(args.refine)] if args.refine is not None else []
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        records = [json.loads((Path(out) / f"{c.stem}.json").read_text()) for c in captures]
        written = sum(f.stat().st_size for f in Path(out).iterdir()) / 1e6
    total = sum(record["seconds"]["reconstruct"] for record in records)
    print(f"one `hsra reconstruct` of all {len(captures)} ({args.threads or os.cpu_count()} thread(s), {written:.0f} MB "
          f"written): {wall:.1f} s for {total:.1f} s of reconstruction = {wall / total:.2f}× (target ≤ 1.25×); "
          f"its writes took {sum(r['seconds']['write'] for r in records):.1f} s beside the reconstructions")
    return 0


def simulated_agreement(args) -> dict:
    """Whole vs tiled on a simulated 660×660 scene with known truth."""
    import torch

    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.simulate import generate_mask, simulate_measurement
    from hsra_cli.synth import procedural_scene

    if args.threads:
        torch.set_num_threads(args.threads)
    cube = procedural_scene(660, 660, rng=np.random.default_rng(7))
    mask = generate_mask(660, 660, "random-binary", seed=1)
    measurement, _ = simulate_measurement(cube, mask)
    results = {}
    for name, tile in (("whole", 0), ("tiled", args.agreement_tile)):
        r = Reconstructor(args.model, device=args.device, tile_size=tile, tile_overlap=args.tile_overlap,
                                  refine=args.refine)
        results[name] = r.reconstruct(measurement, mask, normalize="none").cube
    return {
        "psnr_whole_vs_truth": _psnr(np.clip(results["whole"], 0, 1), cube, 1.0),
        "psnr_tiled_vs_truth": _psnr(np.clip(results["tiled"], 0, 1), cube, 1.0),
        "psnr_tiled_vs_whole": _psnr(results["tiled"], results["whole"], float(results["whole"].max())),
        "tile": args.agreement_tile,
        "overlap": args.tile_overlap,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gap-tv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tile-size", type=int, default=None, help="default: auto (whole when it fits)")
    parser.add_argument("--tile-overlap", type=float, default=0.25)
    parser.add_argument("--agreement-tile", type=int, default=256)
    parser.add_argument("--captures", default="1,2,3,4,5")
    parser.add_argument("--refine", type=int, default=None, help="refinement iterations after a network (default: hsra reconstruct's)")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--write", action="store_true",
                        help="run the captures as one batch with all outputs and compare writing with reconstructing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--agreement-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return 0
    if args.agreement_only:
        print(json.dumps(simulated_agreement(args)))
        return 0
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not present", file=sys.stderr)
        return 0
    if args.write:
        return batch_writing(args)
    common = [sys.executable, __file__, "--model", args.model, "--device", args.device,
              "--tile-overlap", str(args.tile_overlap)]
    if args.refine is not None:
        common += ["--refine", str(args.refine)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    print(f"{args.model}, {args.device}: real 660×714 captures")
    print(f"{'capture':<10}{'seconds':>9}{'peak GB':>9}{'residual':>10}{'tiles':>7}")
    rows = []
    for number in args.captures.split(","):
        cmd = common + ["--one", str(DATA / f"scene{number}.mat")]
        if args.tile_size is not None:
            cmd += ["--tile-size", str(args.tile_size)]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        rows.append(row)
        print(f"{row['capture']:<10}{row['seconds']:>9.2f}{row['peak_rss_gb']:>9.2f}{row['residual']:>10.4f}"
              f"{row['tile_size'] or '-':>7}", flush=True)
    if args.skip_agreement:
        return 0
    # Whole vs tiled on a real capture (no truth: agreement of one with the other).
    first = DATA / f"scene{args.captures.split(',')[0]}.mat"
    outs = {}
    for name, tile in (("whole", 0), ("tiled", args.agreement_tile)):
        path = Path(f"/tmp/hsra_bench_{name}.npy")
        subprocess.run(common + ["--one", str(first), "--tile-size", str(tile), "--save", str(path)], check=True,
                       capture_output=True)
        outs[name] = np.load(path)
    real = _psnr(outs["tiled"], outs["whole"], float(outs["whole"].max()))
    print(f"tiled ({args.agreement_tile} px, overlap {args.tile_overlap}) vs whole on {first.stem}: PSNR {real:.2f} dB")
    sim = json.loads(subprocess.run(common + ["--agreement-only", "--agreement-tile", str(args.agreement_tile)],
                                    check=True, capture_output=True, text=True).stdout)
    print(f"simulated 660×660 scene: whole {sim['psnr_whole_vs_truth']:.2f} dB, tiled {sim['psnr_tiled_vs_truth']:.2f} dB "
          f"vs truth (difference {abs(sim['psnr_whole_vs_truth'] - sim['psnr_tiled_vs_truth']):.3f} dB); "
          f"tiled vs whole {sim['psnr_tiled_vs_whole']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
