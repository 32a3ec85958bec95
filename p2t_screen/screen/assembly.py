"""Output rows, assembled as Arrow: one per (record, task), or per (record, task, partner or
ligand), in input order, from a window's records and the outcomes of its distinct inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..io.records import Record, Status
from ..io.schema import rows_to_batch
from ..tasks.inputs import PROTEIN, ModelInput
from ..tasks.spec import TaskSpec
from .expansion import Companion, Expansion
from .outcome import Failure, Outcome
from .planning import WindowPlan


def output_row(record: Record, spec: TaskSpec, outcome: Outcome | None,
               companion: Companion | None = None, model: str | None = None) -> dict[str, Any]:
    """The row of one (record, task): the record's columns, the answering model, then its status
    and the result's columns. A record that is not ok gives its own status; `outcome` is then unused."""
    row: dict[str, Any] = {"model": model,
        "seq_id": record.seq_id, "header": record.header, "input_index": record.input_index,
        "seq_hash": record.seq_hash, "length": len(record.sequence),
        "residues_used": record.residues_used, "truncated": record.truncated, "task": spec.name,
    }
    if companion is not None:
        row.update(companion.columns)
        pair = companion.input
        if pair is not None and pair.partner is not None:  # a pair may be cut to fit the encoder
            used = len(pair.protein)
            row.update(residues_used=used, truncated=record.truncated or used < record.residues_used
                       or len(pair.partner) < companion.partner_residues)
    if record.status is not Status.OK:
        outcome = Failure(record.status, record.error or record.status.value)
    if isinstance(outcome, Failure):
        row.update(status=outcome.status.value, error=outcome.error)
        return row
    row.update(status=Status.OK.value, **outcome.columns())
    return row


def window_rows(window: Sequence[Record], tasks: Sequence[TaskSpec], plan: WindowPlan,
                results: dict[ModelInput, dict[str, Outcome]], expansion: Expansion, model: str,
                schema: pa.Schema) -> pa.RecordBatch:
    """Every row of a window, in input order (each record's tasks in `tasks` order): a record's
    outcome is looked up by its model input, so identical inputs share one computation."""
    table_rows = []
    for record in window:
        for spec in tasks:
            if spec.inputs == PROTEIN:
                outcome = results[ModelInput(record.used_sequence)][spec.name] if record.status is Status.OK else None
                table_rows.append(output_row(record, spec, outcome, model=model))
                continue
            items = plan.companions[spec.inputs].get(record.input_index, []) if record.status is Status.OK \
                else expansion.companions(record, spec.inputs)
            if not items:  # pairing by id found no partner: the record still gets a row
                table_rows.append(output_row(record, spec, Failure(
                    Status.ERROR, f"no partner for {record.seq_id!r} (pairing by id)"), model=model))
            for item in items:  # a record that is not ok was not run: its row gives its own status
                outcome = None if record.status is not Status.OK else item.failure or results[item.input][spec.name]
                table_rows.append(output_row(record, spec, outcome, item, model))
    return rows_to_batch(table_rows, schema)
