"""`hsra models`: the registered reconstruction methods, their compute, weights and model cards.

A thin command over :mod:`hsra_cli.nets.catalog` (the listing) and :mod:`hsra_cli.weights` (cards).
"""

from __future__ import annotations

import json

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import complete_model, info, stdout

models_app = typer.Typer(
    name="models",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")

_LIST_EXAMPLES = (
    "[bold]Examples[/bold]\n\n"
    "  hsra models\n"
    "  hsra models --json > models.json\n"
    "  hsra models info hsra-s\n"
    "  HSRA_MODELS_DIR=~/hsra-models hsra models"
)
_JSON_HELP = "Write the list as JSON on stdout instead of a table."


def _fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _checked_rows() -> list[dict]:
    """:func:`describe_models`, with each installed folder checked (:func:`hsra_cli.weights.folder_problem`): one that cannot be
    loaded is not installed weights (``weights_installed`` false, ``weights_problem`` says why)."""
    from hsra_cli.nets.catalog import describe_models

    from hsra_cli.weights import folder_problem

    rows = describe_models()
    checked: dict[str, tuple[str, str] | None] = {}
    for row in rows:
        row["weights_state"] = "yes" if row["weights_installed"] else ("no" if row["needs_weights"] else "n/a")
        row["weights_problem"] = None
        folder = row["weights_folder"]
        if row["weights_installed"] and folder:
            if folder not in checked:
                checked[folder] = folder_problem(folder)
            if checked[folder] is not None:
                row["weights_state"], row["weights_problem"] = checked[folder]
                row["weights_installed"] = False
    return rows


def _list(as_json: bool, quiet: bool) -> None:
    from rich.markup import escape

    from hsra_cli.cli._common import warn

    from hsra_cli.weights import missing_search_folders

    rows = _checked_rows()
    if not quiet:
        for folder in missing_search_folders():
            warn(escape(f"$HSRA_MODELS_DIR names {folder}, which is not a folder: no weights are searched there"))
        for message in dict.fromkeys(row["weights_problem"] for row in rows if row["weights_problem"]):
            warn(escape(message))
    if as_json:
        stdout.print(json.dumps(rows, indent=1), markup=False, highlight=False)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    measured = any(row["accuracy_on"] for row in rows)
    columns = [("name", "left", True), ("aliases", "left", True), ("kind", "left", True), ("params M", "right", True),
               ("GFLOPs", "right", True), ("weights", "left", True), ("PSNR/SSIM", "right", True),
               ("alone", "right", True)]
    trained = any(row["trained_on"] for row in rows)
    columns += [("trained on", "left", False)] if trained else []
    columns += [("measured on", "left", False)] if measured else []
    for column, justify, no_wrap in columns:
        # file names have no spaces to wrap at: fold them rather than cut them off with an ellipsis
        table.add_column(column, justify=justify, no_wrap=no_wrap, overflow="ellipsis" if no_wrap else "fold")
    for row in rows:
        weights = row["weights_state"]
        # as `hsra reconstruct` gives it by default (refined) when measured, and the network alone
        default = (row["psnr_default_db"], row["ssim_default"]) if row["psnr_default_db"] is not None else (
            row["psnr_db"], row["ssim"])
        accuracy = "—" if default[0] is None else f"{default[0]:.2f}/{_fmt(default[1], '.3f')}"
        alone = _fmt(row["psnr_db"], ".2f")
        cells = [
            row["name"], ", ".join(row["aliases"]) or "—", row["kind"],
            _fmt(row["parameters_m"] if row["needs_weights"] else None, ".2f"),
            _fmt(row["gflops"], ".2f"), weights, accuracy, alone,
        ]
        table.add_row(*cells, *([row["trained_on"] or "—"] if trained else []),
                      *([row["accuracy_on"] or "—"] if measured else []))
    stdout.print(table)
    info("PSNR/SSIM: held-out data of the card, field convention, as `hsra reconstruct` gives it by default; alone: "
         "the network without its refinement (--refine 0).", quiet)
    from hsra_cli.registry import AUTO, DEFAULT_NETWORK, FALLBACK_SOLVER

    info(f"hsra reconstruct without --model ({AUTO}): {DEFAULT_NETWORK} (its default tag) when the capture's geometry "
         f"is the one it was trained for, else {FALLBACK_SOLVER}.", quiet)
    info("GFLOPs: fvcore, batch 1, 28×256×256 cube. Weights are searched in $HSRA_MODELS_DIR, then the package's "
         "models. Card, license and citation: hsra models info NAME", quiet)
    if any(r["gflops"] is None and r["needs_weights"] for r in rows):
        info("[yellow]some GFLOPs are not cached; run `python -m hsra_cli.flops --update`[/yellow]", quiet)


def _auto_info(as_json: bool) -> None:
    """What ``--model auto`` (hsra reconstruct's default) is, and what it chooses here for the default geometry."""
    from hsra_cli.reconstruct import choose_model
    from hsra_cli.registry import AUTO, DEFAULT_NETWORK, FALLBACK_SOLVER

    chosen, reason = choose_model()
    if as_json:
        row = {"name": AUTO, "default_network": DEFAULT_NETWORK, "fallback": FALLBACK_SOLVER,
               "chosen_without_geometry_options": chosen, "reason": reason}
        stdout.print(json.dumps(row, indent=1), markup=False, highlight=False)
        return
    lines = [
        f"# {AUTO}: what hsra reconstruct runs without --model", "",
        f"The shipped network {DEFAULT_NETWORK} (its default tag's weights, with its default refinement) when the "
        "capture's geometry (--bands, --step, --axis, or what --mask-offset auto finds) is the one its weights were "
        f"trained for; otherwise {FALLBACK_SOLVER}, which needs no weights and takes any geometry, with a note on "
        "stderr saying why. Each record keeps the choice (model_choice).", "",
        f"Here, without geometry options: {chosen} ({reason}).",
    ]
    stdout.print("\n".join(lines), markup=False, highlight=False)


@models_app.callback(invoke_without_command=True, epilog=_LIST_EXAMPLES)
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr."),
) -> None:
    """List the reconstruction methods: name, aliases, kind, parameters, GFLOPs, installed weights, accuracy.

    Without a sub-command this is [bold]hsra models list[/bold].
    """
    if ctx.invoked_subcommand is None:
        _list(as_json, quiet)


@models_app.command("list", epilog=_LIST_EXAMPLES)
def list_command(
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr."),
) -> None:
    """List the reconstruction methods (the default action of [bold]hsra models[/bold])."""
    _list(as_json, quiet)


@models_app.command(
    "info",
    epilog=(
        "[bold]Examples[/bold]\n\n"
        "  hsra models info hsra-s\n"
        "  hsra models info dum3 > card.md\n"
        "  hsra models info hsra-l --json"
    ),
)
def info_command(
    name: str = typer.Argument(
        ..., metavar="NAME", help="Model name, alias or NAME.TAG (see hsra models).", show_default=False,
        autocompletion=complete_model,
    ),
    as_json: bool = typer.Option(False, "--json", help="Write config.json (or the configuration) as JSON."),
) -> None:
    """Show a model's card (README.md of its installed folder), or its configuration and how to get weights.

    The card says what the model is, the physics it was trained for, its training data, steps, wall time and
    hardware, its measured accuracy, and its limits.
    """
    from hsra_cli.nets.catalog import describe_model
    from hsra_cli.registry import get_entry
    from hsra_cli.weights import CARD_NAME, read_model_config, find_model_folder, missing_weights_message, render_card

    from hsra_cli.errors import WeightsError
    from hsra_cli.registry import AUTO, split_tag

    if name.lower() == AUTO:
        _auto_info(as_json)
        return
    entry = get_entry(name)
    folder = find_model_folder(name) if entry.needs_weights else None
    if folder is not None:
        config = read_model_config(folder)
        if as_json:
            stdout.print(json.dumps({**config, "folder": str(folder)}, indent=1), markup=False, highlight=False)
            return
        card = folder / CARD_NAME
        text = card.read_text() if card.is_file() else render_card(config)
        stdout.print(text, markup=False, highlight=False)
        info(f"(from {folder})")
        from hsra_cli.weights import folder_problem

        problem = folder_problem(folder)
        if problem is not None:
            from rich.markup import escape

            from hsra_cli.cli._common import warn

            warn(f"weights {problem[0]}: {escape(problem[1])}")
        return
    if split_tag(name)[1] is not None and entry.needs_weights:
        raise WeightsError(missing_weights_message(name))  # a tag names installed weights: none here, as reconstruct says
    row = describe_model(entry.name)
    if as_json:
        stdout.print(json.dumps(row, indent=1), markup=False, highlight=False)
        return
    lines = [f"# {entry.name}", "", entry.description or "", "", f"kind: {entry.kind}"]
    if entry.aliases:
        lines.append(f"aliases: {', '.join(entry.aliases)}")
    if not entry.needs_weights:
        lines.append("weights: none needed (an iterative solver)")
    else:
        lines += [
            f"parameters: {row['parameters_m']:.2f} M",
            f"GFLOPs (fvcore, 28×256×256): {_fmt(row['gflops'], '.2f')}",
            "configuration:",
            json.dumps(entry.config, indent=1),
            "",
            "weights: not installed",
            missing_weights_message(name),
        ]
    stdout.print("\n".join(lines), markup=False, highlight=False)
