"""tools/model_card.py: the verdict compares the model with the better of both baselines; the
calibration part shows ECE before and after."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from card_calibration import calibration_section  # noqa: E402
from model_card import task_rows, verdict  # noqa: E402


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
