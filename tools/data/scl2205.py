#!/usr/bin/env python3
"""Build the `localization` task from SCL2205 (PyPI `p-scldata==2025.6.0`, MIT).

The wheel is downloaded with `pip download --no-deps` (never installed) and its data files are
read straight out of the zip:

- `scldata/data/scl2205.csv`: columns `entry` (UniProtKB accession), `seq`, `scl` (class index)
- `scldata/data/labels.json`: `index_to_label` / `label_to_index` (13 classes)
- `scldata/data/entries.json`: integer index -> UniProtKB accession map
- `scldata/data/splits.json`: `trn` / `evl` / `tst` (and 5-fold `cv`) lists of integer indices

The split indices are keys of `entries.json`; that map is checked to equal the CSV row order, so
they are also positional CSV row numbers (both readings are asserted to agree). The official
homology-reduced splits are kept: train = `trn`, valid = `evl`, test = `tst`.

Outputs (relative to the repository root by default):
  data/raw/wheels/p_scldata-2025.6.0-py3-none-any.whl
  data/tasks/localization/{data.parquet,PROVENANCE.json,test_ids.txt}

Run from the repository root:
  python tools/data/scl2205.py
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ALLOWED,
    MIN_LEN,
    REPO_ROOT,
    PrepareError,
    clean_sequence,
    command_line,
    fetch_wheel,
    open_wheel,
    read_member,
    script_main,
    sha256_file,
    train_homologs,
    write_parquet,
    write_text,
)

TASK = "localization"
PACKAGE = "p-scldata"
VERSION = "2025.6.0"  # pinned: the 2026.2.0 wheel ships no data
WHEEL_NAME = f"p_scldata-{VERSION}-py3-none-any.whl"
LICENCE = "MIT"
DATA_DIR = "scldata/data"
CSV_PATH = f"{DATA_DIR}/scl2205.csv"
LABELS_PATH = f"{DATA_DIR}/labels.json"
SPLITS_PATH = f"{DATA_DIR}/splits.json"
ENTRIES_PATH = f"{DATA_DIR}/entries.json"
LICENCE_PATH = f"p_scldata-{VERSION}.dist-info/licenses/LICENSE"
SPLIT_KEYS = {"train": "trn", "valid": "evl", "test": "tst"}
EXPECTED_ROWS = 19_074
EXPECTED_SPLITS = {"train": 15_183, "valid": 1_260, "test": 2_631}
EXPECTED_CLASSES = 13
SCREEN_MAX_RESIDUES = 1022


@dataclass(frozen=True)
class Row:
    """One SCL2205 protein as read from the CSV."""

    index: int
    entry: str
    seq: str
    class_index: int


@dataclass
class Filters:
    """What was changed or dropped while cleaning sequences."""

    mapped_to_x: Counter = field(default_factory=Counter)
    sequences_with_mapped_letters: int = 0
    dropped_bad_letters: list[str] = field(default_factory=list)
    dropped_too_short: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- read


def read_rows(data: bytes) -> list[Row]:
    """Parse `scl2205.csv` into rows, checking its header."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if reader.fieldnames != ["entry", "seq", "scl"]:
        raise PrepareError(f"{CSV_PATH}: unexpected header {reader.fieldnames}")
    return [Row(i, r["entry"].strip(), r["seq"].strip(), int(r["scl"])) for i, r in enumerate(reader)]


def read_class_names(data: bytes) -> list[str]:
    """Class names in index order (0..12) from `labels.json`, checked for consistency."""
    labels = json.loads(data)
    index_to_label = {int(k): v for k, v in labels["index_to_label"].items()}
    names = [index_to_label[i] for i in range(len(index_to_label))]
    assert len(names) == EXPECTED_CLASSES, f"expected {EXPECTED_CLASSES} classes, got {len(names)}"
    assert all(labels["label_to_index"][n] == i for i, n in enumerate(names)), "labels.json maps disagree"
    assert len(set(names)) == len(names), "duplicate class names"
    return names


def read_splits(data: bytes, entries_data: bytes, rows: list[Row]) -> dict[int, str]:
    """Map CSV row number -> split, asserting the indices are positional row numbers."""
    splits = json.loads(data)
    entries = {int(k): v for k, v in json.loads(entries_data).items()}
    assert sorted(entries) == list(range(len(rows))), "entries.json keys are not 0..n-1"
    assert all(entries[r.index] == r.entry for r in rows), "entries.json order differs from the CSV"
    assignment: dict[int, str] = {}
    for split, key in SPLIT_KEYS.items():
        indices = splits[key]
        assert len(indices) == EXPECTED_SPLITS[split], f"{key}: {len(indices)} != {EXPECTED_SPLITS[split]}"
        assert len(set(indices)) == len(indices), f"{key}: repeated indices"
        for i in indices:
            assert 0 <= i < len(rows), f"{key}: index {i} out of range"
            assert i not in assignment, f"index {i} is in both {assignment.get(i)} and {split}"
            assignment[i] = split
    assert len(assignment) == len(rows), "trn/evl/tst do not cover every row"
    return assignment


# --------------------------------------------------------------------------- clean


def build_records(rows: list[Row], names: list[str], assignment: dict[int, str],
                  filters: Filters) -> list[dict[str, str]]:
    """Cleaned output records (id, sequence, label, split) in train/valid/test, CSV order."""
    records = []
    for row in rows:
        seq = clean_sequence(row.seq, filters)
        if seq is None:
            filters.dropped_bad_letters.append(row.entry)
            continue
        if len(seq) < MIN_LEN:
            filters.dropped_too_short.append(row.entry)
            continue
        records.append({"id": row.entry, "sequence": seq, "label": names[row.class_index],
                        "split": assignment[row.index]})
    order = {s: i for i, s in enumerate(SPLIT_KEYS)}
    return sorted(records, key=lambda r: order[r["split"]])  # stable: CSV order within a split


# --------------------------------------------------------------------------- summarise


def count_by(records: list[dict[str, str]], key: str, split: str | None = None,
             order: Sequence[str] = ()) -> dict[str, int]:
    """Counts of `key` values (in `order` first), optionally within one split."""
    counts = Counter(r[key] for r in records if split is None or r["split"] == split)
    first = {k: counts[k] for k in order if k in counts}
    return first | {k: v for k, v in sorted(counts.items()) if k not in first}


def cross_split_duplicates(records: list[dict[str, str]]) -> dict[str, Any]:
    """Valid/test proteins whose exact sequence also occurs in an earlier split."""
    train = {r["sequence"] for r in records if r["split"] == "train"}
    valid = {r["sequence"] for r in records if r["split"] == "valid"}
    in_valid = sorted(r["id"] for r in records if r["split"] == "valid" and r["sequence"] in train)
    in_test = sorted(r["id"] for r in records
                     if r["split"] == "test" and (r["sequence"] in train or r["sequence"] in valid))
    return {"valid_ids_identical_to_train": in_valid, "test_ids_identical_to_train_or_valid": in_test}


def homology_check(records: list[dict[str, str]]) -> dict[str, Any]:
    """train_homologs of the valid/test records, or why they were not searched."""
    exe = shutil.which("mmseqs")
    if exe is None:
        return {"checked": False, "reason": "mmseqs not on PATH (apt-get install mmseqs2)"}
    return {"checked": True, **train_homologs(records, "scl2205_homology_", exe)}


def long_counts(records: list[dict[str, str]]) -> dict[str, int]:
    """Per split, how many sequences exceed the screen's residue limit."""
    return {s: sum(1 for r in records if r["split"] == s and len(r["sequence"]) > SCREEN_MAX_RESIDUES)
            for s in SPLIT_KEYS}


def provenance(records: list[dict[str, str]], names: list[str], filters: Filters, wheel: Path,
               rows: int, homology: dict[str, Any], command: str) -> dict[str, Any]:
    """The PROVENANCE.json content."""
    dups = cross_split_duplicates(records)
    homology_counts = {k: {s: len(ids) for s, ids in v.items()} for k, v in homology.items()
                       if isinstance(v, dict)}
    return {
        "task": TASK,
        "kind": "class",
        "labels": names,
        "description": "SCL2205 subcellular localisation of reviewed UniProtKB proteins (release 2022_05); "
                       "13 classes, 9 single-location and 4 multi-location classes whose names are kept "
                       "verbatim from labels.json (e.g. 'Cytoplasm;Nucleus' is one class).",
        "source": {
            "package": PACKAGE, "version": VERSION, "registry": "PyPI", "wheel": WHEEL_NAME,
            "wheel_sha256": sha256_file(wheel),
            "files": [CSV_PATH, LABELS_PATH, ENTRIES_PATH, SPLITS_PATH],
            "homepage": "https://github.com/ousodaniel/scldata",
        },
        "licence": LICENCE,
        "licence_file": LICENCE_PATH,
        "split_method": "official SCL2205 homology-reduced train-eval-test splits from splits.json "
                        "(train=trn, valid=evl, test=tst); indices verified to be positional CSV rows "
                        "and equal to the entries.json keys; not re-clustered",
        "counts": count_by(records, "split", order=tuple(SPLIT_KEYS)),
        "label_counts": count_by(records, "label", "train", names),
        "label_counts_by_split": {s: count_by(records, "label", s, names) for s in SPLIT_KEYS},
        "filters": {
            "rows_read": rows,
            "mapped_to_X": dict(filters.mapped_to_x),
            "sequences_with_letters_mapped_to_X": filters.sequences_with_mapped_letters,
            "dropped_non_amino_acid_letters": len(filters.dropped_bad_letters),
            "dropped_shorter_than_30": len(filters.dropped_too_short),
            "kept": len(records),
        },
        "notes": {
            "longer_than_1022_kept": long_counts(records),
            "longer_than_1022_explanation": "kept as in the source; the screen truncates inputs to the "
                                            "first 1022 residues (FORMAT.md's 30..1022 range is not "
                                            "enforced for this task)",
            "cross_split_exact_duplicates": {k: len(v) for k, v in dups.items()},
            "cross_split_exact_duplicate_ids": dups,
            "train_homologs_of_valid_test": homology_counts or homology,
            "train_homolog_ids": homology,
            "test_ids_file": "test_ids.txt (all official test accessions, for excluding from other datasets)",
        },
        "command": command,
    }


# --------------------------------------------------------------------------- write


def check_output(records: list[dict[str, str]], names: list[str]) -> None:
    """Assert the records obey FORMAT.md (except the documented long sequences)."""
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for r in records:
        assert set(r["sequence"]) <= ALLOWED and len(r["sequence"]) >= MIN_LEN, r["id"]
        assert r["label"] in names and r["split"] in SPLIT_KEYS, r["id"]


# --------------------------------------------------------------------------- main


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "tasks" / TASK,
                        help="output folder (default: data/tasks/localization)")
    parser.add_argument("--no-homology-check", action="store_true",
                        help="skip the MMseqs2 search of valid/test against train (about a minute)")
    parser.add_argument("--wheel-dir", type=Path, default=REPO_ROOT / "data" / "raw" / "wheels",
                        help="where the wheel is downloaded/cached (default: data/raw/wheels)")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Download, convert and write the task; return its provenance."""
    wheel_path = fetch_wheel(args.wheel_dir, f"{PACKAGE}=={VERSION}", WHEEL_NAME)
    with open_wheel(wheel_path) as wheel:
        rows = read_rows(read_member(wheel, CSV_PATH))
        names = read_class_names(read_member(wheel, LABELS_PATH))
        assignment = read_splits(read_member(wheel, SPLITS_PATH), read_member(wheel, ENTRIES_PATH), rows)
    assert len(rows) == EXPECTED_ROWS, f"expected {EXPECTED_ROWS} rows, got {len(rows)}"
    assert len({r.entry for r in rows}) == len(rows), "duplicate accessions in the CSV"
    assert {r.class_index for r in rows} == set(range(EXPECTED_CLASSES)), "class indices out of range"

    filters = Filters()
    records = build_records(rows, names, assignment, filters)
    check_output(records, names)
    homology = ({"checked": False, "reason": "--no-homology-check"} if args.no_homology_check
                else homology_check(records))
    prov = provenance(records, names, filters, wheel_path, len(rows), homology, command_line(__file__))

    args.out.mkdir(parents=True, exist_ok=True)
    write_parquet(args.out / "data.parquet", records)
    write_text(args.out / "PROVENANCE.json", json.dumps(prov, indent=2) + "\n")
    test_ids = sorted(rows[i].entry for i, s in assignment.items() if s == "test")
    write_text(args.out / "test_ids.txt", "\n".join(test_ids) + "\n")
    return prov


def summary(prov: dict[str, Any]) -> None:
    """A few lines on what was written."""
    print(f"{TASK}: {prov['counts']}")
    print(f"filters: {prov['filters']}")
    print(f"longer than 1022 (kept): {prov['notes']['longer_than_1022_kept']}")
    print(f"valid/test with a train homolog: {prov['notes']['train_homologs_of_valid_test']}")


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, summary))
