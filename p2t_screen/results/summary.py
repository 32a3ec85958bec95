"""What a screen found, task by task: statuses and the kind's summary (headline and charts),
counted in one streaming pass over the results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ..tasks.readout import TaskSummary, value_counts
from .dataset import Results
from .sequences import InputSequences


@dataclass
class Found:
    """One task's statuses and its summary of the ok rows."""

    task: str
    kind: str
    summary: TaskSummary
    statuses: Counter = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(self.statuses.values())


def _batch_sequences(batch: pa.RecordBatch, sequences: InputSequences) -> dict[int, str]:
    """Residues used of each record in a batch, read once per record in input order."""
    out: dict[int, str] = {}
    for index, seq_hash, used in zip(*(batch.column(c).to_pylist() for c in ("input_index", "seq_hash",
                                                                             "residues_used"))):
        if index not in out:
            out[index] = sequences.sequence(index, seq_hash)[:used]
    return out


@dataclass
class Problems:
    """The rows that are not ok: counted by (task, status, reason), the first `keep` listed."""

    keep: int = 100
    reasons: Counter = field(default_factory=Counter)
    listed: list[dict] = field(default_factory=list)

    COLUMNS = ("seq_id", "task", "status", "error", "partner_id", "ligand_id")

    def add(self, rows: pa.Table) -> None:
        for row in rows.select(list(self.COLUMNS)).to_pylist():
            self.reasons[(row["task"], row["status"], row["error"] or "")] += 1
            if len(self.listed) < self.keep:
                self.listed.append(row)


def summarise(results: Results, sequences: InputSequences | None = None,
              problems: Problems | None = None) -> dict[str, Found]:
    """Every task's statuses and summary; with `sequences`, summaries that look at residues
    (e.g. residue types of sites) see them; with `problems`, the rows that are not ok are
    collected in the same pass."""
    found = {name: Found(name, spec.kind, spec.task_kind.summary(spec)) for name, spec in results.specs.items()}
    for batch in results.batches():
        table = pa.Table.from_batches([batch])
        if problems is not None:
            problems.add(table.filter(pc.not_equal(table.column("status"), "ok")))
        seqs = _batch_sequences(batch, sequences) if sequences is not None else None
        for name, item in found.items():
            rows = table.filter(pc.equal(table.column("task"), name))
            if not rows.num_rows:
                continue
            item.statuses.update(value_counts(rows.column("status")))
            ok = rows.filter(pc.equal(rows.column("status"), "ok"))
            item.summary.add(ok, [seqs[i] for i in ok.column("input_index").to_pylist()] if seqs else None)
    return found

