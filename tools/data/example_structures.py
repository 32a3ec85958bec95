"""The demo's PDB chains: the first five test-split chains of 90-260 residues, in sha256(id) order
(no choosing), with their DSSP 3- and 8-state and Foldseek 3Di strings, from `make data`'s
promod3-data tasks.

    python tools/data/example_structures.py    # writes examples/pdb_test_chains.fasta and .tsv
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pyarrow.parquet as pq
from common import REPO_ROOT, script_main

COUNT, SHORTEST, LONGEST = 5, 90, 260


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, default=REPO_ROOT / "data" / "tasks")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "examples" / "pdb_test_chains",
                        help="written as OUT.fasta and OUT.tsv")
    return parser


def run(args: argparse.Namespace) -> str:
    """Pick the chains and write both files; return a one-line summary."""
    tasks, out = args.tasks, args.out
    ss3 = {r["id"]: r for r in pq.read_table(tasks / "secondary_structure" / "data.parquet").to_pylist()}
    di3 = {r["id"]: r for r in pq.read_table(tasks / "structure_3di" / "data.parquet").to_pylist()}
    ss8 = [r for r in pq.read_table(tasks / "secondary_structure_8" / "data.parquet").to_pylist()
           if r["split"] == "test" and SHORTEST <= len(r["sequence"]) <= LONGEST]
    ss8.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    chosen = ss8[:COUNT]
    out.with_suffix(".fasta").write_text("".join(
        f">{r['id']} PDB chain {r['id']}, test split of data/tasks/secondary_structure (promod3-data)\n"
        f"{r['sequence']}\n" for r in chosen))
    rows = ["id\tsequence\tdssp3\tdssp8\t3di"] + [
        f"{r['id']}\t{r['sequence']}\t{ss3[r['id']]['label']}\t{r['label']}\t{di3[r['id']]['label']}" for r in chosen]
    out.with_suffix(".tsv").write_text("\n".join(rows) + "\n")
    return f"wrote {out}.fasta and {out}.tsv: {', '.join(r['id'] for r in chosen)}"


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, print))
