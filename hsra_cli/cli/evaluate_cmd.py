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

#: The suffixes an --output-file of each format may have (the format is told from them without --json/--csv).
_OUTPUT_SUFFIXES = {"json": (".json",), "csv": (".csv",)}

#: Column headers of the metrics (table, notes).
_HEADERS = {"psnr": "PSNR", "ssim": "SSIM", "sam": "SAM", "ergas": "ERGAS", "lpsnr8": "LPSNR8", "lpsnr16": "LPSNR16"}

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
    key: Optional[str] = typer.Option(None, "--key", help="Variable holding the predicted cube (default: the usual names)."),
    truth_key: Optional[str] = typer.Option(None, "--truth-key", help="Variable holding the truth cube (default: the usual names)."),
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
    old_output: List[Path] = typer.Option([], "-o", "--out", "--output", hidden=True),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output-file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and the summary on stderr."),
) -> int:
    """Score reconstructed cubes against ground truth: PSNR, SSIM, SAM, ERGAS, LPSNR(8), LPSNR(16).

    Predictions and truths are paired by name (one prediction file and one truth file pair scene by scene).
    Values must be in [0, 1]; integer files are scaled by their type's maximum (1/255, 1/65535). An all-zero
    truth is refused. PSNR and LPSNR are in dB, SAM in degrees; SSIM and ERGAS are unitless. LPSNR(p) is the
    mean PSNR of non-overlapping p×p tiles (hsra's definition). A pair that fails does not stop the others
    (exit code 1 at the end).
    """
    from rich.markup import escape

    from hsra_cli.cli._common import alias, console
    from hsra_cli.errors import HsraError, InputFileError, UsageError, key_option
    from hsra_cli.inputs import unmatched_message
    from hsra_cli.inputs import SceneReader, collect, pair_scenes, scenes_of, score_pair

    given = list(dict.fromkeys(old_output))  # -o, --out and --output are one option: given twice, which one?
    if len(given) > 1:
        raise UsageError(
            f"-o/--out/--output given different files ({', '.join(repr(str(path)) for path in given)}); "
            "expected one --output-file"
        )
    output = alias(output, given[0] if given else None, "--output-file", "-o/--output")
    if as_json and as_csv:
        raise UsageError("--json and --csv are exclusive; choose one")
    output_kind = "json" if as_json else "csv" if as_csv else None
    if output is not None:
        if output_kind is None:
            output_kind = next((kind for kind, suffixes in _OUTPUT_SUFFIXES.items()
                                if output.suffix.lower() in suffixes), None)
            if output_kind is None:
                raise UsageError(
                    f"cannot tell the format of {str(output)!r} from its suffix; use .json/.csv or pass --json/--csv"
                )

    from hsra_cli import io as hsra_io
    from hsra_cli.batch import check_not_inputs
    from hsra_cli.metrics import check_prediction

    failed: list[tuple[str, HsraError]] = []

    def expand(specs, scene_key, key_flag, role, option=None):
        """The sources and scenes of ``specs``. A spec of ``option`` (--truth) that names nothing (a missing
        file, an empty folder, a pattern matching nothing, a selector that does not fit its file, an unsupported
        suffix) is a usage error naming the option, before anything is scored; one of the predictions fails
        alone. A file that cannot be read fails alone either way."""
        sources, problems, _ = collect(specs)
        if option and problems:
            raise UsageError(f"{option}: {problems[0][1]}") from None
        for spec, exc in problems:
            _add_failure(failed, spec, exc)
        scenes = []
        for source in sources:
            try:
                with key_option(key_flag):
                    scenes.extend(scenes_of(source, scene_key, role=role))
            except UsageError as exc:
                if option:
                    raise UsageError(f"{option}: {exc}") from None
                _add_failure(failed, str(source.path), exc)
            except HsraError as exc:
                _add_failure(failed, str(source.path), exc)
        return sources, scenes

    pred_sources, pred_scenes = expand(predictions, key, "--key", "prediction")
    truth_sources, truth_scenes = expand(truths, truth_key, "--truth-key", "truth", option="--truth")
    if output is not None:
        check_not_inputs([output], [s.path for s in pred_sources + truth_sources], "give --output-file another name")
        _check_not_records(output, pred_sources)
        hsra_io.check_output_suffix(output, _OUTPUT_SUFFIXES[output_kind], f"the {output_kind.upper()} of --{output_kind}")
        hsra_io.check_writable(output, overwrite=overwrite)  # fail before any work
    # With no usable truth at all, the truths' own errors say it all.
    pairs, unmatched = pair_scenes(pred_scenes, truth_scenes, by_position=pair_by_position) if truth_scenes else ([], [])
    for prediction in unmatched:
        failed.append((str(prediction), UsageError(unmatched_message(prediction, truth_scenes))))
    single = len(pairs) + len(failed) == 1

    pred_reader = SceneReader(key, bands, role="prediction")
    truth_reader = SceneReader(truth_key, bands, key_flag="--truth-key", role="truth")
    said: set = set()  # scaling notes printed: each once
    scored = []  # (row, prediction, truth)
    for prediction, truth in pairs:
        try:
            pred = _read_scaled(pred_reader, prediction, quiet, said)
            check_prediction(pred, f"the prediction {prediction}")  # before the truth is read: fail early
            true = _read_scaled(truth_reader, truth, quiet, said)
            metrics = score_pair(pred, true, prediction, truth, convention=convention.value)
        except HsraError as exc:
            failed.append((str(prediction), exc))
            continue
        except MemoryError:
            failed.append((str(prediction), InputFileError(f"out of memory scoring {prediction} against {truth}")))
            continue
        scored.append(({"name": prediction.stem, "method": "", "pred": str(prediction), "truth": str(truth),
                        **metrics}, prediction, truth))
    _name_methods_apart(scored)
    scenes = [row for row, _, _ in scored]
    means = _means(scenes)
    if not scenes and output_kind == "json":
        # a parser still gets a document, on stdout or in --output-file: no scenes, and what failed
        text = _format_json(scenes, means, convention.value, failed)
        if output is None:
            _write_stdout(text)
        else:
            _write_output(output, text, overwrite, quiet)
            info(f"wrote {escape(str(output))} (0 scenes scored; the failures under \"failed\")", quiet or single)
    if not scenes and output_kind == "csv" and output is None:
        _write_stdout(_format_csv(scenes, means))  # the header: a parser sees an empty table (a file holds nothing)
    if single and failed:
        raise failed[0][1]
    for spec, error in failed:
        console.print(f"[red]failed[/red] {escape(spec)}: {escape(str(error))}")
    if not scenes:
        console.print(f"[red]0 scored, {len(failed)} failed[/red]")
        return 1
    _note_undefined_means(means, quiet)

    if output_kind is None:
        _print_table(scenes, means, convention.value)
    else:
        text = _format_json(scenes, means, convention.value, failed) if output_kind == "json" else _format_csv(scenes, means)
        if output is None:
            _write_stdout(text)
            info(f"{len(scenes)} scene(s) scored; {_CONVENTION_TEXT[convention.value]}", quiet)
        else:
            _write_output(output, text, overwrite, quiet)
            info(f"wrote {escape(str(output))} ({len(scenes)} scene(s); {_CONVENTION_TEXT[convention.value]})", quiet)
    if failed:
        console.print(f"[red]{len(scenes)} scored, {len(failed)} failed[/red]")
        return 1
    return 0


def _check_not_records(output: Path, sources) -> None:
    """Refuse, whatever --overwrite says, an --output-file that is the record beside a prediction (hsra
    reconstruct's <stem>.json), which this call reads for the prediction's method: it would be lost."""
    from hsra_cli.errors import UsageError
    from hsra_cli.inputs import same_file

    if not output.exists():
        return
    for source in sources:
        record = source.path.with_suffix(".json")
        if record.exists() and same_file(output, record):
            raise UsageError(
                f"output {output} would replace {record}, the record of the input {source.path} that this call "
                "reads; give --output-file another name"
            )


def _write_output(output: Path, text: str, overwrite: bool, quiet: bool) -> None:
    """Write the JSON/CSV to --output-file atomically (never half a file)."""
    from rich.markup import escape

    from hsra_cli import io as hsra_io
    from hsra_cli.batch import clean_stale_temporaries

    clean_stale_temporaries(output.parent, lambda text: info(f"note: {escape(text)}", quiet))
    with hsra_io.atomic_output(output, overwrite=overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _write_stdout(text: str) -> None:
    import sys

    sys.stdout.write(text)
    sys.stdout.flush()


def _add_failure(failed: list, spec: str, error) -> None:
    """Record that ``spec`` failed. A file that fails both as prediction and as truth (``two.mat --truth two.mat``,
    a file holding several arrays) is one input: its failures become one, naming both flags or both problems."""
    from hsra_cli.errors import InputFileError, KeyChoiceError, UsageError

    for index, (other_spec, other) in enumerate(failed):
        if other_spec != spec:
            continue
        if str(other) == str(error):
            return
        if (isinstance(other, KeyChoiceError) and isinstance(error, KeyChoiceError)
                and other.template == error.template):
            failed[index] = (spec, KeyChoiceError(other.template, f"{other.option} and {error.option}"))
        else:
            kind = UsageError if other.exit_code == UsageError.exit_code else InputFileError
            failed[index] = (spec, kind(f"{other}; and as truth: {error}"))
        return
    failed.append((spec, error))


def _name_ending(prediction, truth) -> str:
    """What follows the truth's name in the prediction's (``scene01_mst`` ↔ ``scene01``: ``mst``), the way
    :func:`hsra_cli.inputs.pair_scenes` pairs them; "" when the names are alike or unrelated (by position)."""
    from hsra_cli.inputs import _NAME_SEPARATORS, _truth_name, _truth_stem

    names = [_truth_name(truth)] + ([f"{_truth_stem(truth)}_{truth.index}"] if truth.index is not None else [])
    if prediction.name in names:
        return ""
    for name in sorted(names, key=len, reverse=True):
        rest = prediction.name[len(name):]
        if prediction.name.startswith(name) and len(rest) > 1 and rest[0] in _NAME_SEPARATORS:
            return rest[1:]
    return ""


def _method_of(prediction, truth) -> tuple[str, bool]:
    """The method that made a prediction, and whether it is named (rather than its folder's name): the model in
    the JSON record beside it, else its name's ending after the truth's name (``scene01_mst``: ``mst``), else
    its folder's name (of the absolute path: files of the current folder too have one)."""
    import json

    from hsra_cli.inputs import absolute

    try:
        model = json.loads(prediction.path.with_suffix(".json").read_text(encoding="utf-8")).get("model")
        if isinstance(model, str) and model:
            return model, True
    except (OSError, ValueError, AttributeError):
        pass
    ending = _name_ending(prediction, truth)
    if ending:
        return ending, True
    return absolute(prediction.path).parent.name, False


def _distinct_tails(folders: list[Path]) -> dict[Path, str]:
    """The shortest trailing parts that tell the folders apart: ``x/out`` and ``y/out``, ``rec_a`` and ``rec_b``."""
    for count in range(1, max(len(folder.parts) for folder in folders) + 1):
        tails = {folder: "/".join(folder.parts[-count:]) for folder in folders}
        if len(set(tails.values())) == len(folders):
            return tails
    return {folder: str(folder) for folder in folders}


def _name_methods_apart(scored: list) -> None:
    """Give each row (of ``(row, prediction, truth)``) its ``method``, the run that made it, whose scenes the
    means average. With several methods every row gets it in its name too, ``scene07 (hsra-s.any)``, unless its
    name already says it (``scene07_mst`` of method ``mst``, ``scene07_hsra-s`` of ``hsra-s.any``, as
    ``--name '{stem}_{model}'`` names them); with one, only same-named rows do.

    A run is a method (:func:`_method_of`); but one run never scores a truth twice, so a method with two rows
    of one truth is several runs (``rec_a/`` and ``rec_b/`` of one model, one run written as .mat and .h5):
    they are told apart by their folder (``hsra-s.any, rec_a``), else their file type (``hsra-s.any, .h5``),
    else each file is a run of its own (``a.npy`` and ``b.npy`` against one truth)."""
    from hsra_cli.inputs import absolute

    entries = []
    for row, prediction, truth in scored:
        method, named = _method_of(prediction, truth)
        entries.append({"row": row, "label": method, "named": named, "truth": str(truth),
                        "folder": absolute(prediction.path).parent, "suffix": prediction.path.suffix.lower(),
                        "file": str(prediction), "ending": _name_ending(prediction, truth)})

    def split(group: list, level: int) -> None:
        truths = [entry["truth"] for entry in group]
        if len(set(truths)) == len(truths) or level > 2:
            return
        attribute = ("folder", "suffix", "file")[level]
        values = list(dict.fromkeys(entry[attribute] for entry in group))
        if len(values) == 1:
            split(group, level + 1)
            return
        tails = _distinct_tails(values) if attribute == "folder" else {}
        for value in values:
            own = [entry for entry in group if entry[attribute] == value]
            for entry in own:
                if attribute == "folder":
                    entry["label"] = f"{entry['label']}, {tails[value]}" if entry["named"] else tails[value]
                elif attribute == "suffix":
                    entry["label"] = f"{entry['label']}, {value}"
                else:
                    name = entry["row"]["name"]
                    entry["label"] = f"{entry['label']}, {name}" if entry["named"] else name
            split(own, level + 1)

    for label in list(dict.fromkeys(entry["label"] for entry in entries)):
        split([entry for entry in entries if entry["label"] == label], 0)
    names = [entry["row"]["name"] for entry in entries]
    several = len({entry["label"] for entry in entries}) > 1
    for entry in entries:
        entry["row"]["method"] = entry["label"]
        ending = entry["ending"]
        said = entry["label"] in (entry["row"]["name"], ending) or bool(  # scene07_mst (mst), a.npy (a), and
            ending and entry["label"].lower().startswith(ending.lower() + "."))  # scene07_hsra-s (hsra-s.any)
        if names.count(entry["row"]["name"]) > 1 or (several and not said):
            entry["row"]["name"] = f"{entry['row']['name']} ({entry['label']})"
    names = [entry["row"]["name"] for entry in entries]
    for entry in entries:  # still alike (one method's files of one name, paired by position): their paths
        if names.count(entry["row"]["name"]) > 1:
            entry["row"]["name"] = entry["file"]


def _means(scenes: list[dict]) -> list[tuple[str, dict, dict]]:
    """The means the outputs show, as ``(method, values, counts)``: each method's own mean over its scenes (a
    mean across methods means nothing), ``counts`` saying how many scenes each metric's mean is over (fewer
    than the method's scenes where the metric is undefined for some). The table, the JSON and the CSV all
    show these, one per method, even for a method with one scene."""
    from hsra_cli.metrics import defined_counts, mean_over_scenes

    groups = [[s for s in scenes if s["method"] == method] for method in dict.fromkeys(s["method"] for s in scenes)]
    return [(own[0]["method"], mean_over_scenes(own), defined_counts(own)) for own in groups]


def _mean_label(method: str, means: list) -> str:
    """``mean`` for the one method (or one without a name), ``mean (METHOD)`` when several are compared."""
    return "mean" if len(means) == 1 or not method else f"mean ({method})"


def _note_undefined_means(means: list, quiet: bool) -> None:
    """Say on stderr when a mean is over fewer scenes than its method's (a metric undefined for some)."""
    from rich.markup import escape

    from hsra_cli.metrics import UNDEFINED_WHEN

    for method, _, counts in means:
        scenes = counts["psnr"]  # PSNR is defined for every scene
        where = f" of {escape(method)}" if len(means) > 1 else ""
        for key, count in counts.items():
            if count < scenes:
                over = f"its mean is over {count}" if count else "it has no mean"
                info(f"note: {_HEADERS[key]} is undefined for {scenes - count} of {scenes} scene(s){where} "
                     f"({UNDEFINED_WHEN.get(key, 'nothing to measure')}): {over}", quiet)


def _read_scaled(reader, scene, quiet: bool, said: set | None = None):
    """Read a scene as H×W×C float32 with stored integers brought to [0, 1]; the scaling is said once per file
    (``said``: the notes already printed in this run; every scene of a stack, or a truth paired many times,
    would repeat it)."""
    cube, _, note = reader.read(scene)
    if note and (said is None or note not in said):
        from rich.markup import escape

        info(escape(note), quiet)
        if said is not None:
            said.add(note)
    return cube


def _metric_columns() -> list[str]:
    from hsra_cli.metrics import METRIC_KEYS

    return list(METRIC_KEYS)


def _json_number(value: float):
    # JSON has no NaN; a metric with nothing to measure (all-zero truth) is written as null.
    return None if value != value else value


def _format_json(scenes: list[dict], means: list, convention: str, failed=()) -> str:
    """The JSON report; its keys are always there: ``mean_by_method`` (one entry per method) and
    ``mean_scene_counts`` (how many scenes each of those means is over, metric by metric), ``failed`` (maybe
    empty), and ``mean`` too when there is one method (as before methods were told apart)."""
    import json

    payload = {
        "convention": convention,
        "scenes": [
            {k: (_json_number(v) if isinstance(v, float) else v) for k, v in scene.items()} for scene in scenes
        ],
    }
    by_method = {method: {k: _json_number(v) for k, v in values.items()} for method, values, _ in means}
    if len(means) == 1:
        payload["mean"] = next(iter(by_method.values()))
    payload["mean_by_method"] = by_method
    payload["mean_scene_counts"] = {method: dict(counts) for method, _, counts in means}
    payload["failed"] = [{"input": spec, "error": str(error)} for spec, error in failed]
    return json.dumps(payload, indent=2) + "\n"


def _format_csv(scenes: list[dict], means: list) -> str:
    import csv
    import io

    columns = _metric_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *columns, "method"])  # method last: the metrics keep their columns
    for row_name, values, method in [*((scene["name"], scene, scene["method"]) for scene in scenes),
                                     *((_mean_label(method, means), values, method) for method, values, _ in means)]:
        writer.writerow([row_name, *("" if values[k] != values[k] else f"{values[k]:.6f}" for k in columns), method])
    return buffer.getvalue()


def _print_table(scenes: list[dict], means: list, convention: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from hsra_cli.cli._common import stdout
    from hsra_cli.metrics import METRIC_UNITS

    digits = {"psnr": 2, "ssim": 4, "sam": 2, "ergas": 2, "lpsnr8": 2, "lpsnr16": 2}
    table = Table(
        title=f"Metrics ({convention} convention)",
        caption=f"{_CONVENTION_TEXT[convention]}. PSNR, LPSNR in dB; SAM in degrees; SSIM, ERGAS unitless.",
    )
    table.add_column("scene")
    for column in _metric_columns():
        unit = {"dB": " (dB)", "degrees": " (°)"}.get(METRIC_UNITS[column], "")
        table.add_column(_HEADERS[column] + unit, justify="right")

    def cells(values: dict) -> list[str]:
        return ["–" if values[k] != values[k] else f"{values[k]:.{digits[k]}f}" for k in _metric_columns()]

    for scene in scenes:  # names are the user's: escaped, so "[bold]b.npy" shows as it is
        table.add_row(escape(scene["name"]), *cells(scene))
    if means:
        table.add_section()
    for method, values, _ in means:
        table.add_row(escape(_mean_label(method, means)), *cells(values), style="bold")
    stdout.print(table)
