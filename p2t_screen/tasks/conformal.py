"""Split conformal prediction and conformal risk control: the arithmetic behind every interval,
label set and controlled call a screen reports. The task kinds say what is scored and what a
set is (`TaskKind.conformal_scores`, `.conformal_answer`); this module only turns calibration
scores into the constants stored with a model (`trust.store`).

Split conformal (Vovk et al. 2005; Angelopoulos & Bates, "A gentle introduction to conformal
prediction", 2021): n calibration proteins, held out from training, each give a score s_i of how
wrong the model was on them (a regression's absolute error; one minus the probability the model
gave the true class). For a coverage level 1 - a, q is the ceil((n + 1)(1 - a))-th smallest
score. For a new protein exchangeable with the calibration ones, the set of answers whose score
would be at most q holds the true answer with probability at least 1 - a, whatever the model;
with continuous scores also at most 1 - a + 1 / (n + 1). When (n + 1)(1 - a) > n no finite q
exists: the set is every answer (stored as null, never an invented bound).

Conformal risk control (Angelopoulos, Bates, Fisch, Lei & Schuster, ICLR 2024): calls made at a
probability threshold t (every item whose probability is at least t) have a loss L_i(t) in
[0, 1] per calibration protein (the share of true labels missed; the share of calls that are
false). When L_i is monotone in t, the threshold at which (n R_n(t) + 1) / (n + 1) <= a, R_n
the mean loss, gives an expected loss of at most a on a new protein. A loss that is not monotone
(the false-discovery share) is replaced by its monotone envelope, which bounds it from above, so
the guarantee carries over to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVELS = (0.8, 0.9, 0.95)  # the coverage levels fitted at calibration time; a run picks one
DEFAULT_LEVEL = 0.9
# Probability thresholds tried by risk control: 0, 0.001 .. 1, then "call nothing".
THRESHOLDS = np.append(np.linspace(0.0, 1.0, 1001), np.inf)


def level_key(level: float) -> str:
    """How a level is named in stored calibrations ("0.9")."""
    return f"{level:g}"


def check_level(level: float) -> float:
    """The level itself; ValueError naming the stored levels for any other."""
    if not any(math.isclose(level, known) for known in LEVELS):
        raise ValueError(f"coverage {level:g} is not one of the levels stored at calibration time "
                         f"({', '.join(level_key(v) for v in LEVELS)})")
    return next(known for known in LEVELS if math.isclose(level, known))


def conformal_quantile(scores: Sequence[float], level: float) -> float | None:
    """The split-conformal threshold at coverage `level`: the ceil((n + 1) level)-th smallest
    score, or None when there are too few scores for any finite one."""
    n = len(scores)
    k = math.ceil((n + 1) * level - 1e-9)
    if n == 0 or k > n:
        return None
    return float(np.partition(np.asarray(scores, dtype=np.float64), k - 1)[k - 1])


def risk_bound(losses: np.ndarray) -> np.ndarray:
    """(n R_n(t) + 1) / (n + 1) for each threshold: losses (n, thresholds) in [0, 1]."""
    n = losses.shape[0]
    return (losses.sum(0) + 1.0) / (n + 1)


def highest_safe_threshold(losses: np.ndarray, alpha: float) -> float:
    """The highest threshold whose risk bound, and every lower one's, is at most `alpha`, for a
    loss that grows with the threshold (the share of true labels missed); 0 (call everything)
    when only that is safe. Losses (n, len(THRESHOLDS))."""
    safe = risk_bound(losses) <= alpha
    unsafe = np.flatnonzero(~safe)
    last = (unsafe[0] - 1) if unsafe.size else len(THRESHOLDS) - 1
    return float(THRESHOLDS[max(last, 0)])


def lowest_safe_threshold(losses: np.ndarray, alpha: float) -> float:
    """The lowest threshold whose risk bound, and every higher one's, is at most `alpha`, for a
    loss that shrinks as the threshold rises (the share of false calls, made monotone with
    `falling_envelope`); infinity (call nothing) when only that is safe."""
    safe = risk_bound(losses) <= alpha
    unsafe = np.flatnonzero(~safe)
    return float(THRESHOLDS[unsafe[-1] + 1]) if unsafe.size else float(THRESHOLDS[0])


def falling_envelope(losses: np.ndarray) -> np.ndarray:
    """Each row's smallest non-increasing upper bound over the thresholds: max over t' >= t."""
    return np.maximum.accumulate(losses[:, ::-1], axis=1)[:, ::-1]


def miss_losses(probs: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> np.ndarray:
    """Share of each protein's true items not called at each threshold (0 when it has none):
    `probs[i]` every item's probability, `truth[i]` whether each is true. (n, thresholds)."""
    out = np.zeros((len(probs), len(THRESHOLDS)))
    for i, (p, t) in enumerate(zip(probs, truth)):
        true = p[t]
        if true.size:
            out[i] = (true[None, :] < THRESHOLDS[:, None]).sum(1) / true.size
    return out


def false_call_losses(probs: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> np.ndarray:
    """Share of each protein's calls that are false at each threshold (0 when nothing is called),
    made monotone (`falling_envelope`). (n, thresholds)."""
    out = np.zeros((len(probs), len(THRESHOLDS)))
    for i, (p, t) in enumerate(zip(probs, truth)):
        if p.size:
            called = p[None, :] >= THRESHOLDS[:, None]  # (thresholds, items)
            made = called.sum(1)
            out[i] = np.where(made > 0, (called & ~t[None, :]).sum(1) / np.maximum(made, 1), 0.0)
    return falling_envelope(out)


def label_sets(dists: np.ndarray, threshold: float | None) -> np.ndarray:
    """Conformal label sets from distributions over K labels (N, K), as a boolean mask (N, K):
    each label whose probability is at least `threshold` (None: every label). A set may be
    empty: no label is likely enough for the level (the model cannot tell); forcing the most
    probable label in would cover more often than stated where the model is mostly right."""
    if threshold is None:
        return np.ones(dists.shape, dtype=bool)
    return dists >= threshold
