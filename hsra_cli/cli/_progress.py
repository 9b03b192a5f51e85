"""Progress of a batch on stderr: a Rich bar with ETA on a terminal, plain lines otherwise.

On a terminal the bar counts the inputs (elapsed time and ETA) and a second bar the steps of the current input
(iterations of an iterative solver, or tiles); lines about finished inputs print above the bars. Piped or redirected (logs of a
scheduler), nothing is redrawn: each line is printed once, whole.
"""

from __future__ import annotations

from hsra_cli.cli._common import console as default_console


class BatchProgress:
    """``with BatchProgress(total) as bar:`` … ``bar.start(name, index)``, ``bar.step(done, total)``,
    ``bar.line(text)``, ``bar.advance()``."""

    def __init__(self, total: int, quiet: bool = False, console=None, unit: str = "inputs"):
        self.console = console or default_console
        self.total = total
        self.quiet = quiet
        self.unit = unit
        self.live = self.console.is_terminal and not quiet and total > 0
        self._progress = None

    def __enter__(self) -> "BatchProgress":
        if self.live:
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self._progress.start()
            self._batch = self._progress.add_task(self.unit, total=self.total)
            self._steps = self._progress.add_task("  steps", total=1, visible=False)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def set_total(self, total: int) -> None:
        """The number of inputs to do, once known (e.g. after --skip-existing has left some out)."""
        self.total = total
        if self._progress is not None:
            self._progress.update(self._batch, total=total)

    def start(self, name: str, index: int) -> None:
        """A new input begins (``index`` counts from 0)."""
        if self._progress is not None:
            from rich.markup import escape

            self._progress.update(self._batch, description=f"\\[{index + 1}/{self.total}] {escape(name)}")
            self._progress.reset(self._steps, total=1, visible=False)

    def step(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps of the current input (solver iterations, tiles)."""
        if self._progress is not None:
            self._progress.update(self._steps, completed=done, total=total, visible=True)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._batch)

    def line(self, text: str, always: bool = False) -> None:
        """Print a line (above the bars); dropped with ``quiet`` unless ``always``."""
        if self.quiet and not always:
            return
        (self._progress.console if self._progress is not None else self.console).print(text)
