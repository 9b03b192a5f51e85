"""Forward-pass speed and memory of the HSRA networks: median time, peak memory, achieved GFLOP/s.

    python benchmarks/bench_models.py                       # the five main variants, 256×256, CPU
    python benchmarks/bench_models.py --models s l --repeats 10
    python benchmarks/bench_models.py --device cuda --size 660
    python benchmarks/bench_models.py --keep-memory          # glibc keeps freed buffers: ~20 % faster here
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benchmarks/bench_models.py

Time: median of ``--repeats`` forwards under ``torch.inference_mode`` after ``--warmup`` forwards (batch 1,
random weights and inputs). Memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before
the forwards; on the CPU the growth of the peak resident set (VmHWM, reset through /proc/self/clear_refs) of
a fresh process per model from just before its first forward — what the OS had to provide, allocator caching
included.
GFLOP/s: the fvcore count (hsra_cli.flops, cached for 256×256) over the median time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsra_cli.flops import cached_gflops, count_gflops, count_parameters  # noqa: E402
from hsra_cli.nets.runtime import keep_freed_memory  # noqa: E402
from hsra_cli.registry import create_model, get_entry  # noqa: E402

MAIN = ["hsra-s", "hsra-m", "hsra-l", "hsra-dum-3stg", "hsra-dum-4stg"]


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuPeakMemory:
    """Peak resident-set growth (MiB) during a block: VmHWM after a reset, or 1-ms RSS sampling as a fallback."""

    def __enter__(self):
        self.baseline = _status_kib("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
            self.sampler = None
        except OSError:
            self.peak, self.stop = self.baseline, threading.Event()
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS") or 0)
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.sampler is None:
            self.peak = _status_kib("VmHWM") or self.baseline
        else:
            self.stop.set()
            self.sampler.join()
        self.mib = max(0, self.peak - self.baseline) / 1024
        return False


def bench_model(name: str, size: int, device: torch.device, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name).to(device).eval()
    measurement, mask = model.example_inputs(size, size)
    measurement, mask = measurement.to(device), mask.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cpu_memory = CpuPeakMemory()
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        else:
            cpu_memory.__enter__()  # from before the first forward: what the process grows to for a forward
        for _ in range(warmup):
            model(measurement, mask)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(measurement, mask)
            sync()
            times.append(time.perf_counter() - start)
        if device.type == "cuda":
            peak_mib = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        else:
            cpu_memory.__exit__(None, None, None)
            peak_mib = cpu_memory.mib
    gflops = cached_gflops(name) if size == 256 else None
    if gflops is None:
        gflops = count_gflops(create_model(name), size, size)
    median = statistics.median(times)
    return {
        "model": name,
        "params_m": round(count_parameters(model) / 1e6, 3),
        "gflops": round(gflops, 3),
        "median_s": round(median, 4),
        "best_s": round(min(times), 4),
        "peak_mib": round(peak_mib, 1),
        "gflop_per_s": round(gflops / median, 1),
    }


def bench_in_fresh_process(name: str, args) -> dict:
    """CPU peak memory is only meaningful in a process no earlier model has grown: run each in its own."""
    command = [sys.executable, __file__, "--one", name, "--size", str(args.size), "--device", args.device,
               "--threads", str(args.threads), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    command += ["--keep-memory"] if args.keep_memory else []
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark of {name} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward time, peak memory and GFLOP/s of the HSRA networks.")
    parser.add_argument("--models", nargs="+", default=MAIN, help="names or aliases (default: the five variants)")
    parser.add_argument("--size", type=int, default=256, help="cube height = width in pixels (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--keep-memory", action="store_true",
                        help="run with hsra_cli.nets.runtime.keep_freed_memory() (glibc keeps freed buffers)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print its JSON row
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    if args.one:
        if args.keep_memory and not keep_freed_memory():
            print("warning: --keep-memory needs glibc; measuring with the default allocator", file=sys.stderr)
        print(json.dumps(bench_model(args.one, args.size, device, args.warmup, args.repeats)))
        return 0
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    rows = []
    for name in args.models:
        canonical = get_entry(name).name
        if device.type == "cpu":
            rows.append(bench_in_fresh_process(canonical, args))
        else:
            rows.append(bench_model(canonical, args.size, device, args.warmup, args.repeats))
        if not args.json:
            print(f"  measured {rows[-1]['model']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"device": where, "size": args.size, "torch": torch.__version__, "rows": rows}, indent=1))
        return 0
    if args.keep_memory and device.type != "cpu":
        keep_freed_memory()  # CPU runs happen in fresh processes, which set it themselves
    malloc = ", glibc keeping freed memory" if args.keep_memory else ""
    print(f"# {args.size}×{args.size} cube, batch 1, {where}{malloc}, torch {torch.__version__}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    header = f"{'model':16s} {'params M':>8s} {'GFLOPs':>7s} {'median s':>9s} {'best s':>7s} {'peak MiB':>9s} {'GFLOP/s':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:16s} {r['params_m']:8.2f} {r['gflops']:7.2f} {r['median_s']:9.3f} {r['best_s']:7.3f} "
              f"{r['peak_mib']:9.1f} {r['gflop_per_s']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
