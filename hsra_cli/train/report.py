"""What a training run tells the user: progress on stderr, the CSV log and the learning-curve figure."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

LOG_NAME = "log.csv"
LOG_COLUMNS = ("step", "loss", "lr", "val_psnr", "val_ssim", "samples_per_s", "elapsed_s", "data_share")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class CsvLog:
    """``OUT/log.csv``: one row per logging interval and per validation.

    Columns: ``step`` (optimizer steps done), ``loss`` (mean training loss over the interval, all processes),
    ``lr``, ``val_psnr`` / ``val_ssim`` (float convention, mean over the validation scenes; empty when not
    validated at that step), ``samples_per_s`` (all processes together), ``elapsed_s`` (wall time of the whole
    run, across resumed sessions), ``data_share`` (share of the interval rank 0 spent making batches). On resume, rows after the checkpoint's step (written by the interrupted
    session after its last checkpoint) are dropped so the log has one row per step value.
    """

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        keep: list[dict] = []
        if resume_step is not None and self.path.is_file():
            keep = [row for row in read_log(self.path) if int(row["step"]) <= resume_step]
        from ..io import atomic_output

        with atomic_output(self.path, overwrite=True) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(LOG_COLUMNS)
                for row in keep:
                    writer.writerow([_cell(row.get(name)) for name in LOG_COLUMNS])
        self._handle = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)

    def write(self, **values) -> None:
        self._writer.writerow([_cell(values.get(name)) for name in LOG_COLUMNS])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_log(path: Path) -> list[dict]:
    """The rows of a ``log.csv`` as dicts of floats (``None`` for empty cells; ``step`` as int)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row = {name: (float(raw[name]) if raw.get(name) not in (None, "") else None) for name in LOG_COLUMNS}
            row["step"] = int(row["step"])
            rows.append(row)
    return rows


def plot_learning_curve(log_path: Path, png_path: Path, title: str) -> None:
    """Training loss (log scale) and validation PSNR against the step, from ``log.csv``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_output

    rows = read_log(log_path)
    loss = [(r["step"], r["loss"]) for r in rows if r["loss"] is not None]
    val = [(r["step"], r["val_psnr"]) for r in rows if r["val_psnr"] is not None]
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=120)
    if loss:
        loss_axis.plot(*zip(*loss), color="tab:blue", lw=1.2, label="training loss")
        loss_axis.set_yscale("log")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    if val:
        psnr_axis = loss_axis.twinx()
        psnr_axis.plot(*zip(*val), color="tab:red", marker="o", ms=3, lw=1.2, label="validation PSNR")
        psnr_axis.set_ylabel("validation PSNR (dB, float convention)", color="tab:red")
    loss_axis.set_title(title, fontsize=10)
    loss_axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_output(png_path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Progress on stderr: a Rich bar with ETA on a terminal, plain lines every ``every`` steps otherwise.

    ``console`` is a Rich console writing to stderr; ``enabled=False`` (``--quiet``, ranks other than 0)
    prints nothing.
    """

    def __init__(self, console, total: int, initial: int, every: int, enabled: bool = True):
        self.console = console
        self.total = total
        self.every = every
        self.enabled = enabled and console is not None
        self.start_time = time.perf_counter()
        self.initial = initial
        self.live = None
        if self.enabled and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.live = RichProgress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                transient=False,
            )
            self.task = self.live.add_task("train", total=total, completed=initial, status="")
            self.live.start()

    def update(self, step: int, status: str, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            self.live.update(self.task, completed=step, status=status)
            return
        if force or step % self.every == 0 or step == self.total:
            done = step - self.initial
            spent = time.perf_counter() - self.start_time
            eta = spent / done * (self.total - step) if done > 0 else float("nan")
            eta_text = _clock(eta) if math.isfinite(eta) else "?"
            self.console.print(
                f"step {step}/{self.total}  {status}  elapsed {_clock(spent)}  ETA {eta_text}", soft_wrap=True
            )

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
