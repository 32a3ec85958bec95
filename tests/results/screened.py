"""A screen with every task kind, a pair task and a ligand task, and rows that are not ok, for
the tests of what people read from results."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import TASKS, tiny_model
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.model.molecule import SPECIALS, MoleculeConfig
from p2t_screen.model.store import save_model
from p2t_screen.tasks.spec import TaskSpec

ALL_TASKS = [*TASKS, TaskSpec("binds", "class", labels=("no", "yes"), inputs="pair"),
             TaskSpec("affinity", "regression", value_range=(0.0, 10.0), inputs="ligand")]
MOLECULE = MoleculeConfig(tokens=(*SPECIALS, "C", "N", "O", "c", "1", "(", ")", "="), dim=32, num_layers=1,
                          num_heads=4, ffn_dim=64)


def all_kinds_model(path: Path) -> Path:
    """A random-weight model with a task of every kind, a pair task and a ligand task."""
    return save_model(tiny_model(tasks=ALL_TASKS, molecule=MOLECULE, memory_positions=66), path)


def library(path: Path, n: int = 12, seed: int = 0) -> tuple[Path, list[tuple[str, str]]]:
    """n random proteins, then one with an invalid letter and one over the 64-residue limit."""
    rng = random.Random(seed)
    records = [(f"p{i}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(8, 40))))
               for i in range(n)]
    records += [("bad", "MKV1ZZ"), ("long", "M" * 80)]
    path.write_text("".join(f">{rid} protein {rid}\n{seq}\n" for rid, seq in records))
    return path, records


def screen(tmp: Path, n: int = 12) -> tuple[Path, list[tuple[str, str]]]:
    """Screen the library against two partners and two ligands (one broken); returns the output
    folder and the library's (id, sequence) records."""
    model = all_kinds_model(tmp / "model")
    lib, records = library(tmp / "lib.fasta", n)
    (tmp / "kin.fasta").write_text(">k1\nMSTNPKPQRKTKRNTNRRPQDVKFPGG\n>k2\nMGSSHHHHHHSSG\n")
    (tmp / "l.smi").write_text("CCO ethanol\nC1CC broken\n")
    out = tmp / "out"
    result = CliRunner().invoke(app, [
        "screen", str(lib), "--model", str(model), "-o", str(out), "--partner", str(tmp / "kin.fasta"),
        "--ligands", str(tmp / "l.smi"), "--on-invalid", "skip", "--long", "skip", "--device", "cpu", "-q"])
    assert result.exit_code == 3, result.output  # finished, some rows not ok
    return out, records
