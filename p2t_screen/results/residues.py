"""Per-residue formats: a 3-line text file (header, sequence, labels; as TMbed writes) and a long
table with one row per (protein, residue, task).

Every task whose kind lays its answer along the residues (`TaskKind.residue_track`: per-residue
labels; sites as '+' marks) appears. The residues come from the screened FASTA
(`InputSequences`), checked against each row's sequence hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import UsageError
from ..tasks.inputs import LIGAND, PAIR
from .dataset import Results
from .sequences import InputSequences
from .wide import COMPANION_COLUMNS

RESIDUE_COLUMNS = (
    ("id", pa.string(), "first word of the FASTA header"),
    ("input_index", pa.int64(), "0-based position of the record in the input"),
    ("task", pa.string(), "task name"),
    ("position", pa.int32(), "1-based residue position"),
    ("residue", pa.string(), "amino acid"),
    ("label", pa.string(), "the residue's label (sites: 'site' or empty)"),
    ("code", pa.string(), "the label's one-character code"),
    ("probability", pa.float32(), "probability of that label (sites: of the site; empty elsewhere)"),
    ("set", pa.string(), "the residue's conformal set of labels as codes at the run's coverage (e.g. 'HC'); "
                         "empty without calibration"),
)


def track_tasks(results: Results, tasks: list[str] | None = None) -> list[str]:
    """The run's tasks with a residue track (all of them, or those of `tasks`, checked)."""
    with_track = [name for name, spec in results.specs.items() if spec.task_kind.residue_tracks]
    if tasks is None:
        if not with_track:
            raise UsageError(f"none of these results' tasks ({', '.join(results.specs)}) has per-residue answers")
        return with_track
    wrong = [t for t in tasks if t not in with_track]
    if wrong:
        raise UsageError(f"task(s) {', '.join(wrong)} have no per-residue answers (those that do: "
                         f"{', '.join(with_track) or 'none'})")
    return tasks


def tracks(results: Results, sequences: InputSequences, tasks: list[str]
           ) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """(row, residues used, track) for every ok row of `tasks`, in output order."""
    wanted = set(tasks)
    for batch in results.batches():
        for row in batch.to_pylist():
            if row["task"] not in wanted or row["status"] != "ok":
                continue
            spec = results.specs[row["task"]]
            sequence = sequences.sequence(row["input_index"], row["seq_hash"])[: row["residues_used"]]
            yield row, sequence, spec.task_kind.residue_track(spec, row)


def three_line_blocks(results: Results, sequences: InputSequences, tasks: list[str]) -> Iterator[str]:
    """'>id task [partner]' / residues / codes, one block per (protein, task)."""
    for row, sequence, track in tracks(results, sequences, tasks):
        extra = " ".join(f"{k}={row[k]}" for k in ("partner_id", "ligand_id") if row.get(k))
        yield f">{row['seq_id']} {row['task']}{' ' + extra if extra else ''}\n{sequence}\n{track.codes}\n"


def write_three_line(results: Results, sequences: InputSequences, tasks: list[str], out: Path) -> int:
    """Write the 3-line file; returns the blocks written."""
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for block in three_line_blocks(results, sequences, tasks):
            fh.write(block)
            n += 1
    return n


def residue_schema(results: Results) -> pa.Schema:
    """The per-residue table's schema (with partner and ligand columns where the run has them)."""
    forms = {spec.inputs for spec in results.specs.values()}
    columns = [*RESIDUE_COLUMNS[:2], *(c for form in (PAIR, LIGAND) if form in forms
                                       for c in COMPANION_COLUMNS[form][:1]), *RESIDUE_COLUMNS[2:]]
    return pa.schema([pa.field(n, t, metadata={b"doc": d.encode()}) for n, t, d in columns])


def residue_batches(results: Results, sequences: InputSequences, tasks: list[str],
                    batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """The per-residue long table, streamed."""
    schema = residue_schema(results)
    columns: dict[str, list] = {name: [] for name in schema.names}
    for row, sequence, track in tracks(results, sequences, tasks):
        n = len(track.codes)
        for key in ("input_index", "partner_id", "ligand_id", "task"):
            if key in columns:
                columns[key] += [row[key]] * n
        columns["id"] += [row["seq_id"]] * n
        columns["position"] += range(1, n + 1)
        columns["residue"] += list(sequence[:n])
        columns["label"] += track.labels
        columns["code"] += list(track.codes)
        columns["probability"] += track.probs
        sets = row.get("residue_sets")
        columns["set"] += list(sets[:n]) if sets else [None] * n
        if len(columns["position"]) >= batch_rows:
            yield pa.RecordBatch.from_pydict(columns, schema=schema)
            columns = {name: [] for name in columns}
    if columns["position"]:
        yield pa.RecordBatch.from_pydict(columns, schema=schema)
