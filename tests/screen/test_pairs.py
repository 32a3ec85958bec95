"""Protein-pair tasks: pair inputs and truncation, per-row decoder prompts, a published-layout
kinase phosphorylation-site checkpoint against the reference, `--partner` screening, and a pair
task trained through `p2t train`."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from prot2token_reference import RefProt2Token
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.interop.prot2token import import_prot2token
from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.model.encoder import encoder_tokens, tokenize
from p2t_screen.model.store import load_model
from p2t_screen.screen.expansion import Pairing
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.inputs import ModelInput, pair_input
from p2t_screen.tasks.spec import TaskResult
from p2t_screen.train.config import load_config
from p2t_screen.train.run import run_training

pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask"),
              pytest.mark.usefixtures("one_thread")]

ENC_LEN = 64  # encoder tokens of the synthetic checkpoint: pairs up to 61 residues together
POSITIONS = [str(p) for p in range(ENC_LEN - 1)]  # '0'..'62', as the published '0'..'1024'
VOCAB = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<task_kinase_phosphorylation_site>": 3,
         **{p: 4 + i for i, p in enumerate(POSITIONS)}, "<sep>": 4 + len(POSITIONS)}
BOS, EOS, TASK, SEP = 1, 2, 3, VOCAB["<sep>"]
MAX_LEN = 40



def proteins(n: int, low: int, high: int, seed: int, st: float = 0.0) -> list[str]:
    """Random proteins; `st` is the chance of each residue being S or T (substrates need some)."""
    rng = random.Random(seed)
    return ["".join(rng.choice("ST") if rng.random() < st else rng.choice("ACDEFGHIKLMNPQRVWY")
                    for _ in range(rng.randint(low, high))) for _ in range(n)]


def hf_longest_first(a: str, b: str, budget: int) -> tuple[str, str]:
    """HF tokenizers' pair truncation, written as its one-token-at-a-time loop."""
    while len(a) + len(b) > budget:
        if len(a) > len(b):
            a = a[:-1]
        else:
            b = b[:-1]
    return a, b


def test_pair_input_cuts_longest_first_like_hf_tokenizers():
    rng = random.Random(0)
    for _ in range(500):
        a, b = "A" * rng.randint(1, 80), "C" * rng.randint(1, 80)
        budget = rng.randint(2, 120)
        pair = pair_input(a, b, budget)
        assert (pair.protein, pair.partner) == hf_longest_first(a, b, budget)


def test_pair_tokens_are_cls_a_eos_b_eos():
    ids = encoder_tokens([ModelInput("MK", partner="ST")])[0].tolist()
    alone = tokenize(["MK", "ST"]).tolist()
    assert ids == [alone[0][0], *alone[0][1:3], alone[0][3], *alone[1][1:3], alone[1][3]]


def kinase_checkpoint(folder: Path, seed: int = 0) -> tuple[RefProt2Token, tuple[Path, Path, Path]]:
    """Random weights in the published layout; the output bias makes `<eos>` and position tokens
    likely after `<sep>` (bias tuned: about a fifth of the reference outputs are grammatical, half of those with sites)."""
    torch.manual_seed(seed)
    ref = RefProt2Token(2, 32, 4, len(VOCAB), 16, 2, 2, 32, MAX_LEN, ENC_LEN)
    with torch.no_grad():
        ref.decoder.embedding.weight.mul_(3.0)
        ref.decoder.output.bias.zero_()
        ref.decoder.output.bias[EOS] = 1.4
    folder.mkdir(parents=True)
    torch.save({"model_state_dict": ref.published_state_dict(), "epoch": 1},
               folder / "best_valid_kinase_phosphorylation_site_f1.pth")
    config = {"prot2token_model": {
        "positional_encoding_type": "learned",
        "protein_encoder": {"model_name": "facebook/esm2_t2_tiny_test", "max_len": ENC_LEN,
                            "drop_positional_encoding": True},
        "decoder": {"dimension": 16, "dim_feedforward": 32, "num_heads": 2, "num_layers": 2,
                    "max_len": MAX_LEN, "activation_function": "gelu"}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "decoder_tokenizer.yaml").write_text(yaml.safe_dump(VOCAB))
    return ref.eval(), (folder / "best_valid_kinase_phosphorylation_site_f1.pth",
                        folder / "config.yaml", folder / "decoder_tokenizer.yaml")


def candidates(substrate: str) -> list[int]:
    return [i + 1 for i, aa in enumerate(substrate) if aa in "ST"]


def grammatical(tokens: list[int], cands: list[int]) -> bool:
    """Positive sites: candidate positions, ascending, then `<eos>`."""
    if not tokens or tokens[-1] != EOS:
        return False
    sites = [int(POSITIONS[t - 4]) if 4 <= t < SEP else -1 for t in tokens[:-1]]
    return all(s in cands for s in sites) and sites == sorted(set(sites))


@pytest.fixture(scope="module")
def kinase(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinase")
    ref, files = kinase_checkpoint(folder / "published")
    return ref, import_prot2token(*files, folder / "model", None)


def test_kinase_checkpoint_decodes_like_the_reference(kinase):
    ref, path = kinase
    model = load_model(path)
    spec = model.config.tasks[0]
    assert (spec.name, spec.inputs, spec.prompt, spec.residues) == (
        "kinase_phosphorylation_site", "pair", "candidates", "ST")
    substrates = proteins(120, 12, 30, seed=1, st=0.8)  # S/T-rich: random picks often candidates
    kinases = proteins(120, 10, 50, seed=2)  # some pairs exceed the 61 residues and are cut
    pairs = list(zip(substrates, kinases))
    assert any(len(a) + len(b) > ENC_LEN - 3 for a, b in pairs)

    # Memory of the pair input, and teacher-forced logits over the prompt, equal the reference's.
    with torch.no_grad():
        for a, b in pairs[:4]:
            memory, keep = model.encode(encoder_tokens([pair_input(a, b, ENC_LEN - 3)]))
            ref_memory = ref.memory((a, b))
            torch.testing.assert_close(memory, ref_memory + ref.decoder.protein_encoder_pos_embed,
                                       atol=2e-5, rtol=1e-4)
            prompt = [VOCAB[str(p)] for p in candidates(a)] + [SEP]
            prefix = torch.tensor([[BOS, TASK, *prompt]])
            ours = model.decoder(prefix, model.decoder.memory_kv(memory), keep)
            torch.testing.assert_close(ours, ref.decoder(ref_memory, prefix), atol=1e-4, rtol=1e-4)

    # Greedy outputs: p2t (batched, prompts forced per row, KV cache, grammar) vs the reference
    # (one pair at a time, full re-forward each step, no constraint), wherever that is grammatical.
    expected = []
    for a, b in pairs:
        prompt = [VOCAB[str(p)] for p in candidates(pair_input(a, b, ENC_LEN - 3).protein)] + [SEP]
        out = ref.greedy((a, b), BOS, TASK, EOS, prompt)
        expected.append(out[len(prompt):])
    policy = ReadPolicy(max_residues=ENC_LEN - 2)
    records = records_from_sequences([(f"s{i}", a) for i, a in enumerate(substrates)], policy)
    partners = records_from_sequences([(f"s{i}", b) for i, b in enumerate(kinases)], policy)
    screener = Screener(model, [spec], pairs=Pairing(tuple(partners), by_id=True))
    rows = [r for batch in screener.screen(records) for r in batch.to_pylist()]
    assert [r["partner_id"] for r in rows] == [f"s{i}" for i in range(len(pairs))]
    compared = with_sites = 0
    for (a, b), row, exp in zip(pairs, rows, expected):
        used = pair_input(a, b, ENC_LEN - 3).protein
        assert row["status"] == "ok" and set(row["sites"]) <= set(candidates(used))
        assert row["truncated"] == (len(a) + len(b) > ENC_LEN - 3)
        if grammatical(exp, candidates(used)):
            compared += 1
            with_sites += len(exp) > 1
            assert row["sites"] == [int(POSITIONS[t - 4]) for t in exp[:-1]], (a, b)
    assert compared >= 20 and with_sites >= 8, (compared, with_sites)  # a real comparison


def write_fasta(path: Path, seqs: list[str], prefix: str = "p") -> Path:
    path.write_text("".join(f">{prefix}{i}\n{s}\n" for i, s in enumerate(seqs)))
    return path


def test_screen_cli_with_partners(kinase, tmp_path):
    _, model = kinase
    lib = write_fasta(tmp_path / "lib.fasta", proteins(5, 6, 20, seed=3, st=0.3), "sub")
    kin = write_fasta(tmp_path / "kin.fasta", proteins(3, 10, 30, seed=4), "kin")
    run = CliRunner().invoke
    result = run(app, ["screen", str(lib), "--model", str(model), "-o", str(tmp_path / "out"),
                       "--partner", str(kin), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out").to_pylist()
    assert len(table) == 15  # every substrate against every kinase
    assert {(r["seq_id"], r["partner_id"]) for r in table} == {
        (f"sub{i}", f"kin{j}") for i in range(5) for j in range(3)}

    # Paired by id: records without a partner of the same id get an error row, not silence.
    kin_ids = write_fasta(tmp_path / "kin2.fasta", proteins(2, 10, 30, seed=5), "sub")
    result = run(app, ["screen", str(lib), "--model", str(model), "-o", str(tmp_path / "byid"),
                       "--partner", str(kin_ids), "--pair-by-id", "--device", "cpu", "-q"])
    assert result.exit_code == 3, result.output
    table = pq.read_table(tmp_path / "byid").to_pylist()
    assert [(r["seq_id"], r["partner_id"], r["status"]) for r in table] == [
        ("sub0", "sub0", "ok"), ("sub1", "sub1", "ok"), ("sub2", None, "error"),
        ("sub3", None, "error"), ("sub4", None, "error")]

    # A pair task without partners stops before anything is written, naming the option.
    result = run(app, ["screen", str(lib), "--model", str(model), "-o", str(tmp_path / "none"),
                       "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "--partner" in result.output
    assert not (tmp_path / "none").exists()
    bad = tmp_path / "bad.fasta"
    bad.write_text(">k1\nMKV1\n")
    result = run(app, ["screen", str(lib), "--model", str(model), "-o", str(tmp_path / "bad"),
                       "--partner", str(bad), "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "k1" in result.output


def test_pair_task_trains_through_p2t_train(tmp_path):
    """Sites depend on the partner: an S/T is positive when the residue after it equals the
    partner's first residue. The loss must fall and screening must honour the grammar."""
    subs = proteins(160, 8, 24, seed=8, st=0.35)
    partners = proteins(160, 8, 16, seed=9)
    rows = ["id,sequence,partner_sequence,label,split"]
    for i, (a, b) in enumerate(zip(subs, partners)):
        sites = [p for p in candidates(a) if p < len(a) and a[p] == b[0]]
        rows.append(f"x{i},{a},{b},{';'.join(map(str, sites))},{'valid' if i % 8 == 0 else 'train'}")
    (tmp_path / "kin.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "t.toml").write_text(f"""
name = "pairs"
output = "{tmp_path / 'model'}"
[encoder]
num_layers = 1
embed_dim = 32
attention_heads = 4
max_residues = 60
[decoder]
dim = 32
num_layers = 1
num_heads = 4
ffn_dim = 64
memory_positions = 62
[train]
epochs = 3
max_tokens = 1200
lr = 2e-3
warmup = 10
[[tasks]]
name = "kinase_phosphorylation_site"
data = "{tmp_path / 'kin.csv'}"
""")
    summary = run_training(load_config(tmp_path / "t.toml"), torch.device("cpu"))
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    model = load_model(str(tmp_path / "model"))
    spec = model.config.task("kinase_phosphorylation_site")
    assert spec.inputs == "pair" and spec.prompt == "candidates"
    records = records_from_sequences([(f"r{i}", a) for i, a in enumerate(subs[:20])], ReadPolicy(max_residues=60))
    pairing = Pairing(tuple(records_from_sequences([("k", partners[0])], ReadPolicy(max_residues=60))))
    rows = [r for b in Screener(model, [spec], pairs=pairing).screen(records) for r in b.to_pylist()]
    assert len(rows) == 20 and all(r["partner_id"] == "k" and r["status"] == "ok" for r in rows)
    for r, a in zip(rows, subs):
        assert set(r["sites"]) <= set(candidates(a)) and r["sites"] == sorted(r["sites"])
    outcome = Screener(model, [spec]).predict([ModelInput(subs[0], partner=partners[0])])[spec.name][0]
    assert isinstance(outcome, TaskResult)


GROUPS = ["AGC", "Atypical", "CAMK", "CK1", "CMGC", "STE", "TK", "TKL"]
GROUP_VOCAB = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<task_kinase_group>": 3,
               **{g: 4 + i for i, g in enumerate(GROUPS)}}


def test_kinase_group_checkpoint_imports_with_its_labels_and_decodes_like_the_reference(tmp_path):
    torch.manual_seed(3)
    ref = RefProt2Token(2, 32, 4, len(GROUP_VOCAB), 16, 2, 2, 32, 8, ENC_LEN)
    with torch.no_grad():
        ref.decoder.embedding.weight.mul_(3.0)
        ref.decoder.output.bias.zero_()
        ref.decoder.output.bias[EOS] = 0.3  # tuned: most reference outputs end in <eos> after a label or none
    folder = tmp_path / "published"
    folder.mkdir()
    torch.save({"model_state_dict": ref.published_state_dict()}, folder / "best.pth")
    config = {"prot2token_model": {
        "protein_encoder": {"max_len": ENC_LEN},
        "decoder": {"dimension": 16, "dim_feedforward": 32, "num_heads": 2, "num_layers": 2, "max_len": 8}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "decoder_tokenizer.yaml").write_text(yaml.safe_dump(GROUP_VOCAB))
    path = import_prot2token(folder / "best.pth", folder / "config.yaml", folder / "decoder_tokenizer.yaml",
                             tmp_path / "model", None)
    model = load_model(path)
    spec = model.config.tasks[0]
    assert (spec.name, spec.kind, spec.labels) == ("kinase_group", "multilabel", tuple(sorted(GROUPS)))
    seqs = proteins(80, 20, 60, seed=4)
    outcomes = Screener(model, [spec]).predict(seqs)[spec.name]
    rank = {GROUP_VOCAB[g]: i for i, g in enumerate(sorted(GROUPS))}
    compared = labelled = 0
    for seq, got in zip(seqs, outcomes):
        exp = ref.greedy(seq, BOS, GROUP_VOCAB["<task_kinase_group>"], EOS)
        ranks = [rank.get(t, -1) for t in exp[:-1]]
        if exp and exp[-1] == EOS and min(ranks, default=0) >= 0 and ranks == sorted(set(ranks)):
            compared += 1
            labelled += len(ranks) > 0
            assert got.labels == [sorted(GROUPS)[r] for r in ranks], seq
    assert compared >= 60 and labelled >= 30, (compared, labelled)
