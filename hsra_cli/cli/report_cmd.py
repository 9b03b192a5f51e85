"""`hsra report`: one self-contained HTML page for a folder of reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import info, stdout


@app.command(
    epilog="""[b]Examples[/b]

  hsra report out/                              [dim]# writes out/report.html, worst residual first[/dim]

  hsra report out/ --truth cubes/ -o out/report_vs_truth.html   [dim]# metrics, truths paired by name[/dim]

  hsra report out/ --points 6 --overwrite
""",
)
def report(
    out_dir: Path = typer.Argument(..., help="Output folder of hsra reconstruct (its <stem>.json records)."),
    output: Optional[str] = typer.Option(
        None, "-o", "--out", metavar="<path>", show_default=False,
        help="HTML file to write; a folder (one that exists, or a path ending in /) gets report.html inside it "
        "(default: OUT_DIR/report.html). Never a file the report reads.",
    ),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Folder of truth cubes named like the inputs: adds PSNR, SSIM, SAM, ERGAS."),
    truth_key: Optional[str] = typer.Option(None, "--truth-key", help="Variable holding the truth cube (default: the usual names)."),
    points: int = typer.Option(4, "--points", help="Spectra per item, at automatically chosen distinct points (0: none)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report (never a file it reads)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr."),
):
    """Write one HTML page for a folder of reconstructions.

    Per item: false colour, band grid, trust map, spectra, the record's key facts and, with --truth, the metrics;
    sortable by residual (worst first by default). Self-contained: opens from disk with no server or network.
    Prints the report's path on stdout.
    """
    from rich.markup import escape

    from hsra_cli.report import write_report

    def progress(path, index, total):
        if total > 1:  # one record: no progress chatter, so that a failure stays the one error line
            info(f"[{index + 1}/{total}] {escape(path.stem)}", quiet)

    path, items = write_report(out_dir, output, truth_dir=truth, truth_key=truth_key, points=points,
                               overwrite=overwrite, progress=progress)
    info(f"{len(items)} item(s); worst residual {items[0].residual:.4f} ({items[0].name})", quiet)
    stdout.print(str(path))
    return 0
