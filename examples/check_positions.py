"""Check a screen of the self-supervised position tasks against the sequences themselves.

The bundled model's tasks ask "where are the S (T, Y, K, R, N) residues?", so the right answer
is in the FASTA: this prints, per task, how often the model's positions are right.

    python examples/check_positions.py examples/library.fasta results/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.dataset as ds
from rich.console import Console
from rich.table import Table

from p2t_screen.fasta import ReadPolicy, read_fasta
from p2t_screen.metrics import random_site_baseline, site_metrics


def main(fasta: Path, results: Path) -> None:
    records = {r.input_index: r for r in read_fasta(fasta, ReadPolicy(on_invalid="skip"))}
    rows = ds.dataset(results).to_table(filter=ds.field("status") == "ok").to_pylist()
    table = Table(title=f"{results}: predicted vs true residue positions ({len(records)} proteins)")
    for col in ("task", "rows", "precision", "recall", "F1", "exact", "random-guess F1"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in sorted({r["task"] for r in rows}):
        if not task.startswith("positions_"):
            continue
        residue = task.rsplit("_", 1)[1].upper()
        mine = [r for r in rows if r["task"] == task]
        seqs = [records[r["input_index"]].used_sequence for r in mine]
        truth = [[i + 1 for i, aa in enumerate(s) if aa == residue] for s in seqs]
        m = site_metrics(truth, [r["sites"] for r in mine])
        base = random_site_baseline(seqs, truth)
        table.add_row(task, str(len(mine)), f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      f"{m['f1']:.3f}", f"{m['exact']:.3f}", f"{base['f1']:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
