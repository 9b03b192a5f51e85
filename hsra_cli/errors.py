"""Errors the user can act on.

Library code raises these; the CLI turns each into one line on stderr and an exit code
(``UsageError`` -> 2, everything else -> 1). Messages name the problem and what was expected.
"""

from __future__ import annotations


class HsraError(Exception):
    """A runtime problem with the user's data or environment (CLI exit code 1)."""

    exit_code = 1


class UsageError(HsraError):
    """A problem with how the tool was called: options, missing inputs (CLI exit code 2)."""

    exit_code = 2


class InputFileError(HsraError):
    """An input file is missing, unreadable, corrupt, or holds no usable array."""


class ShapeError(HsraError):
    """Array shapes disagree with each other or with the physics (bands, step, axis)."""


class ValueRangeError(HsraError):
    """Array values are unusable (NaN, Inf, all zero, ...)."""


class OutputExistsError(UsageError):
    """An output file already exists and ``--overwrite`` was not given."""


class WeightsError(HsraError):
    """Model weights are missing, corrupt, or do not fit the architecture."""
