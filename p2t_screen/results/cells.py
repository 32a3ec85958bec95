"""Text cells a spreadsheet cannot run: CSV and TSV injection defused.

A spreadsheet opening a CSV or TSV treats a cell that starts with `=`, `+`, `-` or `@` as a
formula (`=HYPERLINK(...)`, `=cmd|'/C calc'!A0`), and a leading tab or carriage return can hide
one. Record ids and headers come from whoever wrote the FASTA, so every text cell p2t writes to
a CSV or TSV that starts with one of these characters gets a leading apostrophe, as OWASP
advises: spreadsheets show the text as it was and hide the apostrophe. Numbers stay numbers: a
cell that is a plain decimal number (`-1.5`, `+2e-3`) is not a formula and is left alone. Typed
columns (int, float, bool) are never touched; xlsx cells are typed, so the xlsx export needs none
of this.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

TRIGGER = r"^[=+\-@\t\r]"
NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_TRIGGER, _NUMBER = re.compile(TRIGGER), re.compile(NUMBER)

NOTE = ("A text cell that would start with =, +, -, @, a tab or a carriage return (and is not a plain number) "
        "is written with a leading apostrophe (') so that no spreadsheet runs it as a formula; "
        "remove that first character to get the text as it was.")


def safe_text(value: str) -> str:
    """One text cell, defused: a leading apostrophe where a spreadsheet would see a formula."""
    return "'" + value if _TRIGGER.match(value) and not _NUMBER.match(value) else value


def safe_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every text column defused (`safe_text`, vectorised); other columns as they are."""
    columns = []
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            live = pc.and_(pc.match_substring_regex(column, TRIGGER),
                           pc.invert(pc.match_substring_regex(column, NUMBER)))
            column = pc.if_else(live, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
