"""Masked-LM pre-training: masking follows ESM's recipe, loss falls, the checkpoint loads, resume
is exact, and `p2t train` takes the result as its encoder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.model.encoder import ALPHABET, tokenize
from p2t_screen.model.esm_io import load_esm2
from p2t_screen.train.pretrain import PretrainConfig, mask_tokens, pretrain

AA = "ACDEFGHIKLMNPQRSTVWY"


def motif_sequences(n: int, seed: int = 0) -> list[str]:
    """Sequences built from a few repeated motifs: masked residues are predictable from context."""
    rng = random.Random(seed)
    motifs = ["MKLVA", "GSGSG", "DEEKR", "WYFHP"]
    return ["".join(rng.choice(motifs) for _ in range(rng.randint(4, 12))) for _ in range(n)]


def test_masking_follows_the_esm_recipe():
    tokens = tokenize(["".join(random.Random(1).choice(AA) for _ in range(4000))])
    inputs, targets = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(0))
    chosen = targets.ne(-100)
    assert not chosen[0, 0] and not chosen[0, -1]  # <cls> and <eos> are never chosen
    assert abs(chosen.float().mean().item() - 0.15) < 0.02
    masked = inputs.eq(ALPHABET.mask_idx)
    assert bool((masked <= chosen).all())  # only chosen residues are masked
    assert abs(masked[chosen].float().mean().item() - 0.8) < 0.05
    kept = chosen & inputs.eq(tokens)
    assert abs(kept[chosen].float().mean().item() - 0.1) < 0.04  # (random swaps may hit the same aa)
    assert bool((targets[chosen] == tokens[chosen]).all())
    assert bool((inputs[~chosen] == tokens[~chosen]).all())


def small(steps: int) -> PretrainConfig:
    return PretrainConfig(steps=steps, num_layers=2, embed_dim=32, attention_heads=4, crop=40,
                          max_tokens=800, lr=3e-3, warmup=10, checkpoint_every=15)


def test_pretraining_learns_and_writes_a_loadable_encoder(tmp_path: Path):
    seqs = motif_sequences(200)
    losses: list[float] = []
    summary = pretrain(seqs, motif_sequences(30, seed=1), small(120), tmp_path / "enc.pt",
                       torch.device("cpu"),
                       on_event=lambda kind, d: losses.append(d["loss"]) if kind == "step" else None)
    assert len(losses) == 120
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    assert summary["valid"]["accuracy"] > 0.4  # far above the 1/20 of guessing
    config, encoder = load_esm2(str(tmp_path / "enc.pt"))
    assert (config.num_layers, config.embed_dim, config.attention_heads) == (2, 32, 4)
    assert (tmp_path / "enc.json").is_file()


def test_resumed_pretraining_ends_where_an_uninterrupted_run_does(tmp_path: Path):
    seqs = motif_sequences(60)
    pretrain(seqs, [], small(30), tmp_path / "a.pt", torch.device("cpu"))

    def stop_at_17(kind: str, data: dict) -> None:
        if kind == "step" and data["step"] == 17:
            raise KeyboardInterrupt  # after the step-15 checkpoint, before the next one

    try:
        pretrain(seqs, [], small(30), tmp_path / "b.pt", torch.device("cpu"), on_event=stop_at_17)
    except KeyboardInterrupt:
        pass
    assert not (tmp_path / "b.pt").exists()
    assert torch.load(tmp_path / "b.pt.train" / "state.pt", weights_only=True)["step"] == 15
    pretrain(seqs, [], small(30), tmp_path / "b.pt", torch.device("cpu"))
    a, b = load_esm2(str(tmp_path / "a.pt"))[1], load_esm2(str(tmp_path / "b.pt"))[1]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        if not name.startswith("contact_head."):  # p2t never trains or loads the contact head
            assert torch.equal(x, y), name


def test_pretraining_in_stages_ends_where_one_run_does(tmp_path: Path):
    """A schedule split into stages (`stage_over`; the CLI's --stage-hours) saves its state at the
    stage's end, writes no checkpoint until the last stage, ends with the same weights, and
    records the training time of every stage together."""
    seqs = motif_sequences(60)
    pretrain(seqs, [], small(30), tmp_path / "a.pt", torch.device("cpu"))
    stages = [pretrain(seqs, [], small(30), tmp_path / "b.pt", torch.device("cpu"),
                       stage_over=lambda step, end=end: step >= end) for end in (7, 22, 99)]
    assert [s.get("paused_at") for s in stages] == [7, 22, None]  # 7 and 22: not checkpoint steps
    assert stages[2]["steps"] == 30 and (tmp_path / "b.pt").is_file()
    # The training time adds up over the stages (each stage's own time is above zero).
    assert 0 < stages[0]["seconds"] < stages[1]["seconds"] < stages[2]["seconds"]
    assert json.loads((tmp_path / "b.json").read_text())["seconds"] == stages[2]["seconds"]
    a, b = load_esm2(str(tmp_path / "a.pt"))[1], load_esm2(str(tmp_path / "b.pt"))[1]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        if not name.startswith("contact_head."):
            assert torch.equal(x, y), name
    fasta = tmp_path / "s.fasta"
    fasta.write_text("".join(f">s{i}\n{q}\n" for i, q in enumerate(seqs)))
    args = ["pretrain", str(fasta), "-o", str(tmp_path / "c.pt"), "--steps", "3", "--layers", "1", "--dim", "32",
            "--heads", "4", "--crop", "40", "--max-tokens", "800", "--warmup", "1", "--device", "cpu"]
    first = CliRunner().invoke(app, [*args, "--stage-hours", "0"])
    assert first.exit_code == 0 and "stage over at step 1 of 3" in first.output, first.output
    assert not (tmp_path / "c.pt").exists()
    rest = CliRunner().invoke(app, args)
    assert rest.exit_code == 0 and "resuming at step 1" in rest.output and (tmp_path / "c.pt").is_file()


def test_cli_pretrain_then_train_uses_it(tmp_path: Path):
    (tmp_path / "seqs.fasta").write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(motif_sequences(40))))
    enc = tmp_path / "enc.pt"
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path / "seqs.fasta"), "-o", str(enc),
                                      "--steps", "5", "--layers", "1", "--dim", "32", "--heads", "4",
                                      "--max-tokens", "800", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    rows = "\n".join(f"s{i},{s},{s.count('W')},train" for i, s in enumerate(motif_sequences(20)))
    (tmp_path / "w.csv").write_text("id,sequence,label,split\n" + rows + "\n")
    (tmp_path / "t.toml").write_text(f"""
name = "t"
output = "{tmp_path / 'model'}"
[encoder]
source = "{enc}"
train = "full"
[decoder]
dim = 32
num_layers = 1
num_heads = 4
ffn_dim = 64
[train]
epochs = 1
max_tokens = 800
[[tasks]]
name = "w_count"
kind = "regression"
value_range = [0, 20]
data = "{tmp_path / 'w.csv'}"
""")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.toml"), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    from p2t_screen.model.store import load_model

    model = load_model(str(tmp_path / "model"))
    trained = load_esm2(str(enc))[1].state_dict()
    # The encoder started from the pre-trained weights (one epoch of fine-tuning moves them a bit).
    diff = (model.encoder.embed_tokens.weight - trained["embed_tokens.weight"]).abs().max().item()
    assert diff < 0.1
