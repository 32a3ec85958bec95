"""Withdrawing tasks from a saved model: their specs leave what it offers, weights and the rest of
the directory stay, and the training record keeps each spec and reason."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model

from p2t_screen.model.store import load_model, save_model
from p2t_screen.screen.screener import Screener
from p2t_screen.train.thresholds import withdraw_tasks, withdrawn_specs


def test_withdrawn_tasks_are_no_longer_offered_and_their_specs_are_kept(tmp_path):
    model = tiny_model(seed=2)
    save_model(model, tmp_path / "m", {"training": {"steps": 7}})
    (tmp_path / "m" / "MODEL_CARD.md").write_text("card\n")
    before = Screener(load_model(tmp_path / "m"), [model.config.task("ss3")]).predict(["MKTAYIAKQR"])
    withdraw_tasks(tmp_path / "m", {"kingdom": "below the classical baseline", "phospho": "within 0.02"})
    again = load_model(tmp_path / "m")
    assert [t.name for t in again.config.tasks] == ["stability", "location", "positions_k", "ss3"]
    assert withdrawn_specs(tmp_path / "m") == {"kingdom": model.config.task("kingdom"),
                                               "phospho": model.config.task("phospho")}
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert doc["training"]["steps"] == 7
    assert doc["training"]["withdrawn"]["kingdom"]["reason"] == "below the classical baseline"
    assert (tmp_path / "m" / "MODEL_CARD.md").read_text() == "card\n"
    for name, weight in model.state_dict().items():
        if "contact_head" in name:  # not stored: p2t never uses it
            continue
        assert torch.equal(again.state_dict()[name], weight), name
    after = Screener(again, [again.config.task("ss3")]).predict(["MKTAYIAKQR"])
    assert after["ss3"][0].residue_labels == before["ss3"][0].residue_labels


def test_withdrawing_an_unknown_task_or_every_task_is_refused(tmp_path):
    model = tiny_model(seed=2)
    save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match="offers no task 'nope'"):
        withdraw_tasks(tmp_path / "m", {"nope": "x"})
    with pytest.raises(ValueError, match="offering no task"):
        withdraw_tasks(tmp_path / "m", {t.name: "x" for t in model.config.tasks})
    assert len(load_model(tmp_path / "m").config.tasks) == len(model.config.tasks)
    assert withdrawn_specs(tmp_path / "m") == {}
