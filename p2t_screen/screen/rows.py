"""Output rows: one per (record, task), or per (record, task, partner or ligand)."""

from __future__ import annotations

from typing import Any

from ..io.records import Record, Status
from ..tasks.spec import TaskSpec
from .expansion import Companion
from .outcome import Failure, Outcome


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
