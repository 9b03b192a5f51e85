"""Training throughput of `hsra train` on whatever device is present: samples/s and the share of time spent
making batches, per model and patch size.

    python benchmarks/bench_train.py                                  # hsra-s at 128², CPU: 2 threads
    python benchmarks/bench_train.py --models s,dum2 --patches 64,128,256 --threads 1
    python benchmarks/bench_train.py --device cuda --patches 256 --batch-size 32 --steps 60

Each measurement is a real `hsra_cli.train.train` run (the same sampler, step, EMA and logging as `hsra train`)
into a temporary folder: KAIST scenes 01-04 with ``mask_256.mat`` when ../shared/data is present (else
synthetic scenes only), half of the crops from the synthetic stream, random mask windows, no validation.
The first ``--warmup`` steps (allocations, cuDNN autotuning, worker start-up) are not timed.

``data share`` is the share of the timed wall time this process spent making batches: scenes, crops,
rot/flip, mosaics, mask windows, CASSI simulation and noise, and waiting for synthetic scenes from the workers.
On a GPU the step's kernels are queued asynchronously, so batch making overlaps them and the share is the
host's, an upper bound on the time the GPU waits for data. A benchmark, not a test: numbers depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaist"


def measure(model: str, patch: int, batch: int, steps: int, warmup: int, device: str, threads: int | None,
            workers: int | None, data_dir: Path = DATA) -> dict:
    from hsra_cli.train import TrainConfig, train
    from hsra_cli.train.report import read_log

    data, mask = [], None
    if (data_dir / "kaist_scenes01-05_truth_uint8.npz").exists():
        data = [f"{data_dir / 'kaist_scenes01-05_truth_uint8.npz'}:0-3"]
        mask = str(data_dir / "mask_256.mat")
    with tempfile.TemporaryDirectory() as tmp:
        if mask is None:
            import numpy as np

            mask = str(Path(tmp) / "mask.npy")
            np.save(mask, np.random.default_rng(0).random((max(256, patch), max(256, patch)), dtype=np.float32))
        config = TrainConfig(
            out=str(Path(tmp) / "run"), model=model, data=data, mask=[mask], synthetic_stream=True,
            mask_mode="random", gain=1.0, shot_noise=False, patch_size=patch, batch_size=batch,
            steps=warmup + steps, warmup_steps=1, log_every=warmup, ckpt_every=10**9, device=device,
            threads=threads, workers=workers, ema=0.999,
        )
        result = train(config, quiet=True)
        rows = [row for row in read_log(Path(config.out) / "log.csv") if row["step"] > warmup]
        # rows every `warmup` steps: the timed ones are equal intervals when steps is a multiple of warmup
        mean = lambda key: sum(row[key] or 0.0 for row in rows) / len(rows)  # noqa: E731
        return {
            "model": result.model_name, "patch": patch, "batch": batch, "device": str(device),
            "threads": torch.get_num_threads(), "samples_per_s": mean("samples_per_s"),
            "data_share": mean("data_share"), "timed_steps": steps,
            "data": "KAIST 01-04 + 50 % synthetic stream" if data else "synthetic stream only (no KAIST data found)",
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="hsra-s")
    parser.add_argument("--patches", default="128")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 2 on the CPU, 32 on a GPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 CPU, 60 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default: 5 CPU, 20 GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=None, help="synthetic-scene workers (default: hsra train's)")
    parser.add_argument("--data-dir", type=Path, default=DATA,
                        help="folder holding kaist_scenes01-05_truth_uint8.npz and mask_256.mat (default: ../shared/"
                        "data/kaist; without them every crop comes from the synthetic stream, a heavier load)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from hsra_cli.reconstruct import resolve_device

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch_size or (32 if gpu else 2)
    steps = args.steps or (60 if gpu else 20)
    warmup = args.warmup or (20 if gpu else 5)
    where = torch.cuda.get_device_name(device) if gpu else "CPU"
    rows = []
    for model in args.models.split(","):
        for patch in (int(p) for p in args.patches.split(",")):
            row = measure(model, patch, batch, steps, warmup, args.device, args.threads, args.workers, args.data_dir)
            rows.append(row)
            if not args.json:
                print(f"{row['model']:<16} patch {patch:>4}  batch {batch:>3}  {row['samples_per_s']:8.2f} samples/s  "
                      f"data share {100 * (row['data_share'] or 0):5.1f} %   ({where}, {row['threads']} threads; "
                      f"{row['data']})",
                      flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
