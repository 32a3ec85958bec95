"""`p2t export` and `p2t report`: a screen's results for people and spreadsheets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import P2TError
from ..results.formats import Format, Layout
from .app import app
from .common import err, fail

RESULTS_HELP = "a p2t screen output folder (or one of its part files)"
PARTIAL_HELP = ("read an unfinished run's rows (the output then says what is missing); without it an unfinished "
                "run is refused")
READER_EXIT_CODES = ("Exit codes: 0 written; 2 the results are damaged, foreign or unfinished (without "
                     "--allow-partial), or the request cannot be met: nothing written; 1 internal error.")


@app.command("export", epilog=READER_EXIT_CODES)
def export_cmd(
    results: Annotated[Path, typer.Argument(help=RESULTS_HELP)],
    format: Annotated[Format, typer.Option("--format", "-f", help="csv (UTF-8 with BOM, for Excel) | tsv | xlsx | parquet | 3line (per residue: id, sequence, labels) | foldseek (a folder of predicted 3Di for foldseek tsv2db)")] = Format.CSV,
    wide: Annotated[bool, typer.Option("--wide", help="one row per protein, each task's answer in its own columns")] = False,
    per_residue: Annotated[bool, typer.Option("--per-residue", help="one row per residue of the per-residue and site tasks (id, position, residue, task, label, probability)")] = False,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="file to write [default: beside the results, e.g. results.wide.csv]")] = None,
    fasta: Annotated[Optional[Path], typer.Option(help="the screened library, for per-residue exports [default: the run's input]")] = None,
    task: Annotated[Optional[list[str]], typer.Option(help="per-residue exports: only this task (repeatable)")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help=PARTIAL_HELP)] = False,
) -> None:
    """Write a screen's results as one CSV, TSV, Excel, Parquet or 3-line file.

    Without --wide: one row per (protein, task) with the answer as text (Parquet: the typed
    dataset in one file). Column meanings go in the file (Parquet, xlsx) or beside it
    (FILE.legend.txt)."""
    from ..results.export import ExportRequest, export

    if wide and per_residue:
        raise fail("choose one of --wide and --per-residue")
    layout = Layout.WIDE if wide else Layout.RESIDUES if per_residue else Layout.LONG
    try:
        done = export(ExportRequest(results, format, layout, output, fasta, tuple(task or ()), allow_partial))
    except P2TError as exc:
        raise fail(exc) from None
    if done.unfinished:
        err.print(f"warning: {done.unfinished}; the export holds the rows written so far", highlight=False)
    what = {Format.THREE_LINE: "blocks", Format.FOLDSEEK: "proteins"}.get(format, "rows")
    err.print(f"{done.rows:,} {what} -> {done.path}" + (f" (columns: {done.legend})" if done.legend else ""),
              highlight=False)


@app.command("report", epilog=READER_EXIT_CODES)
def report_cmd(
    results: Annotated[Path, typer.Argument(help=RESULTS_HELP)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="HTML file [default: RESULTS/_report.html]")] = None,
    ids: Annotated[Optional[str], typer.Option(help="comma-separated protein ids to draw residue tracks for [default: the first --tracks]")] = None,
    tracks: Annotated[int, typer.Option(min=0, help="residue tracks for the first N proteins (without --ids)")] = 3,
    table_rows: Annotated[int, typer.Option(min=1, help="proteins in the page's table (all of them go to the CSV beside it)")] = 1000,
    fasta: Annotated[Optional[Path], typer.Option(help="the screened library, to show residues [default: the run's input]")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", help=PARTIAL_HELP)] = False,
) -> None:
    """Write one self-contained HTML page about a screen (opens offline): the run, what each
    task found, residue tracks and a sortable per-protein table."""
    from ..results.report import ReportRequest, write_report

    try:
        done = write_report(ReportRequest(results, output, tuple(i.strip() for i in (ids or "").split(",") if i.strip()),
                                          tracks, table_rows, fasta, allow_partial))
    except P2TError as exc:
        raise fail(exc) from None
    if done.unfinished:
        err.print(f"warning: {done.unfinished}; the report shows the rows written so far", highlight=False)
    err.print(f"report -> {done.path} ({done.proteins:,} proteins; full table {done.table})", highlight=False)
