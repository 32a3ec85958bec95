"""Protein-ligand tasks: SMILES tokens and checks, `.smi` files, a molecule encoder trained with
the decoder through `p2t train`, and `--ligand/--ligands` screening with per-row errors."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.io.ligands import check_smiles, read_ligands, smiles_tokens
from p2t_screen.model.store import load_model
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.inputs import ModelInput
from p2t_screen.tasks.metrics import regression_metrics
from p2t_screen.train.config import load_config
from p2t_screen.train.run import run_training

pytestmark = pytest.mark.usefixtures("one_thread")



def test_smiles_tokens_are_atom_level():
    assert smiles_tokens("CC(=O)Oc1ccccc1C(=O)O")[:6] == ["C", "C", "(", "=", "O", ")"]
    assert smiles_tokens("[Na+].[Cl-]") == ["[Na+]", ".", "[Cl-]"]
    assert smiles_tokens("ClCBr") == ["Cl", "C", "Br"]
    assert smiles_tokens("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert smiles_tokens("N[C@@H](C)C(=O)O")[1] == "[C@@H]"


@pytest.mark.parametrize("smiles,problem", [
    ("", "empty"), ("C1CC", "unclosed ring"), ("CC(C", "unclosed '('"), ("CC)C", "without an opening"),
    ("CXC", "unexpected character 'X' at position 2"), ("C C", "whitespace"), ("((", "unclosed"),
])
def test_bad_smiles_are_named(smiles, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_smiles(smiles)


def test_smi_file_keeps_invalid_ligands_with_their_error(tmp_path):
    path = tmp_path / "l.smi"
    path.write_text("# comment\nCCO ethanol\n\nC1CC broken\nc1ccccc1\n")
    ligands = read_ligands(path)
    assert [(lig.id, lig.smiles, lig.error is None) for lig in ligands] == [
        ("ethanol", "CCO", True), ("broken", "C1CC", False), ("line5", "c1ccccc1", True)]
    assert "line 4" in ligands[1].error and "unclosed ring" in ligands[1].error


FRAGMENTS = ["C", "CC", "O", "N", "c1ccccc1", "C(=O)O", "CN", "Cl", "CCN", "OC"]


def molecule(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 5)))


def write_task(path: Path, n: int, seed: int) -> None:
    """Affinity = 2 + 2 x (nitrogens in the ligand) + 3 x (protein has a W): both inputs matter."""
    rng = random.Random(seed)
    rows = ["id,sequence,smiles,label,split"]
    for i in range(n):
        seq = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(8, 20)))
        smi = molecule(rng)
        rows.append(f"x{i},{seq},{smi},{2 + 2 * smi.count('N') + 3 * ('W' in seq)},"
                    f"{'valid' if i % 8 == 0 else 'train'}")
    path.write_text("\n".join(rows) + "\n")


CONFIG = """
name = "lig"
output = "{out}"
[encoder]
num_layers = 1
embed_dim = 32
attention_heads = 4
max_residues = 40
[decoder]
dim = 32
num_layers = 2
num_heads = 4
ffn_dim = 64
memory_positions = 42
[molecule]
num_layers = 1
ffn_dim = 64
[train]
epochs = {epochs}
max_tokens = 1200
lr = 2e-3
warmup = 20
[[tasks]]
name = "ligand_affinity"
data = "{data}"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lig")
    write_task(tmp / "aff.csv", 800, seed=1)
    (tmp / "t.toml").write_text(CONFIG.format(out=tmp / "model", epochs=12, data=tmp / "aff.csv"))
    summary = run_training(load_config(tmp / "t.toml"), torch.device("cpu"))
    return tmp, [h["loss"] for h in summary["history"]]


def test_ligand_task_trains_and_round_trips(trained):
    trained, losses = trained
    model = load_model(str(trained / "model"))
    assert (trained / "model" / "molecule.safetensors").is_file()
    spec = model.config.task("ligand_affinity")
    assert spec.inputs == "ligand" and "N" in model.config.molecule.tokens
    assert losses[-1] < 0.8 * losses[0], losses
    # The decoder reads the ligand: predictions follow the nitrogen count on fresh pairs.
    rng = random.Random(5)
    seq = "ACDEFGHIKLMNPQ"
    smiles = [molecule(rng) for _ in range(60)]
    out = Screener(model, [spec]).predict([ModelInput(seq, ligand=s) for s in smiles])[spec.name]
    truth = [2 + 2 * s.count("N") for s in smiles]
    assert regression_metrics(truth, [o.value for o in out])["spearman"] > 0.5


def test_screen_with_ligands(trained, tmp_path):
    trained, _ = trained
    lib = tmp_path / "lib.fasta"
    lib.write_text(">p1\nACDEFGHIK\n>p2\nMKWVLLAA\n")
    smi = tmp_path / "l.smi"
    smi.write_text("CCN amine\nC1CC broken\nc1ccccc1 benzene\n")
    run = CliRunner().invoke
    model = str(trained / "model")
    result = run(app, ["screen", str(lib), "--model", model, "-o", str(tmp_path / "out"),
                       "--ligands", str(smi), "--ligand", "CO", "--device", "cpu", "-q"])
    assert result.exit_code == 3, result.output  # the broken ligand's rows are not ok
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert [(r["seq_id"], r["ligand_id"], r["ligand"], r["status"]) for r in rows] == [
        (p, lig, s, "invalid" if lig == "broken" else "ok")
        for p in ("p1", "p2") for lig, s in (("ligand1", "CO"), ("amine", "CCN"), ("broken", "C1CC"),
                                              ("benzene", "c1ccccc1"))]
    assert all(r["value"] is not None for r in rows if r["status"] == "ok")
    assert "broken" in rows[2]["error"] and "unclosed ring" in rows[2]["error"]

    result = run(app, ["screen", str(lib), "--model", model, "-o", str(tmp_path / "bad"),
                       "--ligand", "C1C", "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "C1C" in result.output and not (tmp_path / "bad").exists()
    result = run(app, ["screen", str(lib), "--model", model, "-o", str(tmp_path / "none"),
                       "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "--ligand" in result.output


def test_a_protein_with_many_ligands_is_encoded_once_per_batch(trained, monkeypatch):
    trained, _ = trained
    model = load_model(str(trained / "model"))
    spec = model.config.task("ligand_affinity")
    rng = random.Random(7)
    smiles = [molecule(rng) for _ in range(12)]
    inputs = [ModelInput(p, ligand=s) for p in ("ACDEFGHIKLMNPQ", "MKWVLLAA") for s in smiles]
    alone = [Screener(model, [spec]).predict([x])[spec.name][0].value for x in inputs]
    encoded = []
    real = model.encoder_hidden
    monkeypatch.setattr(model, "encoder_hidden", lambda tokens, *a: (encoded.append(tokens.shape[0]), real(tokens, *a))[1])
    together = Screener(model, [spec]).predict(inputs)[spec.name]
    assert encoded == [2]  # two proteins, 24 inputs
    assert [o.value for o in together] == pytest.approx(alone)
    assert len(set(alone)) > 1  # the ligand changes the answer
