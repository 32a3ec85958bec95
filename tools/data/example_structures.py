"""The demo's PDB chains: the first five test-split chains of 90-260 residues, in sha256(id) order
(no choosing), with their DSSP 3- and 8-state and Foldseek 3Di strings, from `make data`'s
promod3-data tasks.

    python tools/data/example_structures.py    # writes examples/pdb_test_chains.fasta and .tsv
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

TASKS = Path("data/tasks")
OUT = Path("examples/pdb_test_chains")
COUNT, SHORTEST, LONGEST = 5, 90, 260


def main() -> None:
    ss3 = {r["id"]: r for r in pq.read_table(TASKS / "secondary_structure" / "data.parquet").to_pylist()}
    di3 = {r["id"]: r for r in pq.read_table(TASKS / "structure_3di" / "data.parquet").to_pylist()}
    ss8 = [r for r in pq.read_table(TASKS / "secondary_structure_8" / "data.parquet").to_pylist()
           if r["split"] == "test" and SHORTEST <= len(r["sequence"]) <= LONGEST]
    ss8.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    chosen = ss8[:COUNT]
    OUT.with_suffix(".fasta").write_text("".join(
        f">{r['id']} PDB chain {r['id']}, test split of data/tasks/secondary_structure (promod3-data)\n"
        f"{r['sequence']}\n" for r in chosen))
    rows = ["id\tsequence\tdssp3\tdssp8\t3di"] + [
        f"{r['id']}\t{r['sequence']}\t{ss3[r['id']]['label']}\t{r['label']}\t{di3[r['id']]['label']}" for r in chosen]
    OUT.with_suffix(".tsv").write_text("\n".join(rows) + "\n")
    print(f"wrote {OUT}.fasta and {OUT}.tsv: {', '.join(r['id'] for r in chosen)}")


if __name__ == "__main__":
    main()
