"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from p2t_screen.tasks.metrics import (
    class_metrics,
    multilabel_metrics,
    per_residue_metrics,
    random_site_baseline,
    regression_metrics,
    site_metrics,
)


def test_regression_metrics():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0])
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1 + 1) / 4))
    assert m["mae"] == pytest.approx(0.75)
    assert m["spearman"] == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert m["pearson"] == pytest.approx(0.8315, abs=1e-4)


def test_spearman_handles_ties_and_constant_input():
    assert regression_metrics([1, 2, 2, 3], [1, 2, 2, 3])["spearman"] == pytest.approx(1.0)
    assert math.isnan(regression_metrics([1, 2, 3], [5, 5, 5])["spearman"])


def test_class_metrics():
    truth = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    m = class_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # F1: a = 2*1/(2+1+1) = .5, b = 2*2/(4+1+0) = .8, c = 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert class_metrics(["a", "b"], ["a", "b"])["mcc"] == pytest.approx(1.0)
    assert class_metrics(["a", "b"], ["b", "a"])["mcc"] == pytest.approx(-1.0)


def test_multilabel_metrics():
    m = multilabel_metrics([["x", "y"], ["y"], []], [["x"], ["y", "z"], []], labels=["x", "y", "z"])
    # tp: x1 y1 ; fp: z1 ; fn: y1
    assert m["micro_f1"] == pytest.approx(2 * 2 / (4 + 1 + 1))
    assert m["f1[x]"] == 1.0 and m["f1[z]"] == 0.0 and m["f1[y]"] == pytest.approx(2 / 3)
    assert m["exact"] == pytest.approx(1 / 3)


def test_site_metrics_with_mcc():
    m = site_metrics([[1, 5], [2]], [[1, 3], []], candidates=[10, 4])
    assert (m["precision"], m["recall"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    # tp 1, fp 1, fn 2, tn (10-1-1-1) + (4-0-0-1) = 10
    assert m["mcc"] == pytest.approx((1 * 10 - 1 * 2) / math.sqrt(2 * 3 * 11 * 12))


def test_per_residue_and_random_site_baseline():
    m = per_residue_metrics([list("HHEC"), list("CC")], [list("HECC"), list("CC")])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["protein_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    # H: 1 hit, 2 true, 1 predicted; E: 0, 1, 1; C: 3, 3, 4
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 6 / 7) / 3)
    short = per_residue_metrics([list("HHC")], [list("H")])  # missing residues count as missed
    assert short["accuracy"] == pytest.approx(1 / 3) and short["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert random_site_baseline(["ABCD"], [[1, 2]])["f1"] == pytest.approx(0.5)
