"""Pieces of a training step and session: AMP choice, losses, RNG states, throughput windows, stop signals."""

from __future__ import annotations

import os
import platform
import random
import signal
import time

import numpy as np
import torch

from ..errors import UsageError


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on ``device``; None for float32 (always on the CPU)."""
    if device.type != "cuda":
        if mode in ("bf16", "fp16"):
            raise UsageError(f"--amp {mode} needs a CUDA device; on the CPU training runs in float32 (--amp auto)")
        return None
    if mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if mode == "bf16":
        raise UsageError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16 or auto")
    return torch.float16


def make_loss(kind: str, eps: float):
    """``rmse`` (the field's √MSE), ``l1``, or ``charbonnier`` (mean of √((x̂−x)² + ε²))."""
    if kind == "rmse":
        return lambda pred, target: torch.sqrt(torch.nn.functional.mse_loss(pred, target))
    if kind == "l1":
        return torch.nn.functional.l1_loss
    if kind == "charbonnier":
        return lambda pred, target: torch.sqrt((pred - target) ** 2 + eps * eps).mean()
    raise UsageError(f"unknown loss {kind!r}")


def hardware_description(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{world_size} × {name}" if world_size > 1 else name
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    processes = f", {world_size} processes" if world_size > 1 else ""
    return f"CPU: {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads per process{processes})"


def capture_rng() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        states = list(state["cuda"])[: torch.cuda.device_count()]  # a checkpoint of a machine with more GPUs
        for index, device_state in enumerate(states):
            torch.cuda.set_rng_state(device_state, index)


class Window:
    """One logging interval: the summed loss (kept on the device: no sync per step), steps, time, and the time
    the sampler spent making batches (``sampler.data_seconds``, when given)."""

    def __init__(self, device: torch.device, sampler=None):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.rate = float("nan")
        self.data_share = float("nan")
        self.sampler = sampler
        self.restart()

    def _data_seconds(self) -> float:
        return float(getattr(self.sampler, "data_seconds", 0.0))

    def restart(self) -> None:
        self.loss_sum.zero_()
        self.steps = 0
        self.start = time.perf_counter()
        self.data_start = self._data_seconds()

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss.to(torch.float64)
        self.steps += 1

    def close(self, samples_per_step: int) -> float:
        """Samples per second over the interval (all processes); also sets :attr:`data_share`, the share of the
        interval this process spent making batches (host time: on a GPU it overlaps the queued steps)."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self.rate = samples_per_step * self.steps / seconds
        self.data_share = (self._data_seconds() - self.data_start) / seconds
        return self.rate


class StopRequest:
    """SIGINT/SIGTERM in a single-process run: finish the current step, checkpoint, then stop."""

    def __init__(self, enabled: bool):
        self.requested: str | None = None
        self._previous = {}
        if enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # not the main thread
                    pass

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
