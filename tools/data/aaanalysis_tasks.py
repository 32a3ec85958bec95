#!/usr/bin/env python3
"""Build the solubility, RNA-binding-site and disorder tasks from PyPI `aaanalysis==1.1.0` (BSD-3).

The wheel is downloaded with `pip download --no-deps` (never installed); the benchmark tables are
read straight out of the zip, `aaanalysis/_data/benchmarks/<NAME>.tsv`, tab-separated with the
header `entry gene sequence label`:

- protein level (`SEQ_SOLUBLE`): one protein per row, `label` is `0` or `1`; the wheel's
  `Overview.tsv` defines `1 (soluble), 0 (insoluble)`.
- residue level (`AA_RNABIND`, `AA_LDR`): one whole protein per row, `label` is a comma-separated
  0/1 list with exactly one value per residue. aaanalysis' `load_dataset` cuts these into windows
  only at load time (`aa_window_size`, default 9; `None` returns the raw rows), so the files hold
  whole proteins and a residue's 1-based position is its list index + 1. A residue-level table
  becomes a `sites` task (the 1-based positions of the 1s) or a `per_residue` task (one code
  letter per residue: `disorder` writes O for ordered, D for disordered); both forms of one
  table get the same clusters and splits.

Entries are synthetic (`SOLUBLE_1`, `RNABIND_1`, `LDR_1`; gene `name_<row>`), not UniProt
accessions. There are no official splits: proteins are clustered with MMseqs2 (30% identity,
80% coverage) and whole clusters go to train/valid/test by sha256 of the representative id.

Outputs (relative to the repository root by default):
  data/raw/wheels/aaanalysis-1.1.0-*.whl
  data/tasks/{solubility,rna_binding_sites,disorder_sites,disorder}/{data.parquet,PROVENANCE.json}

Run from the repository root:
  python tools/data/aaanalysis_tasks.py [--tasks solubility rna_binding_sites disorder_sites disorder]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from common import (
    ALLOWED,
    MAX_LEN,
    MIN_LEN,
    REPO_ROOT,
    SPLITS,
    PrepareError,
    clean_sequence,
    command_line,
    easy_cluster,
    failed_with_tail,
    fetch_wheel,
    open_wheel,
    read_member,
    require_mmseqs,
    script_main,
    sha256_file,
    sha_fraction,
    split_for,
    train_homologs,
    write_parquet,
    write_text,
)

PACKAGE = "aaanalysis"
VERSION = "1.1.0"
WHEEL_GLOB = f"aaanalysis-{VERSION}-*.whl"
LICENCE = "BSD-3-Clause"
LICENCE_PATH = f"aaanalysis-{VERSION}.dist-info/licenses/LICENSE"
BENCH_DIR = "aaanalysis/_data/benchmarks"
OVERVIEW_PATH = f"{BENCH_DIR}/Overview.tsv"
HEADER = ["entry", "gene", "sequence", "label"]
MMSEQS_ARGS = ["--min-seq-id", "0.3", "-c", "0.8", "--threads", "1"]
SMALL_TASK = 1000  # proteins; below this the split fractions are 70/10/20 instead of 80/5/15


@dataclass(frozen=True)
class TaskDef:
    """How one output task is made from one benchmark table."""

    name: str
    dataset: str
    kind: str  # "class", "sites" or "per_residue"
    description: str
    class_names: dict[str, str] = field(default_factory=dict)  # source label -> class name
    site: str = ""
    caps: dict[str, int] = field(default_factory=dict)
    overview_label: str = ""  # the wheel's Overview.tsv "Label" text, checked against class_names
    codes: str = ""  # per_residue: the letters written for source labels 0 and 1


TASKS = {
    "solubility": TaskDef(
        name="solubility", dataset="SEQ_SOLUBLE", kind="class",
        description="Protein solubility on expression (SOLpro data, Magnan et al., 2009)",
        class_names={"0": "insoluble", "1": "soluble"},
        caps={"train": 6000, "valid": 400, "test": 1500},
        overview_label="1 (soluble), 0 (insoluble)"),
    "rna_binding_sites": TaskDef(
        name="rna_binding_sites", dataset="AA_RNABIND", kind="sites",
        description="RNA-binding residues (GMKSVM-RU benchmark, Yang et al., 2021)",
        site="RNA-binding residue", overview_label="1 (binding), 0 (non-binding)"),
    "disorder_sites": TaskDef(
        name="disorder_sites", dataset="AA_LDR", kind="sites",
        description="Residues in long intrinsically disordered regions (IDP-Seq2Seq benchmark, "
                    "Tang et al., 2020)",
        site="disordered residue", overview_label="1 (disordered), 0 (ordered)"),
    "disorder": TaskDef(
        name="disorder", dataset="AA_LDR", kind="per_residue",
        description="Ordered (O) or in a long intrinsically disordered region (D), per residue "
                    "(IDP-Seq2Seq benchmark, Tang et al., 2020)",
        site="disordered residue", overview_label="1 (disordered), 0 (ordered)", codes="OD"),
}


@dataclass(frozen=True)
class Protein:
    """One cleaned protein with its label in the task's natural string form."""

    id: str
    sequence: str
    label: str


@dataclass
class Filters:
    """What was changed or dropped while cleaning one table."""

    rows_read: int = 0
    mapped_to_x: Counter = field(default_factory=Counter)
    sequences_with_mapped_letters: int = 0
    sequences_with_x: int = 0
    dropped_bad_letters: int = 0
    dropped_too_short: int = 0
    dropped_too_long: int = 0
    dropped_duplicate_same_label: int = 0
    dropped_duplicate_conflicting_label: int = 0
    dropped_by_cap: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- read


def read_tsv(wheel: zipfile.ZipFile, path: str, header: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a tab-separated file inside the wheel, checking its header."""
    text = read_member(wheel, path).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    if list(reader.fieldnames or [])[: len(header)] != list(header):
        raise PrepareError(f"{path}: unexpected header {reader.fieldnames}")
    return list(reader)


def check_overview(wheel: zipfile.ZipFile, task: TaskDef, n_rows: int) -> dict[str, str]:
    """The Overview.tsv row of the task's dataset, asserted to match its label meaning and size."""
    rows = {r["Dataset"]: r for r in read_tsv(wheel, OVERVIEW_PATH, ["Level", "Dataset"])}
    row = rows.get(task.dataset)
    assert row is not None, f"{task.dataset} is not in {OVERVIEW_PATH}"
    assert row["Label"].strip() == task.overview_label, \
        f"{task.dataset}: Overview label text {row['Label']!r} != {task.overview_label!r}"
    assert int(row["# Sequences"]) == n_rows, f"{task.dataset}: {n_rows} rows, Overview says {row['# Sequences']}"
    return {k: v.strip() for k, v in row.items()}


def residue_sites(entry: str, sequence: str, label: str) -> list[int]:
    """1-based positions labelled 1 in a per-residue comma-separated 0/1 list."""
    values = label.split(",")
    assert len(values) == len(sequence), f"{entry}: {len(values)} labels for {len(sequence)} residues"
    assert set(values) <= {"0", "1"}, f"{entry}: labels other than 0/1: {sorted(set(values) - {'0', '1'})}"
    return [i + 1 for i, v in enumerate(values) if v == "1"]


def natural_label(task: TaskDef, row: dict[str, str]) -> str:
    """The row's label in the task's output form (class name, `;`-joined sites, or codes)."""
    if task.kind == "class":
        assert row["label"] in task.class_names, f"{row['entry']}: unexpected label {row['label']!r}"
        return task.class_names[row["label"]]
    sites = set(residue_sites(row["entry"], row["sequence"], row["label"]))
    if task.kind == "per_residue":
        return "".join(task.codes[i + 1 in sites] for i in range(len(row["sequence"])))
    return ";".join(str(p) for p in sorted(sites))


# --------------------------------------------------------------------------- clean


def clean_rows(task: TaskDef, rows: list[dict[str, str]], filters: Filters) -> list[Protein]:
    """Cleaned, length-filtered proteins (labels checked on every raw row first)."""
    proteins = []
    for row in rows:
        label = natural_label(task, row)  # validates the raw row, including per-residue lengths
        seq = clean_sequence(row["sequence"], filters)
        if seq is None:
            filters.dropped_bad_letters += 1
        elif len(seq) < MIN_LEN:
            filters.dropped_too_short += 1
        elif len(seq) > MAX_LEN:
            filters.dropped_too_long += 1
        else:
            filters.sequences_with_x += "X" in seq
            proteins.append(Protein(row["entry"].strip(), seq, label))
    return proteins


def drop_duplicates(proteins: list[Protein], filters: Filters) -> list[Protein]:
    """Keep the first of identical sequences with one label; drop all copies when labels conflict."""
    groups: dict[str, list[Protein]] = defaultdict(list)
    for p in proteins:
        groups[p.sequence].append(p)
    kept = []
    for p in proteins:
        group = groups[p.sequence]
        if len({q.label for q in group}) > 1:
            filters.dropped_duplicate_conflicting_label += 1
        elif group[0] is not p:
            filters.dropped_duplicate_same_label += 1
        else:
            kept.append(p)
    return kept


# --------------------------------------------------------------------------- split


def mmseqs_clusters(proteins: list[Protein], work: Path) -> dict[str, str]:
    """Map protein id -> cluster representative id from `mmseqs easy-cluster`."""
    require_mmseqs("mmseqs not found on PATH: apt-get update && apt-get install -y mmseqs2")
    rep_of = easy_cluster([(p.id, p.sequence) for p in proteins], work, MMSEQS_ARGS, failed_with_tail)
    assert set(rep_of) == {p.id for p in proteins}, "mmseqs clusters do not cover every protein"
    return rep_of


def split_fractions(n: int) -> tuple[float, float, float]:
    """Train/valid/test fractions: 80/5/15, or 70/10/20 for small tasks."""
    return (0.7, 0.1, 0.2) if n < SMALL_TASK else (0.8, 0.05, 0.15)


def assign_split(rep: str, fractions: tuple[float, float, float]) -> str:
    """The split of a whole cluster, from the sha256 of its representative's id."""
    return split_for(sha_fraction(rep), fractions[0], fractions[1])


def apply_caps(rows: list[dict[str, str]], caps: dict[str, int], filters: Filters) -> list[dict[str, str]]:
    """Keep at most caps[split] rows per split, chosen by sha256 of the id (deterministic)."""
    if not caps:
        return rows
    kept = []
    for split in SPLITS:
        in_split = [r for r in rows if r["split"] == split]
        chosen = sorted(in_split, key=lambda r: sha_fraction("cap:" + r["id"]))[: caps.get(split, len(in_split))]
        filters.dropped_by_cap[split] = len(in_split) - len(chosen)
        ids = {r["id"] for r in chosen}
        kept.extend(r for r in in_split if r["id"] in ids)
    return kept


# --------------------------------------------------------------------------- summarise


def load_localization_test(task_root: Path) -> tuple[set[str] | None, set[str] | None]:
    """Accessions and sequences of the SCL2205 test split, where that task has been built."""
    loc = task_root / "localization"
    ids = set((loc / "test_ids.txt").read_text().split()) if (loc / "test_ids.txt").is_file() else None
    seqs = None
    if (loc / "data.parquet").is_file():
        table = pq.read_table(loc / "data.parquet", columns=["sequence", "split"]).to_pydict()
        seqs = {s for s, sp in zip(table["sequence"], table["split"]) if sp == "test"}
    return ids, seqs


def overlaps(rows: list[dict[str, str]], task_root: Path) -> dict[str, Any]:
    """Overlap of the task's proteins with the SCL2205 (localization) test split."""
    test_ids, test_seqs = load_localization_test(task_root)
    out: dict[str, Any] = {"reference": "data/tasks/localization test split (SCL2205 official test)"}
    if test_ids is None:
        out["by_accession"] = "not checked: data/tasks/localization/test_ids.txt missing"
    else:
        out["by_accession"] = sorted(r["id"] for r in rows if r["id"] in test_ids)
        out["by_accession_note"] = "aaanalysis entries are synthetic row ids, not UniProt accessions"
    if test_seqs is None:
        out["identical_sequence"] = "not checked: data/tasks/localization/data.parquet missing"
    else:
        out["identical_sequence"] = {s: sorted(r["id"] for r in rows if r["split"] == s and r["sequence"] in test_seqs)
                                     for s in SPLITS}
    return out


def label_counts(task: TaskDef, rows: list[dict[str, str]], split: str) -> dict[str, int]:
    """Class counts, or site/residue counts for sites tasks, within one split."""
    in_split = [r for r in rows if r["split"] == split]
    if task.kind == "class":
        counts = Counter(r["label"] for r in in_split)
        return {name: counts.get(name, 0) for name in task.class_names.values()}
    if task.kind == "per_residue":
        return {"proteins": len(in_split),
                **{code: sum(r["label"].count(code) for r in in_split) for code in task.codes}}
    n_sites = sum(len(r["label"].split(";")) for r in in_split if r["label"])
    n_res = sum(len(r["sequence"]) for r in in_split)
    return {"proteins": len(in_split), "proteins_with_sites": sum(1 for r in in_split if r["label"]),
            "site_residues": n_sites, "other_residues": n_res - n_sites}


def provenance(task: TaskDef, rows: list[dict[str, str]], filters: Filters, wheel: Path,
               overview: dict[str, str], n_clusters: dict[str, int], fractions: tuple[float, float, float],
               task_root: Path, homology: dict[str, Any], command: str) -> dict[str, Any]:
    """The PROVENANCE.json content."""
    prov: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "labels": list(task.class_names.values()) if task.kind == "class" else [],
        "description": task.description,
        "source": {
            "package": PACKAGE, "version": VERSION, "registry": "PyPI", "wheel": wheel.name,
            "wheel_sha256": sha256_file(wheel), "file": f"{BENCH_DIR}/{task.dataset}.tsv",
            "format": ("one protein per row; label 0/1" if task.kind == "class" else
                       "one whole protein per row; label = comma-separated 0/1, one per residue"),
            "overview_row": overview,
        },
        "licence": LICENCE,
        "licence_file": LICENCE_PATH,
        "split_method": (f"MMseqs2 easy-cluster {' '.join(MMSEQS_ARGS[:4])} (30% identity, 80% coverage); "
                         f"whole clusters assigned by sha256 of the representative id to "
                         f"train/valid/test with fractions {list(fractions)}"
                         + (f"; then capped per split at {task.caps} keeping the lowest sha256('cap:'+id)"
                            if task.caps else "")),
        "clusters_per_split_before_caps" if task.caps else "clusters_per_split": n_clusters,
        "train_homologs_of_valid_test": {k: {s: len(ids) for s, ids in v.items()}
                                         for k, v in homology.items() if isinstance(v, dict)},
        "train_homolog_ids": homology,
        "counts": {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS},
        "label_counts": label_counts(task, rows, "train"),
        "label_counts_by_split": {s: label_counts(task, rows, s) for s in SPLITS},
        "filters": {
            "rows_read": filters.rows_read,
            "mapped_to_X": dict(filters.mapped_to_x),
            "sequences_with_letters_mapped_to_X": filters.sequences_with_mapped_letters,
            "dropped_non_amino_acid_letters": filters.dropped_bad_letters,
            f"dropped_shorter_than_{MIN_LEN}": filters.dropped_too_short,
            f"dropped_longer_than_{MAX_LEN}": filters.dropped_too_long,
            "dropped_exact_duplicate_same_label": filters.dropped_duplicate_same_label,
            "dropped_exact_duplicate_conflicting_labels": filters.dropped_duplicate_conflicting_label,
            "dropped_by_cap": filters.dropped_by_cap,
            "kept": len(rows),
            "kept_sequences_containing_X": sum(1 for r in rows if "X" in r["sequence"]),
        },
        "overlap_with_localization_test": overlaps(rows, task_root),
        "command": command,
    }
    if task.kind == "class":
        prov["label_evidence"] = (f"{OVERVIEW_PATH} row {task.dataset}, column Label: "
                                  f"{overview['Label']!r}")
    else:
        prov["site"] = task.site
        prov["residues"] = None
        prov["label_evidence"] = (f"{OVERVIEW_PATH} row {task.dataset}, column Label: {overview['Label']!r}; "
                                  + ("positions are 1-based indices of the 1s in the per-residue list"
                                     if task.kind == "sites" else
                                     f"code {task.codes[0]} for 0 and {task.codes[1]} for 1, one per residue"))
    return prov


# --------------------------------------------------------------------------- write


def check_output(task: TaskDef, rows: list[dict[str, str]]) -> None:
    """Assert the rows obey FORMAT.md."""
    assert len({r["id"] for r in rows}) == len(rows), "duplicate ids"
    for r in rows:
        assert set(r["sequence"]) <= ALLOWED and MIN_LEN <= len(r["sequence"]) <= MAX_LEN, r["id"]
        assert r["split"] in SPLITS, r["id"]
        if task.kind == "class":
            assert r["label"] in task.class_names.values(), r["id"]
        elif task.kind == "per_residue":
            assert len(r["label"]) == len(r["sequence"]) and set(r["label"]) <= set(task.codes), r["id"]
        elif r["label"]:
            sites = [int(p) for p in r["label"].split(";")]
            assert sites == sorted(set(sites)) and 1 <= sites[0] and sites[-1] <= len(r["sequence"]), r["id"]


# --------------------------------------------------------------------------- build


def build_task(task: TaskDef, wheel_path: Path, wheel: zipfile.ZipFile, out_root: Path,
               command: str) -> dict[str, Any]:
    """Read, clean, cluster, split and write one task; return its provenance."""
    raw = read_tsv(wheel, f"{BENCH_DIR}/{task.dataset}.tsv", HEADER)
    overview = check_overview(wheel, task, len(raw))
    assert len({r["entry"] for r in raw}) == len(raw), f"{task.dataset}: duplicate entries"
    filters = Filters(rows_read=len(raw))
    proteins = drop_duplicates(clean_rows(task, raw, filters), filters)
    with tempfile.TemporaryDirectory(prefix=f"mmseqs_{task.name}_") as tmp:
        rep_of = mmseqs_clusters(proteins, Path(tmp))
    fractions = split_fractions(len(proteins))
    rows = [{"id": p.id, "sequence": p.sequence, "label": p.label,
             "split": assign_split(rep_of[p.id], fractions)} for p in proteins]
    n_clusters = {s: len({rep_of[r["id"]] for r in rows if r["split"] == s}) for s in SPLITS}
    rows = apply_caps(rows, task.caps, filters)
    order = {s: i for i, s in enumerate(SPLITS)}
    rows.sort(key=lambda r: order[r["split"]])  # stable: source order within a split
    check_output(task, rows)
    homology = train_homologs(rows, "aaanalysis_homology_")
    prov = provenance(task, rows, filters, wheel_path, overview, n_clusters, fractions,
                      out_root, homology, command)
    out = out_root / task.name
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "data.parquet", rows)
    write_text(out / "PROVENANCE.json", json.dumps(prov, indent=2) + "\n")
    return prov


# --------------------------------------------------------------------------- main


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS),
                        help="tasks to build (default: all)")
    parser.add_argument("--out-root", type=Path, default=REPO_ROOT / "data" / "tasks",
                        help="folder holding one sub-folder per task (default: data/tasks)")
    parser.add_argument("--wheel-dir", type=Path, default=REPO_ROOT / "data" / "raw" / "wheels",
                        help="where the wheel is downloaded/cached (default: data/raw/wheels)")
    return parser


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Build the requested tasks; return their provenance by task name."""
    wheel_path = fetch_wheel(args.wheel_dir, f"{PACKAGE}=={VERSION}", WHEEL_GLOB)
    command = command_line(__file__)
    with open_wheel(wheel_path) as wheel:
        return {name: build_task(TASKS[name], wheel_path, wheel, args.out_root, command)
                for name in args.tasks}


def summary(provs: dict[str, dict[str, Any]]) -> None:
    """One line per task written."""
    for name, prov in provs.items():
        print(f"{name}: {prov['counts']} labels(train)={prov['label_counts']} "
              f"train homologs of valid/test={prov['train_homologs_of_valid_test']}")


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, summary))
