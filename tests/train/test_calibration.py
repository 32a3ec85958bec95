"""Calibration: ECE and reliability on hand-made cases; a temperature moves the reported
probabilities, never the choices; fitted temperatures are stored and old model files still load."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import FLAGS, flags_model, tiny_model

from p2t_screen.model.store import load_model, save_model
from p2t_screen.decode.choice import choose
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.inputs import ModelInput
from p2t_screen.tasks.spec import TaskSpec
from p2t_screen.train.calibration import calibrate_model, calibration, expected_calibration_error, reliability
from p2t_screen.train.data import Labelled

pytestmark = pytest.mark.usefixtures("one_thread")
AA = "ACDEFGHIKLMNPQRSTVWY"


def sequences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AA) for _ in range(rng.randint(8, 30))) for _ in range(n)]


def test_ece_and_reliability_on_a_hand_made_case():
    probs = np.array([0.95, 0.95, 0.15, 0.15, 0.55, 1.0])
    hits = np.array([True, False, False, False, True, True])
    rows = reliability(probs, hits)
    assert [r["n"] for r in rows] == [0, 2, 0, 0, 0, 1, 0, 0, 0, 3]  # 1.0 falls in the last bin
    assert rows[9]["confidence"] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert rows[9]["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(rows[0]["confidence"])
    # |0.15 - 0| x 2/6 + |0.55 - 1| x 1/6 + |0.9667 - 0.6667| x 3/6
    assert expected_calibration_error(probs, hits) == pytest.approx(0.05 + 0.075 + 0.15)
    assert expected_calibration_error(np.array([0.7] * 10), np.array([True] * 7 + [False] * 3)) == pytest.approx(0.0)


def test_choose_tempers_the_reported_probability_only():
    logits = torch.tensor([[2.0, 1.0, 0.0, 5.0]])
    allowed = torch.tensor([[True, True, True, False]])
    done = torch.zeros(1, dtype=torch.bool)
    for t in (0.5, 1.0, 3.0):
        token, prob, logp = choose(logits, allowed, done, 0, None, t)
        expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / t, dim=0)
        assert int(token) == 0 and float(prob) == pytest.approx(float(expected[0]))
        assert torch.allclose(logp[0, :3].exp(), expected)


def screen(model, spec: TaskSpec, seqs: list[str]):
    return Screener(model, [spec]).predict(seqs)[spec.name]


@pytest.mark.parametrize("task", ["kingdom", "ss3", "phospho", "location"])
def test_temperature_changes_probabilities_but_never_choices(task):
    model = tiny_model()
    spec, seqs = model.config.task(task), sequences(16, seed=1)
    plain = screen(model, spec, seqs)
    for t in (0.5, 4.0):
        tempered = screen(model, replace(spec, temperature=t), seqs)
        assert [r.label for r in tempered] == [r.label for r in plain]
        assert [(r.labels, r.sites, r.residue_labels) for r in tempered] == [
            (r.labels, r.sites, r.residue_labels) for r in plain]
        assert [r.confidence for r in tempered] != pytest.approx([r.confidence for r in plain])


def test_class_temperature_is_exact_on_the_label_distribution():
    model = tiny_model()
    spec, seqs = model.config.task("kingdom"), sequences(8, seed=2)
    for plain, hot in zip(screen(model, spec, seqs), screen(model, replace(spec, temperature=2.0), seqs)):
        logp = np.log([p for _, p in plain.label_probs])
        expected = np.exp(logp / 2.0) / np.exp(logp / 2.0).sum()
        assert [p for _, p in hot.label_probs] == pytest.approx(list(expected), rel=1e-4)
        assert hot.confidence == pytest.approx(dict(hot.label_probs)[hot.label], rel=1e-5)


def test_flags_temperature_keeps_the_thresholded_choices():
    model, seqs = flags_model(), sequences(12, seed=3)
    spec = replace(FLAGS, threshold=0.4)
    plain = screen(model, spec, seqs)
    hot = screen(model, replace(spec, temperature=3.0), seqs)
    assert [r.labels for r in hot] == [r.labels for r in plain]
    for p, h in zip(plain, hot):  # one present/absent decision per label: the binary formula is exact
        for (_, q), (_, q_hot) in zip(p.label_probs, h.label_probs):
            assert q_hot == pytest.approx(1 / (1 + ((1 - q) / q) ** (1 / 3.0)), rel=1e-4)


def test_temperature_is_optional_and_checked():
    spec = TaskSpec("c", "class", labels=("a", "b"))
    old = {k: v for k, v in spec.to_dict().items() if k != "temperature"}
    assert TaskSpec.from_dict(old).temperature is None  # config.json files written before it load
    assert TaskSpec.from_dict({**old, "temperature": 2}).temperature == 2.0
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            replace(spec, temperature=bad)


def test_calibration_of_a_per_residue_task_counts_every_residue():
    model = tiny_model()
    spec = model.config.task("ss3")
    seqs = sequences(6, seed=4)
    truth = [["H"] * len(s) for s in seqs]
    examples = [Labelled(f"p{i}", ModelInput(s), t, "valid") for i, (s, t) in enumerate(zip(seqs, truth))]
    rows = [r.columns() for r in screen(model, spec, seqs)]
    found = calibration(spec, examples, rows)
    assert found["events"] == sum(map(len, seqs)) == sum(b["n"] for b in found["bins"])
    hits = sum(lab == "H" for r in rows for lab in r["residue_labels"])
    assert sum(b["accuracy"] * b["n"] for b in found["bins"] if b["n"]) == pytest.approx(hits)


def test_fitted_temperatures_are_stored_and_the_weights_kept(tmp_path):
    path = save_model(tiny_model(tasks=[TaskSpec("kingdom", "class", labels=("a", "b"))]), tmp_path / "m")
    weights = (path / "decoder.safetensors").read_bytes()
    model = load_model(path)
    seqs = sequences(30, seed=5)
    preds = [r.label for r in screen(model, model.config.task("kingdom"), seqs)]
    # labels that agree with the model 60% of the time: its (sharpened) probabilities are overconfident
    valid = [Labelled(f"p{i}", ModelInput(s), p if i % 5 < 3 else ("b" if p == "a" else "a"), "valid")
             for i, (s, p) in enumerate(zip(seqs, preds))]
    fits = calibrate_model(path, {"kingdom": valid})
    fit = fits["kingdom"]
    assert fit["temperature"] > 1.0  # overconfidence is cooled by a temperature above 1
    assert fit["validation_after"]["log_loss"] < fit["validation_before"]["log_loss"]
    reloaded = load_model(path)
    assert reloaded.config.task("kingdom").temperature == fit["temperature"]
    assert (path / "decoder.safetensors").read_bytes() == weights
    record = json.loads((path / "config.json").read_text())["training"]["temperatures"]["kingdom"]
    assert record["temperature"] == fit["temperature"] and record["examples"] == 30


def test_a_task_calibrated_well_enough_keeps_temperature_one(tmp_path):
    """`poor_ece`: a task whose validation ECE at T = 1 is at most that keeps T = 1 (no search)."""
    path = save_model(tiny_model(tasks=[TaskSpec("kingdom", "class", labels=("a", "b"))]), tmp_path / "m")
    model = load_model(path)
    seqs = sequences(30, seed=5)
    preds = [r.label for r in screen(model, model.config.task("kingdom"), seqs)]
    valid = [Labelled(f"p{i}", ModelInput(s), p if i % 5 < 3 else ("b" if p == "a" else "a"), "valid")
             for i, (s, p) in enumerate(zip(seqs, preds))]
    fit = calibrate_model(path, {"kingdom": valid}, poor_ece=1.0)["kingdom"]
    assert fit["temperature"] == 1.0 and fit["kept"]
    assert fit["validation_after"] == fit["validation_before"]
    assert load_model(path).config.task("kingdom").temperature == 1.0
    assert calibrate_model(path, {"kingdom": valid}, poor_ece=0.0)["kingdom"]["temperature"] > 1.0
