"""The ``hsra`` command line: thin commands over the library.

Each command lives in its own module and registers itself on :data:`app`. Heavy imports (torch, the
networks, file formats) happen inside the commands so ``hsra --help`` stays fast. :func:`main` turns every
error into one line on stderr: exit code 2 for usage errors, 1 for runtime errors, never a traceback
(set ``HSRA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="hsra",
    help="Hyperspectral reconstruction from coded-aperture snapshot captures (CASSI).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)



def _version(value: bool):
    if value:
        from .. import __version__

        print(f"hsra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Hyperspectral reconstruction from coded-aperture snapshot captures (CASSI).

    Typical run: [b]hsra simulate[/b] a cube (or take a real capture), [b]hsra reconstruct[/b] it,
    [b]hsra evaluate[/b] against the truth, [b]hsra render[/b] previews. See [b]hsra models[/b] for the methods.
    """


# Commands register themselves on `app` when imported.
from . import simulate_cmd, reconstruct_cmd, evaluate_cmd, render_cmd, models_cmd, train_cmd, calibrate_cmd, report_cmd  # noqa: E402,F401


def _error(message: str, code: int) -> int:
    sys.stderr.write(f"hsra: error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hsra`` console script; returns (and exits with) the exit code."""
    from ..errors import HsraError

    args = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("HSRA_DEBUG", "") not in ("", "0")
    try:
        result = app(args=args, prog_name="hsra", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = _error("aborted", 130)
    except typer.TyperException as exc:  # usage errors from option parsing (exit code 2)
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", "hsra") or "hsra"
        hint = f" (see '{path} --help')" if exc.exit_code == 2 else ""
        code = _error(exc.format_message() + hint, exc.exit_code)
    except HsraError as exc:
        if debug:
            raise
        code = _error(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        code = _error("interrupted", 130)
    except MemoryError:
        code = _error("out of memory; try a smaller --tile-size or --device cpu", 1)
    except Exception as exc:  # a bug of ours: still one line, with a way to see more
        if debug:
            raise
        code = _error(f"internal error: {type(exc).__name__}: {exc} (run with HSRA_DEBUG=1 for the traceback)", 1)
    if argv is None:
        sys.exit(code)
    return code
