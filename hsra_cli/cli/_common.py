"""Shared bits of the CLI: the stderr console and small option parsers. No numerical code here."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

#: Messages and progress go to stderr; data (tables, JSON, CSV) to stdout.
console = Console(stderr=True, highlight=False, soft_wrap=True)
# Piped or redirected tables keep every column instead of folding to 80 characters.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


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
