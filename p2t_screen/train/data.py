"""Labelled task data: CSV/TSV/Parquet tables (or FASTA + a label table joined by id).

Every row is validated before training starts; problems are collected and reported together,
each naming the file, the row and what is wrong.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import InputError
from ..io.fasta import read_fasta
from ..io.ligands import check_smiles
from ..io.records import ENCODER_ALPHABET, ReadPolicy
from ..tasks.inputs import LIGAND, PAIR, ModelInput, pair_input
from ..tasks.spec import TaskSpec

SPLITS = ("train", "valid", "test", "calibration")  # calibration: held out for conformal calibration only


MAX_PROBLEMS = 20


@dataclass(frozen=True)
class TaskSource:
    """Where one task's labelled data lives and which columns hold what."""

    path: Path
    fasta: Path | None = None  # sequences from a FASTA file, joined to the table on `id_column`
    sequence_column: str = "sequence"
    label_column: str = "label"
    id_column: str = "id"
    split_column: str | None = "split"  # None: every row is training data
    partner_column: str = "partner_sequence"  # pair tasks: the second protein (e.g. the kinase)
    ligand_column: str = "smiles"  # protein-ligand tasks: the ligand's SMILES


@dataclass(frozen=True)
class Labelled:
    """One validated example: the input as the model sees it and its parsed label."""

    id: str
    input: ModelInput  # pair tasks: both proteins, cut to fit the encoder together
    label: Any
    split: str
    truncated: bool = False


def read_table(path: Path) -> pa.Table:
    """A CSV, TSV or Parquet file as an Arrow table (all columns as strings for CSV/TSV)."""
    if not path.is_file():
        raise InputError(f"data file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_table(path)
        delimiter = "\t" if ".tsv" in suffix or ".tab" in suffix else ","
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                              convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                                   column_types=None))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _column(table: pa.Table, name: str, path: Path) -> list:
    if name not in table.column_names:
        raise InputError(f"{path}: no column {name!r} (columns: {', '.join(table.column_names)})")
    return table.column(name).to_pylist()


def _fasta_sequences(path: Path) -> dict[str, str]:
    policy = ReadPolicy(on_invalid="skip", max_residues=10**9)
    return {r.seq_id: r.sequence for r in read_fasta(path, policy)}


def load_task(spec: TaskSpec, source: TaskSource, max_residues: int) -> dict[str, list[Labelled]]:
    """Validated examples of one task, by split; InputError lists every problem found."""
    table = read_table(source.path)
    ids = _column(table, source.id_column, source.path) if (
        source.fasta or source.id_column in table.column_names) else [str(i) for i in range(table.num_rows)]
    if source.fasta:
        seqs_by_id = _fasta_sequences(source.fasta)
        sequences = [seqs_by_id.get(str(i)) for i in ids]
    else:
        sequences = _column(table, source.sequence_column, source.path)
    labels = _column(table, source.label_column, source.path)
    partners = (_column(table, source.partner_column, source.path) if spec.inputs == PAIR
                else _column(table, source.ligand_column, source.path) if spec.inputs == LIGAND
                else [None] * table.num_rows)
    splits = (_column(table, source.split_column, source.path) if source.split_column
              and source.split_column in table.column_names else ["train"] * table.num_rows)
    out: dict[str, list[Labelled]] = {s: [] for s in SPLITS}
    problems: list[str] = []
    for row, (rid, seq, label, split, partner) in enumerate(
            zip(ids, sequences, labels, splits, partners), start=1):
        try:
            name = _split(split)
            if label is None or label != label:  # a null cell, or NaN in a numeric column
                raise ValueError(f"no label in column {source.label_column!r} (null or NaN)")
            out[name].append(_validate(spec, str(rid), seq, label, name, max_residues, partner))
        except ValueError as exc:
            problems.append(f"{source.path}: row {row} (id {rid!r}): {exc}")
    if problems:
        more = f"\n  and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise InputError(f"task {spec.name}: {len(problems)} invalid row(s):\n  "
                         + "\n  ".join(problems[:MAX_PROBLEMS]) + more)
    return out


def _split(value: Any) -> str:
    split = str(value).strip().lower()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {value!r}")
    return split


def _protein(seq: Any, what: str) -> str:
    if seq is None:
        raise ValueError(f"no {what} (id not found in the FASTA file?)")
    seq = "".join(str(seq).split()).upper()
    if not seq:
        raise ValueError(f"empty {what}")
    bad = sorted(set(seq) - ENCODER_ALPHABET)
    if bad:
        raise ValueError(f"invalid residue characters {bad} in the {what}")
    return seq


def _validate(spec: TaskSpec, rid: str, seq: Any, label: Any, split: str,
              max_residues: int, partner: Any = None) -> Labelled:
    seq = _protein(seq, "sequence")
    kind = spec.task_kind
    parsed = kind.read_label(spec, "" if label is None else label)
    kind.check_label(spec, parsed, seq)
    if spec.inputs == PAIR:
        other = _protein(partner, "partner sequence")
        pair = pair_input(seq, other, max_residues - 1)  # <cls> A <eos> B <eos> fits the encoder
        parsed = kind.fit_label(spec, parsed, len(pair.protein))
        kind.encode(spec, parsed, pair.protein)
        return Labelled(rid, pair, parsed, split, pair.residues < len(seq) + len(other))
    smiles = None
    if spec.inputs == LIGAND:
        smiles = str(partner or "").strip()
        try:
            check_smiles(smiles)
        except ValueError as exc:
            raise ValueError(f"ligand {smiles!r}: {exc}") from None
    truncated = len(seq) > max_residues
    if truncated:  # keep what the screen will see: the first max_residues residues
        seq = seq[:max_residues]
        parsed = kind.fit_label(spec, parsed, max_residues)
    kind.encode(spec, parsed, seq)  # sites inside the sequence, known labels, ...
    return Labelled(rid, ModelInput(seq, ligand=smiles), parsed, split, truncated)


def summarise(spec: TaskSpec, data: dict[str, list[Labelled]]) -> dict[str, Any]:
    """Counts per split (and of labels in train) for logs and model cards."""
    counts = {s: len(v) for s, v in data.items()}
    labels: Counter = Counter()
    for ex in data["train"]:
        labels.update(spec.task_kind.label_counts(spec, ex.label))
    return {"counts": counts, "train_labels": dict(labels.most_common()),
            "truncated": sum(ex.truncated for v in data.values() for ex in v)}
