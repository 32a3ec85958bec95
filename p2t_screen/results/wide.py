"""Human-form tables: one row per protein (wide), and one row per (protein, task) with the answer
as text (long), for spreadsheets. Each task's columns and values come from its kind.

Wide: one row per input record, keyed `id` + `input_index`; a record screened against partner
proteins or ligands gets one more row per partner (`partner_id`) or ligand (`ligand_id`), holding
the pair or ligand tasks' answers, so no two answers share a cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..tasks.inputs import LIGAND, PAIR
from ..tasks.readout import WideColumn
from .dataset import Results

RECORD_COLUMNS = (
    ("id", pa.string(), "first word of the FASTA header"),
    ("header", pa.string(), "full FASTA header"),
    ("input_index", pa.int64(), "0-based position of the record in the input"),
    ("length", pa.int32(), "residues in the sequence"),
    ("residues_used", pa.int32(), "residues given to the model (after truncation)"),
    ("status", pa.string(), "ok, or the statuses of the tasks that are not ok (invalid, too_long, oom, error...)"),
    ("error", pa.string(), "why it is not ok (per task where the tasks' reasons differ)"),
    ("in_domain", pa.bool_(), "the protein is like the model's training proteins (false: trust its answers less; "
                              "empty: the model has no domain index)"),
    ("domain_score", pa.float32(), "similarity to the nearest training proteins (the lowest over the models)"),
)
COMPANION_COLUMNS = {
    PAIR: (("partner_id", pa.string(), "partner protein of the pair tasks on this row (empty: the protein alone)"),),
    LIGAND: (("ligand_id", pa.string(), "ligand of the ligand tasks on this row (empty: the protein alone)"),
             ("ligand", pa.string(), "that ligand's SMILES")),
}
LONG_COLUMNS = (
    ("id", pa.string(), "first word of the FASTA header"),
    ("input_index", pa.int64(), "0-based position of the record in the input"),
    ("task", pa.string(), "task name"),
    ("partner_id", pa.string(), "partner protein (pair tasks)"),
    ("ligand_id", pa.string(), "ligand name (ligand tasks)"),
    ("status", pa.string(), "ok | invalid | empty | too_long | oom | error"),
    ("error", pa.string(), "why the row is not ok"),
    ("answer", pa.string(), "the task's answer in the form of its first wide column"),
    ("confidence", pa.float32(), "the answer's probability (see the long dataset's docs)"),
    ("length", pa.int32(), "residues in the sequence"),
    ("residues_used", pa.int32(), "residues given to the model"),
    ("model", pa.string(), "model that answered"),
)


def _field(name: str, type_: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, type_, metadata={b"doc": doc.encode()})


def task_columns(results: Results) -> list[tuple[str, str, WideColumn]]:
    """(column name, task, column) of every task's wide columns, in run order."""
    return [(spec.name + col.suffix, spec.name, col)
            for spec in results.specs.values() for col in spec.task_kind.wide_columns(spec)]


def wide_schema(results: Results) -> pa.Schema:
    """The one-row-per-protein table's schema; each field's metadata says what it holds."""
    forms = {spec.inputs for spec in results.specs.values()}
    fields = [_field(*c) for c in RECORD_COLUMNS]
    fields += [_field(*c) for form in (PAIR, LIGAND) if form in forms for c in COMPANION_COLUMNS[form]]
    fields += [_field(name, col.type, col.doc) for name, _, col in task_columns(results)]
    return pa.schema(fields)


def legend(schema: pa.Schema) -> list[tuple[str, str]]:
    """(column, meaning) for every column of a table written here."""
    return [(f.name, (f.metadata or {}).get(b"doc", b"").decode()) for f in schema]


def _wide_rows(results: Results, rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """One record's wide rows: the protein's own, then one per partner or ligand."""
    keyed: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        keyed.setdefault((row.get("partner_id"), row.get("ligand_id")), []).append(row)
    out = []
    for (partner, ligand_id), group in keyed.items():
        first = group[0]
        bad = [r for r in group if r["status"] != "ok"]
        wide = {"id": first["seq_id"], "header": first["header"], "input_index": first["input_index"],
                "length": first["length"], "residues_used": first["residues_used"],
                "status": ";".join(sorted({r["status"] for r in bad})) or "ok",
                "error": _errors(bad),
                "partner_id": partner, "ligand_id": ligand_id, "ligand": first.get("ligand"),
                **_domain(group)}
        for row in group:
            if row["status"] == "ok":
                spec = results.specs[row["task"]]
                cols = spec.task_kind.wide_columns(spec)
                wide.update(zip((spec.name + c.suffix for c in cols), spec.task_kind.wide_values(spec, row)))
        out.append({name: wide.get(name) for name in names})
    return out


def _domain(group: list[dict[str, Any]]) -> dict[str, Any]:
    """A wide row's domain columns: in domain for every model that says, at its lowest score."""
    scores = [r["domain_score"] for r in group if r["status"] == "ok" and r.get("domain_score") is not None]
    flags = [r["in_domain"] for r in group if r["status"] == "ok" and r.get("in_domain") is not None]
    return {"domain_score": min(scores) if scores else None, "in_domain": all(flags) if flags else None}


def _errors(bad: list[dict[str, Any]]) -> str | None:
    """Why a wide row's tasks are not ok: the reason alone when all share it, else per task."""
    reasons = {r["error"] or r["status"] for r in bad}
    if len(reasons) == 1:
        return reasons.pop()
    return "; ".join(f"{r['task']}: {r['error'] or r['status']}" for r in bad) or None


def wide_batches(results: Results, batch_rows: int = 2048) -> Iterator[pa.RecordBatch]:
    """The one-row-per-protein table, streamed in record batches."""
    schema = wide_schema(results)
    names, pending = schema.names, []
    for rows in results.records():
        pending += _wide_rows(results, rows, names)
        if len(pending) >= batch_rows:
            yield pa.RecordBatch.from_pylist(pending, schema=schema)
            pending = []
    if pending:
        yield pa.RecordBatch.from_pylist(pending, schema=schema)


def long_schema() -> pa.Schema:
    return pa.schema([_field(*c) for c in LONG_COLUMNS])


def _answer(results: Results, row: dict[str, Any]) -> str | None:
    if row["status"] != "ok":
        return None
    spec = results.specs[row["task"]]
    value = spec.task_kind.wide_values(spec, row)[0]
    return value if isinstance(value, str) else repr(value)


def long_batches(results: Results) -> Iterator[pa.RecordBatch]:
    """One row per (record, task[, partner or ligand]) with the answer as text, streamed."""
    schema = long_schema()
    for batch in results.batches():
        rows = batch.to_pylist()
        yield pa.RecordBatch.from_pylist(
            [{**row, "id": row["seq_id"], "answer": _answer(results, row)} for row in rows], schema=schema)

