"""`hsra evaluate`: quality metrics of reconstructed cubes against ground truth.

A thin command: it pairs files, reads them with :mod:`hsra_cli.io`, and calls
:func:`hsra_cli.metrics.evaluate_cube`; the formulas live only in :mod:`hsra_cli.metrics`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import info, require_files


class ConventionChoice(str, Enum):
    FIELD = "field"
    FLOAT = "float"


# Integer cubes are read unscaled by hsra_cli.io; these are the full-scale values that map them to [0, 1].

_CONVENTION_TEXT = {
    "field": "field convention: prediction clipped to [0,1], both cubes quantised to uint8, peak 255",
    "float": "float convention: prediction clipped to [0,1], floats, peak 1",
}


@app.command(
    "evaluate",
    epilog=(
        "[bold]Examples[/bold]\n\n"
        "  hsra evaluate recon.mat --truth scene01.mat\n"
        "  hsra evaluate a.npy b.npy --truth a_gt.npy --truth b_gt.npy --json\n"
        "  hsra evaluate s1.h5 s2.h5 --truth gt/s1.mat --truth gt/s2.mat --csv -o metrics.csv\n"
        "  hsra evaluate pred.mat --key pred --truth gt.mat --truth-key img --convention float"
    ),
)
def evaluate(
    predictions: list[Path] = typer.Argument(
        ..., metavar="PRED", help="Reconstructed cubes (H×W×C or C×H×W; .mat .h5 .tif .npy .npz).",
        show_default=False,
    ),
    truths: list[Path] = typer.Option(
        ..., "--truth", metavar="FILE",
        help="Ground-truth cube; repeat once per prediction, in the same order.", show_default=False,
    ),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside the prediction files."),
    truth_key: Optional[str] = typer.Option(None, "--truth-key", help="Array name inside the truth files."),
    bands: Optional[int] = typer.Option(None, "--bands", min=1, help="Band count, to find the band axis."),
    convention: ConventionChoice = typer.Option(
        ConventionChoice.FIELD, "--convention",
        help="field: uint8-quantised, as papers report; float: on floats, as training logs.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Write JSON instead of a table."),
    as_csv: bool = typer.Option(False, "--csv", help="Write CSV instead of a table."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", metavar="FILE",
        help="Write the JSON/CSV to FILE instead of stdout (format from --json/--csv or the suffix).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No messages on stderr."),
) -> None:
    """Score reconstructed cubes against ground truth: PSNR, SSIM, SAM, ERGAS, LPSNR(8), LPSNR(16).

    Predictions and truths are paired by position. Values must be in [0, 1]; 8- and 16-bit integer files are
    scaled by 1/255 and 1/65535. PSNR and LPSNR are in dB, SAM in degrees; SSIM and ERGAS are unitless.
    LPSNR(p) is the mean PSNR of non-overlapping p×p tiles (hsra's definition).
    """
    from hsra_cli.errors import ShapeError, UsageError

    if len(predictions) != len(truths):
        raise UsageError(
            f"got {len(predictions)} prediction(s) and {len(truths)} truth file(s); "
            "give one --truth per prediction, in the same order (repeat --truth for each)"
        )
    if as_json and as_csv:
        raise UsageError("--json and --csv are exclusive; choose one")
    output_kind = "json" if as_json else "csv" if as_csv else None
    if output is not None:
        suffix_kind = {".json": "json", ".csv": "csv"}.get(output.suffix.lower())
        if output_kind is None:
            if suffix_kind is None:
                raise UsageError(
                    f"cannot tell the format of {str(output)!r} from its suffix; use .json/.csv or pass --json/--csv"
                )
            output_kind = suffix_kind

    require_files(predictions, "prediction")
    require_files(truths, "truth file")

    from hsra_cli import io as hsra_io
    from hsra_cli.metrics import evaluate_cube, mean_over_scenes

    if output is not None:
        hsra_io.check_writable(output, overwrite=overwrite)  # fail before any work

    scenes = []
    for pred_path, truth_path in zip(predictions, truths):
        pred = _read_scaled(hsra_io, pred_path, key, bands, quiet)
        truth = _read_scaled(hsra_io, truth_path, truth_key, bands, quiet)
        try:
            metrics = evaluate_cube(pred, truth, convention=convention.value)
        except ShapeError as exc:
            raise ShapeError(f"{pred_path} vs {truth_path}: {exc}") from None
        scenes.append({"name": pred_path.stem, "pred": str(pred_path), "truth": str(truth_path), **metrics})
    mean = mean_over_scenes(scenes)

    if output_kind is None:
        _print_table(scenes, mean, convention.value)
        return
    text = _format_json(scenes, mean, convention.value) if output_kind == "json" else _format_csv(scenes, mean)
    if output is None:
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
        info(f"{len(scenes)} scene(s) scored; {_CONVENTION_TEXT[convention.value]}", quiet)
    else:
        with hsra_io.atomic_output(output, overwrite=overwrite) as temporary:
            temporary.write_text(text, encoding="utf-8")
        info(f"wrote {output} ({len(scenes)} scene(s); {_CONVENTION_TEXT[convention.value]})", quiet)


def _read_scaled(hsra_io, path: Path, key: Optional[str], bands: Optional[int], quiet: bool):
    """Read a cube as H×W×C float32 and bring stored 8/16-bit integers to [0, 1]."""
    cube, loaded = hsra_io.read_cube(path, key=key, bands=bands)
    cube, note = hsra_io.unit_range(cube, loaded)
    if note:
        info(note, quiet)
    return cube


def _metric_columns() -> list[str]:
    from hsra_cli.metrics import METRIC_KEYS

    return list(METRIC_KEYS)


def _json_number(value: float):
    # JSON has no NaN; a metric with nothing to measure (all-zero truth) is written as null.
    return None if value != value else value


def _format_json(scenes: list[dict], mean: dict, convention: str) -> str:
    import json

    payload = {
        "convention": convention,
        "scenes": [
            {k: (_json_number(v) if isinstance(v, float) else v) for k, v in scene.items()} for scene in scenes
        ],
        "mean": {k: _json_number(v) for k, v in mean.items()},
    }
    return json.dumps(payload, indent=2) + "\n"


def _format_csv(scenes: list[dict], mean: dict) -> str:
    import csv
    import io

    columns = _metric_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *columns])
    for row_name, values in [*((scene["name"], scene) for scene in scenes), ("mean", mean)]:
        writer.writerow([row_name, *("" if values[k] != values[k] else f"{values[k]:.6f}" for k in columns)])
    return buffer.getvalue()


def _print_table(scenes: list[dict], mean: dict, convention: str) -> None:
    from rich.table import Table

    from hsra_cli.cli._common import stdout
    from hsra_cli.metrics import METRIC_UNITS

    headers = {"psnr": "PSNR", "ssim": "SSIM", "sam": "SAM", "ergas": "ERGAS", "lpsnr8": "LPSNR8",
               "lpsnr16": "LPSNR16"}
    digits = {"psnr": 2, "ssim": 4, "sam": 2, "ergas": 2, "lpsnr8": 2, "lpsnr16": 2}
    table = Table(
        title=f"Metrics ({convention} convention)",
        caption=f"{_CONVENTION_TEXT[convention]}. PSNR, LPSNR in dB; SAM in degrees; SSIM, ERGAS unitless.",
    )
    table.add_column("scene")
    for column in _metric_columns():
        unit = {"dB": " (dB)", "degrees": " (°)"}.get(METRIC_UNITS[column], "")
        table.add_column(headers[column] + unit, justify="right")

    def cells(values: dict) -> list[str]:
        return ["–" if values[k] != values[k] else f"{values[k]:.{digits[k]}f}" for k in _metric_columns()]

    for scene in scenes:
        table.add_row(scene["name"], *cells(scene))
    table.add_section()
    table.add_row("mean", *cells(mean), style="bold")
    stdout.print(table)
