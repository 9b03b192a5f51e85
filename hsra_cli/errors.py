"""Errors the user can act on.

Library code raises these; the CLI turns each into one line on stderr and an exit code
(``UsageError`` -> 2, everything else -> 1). Messages name the problem and what was expected.
"""

from __future__ import annotations

import contextlib


class HsraError(Exception):
    """A runtime problem with the user's data or environment (CLI exit code 1)."""

    exit_code = 1


class UsageError(HsraError):
    """A problem with how the tool was called: options, missing inputs (CLI exit code 2)."""

    exit_code = 2


class InputFileError(HsraError):
    """An input file is missing, unreadable, corrupt, or holds no usable array."""


class KeyChoiceError(InputFileError):
    """A file problem whose remedy is the flag naming the array to read; ``template`` has ``{option}`` where that
    flag goes (the readers know the role of an array, the command knows its flag: see :func:`key_option`)."""

    def __init__(self, template: str, option: str = "--key"):
        self.template, self.option = template, option
        super().__init__(template.replace("{option}", option))


class AmbiguousArrayError(KeyChoiceError):
    """A file holds several arrays and no key says which one to read."""

    def __init__(self, path, listing: str, option: str = "--key"):
        super().__init__(f"{path} holds several arrays ({listing}); pass {{option}} to choose one", option)


@contextlib.contextmanager
def key_option(option: str):
    """Inside this block a file that needs a key asks for ``option`` (``--truth-key``, ``--data-key``): the readers
    know the role of an array, the command knows the flag that names it."""
    try:
        yield
    except KeyChoiceError as exc:
        raise KeyChoiceError(exc.template, option) from None


class ShapeError(HsraError):
    """Array shapes disagree with each other or with the physics (bands, step, axis)."""


class ValueRangeError(HsraError):
    """Array values are unusable (NaN, Inf, all zero, ...)."""


class OutputExistsError(UsageError):
    """An output file already exists and ``--overwrite`` was not given."""


class WeightsError(HsraError):
    """Model weights are missing, corrupt, or do not fit the architecture."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread by the CLI's signal handlers.

    Not an ``Exception``: like KeyboardInterrupt it passes every ``except Exception``, so temporary files are removed
    and batches finish the item in progress and report what is left (they catch :data:`INTERRUPTS`). The CLI exits
    with ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum

    @property
    def signal_name(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


#: What stops a batch early: Ctrl-C in plain Python, or a signal the CLI turned into :class:`Interrupted`.
INTERRUPTS = (KeyboardInterrupt, Interrupted)

# A signal that arrives inside :func:`interrupts_deferred` waits for the end of the block.
_deferring = 0
_deferred_signal: int | None = None


def raise_interrupted(signum: int) -> None:
    """What the CLI's signal handler does: raise :class:`Interrupted` now, or at the end of an
    :func:`interrupts_deferred` block that is running."""
    global _deferred_signal
    if _deferring:
        _deferred_signal = int(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_deferred():
    """A few steps that must not be cut in two by SIGINT/SIGTERM (a set counted as done and its path printed): a
    signal arriving inside is raised as :class:`Interrupted` when the block ends."""
    global _deferring, _deferred_signal
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _deferred_signal is not None:
            signum, _deferred_signal = _deferred_signal, None
            raise Interrupted(signum)
