"""The guarantee itself: on synthetic exchangeable data, over many random calibration / test
splits, every kind's conformal answers cover the truth at least as often as stated (and not
much more), and risk-controlled calls keep their mean loss at the stated level."""

from __future__ import annotations

import numpy as np
import pytest

from p2t_screen.tasks.spec import TaskResult, TaskSpec
from p2t_screen.tasks.conformal import (LEVELS, THRESHOLDS, check_level, conformal_quantile, falling_envelope,
                                        label_sets)

TRIALS = 300
N_CAL, N_TEST = 99, 200


def run_trials(spec: TaskSpec, make, level: float, seed: int = 0) -> tuple[float, float]:
    """Mean over TRIALS random splits of (covered units / units on the test part, set size):
    `make(rng, n)` draws n exchangeable (result, truth) pairs."""
    kind, rng = spec.task_kind, np.random.default_rng(seed)
    coverages, sizes = [], []
    for _ in range(TRIALS):
        data = make(rng, N_CAL + N_TEST)
        cal, test = data[:N_CAL], data[N_CAL:]
        params = kind.fit_conformal(spec, [kind.conformal_scores(spec, r, t) for r, t in cal], level)
        covered = units = 0
        for result, truth in test:
            kind.conformal_answer(spec, result, params)
            c, u, size = kind.conformal_check(spec, result, truth)
            covered, units = covered + c, units + u
            sizes.append(size)
        coverages.append(covered / units)
    return float(np.mean(coverages)), float(np.mean(sizes))


def regression(rng, n):
    x = rng.normal(size=n)
    y = x + rng.standard_t(3, size=n)  # heavy-tailed errors: no assumption on the model's noise
    return [(TaskResult(value=float(p)), float(t)) for p, t in zip(x, y)]


LABELS = ("a", "b", "c", "d")


def classes(rng, n):
    probs = rng.dirichlet(np.ones(len(LABELS)) * 0.7, size=n)
    # The truth follows a tempered version of the stated probabilities: a miscalibrated model.
    sharp = probs ** 0.5 / (probs ** 0.5).sum(1, keepdims=True)
    out = []
    for p, q in zip(probs, sharp):
        truth = LABELS[rng.choice(len(LABELS), p=q)]
        out.append((TaskResult(label=LABELS[int(p.argmax())], label_probs=list(zip(LABELS, p.tolist()))), truth))
    return out


def residues(rng, n):
    out = []
    for _ in range(n):
        length = int(rng.integers(5, 30))
        dists = rng.dirichlet(np.ones(3), size=length)
        truth = [LABELS[rng.choice(3, p=d ** 2 / (d ** 2).sum())] for d in dists]
        out.append((TaskResult(residue_labels=[LABELS[k] for k in dists.argmax(1)], label_dists=dists), truth))
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_regression_intervals_cover_as_stated(level):
    spec = TaskSpec("y", "regression", value_range=(-100.0, 100.0))
    coverage, width = run_trials(spec, regression, level)
    assert level - 0.01 <= coverage <= level + 1 / (N_CAL + 1) + 0.01
    assert width > 0


@pytest.mark.parametrize("level", LEVELS)
def test_class_sets_cover_as_stated(level):
    spec = TaskSpec("c", "class", labels=LABELS)
    coverage, size = run_trials(spec, classes, level)
    assert level - 0.01 <= coverage <= level + 1 / (N_CAL + 1) + 0.01
    assert 0.5 < size < len(LABELS)


@pytest.mark.parametrize("level", LEVELS)
def test_residue_sets_cover_residues_as_stated(level):
    spec = TaskSpec("r", "per_residue", labels=LABELS[:3], codes="abc")
    coverage, size = run_trials(spec, residues, level)
    # Risk control over proteins: the mean share of a protein's residues covered is at least the
    # level (the test pools residues; lengths do not depend on difficulty here).
    assert level - 0.015 <= coverage <= level + 1 / (N_CAL + 1) + 0.015
    assert 0.5 < size < 3.0


def flags(rng, n):
    out = []
    for _ in range(n):
        p = rng.beta(0.6, 0.6, size=len(LABELS))
        truth = [lab for lab, q in zip(LABELS, p) if rng.random() < q ** 1.5]
        out.append((TaskResult(labels=[lab for lab, q in zip(LABELS, p) if q >= 0.5],
                               label_probs=list(zip(LABELS, p.tolist()))), truth))
    return out


def sites(rng, n):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 8))
        probs = rng.uniform(0.3, 1.0, size=k)
        positions = sorted(rng.choice(np.arange(1, 200), size=k, replace=False).tolist())
        truth = [s for s, p in zip(positions, probs) if rng.random() < p ** 2]
        out.append((TaskResult(sites=positions, site_probs=probs.tolist()), truth))
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_flag_calls_keep_the_missed_share_at_the_level(level):
    spec = TaskSpec("f", "multilabel", labels=LABELS, encoding="flags")
    kept, _ = run_trials(spec, flags, level)  # "covered" = 1 - the share of true labels missed
    assert kept >= level - 0.01
    assert kept <= level + 0.05  # not trivially calling everything


@pytest.mark.parametrize("level", LEVELS)
def test_site_calls_keep_the_false_share_at_the_level(level):
    spec = TaskSpec("s", "sites")
    kept, size = run_trials(spec, sites, level)  # "covered" = 1 - the share of false calls
    assert kept >= level - 0.01
    assert size > 0  # some sites are still called


def test_quantile_is_the_finite_sample_order_statistic():
    scores = list(range(1, 10))  # n = 9
    assert conformal_quantile(scores, 0.8) == 8  # ceil(10 x 0.8) = 8th smallest
    assert conformal_quantile(scores, 0.9) == 9
    assert conformal_quantile(scores, 0.95) is None  # ceil(10 x 0.95) = 10 > 9: no finite bound
    assert conformal_quantile([], 0.8) is None


def test_too_few_calibration_proteins_give_everything_never_an_invented_bound():
    spec = TaskSpec("y", "regression", value_range=(0.0, 10.0))
    kind = spec.task_kind
    result = TaskResult(value=5.0)
    kind.conformal_answer(spec, result, kind.fit_conformal(spec, [0.1, 0.2], 0.95))
    assert (result.value_lo, result.value_hi) == (0.0, 10.0)


def test_levels_outside_the_stored_ones_are_refused_with_the_list():
    assert check_level(0.9) == 0.9
    with pytest.raises(ValueError, match="0.8, 0.9, 0.95"):
        check_level(0.85)


def test_label_sets_hold_the_labels_at_or_above_the_threshold_and_may_be_empty():
    d = np.array([[0.5, 0.3, 0.2], [0.34, 0.33, 0.33]])
    assert label_sets(d, 0.3).tolist() == [[True, True, False], [True, True, True]]
    assert label_sets(d, 0.4).tolist() == [[True, False, False], [False, False, False]]  # unsure: empty
    assert label_sets(d, None).all()


def test_falling_envelope_bounds_the_loss_and_never_rises():
    losses = np.array([[0.2, 0.5, 0.1, 0.3, 0.0]])
    env = falling_envelope(losses)
    assert env.tolist() == [[0.5, 0.5, 0.3, 0.3, 0.0]]
    assert len(THRESHOLDS) == 1002 and np.isinf(THRESHOLDS[-1])
