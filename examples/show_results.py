"""Print a screen's results compactly: a per-task overview and the first proteins' predictions.

The proteins shown are spread over the library's lengths (shortest, median, longest), not its
first records. Position tasks (`positions_X`, "where are the X residues?") are checked against
the sequences themselves, since their right answer is in the FASTA; the localization task is
checked against the UniProt header where its protein name states a location ("..., mitochondrial").

    python examples/show_results.py examples/library.fasta results/demo
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
from rich.console import Console
from rich.table import Table

from p2t_screen.io.fasta import read_fasta
from p2t_screen.io.records import ReadPolicy
from p2t_screen.model.store import read_model_config
from p2t_screen.tasks.metrics import random_site_baseline, site_metrics


def short(row: dict, codes: dict[str, str]) -> str:
    """One cell: the prediction of one row, abbreviated; per-residue labels as their codes."""
    if row["status"] != "ok":
        return f"[red]{row['status']}[/]"
    if row["value"] is not None:
        return f"{row['value']:.3g}"
    if row["label"] is not None:
        return f"{row['label']} ({row['confidence']:.2f})"
    if row["labels"] is not None:  # each chosen label with its probability
        p = {item["label"]: item["prob"] for item in row["label_probs"] or []}
        return "; ".join(f"{lab} ({p[lab]:.2f})" if lab in p else lab for lab in row["labels"]) or "-"
    if row["sites"] is not None:
        return f"{len(row['sites'])} sites: " + ",".join(map(str, row["sites"][:6])) + ("..." if len(row["sites"]) > 6 else "")
    labels = row["residue_labels"]
    counts = Counter(labels)
    trace = "".join(codes.get(lab, lab[0].upper()) for lab in labels[:48]) + ("..." if len(labels) > 48 else "")
    return trace + "  (" + ", ".join(f"{k} {v / len(labels):.0%}" for k, v in counts.most_common(3)) + ")"


def main(fasta: Path, results: Path, show: int = 3) -> None:
    console = Console()
    rows = ds.dataset(results).to_table().to_pylist()
    run = json.loads((results / "_p2t_run.json").read_text())
    codes = {}  # per-residue label -> its one-letter code, from the model's task specs
    for spec in read_model_config(run["model"]["path"]).tasks:
        codes.update(zip(spec.labels, spec.codes or ""))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by_record: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_record.setdefault(r["input_index"], {})[r["task"]] = r
    statuses = Counter(r["status"] for r in rows)
    console.print(f"{len(rows)} rows: {len(by_record)} proteins x {len(tasks)} tasks; status "
                  + ", ".join(f"{k} {v}" for k, v in statuses.items()))
    ordered = sorted(by_record, key=lambda i: next(iter(by_record[i].values()))["length"])
    picks = sorted({ordered[round(k * (len(ordered) - 1) / max(show - 1, 1))] for k in range(show)}) if ordered else []
    for index in picks:
        rec = by_record[index]
        first = next(iter(rec.values()))
        table = Table(title=f"{first['seq_id']} ({first['length']} residues)", title_justify="left")
        table.add_column("task")
        table.add_column("prediction")
        for t in tasks:
            table.add_row(t, short(rec[t], codes))
        console.print(table)
    check_positions(console, fasta, rows, tasks)
    check_stated_locations(console, rows)


# Words of UniProt protein names that state where the protein is, and the localization label they mean.
STATED = {"mitochondrial": "Mitochondrion", "chloroplastic": "Plastid", "nuclear": "Nucleus",
          "secreted": "Secreted", "extracellular": "Secreted", "peroxisomal": "Peroxisome",
          "cytoplasmic": "Cytoplasm", "membrane": "Membrane"}


def check_stated_locations(console: Console, rows: list[dict], task: str = "localization") -> None:
    """The localization answers of proteins whose UniProt name states a location, beside it."""
    mine = [r for r in rows if r["task"] == task and r["status"] == "ok"]
    table = Table(title=f"{task} against the location the UniProt name states (where it states one)")
    for col in ("protein", "name says", "model says", "agrees"):
        table.add_column(col)
    agree = 0
    for r in mine:
        words = [w for w in STATED if re.search(rf"\b{w}\b", r["header"] or "", re.IGNORECASE)]
        if not words:
            continue
        expected = STATED[words[0]]
        hit = expected in r["label"].split(";")
        agree += hit
        table.add_row(r["seq_id"], f"{words[0]} -> {expected}", f"{r['label']} ({r['confidence']:.2f})",
                      "[green]yes[/]" if hit else "[red]no[/]")
    if table.row_count:
        console.print(table)
        console.print(f"{agree} of {table.row_count} agree (a word in a name is weak evidence: "
                      f"'membrane' may name a membrane-bound complex)")


def check_positions(console: Console, fasta: Path, rows: list[dict], tasks: list[str]) -> None:
    """Precision/recall of the position tasks against the true residue positions."""
    position_tasks = [t for t in tasks if t.startswith("positions_")]
    if not position_tasks:
        return
    seqs = {r.input_index: r.used_sequence for r in read_fasta(fasta, ReadPolicy(on_invalid="skip"))}
    table = Table(title="position tasks checked against the sequences")
    for col in ("task", "precision", "recall", "F1", "random-guess F1"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in position_tasks:
        mine = [r for r in rows if r["task"] == task and r["status"] == "ok"]
        residue = task.rsplit("_", 1)[1].upper()
        used = [seqs[r["input_index"]] for r in mine]
        truth = [[i + 1 for i, aa in enumerate(s) if aa == residue] for s in used]
        m = site_metrics(truth, [r["sites"] for r in mine])
        base = random_site_baseline(used, truth)
        table.add_row(task, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{base['f1']:.3f}")
    console.print(table)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
