"""`hsra report`: one self-contained HTML page for a folder of reconstructions."""

from __future__ import annotations

from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import console, info, warn

#: --points: the library's default and maximum (hsra_cli.report; kept here so that `hsra --help` stays fast).
DEFAULT_POINTS, MAX_POINTS = 4, 10


@app.command(
    epilog="""[b]Examples[/b]

  hsra report out/                              [dim]# writes out/report.html, worst residual first[/dim]

  hsra report out/ --truth cubes/ -o out/report_vs_truth.html   [dim]# metrics, truths paired by name[/dim]

  hsra report out/ --truth kaist.npz:0-4       [dim]# scene 3 of the stack ↔ out/kaist_3.json[/dim]

  hsra report out/ --points 6 --overwrite

  hsra report out/demo/ --truth cube.mat       [dim]# out/demo/<method>/: one page, items labelled by method[/dim]
""",
)
def report(
    out_dir: str = typer.Argument(..., metavar="OUT_DIR", show_default=False,
                                  help="Output folder of hsra reconstruct (its <stem>.json records), or a folder of such "
                                  "folders, one per method (out/demo/<method>/: one level deep)."),
    output: Optional[str] = typer.Option(
        None, "-o", "--out", metavar="<path>", show_default=False,
        help="HTML file to write (.html or .htm); a folder (one that exists, or a path ending in /) gets report.html "
        "inside it (default: OUT_DIR/report.html). Never a file the report reads.",
    ),
    truth: Optional[List[str]] = typer.Option(
        None, "--truth", metavar="TRUTH", show_default=False,
        help="Ground truth as hsra evaluate takes it: files, folders, quoted patterns, stack.npz:SCENES; repeatable. "
        "Paired with the reconstructions by name (each method's folder on its own); adds PSNR, SSIM, SAM, ERGAS.",
    ),
    pair_by_position: bool = typer.Option(
        False, "--pair-by-position", help="Pair truths with the items in the order given (items sorted by name) instead of by name."
    ),
    truth_key: Optional[str] = typer.Option(None, "--truth-key", help="Variable holding the truth cube (default: the usual names)."),
    points: int = typer.Option(DEFAULT_POINTS, "--points", metavar=f"0-{MAX_POINTS}",
                               help=f"Spectra per item, at automatically chosen distinct points (0: none; at most "
                               f"{MAX_POINTS}: the plot's colours repeat beyond that)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report (never a file it reads)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and warnings on stderr."),
):
    """Write one HTML page for a folder of reconstructions.

    Per item: false colour, band grid, trust map, spectra, the record's key facts and, with --truth, the metrics;
    sortable by residual (worst first by default). Self-contained: opens from disk with no server or network.
    Prints the report's path on stdout. A truth problem (none paired with an item, a truth that cannot be scored)
    is a warning naming the item, which is shown without metrics; the report is still written, and the exit code
    is 1, as a batch with a failed item ends. A --truth that names nothing (a missing path, a bad selector) is an
    error before anything is written, as in hsra evaluate and render. A missing metric is shown as –.

    A bad item (a damaged record, a cube missing beside its record or unreadable, a damaged preview) does not stop
    the page: it is listed with a note saying what is wrong, each problem is a warning naming the item, and the
    exit code is 1. Only the files beside each record are read, never those of the folder it was written in. A
    folder of one item that cannot be shown is one error line instead, and no page.

    OUT_DIR without records of its own whose subfolders have some (out/demo/gap-tv/, out/demo/hsra-dum-2stg/): one
    page of all of them, each item labelled by its subfolder, "colorchecker (gap-tv)". OUT_DIR with records of
    its own shows only those, and says which subfolders it left out.
    """
    from rich.markup import escape

    from hsra_cli.report import write_report

    from pathlib import Path

    top = Path(out_dir)

    def progress(path, index, total):
        if total > 1:  # one record: no progress chatter, so that a failure stays the one error line
            shown = path.stem if path.parent == top else f"{path.parent.name}/{path.stem}"
            info(f"[{index + 1}/{total}] {escape(shown)}", quiet)

    problems: list[str] = []
    item_problems: list[str] = []

    def on_warning(message):
        problems.append(message)
        warn(escape(message))  # shown with --quiet too: each is why the exit code is 1

    def on_problem(message):
        item_problems.append(message)
        warn(escape(message))

    path, items = write_report(out_dir, output, truth=truth or None, truth_key=truth_key,
                               pair_by_position=pair_by_position, points=points, overwrite=overwrite,
                               progress=progress, warn=on_warning, note=lambda message: info(escape(message), quiet),
                               problem=on_problem)
    shown = [item for item in items if item.residual == item.residual]  # sorted worst first, unknown residuals last
    worst = f"worst residual {shown[0].residual:.4f} ({escape(shown[0].label)})" if shown else "no residual recorded"
    info(f"{len(items)} item(s); {worst}", quiet)
    typer.echo(str(path))
    failed = sum(1 for item in items if item.problems)
    if failed:
        console.print(f"[red]{failed} of {len(items)} item(s) could not be read or shown in full; listed on the page "
                      f"with a note[/red]")
    if problems:
        scored = sum(1 for item in items if item.metrics)
        console.print(f"[red]{scored} of {len(items)} item(s) compared with a truth; {len(problems)} truth "
                      f"problem(s)[/red]")
    return 1 if problems or failed else 0
