"""`p2t export`: a screen's results as one file for a spreadsheet or a pipeline.

Layouts: `long` (one row per record and task; Parquet keeps the typed dataset, the text formats
write each answer as text), `wide` (one row per protein, `results.wide`) and `residues` (one row
per residue, `results.residues`); plus the 3-line per-residue text format. Every writer streams
batch by batch, so memory does not grow with the number of records. `foldseek` writes a folder of
predicted 3Di states with the amino acids, for a Foldseek database (`results.foldseek`).

CSV starts with a UTF-8 byte-order mark, so Excel reads it as UTF-8 without an import dialog
(LibreOffice, pandas and pyarrow read the mark too); TSV, for command-line tools, has none. No
text cell of a CSV or TSV can run as a spreadsheet formula (`results.cells`). The
meaning of each column (and of each per-residue code) is in the file where the format has room
(Parquet field metadata, an xlsx `legend` sheet) and in `<file>.legend.txt` beside a CSV or TSV.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import OutputError, UsageError
from ..io.schema import METADATA_KEY, read_run_metadata
from .formats import PER_RESIDUE, Format, Layout  # noqa: F401  (Format and Layout: part of this module's API)
from . import cells
from .cells import safe_batch
from .dataset import Results
from .foldseek import foldseek_task, write_foldseek
from .residues import residue_batches, residue_schema, track_tasks, write_three_line
from .sequences import InputSequences
from .wide import legend, long_batches, long_schema, wide_batches, wide_schema

XLSX_MAX_ROWS = 1_048_576  # rows per Excel sheet, header included


@dataclass(frozen=True)
class ExportRequest:
    """What to export and where (`output` None: beside the results, named after them)."""

    results: Path
    format: Format = Format.CSV
    layout: Layout = Layout.LONG
    output: Path | None = None
    fasta: Path | None = None  # the screened library (residue layouts; default: the run's input)
    tasks: tuple[str, ...] = ()  # residue layouts: these tasks only
    allow_partial: bool = False  # export an unfinished run's rows (the file then says what is missing)


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    rows: int  # data rows (3-line: blocks)
    legend: Path | None = None
    unfinished: str | None = None  # what the results lack, when they are an unfinished run's


def default_output(results: Path, fmt: Format, layout: Layout) -> Path:
    """`results/demo` -> `results/demo.wide.csv` (long: `results/demo.csv`; 3-line: `.3line`;
    Foldseek: the folder `results/demo.foldseek`)."""
    base = results.with_suffix("") if results.is_file() else results
    middle = "" if layout is Layout.LONG or fmt in PER_RESIDUE else f".{layout.value}"
    return base.with_name(f"{base.name}{middle}.{fmt.value}")


def export(request: ExportRequest) -> ExportSummary:
    """Write the export; UsageError for a request that cannot be met, before anything is written."""
    fmt, layout = Format(request.format), Layout(request.layout)
    results = Results.open(request.results, request.allow_partial)
    out = request.output or default_output(request.results, fmt, layout)
    if fmt in PER_RESIDUE or layout is Layout.RESIDUES:
        sequences = InputSequences.of_run(results.run, request.fasta)
        if sequences is None:
            raise UsageError(f"per-residue exports show residues: pass --fasta with the screened library "
                             f"(the run's input {results.run.get('input')!r} is not a file here)")
        tasks = track_tasks(results, list(request.tasks) or None)
    elif request.tasks:
        raise UsageError("--task selects tasks of the per-residue exports (--per-residue, --format 3line "
                         "or foldseek)")
    if fmt in PER_RESIDUE and layout is Layout.WIDE:  # --per-residue with them says what they are anyway
        raise UsageError(f"--format {fmt.value} is per residue; it has no --wide form")
    if fmt is Format.THREE_LINE:
        return ExportSummary(out, _writing(out, lambda path: write_three_line(results, sequences, tasks, path)),
                             unfinished=results.unfinished)
    if fmt is Format.FOLDSEEK:
        task = foldseek_task(results, list(request.tasks) or None)
        return ExportSummary(out, write_foldseek(results, sequences, task, out), unfinished=results.unfinished)
    if layout is Layout.WIDE:
        schema, batches = wide_schema(results), wide_batches(results)
    elif layout is Layout.RESIDUES:
        schema, batches = residue_schema(results), residue_batches(results, sequences, tasks)
    elif fmt is Format.PARQUET:
        schema, batches = pq.read_schema(results.parts[0]), results.batches()
    else:
        schema, batches = long_schema(), long_batches(results)
    run = {**results.run, **({"unfinished": results.unfinished} if results.unfinished else {})}
    schema = schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: json.dumps(run).encode()})
    rows = _writing(out, lambda path: SINKS[fmt](path, schema, batches))
    side = None
    if fmt in (Format.CSV, Format.TSV):
        side = out.with_name(out.name + ".legend.txt")
        side.write_text("".join(f"{name}\t{doc}\n" for name, doc in legend_rows(schema, text=True)),
                        encoding="utf-8")
    return ExportSummary(out, rows, side, results.unfinished)


def legend_rows(schema: pa.Schema, text: bool = False) -> list[tuple[str, str]]:
    """The legend of an export: each column's meaning; first, for an unfinished run's rows, what
    they lack; last, for CSV and TSV (`text`), how text cells are kept from running as formulas."""
    run = read_run_metadata(schema)
    note = [("UNFINISHED", f"{run['unfinished']}; these are the rows written so far")] if run.get("unfinished") else []
    return [*note, *legend(schema), *([("text cells", cells.NOTE)] if text else [])]


def _writing(out: Path, write: Callable[[Path], int]) -> int:
    """Run `write` into a temporary file beside `out`, then put it in place: never a half file."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = write(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _write_text_table(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch], delimiter: str,
                      bom: bool) -> int:
    rows = 0
    with path.open("wb") as fh:
        if bom:
            fh.write(b"\xef\xbb\xbf")
        options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed")
        with pacsv.CSVWriter(fh, schema.remove_metadata(), write_options=options) as writer:
            for batch in batches:
                writer.write_batch(safe_batch(batch))
                rows += batch.num_rows
    return rows


def write_csv(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    return _write_text_table(path, schema, batches, ",", bom=True)


def write_tsv(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    return _write_text_table(path, schema, batches, "\t", bom=False)


def write_parquet(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
            rows += batch.num_rows
    return rows


def _cell(value: Any) -> Any:
    """A value an xlsx cell holds: NaN and infinities (which xlsx cannot store) become empty."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _xlsx_columns(book: Any, schema: pa.Schema) -> list[tuple[float, Any]]:
    """Each column's width and cell format: numbers with a fixed number of decimals (3 for
    probabilities and scores, 4 for values, integers whole), text wide enough for its header."""
    three, four, whole = (book.add_format({"num_format": f}) for f in ("0.000", "0.0000", "0"))
    found = []
    for field in schema:
        if pa.types.is_floating(field.type):
            fmt = three if pa.types.is_float32(field.type) else four
            width = 10.0
        elif pa.types.is_integer(field.type):
            fmt, width = whole, 10.0
        else:
            fmt, width = None, 40.0 if field.name in ("header", "error") else 14.0
        found.append((max(width, len(field.name) + 2.0), fmt))
    return found


def write_xlsx(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    """An Excel workbook, written row by row (XlsxWriter's constant-memory mode): the data on
    `results` (continued on `results 2`... past Excel's row limit), each sheet with a filter on
    its header, frozen header, column widths and number formats, and a `legend` sheet."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                           "strings_to_formulas": False, "strings_to_urls": False,
                                           "nan_inf_to_errors": False})
    bold = book.add_format({"bold": True})
    columns = _xlsx_columns(book, schema)
    names, rows, sheet, line = schema.names, 0, None, XLSX_MAX_ROWS

    def new_sheet(title: str) -> Any:
        made = book.add_worksheet(title)
        for i, (width, _) in enumerate(columns):
            made.set_column(i, i, width)
        made.write_row(0, 0, names, bold)
        made.freeze_panes(1, 0)
        return made

    def close(done: Any, last: int) -> None:
        done.autofilter(0, 0, max(last, 0), len(names) - 1)

    for batch in batches:
        for row in batch.to_pylist():
            if line == XLSX_MAX_ROWS:
                if sheet is not None:
                    close(sheet, line - 1)
                sheet = new_sheet("results" if sheet is None else f"results {rows // (XLSX_MAX_ROWS - 1) + 1}")
                line = 1
            for i, name in enumerate(names):
                sheet.write(line, i, _cell(row[name]), columns[i][1])
            line += 1
            rows += 1
    if sheet is None:  # no rows: the header alone
        sheet, line = new_sheet("results"), 1
    close(sheet, line - 1)
    info = book.add_worksheet("legend")
    info.write_row(0, 0, ["column", "meaning"], bold)
    for i, (name, doc) in enumerate(legend_rows(schema), 1):
        info.write_row(i, 0, [name, doc])
    book.close()
    return rows


SINKS: dict[Format, Callable[[Path, pa.Schema, Iterator[pa.RecordBatch]], int]] = {
    Format.CSV: write_csv, Format.TSV: write_tsv, Format.XLSX: write_xlsx, Format.PARQUET: write_parquet,
}
