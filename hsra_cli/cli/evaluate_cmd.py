"""`hsra evaluate`: quality metrics of reconstructed cubes against ground truth.

A thin command: it pairs files, reads them with :mod:`hsra_cli.io`, and calls
:func:`hsra_cli.metrics.evaluate_cube`; the formulas live only in :mod:`hsra_cli.metrics`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import info


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
        "  hsra evaluate out/ --truth gt/ --csv --output-file metrics.csv   [dim]# paired by name[/dim]\n"
        "  hsra evaluate 'out/*_gap-tv.mat' 'out/*_hsra-s.mat' --truth gt/   [dim]# scene01_gap-tv ↔ scene01[/dim]\n"
        "  hsra evaluate Test_result.mat --key pred --truth Test_result.mat --truth-key truth   [dim]# MST stacks[/dim]\n"
        "  hsra evaluate recon/ --truth kaist_truth.npz:0-4 --pair-by-position --json\n"
        "  hsra evaluate pred.mat --key pred --truth gt.mat --truth-key img --convention float"
    ),
)
def evaluate(
    predictions: List[str] = typer.Argument(
        ..., metavar="PRED...",
        help="Reconstructed cubes (H×W×C or C×H×W; .mat .h5 .tif .npy .npz): files, folders, quoted patterns, "
        "N×H×W×C stacks, stack.npz:SCENES.",
        show_default=False,
    ),
    truths: List[str] = typer.Option(
        ..., "--truth", metavar="TRUTH",
        help="Ground truth, same syntax; repeatable. Paired with the predictions by name (scene01 ↔ scene01, "
        "scene01_gt, or scene01_<method>).",
        show_default=False,
    ),
    pair_by_position: bool = typer.Option(
        False, "--pair-by-position", help="Pair in the order given (or one truth for all) instead of by name."
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
        None, "--output-file", metavar="FILE",
        help="Write the JSON/CSV to FILE instead of stdout (format from --json/--csv or the suffix).",
    ),
    old_output: Optional[Path] = typer.Option(None, "-o", "--out", "--output", hidden=True),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output-file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No messages on stderr but errors and the summary."),
) -> int:
    """Score reconstructed cubes against ground truth: PSNR, SSIM, SAM, ERGAS, LPSNR(8), LPSNR(16).

    Predictions and truths are paired by name (one prediction file and one truth file pair scene by scene).
    Values must be in [0, 1]; integer files are scaled by their type's maximum (1/255, 1/65535). An all-zero
    truth is refused. PSNR and LPSNR are in dB, SAM in degrees; SSIM and ERGAS are unitless. LPSNR(p) is the
    mean PSNR of non-overlapping p×p tiles (hsra's definition). A pair that fails does not stop the others
    (exit code 1 at the end).
    """
    import numpy as np
    from rich.markup import escape

    from hsra_cli.cli._common import alias, console
    from hsra_cli.errors import HsraError, InputFileError, ShapeError, UsageError, ValueRangeError, key_option
    from hsra_cli.inputs import SceneReader, collect, pair_scenes, scenes_of, unmatched_message

    output = alias(output, old_output, "--output-file", "-o/--output")
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

    from hsra_cli import io as hsra_io
    from hsra_cli.batch import check_not_inputs
    from hsra_cli.metrics import evaluate_cube

    failed: list[tuple[str, HsraError]] = []

    def expand(specs, scene_key, key_flag):
        sources, problems, _ = collect(specs)
        failed.extend(problems)
        scenes = []
        for source in sources:
            try:
                with key_option(key_flag):
                    scenes.extend(scenes_of(source, scene_key))
            except HsraError as exc:
                failed.append((str(source.path), exc))
        return sources, scenes

    pred_sources, pred_scenes = expand(predictions, key, "--key")
    truth_sources, truth_scenes = expand(truths, truth_key, "--truth-key")
    if output is not None:
        check_not_inputs([output], [s.path for s in pred_sources + truth_sources], "give --output-file another name")
        hsra_io.check_writable(output, overwrite=overwrite)  # fail before any work
    # With no usable truth at all, the truths' own errors say it all.
    pairs, unmatched = pair_scenes(pred_scenes, truth_scenes, by_position=pair_by_position) if truth_scenes else ([], [])
    for prediction in unmatched:
        failed.append((str(prediction), UsageError(unmatched_message(prediction, truth_scenes))))
    single = len(pairs) + len(failed) == 1

    pred_reader, truth_reader = SceneReader(key, bands), SceneReader(truth_key, bands, key_flag="--truth-key")
    scenes = []
    for prediction, truth in pairs:
        try:
            pred = _read_scaled(pred_reader, prediction, quiet)
            true = _read_scaled(truth_reader, truth, quiet)
            try:
                metrics = evaluate_cube(pred, true, convention=convention.value)
            except ShapeError as exc:
                raise ShapeError(f"{prediction} vs {truth}: {exc}") from None
            if not np.any(true):  # the metrics would be NaN or meaningless: a wrong file or key, not a score
                raise ValueRangeError(
                    f"truth {truth} is all zero: nothing to score against; expected a cube of reflectances "
                    "(the right file and --truth-key?)"
                )
        except HsraError as exc:
            failed.append((str(prediction), exc))
            continue
        except MemoryError:
            failed.append((str(prediction), InputFileError(f"out of memory scoring {prediction} against {truth}")))
            continue
        scenes.append({"name": prediction.name, "pred": str(prediction), "truth": str(truth), **metrics})
    _name_methods_apart(scenes)
    if single and failed:
        raise failed[0][1]
    for spec, error in failed:
        console.print(f"[red]failed[/red] {escape(spec)}: {escape(str(error))}")
    if not scenes:
        console.print(f"[red]0 scored, {len(failed)} failed[/red]")
        return 1
    means = _means(scenes)

    if output_kind is None:
        _print_table(scenes, means, convention.value)
    else:
        text = _format_json(scenes, means, convention.value, failed) if output_kind == "json" else _format_csv(scenes, means)
        if output is None:
            import sys

            sys.stdout.write(text)
            sys.stdout.flush()
            info(f"{len(scenes)} scene(s) scored; {_CONVENTION_TEXT[convention.value]}", quiet)
        else:
            from hsra_cli.batch import clean_stale_temporaries

            clean_stale_temporaries(output.parent, lambda text: info(f"note: {text}", quiet))
            with hsra_io.atomic_output(output, overwrite=overwrite) as temporary:
                temporary.write_text(text, encoding="utf-8")
            info(f"wrote {output} ({len(scenes)} scene(s); {_CONVENTION_TEXT[convention.value]})", quiet)
    if failed:
        console.print(f"[red]{len(scenes)} scored, {len(failed)} failed[/red]")
        return 1
    return 0


def _method_of(prediction_path: str) -> str:
    """The method that made a prediction: the model in the JSON record beside it, else its folder's name."""
    import json

    path = Path(str(prediction_path))
    if not path.exists():  # a scene of a stack, "stack.npz:3"
        path = Path(str(prediction_path).rpartition(":")[0])
    record = path.with_suffix(".json")
    try:
        model = json.loads(record.read_text(encoding="utf-8")).get("model")
        if isinstance(model, str) and model:
            return model
    except (OSError, ValueError, AttributeError):
        pass
    return path.parent.name


def _name_methods_apart(scenes: list[dict]) -> None:
    """Rows scored against the same truth were made by several methods: each gets its ``method`` (so the means
    are taken per method), and same-named ones (from different folders) get it in their name too,
    ``colorchecker (hsra-s.any)``; ``scene_hsra-s`` and ``scene_gap-tv`` of one folder keep theirs."""
    names = [scene["name"] for scene in scenes]
    truths = [scene["truth"] for scene in scenes]
    for scene in scenes:
        if truths.count(scene["truth"]) > 1:
            scene["method"] = _method_of(scene["pred"])
            if names.count(scene["name"]) > 1:
                scene["name"] = f"{scene['name']} ({scene['method']})"


def _means(scenes: list[dict]) -> list[tuple[str | None, dict]]:
    """The means the outputs show, as ``(method, values)``: one over every scene (method None), or, when the rows
    compare methods, each method's own mean over its scenes (a mean across methods means nothing). The table,
    the JSON and the CSV all show these."""
    from hsra_cli.metrics import mean_over_scenes

    methods = [scene["method"] for scene in scenes if "method" in scene]
    if not methods:
        return [(None, mean_over_scenes(scenes))]
    groups = [(method, [s for s in scenes if s.get("method") == method]) for method in dict.fromkeys(methods)]
    return [(method, mean_over_scenes(own)) for method, own in groups if len(own) > 1]


def _mean_label(method: str | None) -> str:
    return "mean" if method is None else f"mean ({method})"


def _read_scaled(reader, scene, quiet: bool):
    """Read a scene as H×W×C float32 with stored integers brought to [0, 1]."""
    cube, _, note = reader.read(scene)
    if note:
        info(note, quiet)
    return cube


def _metric_columns() -> list[str]:
    from hsra_cli.metrics import METRIC_KEYS

    return list(METRIC_KEYS)


def _json_number(value: float):
    # JSON has no NaN; a metric with nothing to measure (all-zero truth) is written as null.
    return None if value != value else value


def _format_json(scenes: list[dict], means: list, convention: str, failed=()) -> str:
    import json

    payload = {
        "convention": convention,
        "scenes": [
            {k: (_json_number(v) if isinstance(v, float) else v) for k, v in scene.items()} for scene in scenes
        ],
    }
    for method, values in means:  # "mean", or one "mean_by_method" entry per method compared
        numbers = {k: _json_number(v) for k, v in values.items()}
        if method is None:
            payload["mean"] = numbers
        else:
            payload.setdefault("mean_by_method", {})[method] = numbers
    if failed:
        payload["failed"] = [{"input": spec, "error": str(error)} for spec, error in failed]
    return json.dumps(payload, indent=2) + "\n"


def _format_csv(scenes: list[dict], means: list) -> str:
    import csv
    import io

    columns = _metric_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *columns])
    for row_name, values in [*((scene["name"], scene) for scene in scenes),
                             *((_mean_label(method), values) for method, values in means)]:
        writer.writerow([row_name, *("" if values[k] != values[k] else f"{values[k]:.6f}" for k in columns)])
    return buffer.getvalue()


def _print_table(scenes: list[dict], means: list, convention: str) -> None:
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
    if means:
        table.add_section()
    for method, values in means:
        table.add_row(_mean_label(method), *cells(values), style="bold")
    stdout.print(table)
