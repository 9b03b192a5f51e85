"""Shared bits of the CLI: the stderr console and small option parsers. No numerical code here."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

from rich.console import Console

#: Messages and progress go to stderr; data (tables, JSON, CSV) to stdout.
console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # names are shown as they are
# Piped or redirected tables keep every column instead of folding to 80 characters.
stdout = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


# Choice options are Enums so `--help` lists their values and a wrong one is a usage error naming them. The
# values are the library's (tests/test_cli_options.py pins each Enum to its library constant).


class FormatChoice(str, Enum):
    MAT = "mat"
    H5 = "h5"
    TIF = "tif"
    NPY = "npy"


class NormalizeChoice(str, Enum):
    AUTO = "auto"
    NONE = "none"
    MAX = "max"


class AxisChoice(str, Enum):
    WIDTH = "width"
    HEIGHT = "height"


class MaskKindChoice(str, Enum):
    RANDOM_BINARY = "random-binary"
    RANDOM_GREY = "random-grey"


class NoiseChoice(str, Enum):
    NONE = "none"
    GAUSSIAN = "gaussian"
    SHOT = "shot"


#: The help of every command's --threads (one spelling, one meaning across commands).
THREADS_HELP = "CPU threads for torch (default: all cores, or $OMP_NUM_THREADS when set)."


#: The help of --skip-existing in the commands that write one set of files per input (reconstruct, simulate,
#: render): how an interrupted batch is resumed (:func:`hsra_cli.batch.plan_set`).
SKIP_EXISTING_HELP = ("Skip inputs whose output set is complete (reconstruct: made by the same input, mask and settings); "
                      "redo incomplete ones (an interrupted run), replacing only files hsra wrote.")


def set_threads(threads):
    """Apply a command's --threads (None: torch's default, all cores)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def value_of(choice):
    """An Enum choice (or None) as the plain value the library takes."""
    return choice.value if isinstance(choice, Enum) else choice


def positive(value):
    """Option callback: a finite number that must be > 0 (typer's ``min`` cannot exclude its bound)."""
    import math

    import typer

    if value is not None and not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter(f"{value} is not a finite number > 0; expected a positive number")
    return value


def fraction(value):
    """Option callback: a fraction in [0, 1)."""
    import typer

    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"{value} is not in [0, 1); expected a fraction such as 0.25")
    return value


def alias(primary, old, option: str, old_option: str):
    """The value of an option given under its current name or its old (hidden) one; both at once is an error."""
    from ..errors import UsageError

    if old is not None and primary is not None and old != primary:
        raise UsageError(f"{old_option} is the old name of {option}; give only {option}")
    return primary if primary is not None else old


def summary(result, noun: str = "done") -> str:
    """``N done, M skipped, K failed`` (and what is left after an interruption)."""
    text = f"{len(result.done)} {noun}, {len(result.skipped)} skipped, {len(result.failed)} failed"
    if result.interrupted is not None:
        from ..errors import Interrupted

        text = f"interrupted by {Interrupted(result.interrupted).signal_name}: {text}, {len(result.left)} left"
    return text


def print_summary(result, noun: str = "done") -> int:
    """Print the batch summary on stderr; return the exit code (128 + signal, 1 if any failed, else 0)."""
    text = summary(result, noun)
    console.print(text if not (result.failed or result.interrupted) else f"[red]{text}[/red]")
    if result.interrupted is not None:
        return 128 + result.interrupted
    return 1 if result.failed else 0


def parse_point(text: str) -> tuple[int, int]:
    """``"x,y"`` -> (x, y) pixel coordinates."""
    from ..errors import UsageError

    try:
        x, y = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--point {text!r} is not of the form x,y (two integer pixel coordinates)") from None
    return x, y


def parse_offset(text: str | None, option: str = "--mask-offset") -> tuple[int, int] | None:
    """``"row,col"`` -> (row, col) pixel offsets; ``None`` stays ``None``."""
    from ..errors import UsageError

    if text is None:
        return None
    try:
        row, col = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not of the form row,column (two integer pixel offsets)") from None
    return row, col


def require_files(paths: list[Path], what: str) -> None:
    from ..errors import InputFileError

    for path in paths:
        if not path.exists():
            raise InputFileError(f"{what} {str(path)!r} does not exist")
        if path.is_dir():
            raise InputFileError(f"{what} {str(path)!r} is a folder; expected a file")


def complete_model(incomplete: str) -> list[str]:
    """Shell completion of ``hsra reconstruct --model`` and ``hsra models info``: auto, names, aliases, NAME.TAG."""
    from hsra_cli.registry import AUTO, model_names

    return [name for name in [AUTO, *model_names()] if name.startswith(incomplete)]


def complete_network(incomplete: str) -> list[str]:
    """Shell completion of ``hsra train --model``: the networks (architectures and aliases)."""
    from hsra_cli.registry import model_names

    return [name for name in model_names(networks_only=True, tags=False) if name.startswith(incomplete)]


def parse_wavelengths(text: str):
    """``--wavelengths`` (render, reconstruct): a comma list of numbers (nm), or a text file of numbers (commas or
    whitespace), strictly increasing, at least one of them where the eye sees colour (the previews need it)."""
    import numpy as np

    from hsra_cli.errors import UsageError

    source = text
    candidate = Path(text)
    if candidate.is_file():
        try:
            source = candidate.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --wavelengths file {text!r}: {exc}") from None
    parts = source.replace(",", " ").split()
    try:
        values = np.asarray([float(part) for part in parts], dtype=np.float64)
    except ValueError:
        if source is text and "," not in text:  # read as a path, not as a comma list
            what = "is a folder, not a file" if candidate.is_dir() else "does not exist"
            raise UsageError(
                f"--wavelengths file {text!r} {what}; expected a text file of numbers (nm) or a comma list "
                "(--wavelengths 450,460,470,…)"
            ) from None
        raise UsageError(
            f"--wavelengths {text!r} is neither a comma list of numbers (nm) nor a file of numbers"
        ) from None
    if values.size == 0:
        raise UsageError(f"--wavelengths {text!r} holds no numbers; expected one wavelength (nm) per band")
    if not (np.isfinite(values).all() and np.all(np.diff(values) > 0)):
        raise UsageError(f"--wavelengths {text!r} must be finite and strictly increasing (shortest first)")
    from hsra_cli.errors import ValueRangeError
    from hsra_cli.render import _xyz_weights

    try:  # bands the eye cannot see cannot be rendered: a wrong value of the option, as the ones above
        _xyz_weights(values)
    except ValueRangeError as exc:
        hint = " (in µm? give nm: --wavelengths 450,460,…)" if values.max() < 10 else ""
        raise UsageError(f"--wavelengths: {exc}{hint}") from None
    return values


#: --qe of simulate and train: typer shows only closed ranges, so the type column states the open bound itself.
QE_METAVAR = "<float range> [0.0<x<=1.0]"


def quantum_efficiency(value):
    """Option callback: a quantum efficiency, 0 < x ≤ 1 (typer's ``min`` cannot exclude its bound)."""
    import typer

    if value is not None and not 0 < value <= 1:
        raise typer.BadParameter(f"{value} is not in (0, 1]; expected a number > 0 and ≤ 1")
    return value
