"""`p2t train` machinery on synthetic data: loss goes down, the model round-trips, resume is exact."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from p2t_screen.errors import InputError, UsageError
from p2t_screen.model.store import load_model
from p2t_screen.screen.screener import Screener
from p2t_screen.train.config import load_config
from p2t_screen.train.run import run_training

AA = "ACDEFGHIKLMNPQRSTVWY"


def synthetic(tmp_path: Path, n: int = 48, seed: int = 0) -> None:
    rng = random.Random(seed)
    seqs = ["".join(rng.choice(AA) for _ in range(rng.randint(8, 30))) for _ in range(n)]
    split = ["valid" if i % 6 == 0 else "train" for i in range(n)]
    rows = {"id": [f"p{i}" for i in range(n)], "sequence": seqs, "split": split}
    hydro = [sum(aa in "AILMFVW" for aa in s) / len(s) for s in seqs]
    pq.write_table(pa.table({**rows, "label": hydro}), tmp_path / "hydro.parquet")
    lines = ["id,sequence,label,split"] + [f"p{i},{s},{'yes' if 'W' in s else 'no'},{sp}"
                                           for i, (s, sp) in enumerate(zip(seqs, split))]
    (tmp_path / "has_w.csv").write_text("\n".join(lines) + "\n")
    ss = ["".join("H" if aa in "AELMQK" else "C" for aa in s) for s in seqs]
    lines = ["id\tsequence\tlabel\tsplit"] + [f"p{i}\t{s}\t{l}\t{sp}"
                                              for i, (s, l, sp) in enumerate(zip(seqs, ss, split))]
    (tmp_path / "ss.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "seqs.fasta").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(seqs)))


CONFIG = """
name = "synthetic"
output = "out/model"
seed = 3

[encoder]
source = "new"
num_layers = 1
embed_dim = 16
attention_heads = 2
max_residues = 40
train = "{train}"

[decoder]
dim = 16
num_layers = 1
num_heads = 2
ffn_dim = 32
memory_positions = 48

[train]
epochs = {epochs}
lr = 3e-3
warmup = 5
max_tokens = 256
mask_prob = {mask}
checkpoint_every = 2

[[tasks]]
name = "hydro"
kind = "regression"
value_range = [0.0, 1.0]
data = "hydro.parquet"

[[tasks]]
name = "has_w"
kind = "class"
labels = ["no", "yes"]
data = "has_w.csv"
class_weights = true

[[tasks]]
name = "ss"
kind = "per_residue"
labels = ["helix", "coil"]
codes = "HC"
data = "ss.tsv"

[[tasks]]
name = "positions_c"
self_supervised = "seqs.fasta"
residue = "C"
"""


def config(tmp_path, epochs=3, train="full", mask=0.05):
    synthetic(tmp_path)
    path = tmp_path / "train.toml"
    path.write_text(CONFIG.format(epochs=epochs, train=train, mask=mask))
    return load_config(path, base=tmp_path)


def test_training_lowers_loss_and_the_model_screens(tmp_path):
    cfg = config(tmp_path, epochs=4)
    events = []
    summary = run_training(cfg, torch.device("cpu"), on_event=lambda k, d: events.append((k, d)))
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.8
    assert {k for k, _ in events} >= {"data", "start", "step", "epoch"}
    model = load_model(cfg.output)
    assert [t.name for t in model.config.tasks] == ["hydro", "has_w", "ss", "positions_c"]
    assert model.metadata["training"]["history"][0]["metrics"]["ss"]["accuracy"] >= 0
    results = Screener(model, list(model.config.tasks)).predict(["MKWACLLE"])
    assert len(results["ss"][0].residue_labels) == 8
    assert not (cfg.output / "state.pt").exists()  # training state stays outside the model


def test_frozen_encoder_with_cache_keeps_encoder_weights(tmp_path):
    cfg = config(tmp_path, epochs=1, train="frozen", mask=0.0)
    run_training(cfg, torch.device("cpu"))
    model = load_model(cfg.output)
    torch.manual_seed(cfg.seed)  # a new model with the run's seed has the same random encoder
    from p2t_screen.train.build import build_model

    fresh = build_model(cfg)
    for key, value in fresh.encoder.state_dict().items():
        if not key.startswith("contact_head"):
            torch.testing.assert_close(model.encoder.state_dict()[key], value)


def test_encoder_cache_uses_the_models_rotary_frequencies():
    """A frozen imported encoder keeps its published rotary frequencies in training too: the
    cache holds what the screen computes, not the default frequencies."""
    from dataclasses import replace

    from conftest import TASKS, tiny_model

    from p2t_screen.model.encoder import esm2_forward, rotary_inv_freq, tokenize
    from p2t_screen.model.model import P2TModel
    from p2t_screen.train.encoder_cache import EncoderCache
    from p2t_screen.train.examples import make_example

    base = tiny_model(seed=5, tasks=TASKS[:2])
    odd = tuple(float(f) * 1.5 for f in rotary_inv_freq(8))
    model = P2TModel(replace(base.config, encoder=replace(base.config.encoder, rotary_inv_freq=odd)),
                     encoder=base.encoder).eval()
    seqs = ["MKTAYIAKQRQISF", "MSTYKRN"]
    batch = [make_example(model, "kingdom", s, "archaea") for s in seqs]
    tokens = tokenize(seqs)
    cached = EncoderCache().batch(model, batch, tokens)
    with torch.no_grad():
        want = model.encoder_hidden(tokens)
        default = esm2_forward(model.encoder, tokens)
    keep = tokens.ne(model.encoder.padding_idx)
    torch.testing.assert_close(cached[keep], want[keep], atol=2e-3, rtol=2e-3)  # cache is fp16
    assert not torch.allclose(want[keep], default[keep], atol=2e-2)


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir(), b.mkdir()
    cfg_a, cfg_b = config(a, epochs=2), config(b, epochs=2)
    run_training(cfg_a, torch.device("cpu"))

    def stop_at_5(kind, data):
        if kind == "step" and data["step"] == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg_b, torch.device("cpu"), on_event=stop_at_5)
    run_training(cfg_b, torch.device("cpu"))  # resumes from the checkpoint at step 4
    wa, wb = load_model(cfg_a.output).state_dict(), load_model(cfg_b.output).state_dict()
    for key in wa:
        if "contact_head" not in key:  # unused by p2t, never saved
            torch.testing.assert_close(wa[key], wb[key], msg=key)


def test_bad_rows_are_reported_with_file_row_and_problem(tmp_path):
    cfg = config(tmp_path)
    (tmp_path / "has_w.csv").write_text("id,sequence,label,split\np0,MKW,yes,train\n"
                                        "p1,MK1,no,train\np2,MKA,maybe,train\np3,MKA,no,tset\n")
    with pytest.raises(InputError) as err:
        run_training(cfg, torch.device("cpu"))
    text = str(err.value)
    assert "has_w.csv: row 2 (id 'p1'): invalid residue characters ['1']" in text
    assert "row 3 (id 'p2'): unknown class 'maybe'" in text
    assert "row 4 (id 'p3'): split must be one of" in text


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\noutput = "o"\n[train]\nepocs = 3\n[[tasks]]\nname = "stability"\ndata = "d.csv"\n')
    with pytest.raises(UsageError, match=r"\[train\]: unknown key\(s\) \['epocs'\]"):
        load_config(path)
    path.write_text('name = "x"\noutput = "o"\n[encoder]\ntrain = "some"\n[[tasks]]\nname = "stability"\ndata = "d.csv"\n')
    with pytest.raises(UsageError, match="encoder.train must be"):
        load_config(path)
    path.write_text('name = "x"\noutput = "o"\n[train]\nloss = "tokens"\n[[tasks]]\nname = "stability"\ndata = "d.csv"\n')
    with pytest.raises(UsageError, match=r"\[train\]: train.loss must be 'token' or 'example'"):
        load_config(path)


FLAGS_TASK = """
[[tasks]]
name = "content"
kind = "multilabel"
labels = ["has_w", "has_c", "has_h"]
data = "content.csv"
encoding = "flags"
tune_threshold = true
"""


def test_tuned_threshold_is_the_best_on_validation_and_saved_with_the_model(tmp_path):
    from p2t_screen.train.evaluate import evaluate
    from p2t_screen.train.run import load_labelled
    from p2t_screen.train.thresholds import THRESHOLDS

    cfg = config(tmp_path, epochs=1)
    rows = ["id,sequence,label,split"]
    for line in (tmp_path / "has_w.csv").read_text().splitlines()[1:]:
        pid, seq, _, split = line.split(",")
        rows.append(f"{pid},{seq},{';'.join(f'has_{a.lower()}' for a in 'WCH' if a in seq)},{split}")
    (tmp_path / "content.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "train.toml").write_text((tmp_path / "train.toml").read_text() + FLAGS_TASK)
    cfg = load_config(tmp_path / "train.toml", base=tmp_path)
    events = []
    summary = run_training(cfg, torch.device("cpu"), on_event=lambda k, d: events.append((k, d)))
    found = summary["thresholds"]["content"]
    scores = {float(t): v for t, v in found["validation"].items()}
    assert sorted(scores) == list(THRESHOLDS) and found["metric"] == "micro_f1"
    assert len(set(scores.values())) > 1, scores  # the threshold matters on this data
    assert scores[found["threshold"]] == max(scores.values())
    model = load_model(cfg.output)
    spec = model.config.task("content")
    assert spec.threshold == found["threshold"] and spec.encoding == "flags"
    assert model.metadata["training"]["thresholds"]["content"]["threshold"] == spec.threshold
    assert len(model.metadata["training"]["history"]) == 1  # the training record is kept
    valid = load_labelled(cfg, cfg.tasks[-1])["valid"]
    assert evaluate(model, spec, valid)["micro_f1"] == pytest.approx(scores[spec.threshold])
    assert ("thresholds", summary["thresholds"]) in events
    from p2t_screen.train.evaluate import run_eval

    worst = min(THRESHOLDS, key=lambda t: scores[t])  # eval takes a threshold other than the model's
    report = run_eval(str(cfg.output), [f"content={tmp_path / 'content.csv'}"], "valid", False, "cpu", 256,
                      (("content", worst),))
    assert report["tasks"]["content"]["threshold"] == worst
    assert report["tasks"]["content"]["metrics"]["micro_f1"] == pytest.approx(scores[worst]) != scores[spec.threshold]
    from rich.console import Console

    from p2t_screen.cli.progress import TrainProgress

    console = Console(record=True, width=200)
    TrainProgress(console).event("thresholds", summary["thresholds"])
    assert f"content: decision threshold {spec.threshold:.2f} (best validation micro_f1" in console.export_text()


def test_tune_threshold_needs_a_flags_task(tmp_path):
    cfg_text = CONFIG.format(epochs=1, train="full", mask=0.0).replace(
        "class_weights = true", "class_weights = true\ntune_threshold = true")
    (tmp_path / "bad.toml").write_text(cfg_text)
    with pytest.raises(UsageError, match=r"tasks\[1\] \(has_w\): tune_threshold needs a multi-label task"):
        load_config(tmp_path / "bad.toml")
    synthetic(tmp_path)
    (tmp_path / "content.csv").write_text("id,sequence,label,split\np0,MKW,has_w,train\np1,MKC,,valid\n")
    text = CONFIG.format(epochs=1, train="full", mask=0.0) + FLAGS_TASK
    (tmp_path / "aux.toml").write_text(text.replace("tune_threshold = true", "tune_threshold = true\nauxiliary = true"))
    with pytest.raises(UsageError, match="an auxiliary task is not offered"):
        load_config(tmp_path / "aux.toml")
    (tmp_path / "content.csv").write_text("id,sequence,label,split\np0,MKW,has_w,train\np1,MKC,,test\n")
    (tmp_path / "novalid.toml").write_text(text)
    with pytest.raises(UsageError, match="task content: tune_threshold needs validation examples"):
        run_training(load_config(tmp_path / "novalid.toml", base=tmp_path), torch.device("cpu"))


def test_auxiliary_task_is_trained_but_not_offered(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    plain = config(a, epochs=1)
    synthetic(b)
    (b / "train.toml").write_text(CONFIG.format(epochs=1, train="full", mask=0.05).replace(
        'codes = "HC"', 'codes = "HC"\nauxiliary = true'))
    aux = load_config(b / "train.toml", base=b)
    run_training(plain, torch.device("cpu"))
    summary = run_training(aux, torch.device("cpu"))
    model, full = load_model(aux.output), load_model(plain.output)
    assert [t.name for t in model.config.tasks] == ["hydro", "has_w", "positions_c"]
    assert model.metadata["training"]["auxiliary"] == ["ss"]
    epoch = summary["history"][0]
    assert "ss" in epoch["metrics"]  # validated like the others...
    offered = [epoch["metrics"][t.name][t.task_kind.primary_metric] for t in model.config.tasks
               if t.name in epoch["metrics"]]  # a task without validation examples counts as 0, as NaN does
    assert len(offered) == 2  # ...but the kept epoch is chosen without it
    assert epoch["score"] == pytest.approx(sum(v for v in offered if v == v) / len(model.config.tasks))
    with pytest.raises(UsageError, match="has no task 'ss'"):
        model.config.select_tasks(["ss"])
    # the flag changes what is offered, not how the model is trained
    for key, value in full.state_dict().items():
        if "contact_head" not in key:  # unused by p2t, never saved
            torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    text = CONFIG.format(epochs=1, train="full", mask=0.0)
    (b / "all_aux.toml").write_text(text.replace('data = "', 'auxiliary = true\ndata = "').replace(
        'self_supervised = "', 'auxiliary = true\nself_supervised = "'))
    with pytest.raises(UsageError, match="every task is auxiliary"):
        load_config(b / "all_aux.toml", base=b)


def test_per_example_loss_weighs_every_example_equally():
    """A class example (label + <eos>: 2 tokens) and an 11-token per-residue example: the token
    loss is their token-weighted mean, the per-example loss the plain mean of their means."""
    from conftest import tiny_model

    from p2t_screen.train.examples import collate, make_example
    from p2t_screen.train.steps import loss_on

    model = tiny_model(seed=2)
    examples = [make_example(model, "kingdom", "MKTAYIAKQR", "bacteria"),
                make_example(model, "ss3", "GSHMLEDPVA", "HHHEECCCHH", input_dropout=0.0)]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        alone = [loss_on(model, collate([e], 0.0, gen)).item() for e in examples]
        token = loss_on(model, collate(examples, 0.0, gen)).item()
        per_example = loss_on(model, collate(examples, 0.0, gen), per_example=True).item()
    assert token == pytest.approx((2 * alone[0] + 11 * alone[1]) / 13, rel=1e-5)
    assert per_example == pytest.approx((alone[0] + alone[1]) / 2, rel=1e-5)


def test_train_and_eval_commands(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from p2t_screen.cli import app

    config(tmp_path, epochs=2)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "train.toml", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "epoch 1" in result.output and "model written to" in result.output
    result = runner.invoke(app, ["eval", "out/model", "hydro=hydro.parquet", "has_w=has_w.csv",
                                 "ss=ss.tsv", "--split", "valid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["tasks"]) == {"hydro", "has_w", "ss"}
    ss = report["tasks"]["ss"]
    assert ss["examples"] == 8 and 0.0 <= ss["metrics"]["accuracy"] <= 1.0
    assert ss["baseline"]["name"].startswith("amino-acid composition")
    # the residue-type rule is exactly how these labels were made: the baseline is perfect
    assert ss["baseline"]["metrics"]["accuracy"] == 1.0
    assert "classical" not in ss
    result = runner.invoke(app, ["eval", "out/model", "ss=ss.tsv", "--split", "valid", "--classical"])
    assert result.exit_code == 0, result.output
    assert "classical:" in result.output and "baseline:" in result.output
    result = runner.invoke(app, ["eval", "out/model", "ss=ss.tsv", "--split", "valid", "--json", "--classical"])
    classical = json.loads(result.output)["tasks"]["ss"]["classical"]
    assert classical["metrics"]["accuracy"] == 1.0  # the window's centre residue is the whole rule
    result = runner.invoke(app, ["eval", "out/model", "train.toml", "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert "spearman" in result.output and "macro_f1" in result.output
    result = runner.invoke(app, ["eval", "out/model", "nowhere.csv"])
    assert result.exit_code == 2 and "cannot tell which task" in " ".join(result.output.split())


@pytest.mark.parametrize("recipe", ["train.toml", "train_stage1.toml", "train_stage2.toml", "esm2_650m.toml",
                                    "secondary_structure.toml", "structure.toml"])
def test_example_recipes_are_valid_configs(recipe):
    """The shipped recipes parse and check (their data and weights need not be here)."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / recipe)
    assert cfg.tasks and cfg.train.epochs >= 1


def test_missing_labels_are_errors_naming_file_row_and_column(tmp_path):
    from p2t_screen.tasks.spec import TaskSpec
    from p2t_screen.train.data import TaskSource, load_task

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "sequence": ["MKTA", "MSTY", "GGSS"],
                             "value": [0.3, float("nan"), 0.5], "where": ["1;2", None, "3"]}), path)
    with pytest.raises(InputError, match=r"t.parquet: row 2 \(id 'b'\): no label in column 'value' \(null or NaN\)"):
        load_task(TaskSpec("v", "regression", value_range=(0, 1)), TaskSource(path, label_column="value"), 100)
    with pytest.raises(InputError, match=r"row 2 \(id 'b'\): no label in column 'where'"):
        load_task(TaskSpec("s", "sites"), TaskSource(path, label_column="where"), 100)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "lr", -0.001, "lr must be positive, got -0.001"),
    ("train", "lr", "fast", "lr must be a float, got 'fast'"),
    ("train", "checkpoint_every", 0, "checkpoint_every must be positive, got 0"),
    ("train", "epochs", 0, "epochs must be positive, got 0"),
    ("decoder", "num_heads", 0, "num_heads must be positive, got 0"),
])
def test_training_configs_name_the_key_and_the_problem(tmp_path, section, key, value, message):
    import tomllib

    from p2t_screen.train.config import parse_config

    synthetic(tmp_path)
    doc = tomllib.loads(CONFIG.format(epochs=1, train="full", mask=0.05))
    doc[section][key] = value
    with pytest.raises(UsageError, match=rf"\[{section}\]: {re.escape(message)}"):
        parse_config(doc, "t.toml", tmp_path)
