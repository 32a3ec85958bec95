"""The demo's check a biologist can read: predicted structure states of five held-out PDB chains
(examples/pdb_test_chains.tsv, test split: no training chain at >= 30% identity) beside the states
of their solved structures (DSSP 3 and 8 states; Foldseek 3Di from mini3di), with the fraction
right per chain, for each of these tasks the screening model offers. The whole-test-split figures
printed at the end are read from the model's own test_metrics.json (its card's numbers).

    python examples/show_structures.py examples/pdb_test_chains.tsv results/demo_pdb
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow.dataset as ds
from rich.console import Console

from p2t_screen.model.store import read_model_config

# task -> (truth column, short name): the states a solved structure gives
TASKS = {"secondary_structure": ("dssp3", "Q3"), "secondary_structure_8": ("dssp8", "Q8"),
         "structure_3di": ("3di", "3Di")}
SHOWN = 60  # residues of each chain shown


def screened(results: Path) -> tuple[dict[str, dict[str, str]], Path]:
    """Each task's label -> one-letter code, and the directory of the model that screened `results`."""
    model = Path(json.loads((results / "_p2t_run.json").read_text())["model"]["path"])
    return {s.name: dict(zip(s.labels, s.codes or "")) for s in read_model_config(model).tasks}, model


def whole_split(model: Path, tasks: list[str]) -> str:
    """The card's test-split line for `tasks`: model against the classical baseline."""
    path = model / "test_metrics.json"
    if not path.is_file():
        return f"(no test_metrics.json in {model}: this model has no card figures to compare with)"
    card = json.loads(path.read_text())
    known = [t for t in tasks if card.get(t, {}).get("classical")]
    parts = [f"{TASKS[t][1]} {card[t]['model']['accuracy']:.3f} (+-7 window logistic regression "
             f"{card[t]['classical']['metrics']['accuracy']:.3f}, {card[t]['test_examples']:,} chains)" for t in known]
    return "Over the whole test split (MODEL_CARD.md): " + "; ".join(parts) + "."


def right(solved: str, predicted: str) -> float:
    """Fraction of the chain's residues whose predicted state is the solved structure's."""
    return sum(a == b for a, b in zip(solved, predicted)) / len(solved)


def main(truth_file: Path, results: Path) -> None:
    console = Console()
    with truth_file.open() as f:
        truth = {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}
    codes, model = screened(results)
    said: dict[str, dict[str, str]] = {}
    for r in ds.dataset(results).to_table().to_pylist():
        if r["task"] in TASKS and r["status"] == "ok":
            trace = "".join(codes[r["task"]].get(x, "?") for x in r["residue_labels"])
            said.setdefault(r["seq_id"], {})[r["task"]] = trace
    shown = [t for t in TASKS if t in codes]
    console.print("[bold]Held-out PDB chains: predicted structure states against the solved structures[/]")
    console.print(f"(first {SHOWN} residues; H helix, E strand, C other; 8 states: DSSP's codes; "
                  "3Di: Foldseek's letters)")
    for chain, predicted in said.items():
        known = truth[chain]
        scores = [f"{TASKS[t][1]} {right(known[TASKS[t][0]], predicted[t]):.2f}" for t in shown if t in predicted]
        console.print(f"\n{chain} ({len(known['sequence'])} residues): {', '.join(scores)}")
        console.print(f"  sequence   {known['sequence'][:SHOWN]}", highlight=False)
        for t in shown:
            if t in predicted:
                name = TASKS[t][1]
                console.print(f"  {'solved ' + name:<10} {known[TASKS[t][0]][:SHOWN]}", highlight=False)
                console.print(f"  {'model ' + name:<10} {predicted[t][:SHOWN]}", highlight=False)
    console.print("\n" + whole_split(model, shown))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
