"""Append a training run to a model card's history: the next phase, built from the run's log.csv.

    python benchmarks/card_phase.py hsra_cli/models/hsra-dum-2stg.any runs/dum2a256 \
        --recipe "full-size fine-tune ... {steps} steps × 1 × 256² ..." --refined 28.45 -o history.json
    python benchmarks/update_card.py hsra_cli/models/hsra-dum-2stg.any --history history.json ...

Reads the card's current ``history`` (config.json of the model folder, before new weights replace it: run this
first, or pass ``--history`` with a saved copy), and the run's ``log.csv`` and ``run.json``. The new phase counts
samples as 128² equivalents (``batch × processes × (patch / 128)²`` per step), so phases with different patch sizes
share one axis in ``history.png``; its curve holds every validation of the run. ``{steps}`` in ``--recipe`` is
replaced with the run's last step. ``--refined`` is the default-reconstruction PSNR on scene 05 measured by
``bench_cases.py`` (the run's log only has the network alone). Writes the full list (old phases + the new one) as
JSON. A maintenance script for the shipped weights, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def phase_from_run(run: Path, number: int, recipe: str, refined: float | None) -> dict:
    from hsra_cli.solvers.gap_tv import describe_refine, refine_card_fields
    from hsra_cli.train.report import read_log

    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    config = record.get("config") or {}
    batch = int(config.get("batch_size") or config.get("batch-size") or 1)
    patch = int(config.get("patch_size") or config.get("patch-size") or 128)
    processes = int(record.get("world_size") or 1)
    per_step = batch * processes * (patch / 128) ** 2
    rows = read_log(run / "log.csv")
    if not rows:
        raise SystemExit(f"{run / 'log.csv'}: no rows")
    validated = [row for row in rows if row.get("val_psnr") is not None]
    if not validated:
        raise SystemExit(f"{run / 'log.csv'}: no validation rows")
    last_step = rows[-1]["step"]
    curve = [[round(row["step"] * per_step), round(row["val_psnr"], 2)] for row in validated if row["step"] > 0]
    alone = round(validated[-1]["val_psnr"], 2)
    held_out = f"{alone:.2f} dB"
    if refined is not None:
        held_out += (f" ({refined:.2f} refined, "
                     f"{describe_refine(refine_card_fields())})")
    threads = record.get("hardware", "")
    hardware = "CPU, 1 thread" if "1 torch threads" in threads else (threads or record.get("device", "unknown"))
    return {
        "phase": number,
        "recipe": recipe.replace("{steps}", str(last_step)),
        "samples": round(last_step * per_step),
        "wall_time_s": round(max(row.get("elapsed_s") or 0 for row in rows)),
        "hardware": hardware,
        "held_out": held_out,
        "curve": curve,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the shipped model folder whose card gets the phase")
    parser.add_argument("run", type=Path, help="the run folder (log.csv, run.json)")
    parser.add_argument("--recipe", required=True, help="what the phase did; {steps} becomes the last step")
    parser.add_argument("--refined", type=float, default=None, help="scene 05 PSNR as reconstructed by default")
    parser.add_argument("--history", type=Path, default=None, help="the card's history as JSON (default: config.json's)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    if args.history is not None:
        history = json.loads(args.history.read_text(encoding="utf-8"))
    else:
        history = json.loads((args.folder / "config.json").read_text(encoding="utf-8")).get("history") or []
    phase = phase_from_run(args.run, len(history) + 1, args.recipe, args.refined)
    args.out.write_text(json.dumps(history + [phase], indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"phase {phase['phase']}: {phase['samples']} samples (128²), {phase['wall_time_s']} s, {phase['held_out']}"
          f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
