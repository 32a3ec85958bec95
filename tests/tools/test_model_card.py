"""tools/model_card.py: the verdict compares the model with the better of both baselines; failing
tasks can be withdrawn; the calibration part shows ECE before and after; the stage table adds
up every stage's recorded time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from card_calibration import calibration_section  # noqa: E402
from card_stages import recorded_stages, stages_section  # noqa: E402
from card_verdicts import aux_section, task_rows, verdict, withdraw_failing  # noqa: E402
from conftest import tiny_model  # noqa: E402

from p2t_screen.model.store import load_model, save_model  # noqa: E402
from p2t_screen.train.thresholds import withdrawn_specs  # noqa: E402


def result(model: float, trivial: float, classical: float | None, auxiliary: bool = False) -> dict:
    return {"kind": "class", "test_examples": 10, "auxiliary": auxiliary,
            "model": {"accuracy": 0.5, "macro_f1": model, "mcc": 0.1},
            "baseline": {"name": "majority", "metrics": {"macro_f1": trivial}},
            "classical": None if classical is None else {"name": "logistic", "metrics": {"macro_f1": classical}}}


def test_verdict_needs_a_margin_over_the_better_baseline():
    margin, says = verdict(result(0.60, 0.30, 0.55))
    assert margin == pytest.approx(0.05) and says == "yes"
    assert verdict(result(0.60, 0.30, 0.59))[1].startswith("**no**: within")
    margin, says = verdict(result(0.50, 0.30, 0.60))
    assert margin == pytest.approx(-0.10) and says == "**no**: below"
    assert verdict(result(0.60, 0.59, None))[1].startswith("**no**")  # the trivial one alone decides


def test_rows_name_both_baselines_and_split_offered_from_auxiliary():
    rows, aux, verdicts = task_rows({"a": result(0.6, 0.3, 0.5), "b": result(0.4, 0.3, 0.5),
                                     "c": result(0.4, 0.3, None, auxiliary=True)})
    assert len(rows) == 2 and len(aux) == 1
    assert "majority: macro_f1 0.300" in rows[0] and "logistic: macro_f1 0.500" in rows[0]
    assert "+0.100 macro_f1 | yes" in rows[0] and "-0.100 macro_f1 | **no**: below" in rows[1]
    assert "none for this kind" in aux[0]
    assert verdicts == {"yes": ["a"], "no": ["b"]}


def test_calibration_section_shows_ece_before_and_after():
    def found(ece: float) -> dict:
        bins = [{"low": b / 10, "high": (b + 1) / 10, "n": 0, "confidence": float("nan"),
                 "accuracy": float("nan")} for b in range(10)]
        bins[9] = {"low": 0.9, "high": 1.0, "n": 4, "confidence": 0.95, "accuracy": 0.5}
        return {"events": 4, "ece": ece, "log_loss": 1.0, "bins": bins}

    results = {"a": {**result(0.6, 0.3, 0.5), "calibration": {"temperature": 2.5, "before": found(0.45),
                                                               "after": found(0.1), "choices_unchanged": True}}}
    text = calibration_section(results, {"a": {"validation_ece_before": 0.4, "validation_ece_after": 0.05}})
    assert "| a | `confidence`: the chosen class is right | 4 | 0.450 | 2.500 | 0.100 | 0.400 -> 0.050 | yes |" in text
    assert "| a | T = 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 4: 0.950 / 0.500 |" in text
    assert calibration_section({"a": result(0.6, 0.3, 0.5)}, {}) == ""


def test_withdraw_failing_takes_out_offered_tasks_below_the_bar_only(tmp_path):
    save_model(tiny_model(seed=1), tmp_path / "m")
    results = {"kingdom": result(0.40, 0.30, 0.50), "stability": {**result(0.6, 0.3, 0.5), "kind": "class"},
               "ss3": result(0.40, 0.30, None, auxiliary=True)}
    withdraw_failing(tmp_path / "m", results)
    offered = [t.name for t in load_model(tmp_path / "m").config.tasks]
    assert "kingdom" not in offered and {"stability", "ss3"} <= set(offered)
    assert set(withdrawn_specs(tmp_path / "m")) == {"kingdom"}
    assert results["kingdom"]["withdrawn"] and not results["stability"].get("withdrawn")
    rows, aux, verdicts = task_rows(results)
    assert len(rows) == 1 and len(aux) == 2 and verdicts == {"yes": ["stability"]}
    text = aux_section(aux, results)
    assert "config): `ss3`." in text and "0.02 (`tools/model_card.py --withdraw`" in text
    assert "`config.json`): `kingdom`." in text
    withdraw_failing(tmp_path / "m", results)  # nothing more fails: the model is left as it is
    assert [t.name for t in load_model(tmp_path / "m").config.tasks] == offered


def test_stage_table_lists_every_stage_and_adds_up_the_recorded_time(tmp_path):
    pretrained = tmp_path / "enc.json"
    pretrained.write_text(json.dumps({"steps": 100, "seconds": 1800.0, "valid": {"perplexity": 15.0, "accuracy": 0.2}}))
    stages = recorded_stages(tmp_path / "enc.pt")
    assert stages[0]["stage"] == "masked-LM pre-training" and stages[0]["seconds"] == 1800.0
    stage1 = {"stage": "p2t train", "config": "a.toml", "steps": 50, "epochs": 2, "seconds": 3600.0,
              "best_validation_score": 0.5}
    (tmp_path / "next.json").write_text(json.dumps({"stages": [*stages, stage1]}))
    assert recorded_stages(tmp_path / "next.pt") == [*stages, stage1]
    cfg = SimpleNamespace(encoder=SimpleNamespace(source=str(tmp_path / "next.pt"), init=None), origin="b.toml")
    training = {"steps": 20, "history": [{"score": 0.4, "seconds": 600.0}, {"score": 0.6, "seconds": 1200.0}]}
    text = stages_section(cfg, training, {"residues": 1234, "perplexity": 16.5, "accuracy": 0.15})
    assert "| 0 | masked-LM pre-training: `p2t pretrain (make encoder)` | 100 steps | 0.50 h (30 min) | masked-LM perplexity 15.00" in text
    assert "| 1 | p2t train: `a.toml` | 50 steps, 2 epochs | 1.00 h (60 min) | best mean validation score 0.500 |" in text
    assert "| 2 | p2t train: `b.toml` | 20 steps, 2 epochs | 0.50 h (30 min) | best mean validation score 0.600 |" in text
    assert "In all: 2.00 CPU-hours" in text and "perplexity 16.50, accuracy 0.150" in text
    assert "1,234 masked residues" in text
    # A run started from a whole model (`[encoder] init`) lists that model's stages, then its training.
    recipe = tmp_path / "stage2.toml"
    recipe.write_text(f'name = "m"\noutput = "out"\n[encoder]\nsource = "{tmp_path / "next.pt"}"\n'
                      '[[tasks]]\nname = "secondary_structure"\ndata = "d.parquet"\n')
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "config.json").write_text(json.dumps({"training": {**training, "config": str(recipe)}}))
    cfg = SimpleNamespace(encoder=SimpleNamespace(source="new", init=str(tmp_path / "stage2")), origin="c.toml")
    text = stages_section(cfg, training, None)
    assert f"| 2 | p2t train: `{recipe}` | 20 steps, 2 epochs | 0.50 h (30 min) |" in text
    assert "| 3 | p2t train: `c.toml` |" in text and "In all: 2.50 CPU-hours" in text
    (tmp_path / "next.json").write_text(json.dumps({"stages": [{"stage": "x", "seconds": None}]}))
    assert "1 not recorded" in stages_section(cfg, training, None)
