"""Task metrics, computed from true and predicted labels in their natural form.

One function per kind of answer, all returning a flat `{metric: float}` dict; each task kind
(`TaskKind.score`) says which it uses and which metric picks the best checkpoint.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def regression_metrics(truth: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """Spearman, Pearson, RMSE, MAE."""
    t, p = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    return {"spearman": _pearson(_ranks(t), _ranks(p)), "pearson": _pearson(t, p),
            "rmse": float(np.sqrt(np.mean((t - p) ** 2))), "mae": float(np.mean(np.abs(t - p))),
            "n": len(t)}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _mcc(tp: int, fp: int, fn: int, tn: int) -> float:
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def class_metrics(truth: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 over the classes present in truth or prediction, multiclass MCC."""
    labels = sorted(set(truth) | set(pred))
    pairs = Counter(zip(truth, pred, strict=True))
    n = len(truth)
    f1s = []
    for lab in labels:
        tp = pairs[(lab, lab)]
        fp = sum(c for (t, p), c in pairs.items() if p == lab and t != lab)
        fn = sum(c for (t, p), c in pairs.items() if t == lab and p != lab)
        f1s.append(_f1(tp, fp, fn))
    correct = sum(c for (t, p), c in pairs.items() if t == p)
    t_count, p_count = Counter(truth), Counter(pred)
    cov_tp = correct * n - sum(t_count[k] * p_count[k] for k in labels)
    cov_tt = n * n - sum(v * v for v in t_count.values())
    cov_pp = n * n - sum(v * v for v in p_count.values())
    mcc = cov_tp / math.sqrt(cov_tt * cov_pp) if cov_tt and cov_pp else 0.0
    return {"accuracy": correct / n if n else 0.0, "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "mcc": mcc, "n": n}


def multilabel_metrics(truth: Sequence[Iterable[str]], pred: Sequence[Iterable[str]],
                       labels: Sequence[str]) -> dict[str, float]:
    """Micro-F1, macro-F1 over `labels`, and exact-set accuracy."""
    counts = {lab: [0, 0, 0] for lab in labels}  # tp, fp, fn
    exact = 0
    for t, p in zip(truth, pred, strict=True):
        ts, ps = set(t), set(p)
        exact += ts == ps
        for lab in labels:
            counts[lab][0] += lab in ts and lab in ps
            counts[lab][1] += lab in ps and lab not in ts
            counts[lab][2] += lab in ts and lab not in ps
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    per_label = {f"f1[{lab}]": _f1(*c) for lab, c in counts.items()}
    return {"micro_f1": _f1(tp, fp, fn), "macro_f1": float(np.mean([_f1(*c) for c in counts.values()])),
            "exact": exact / len(truth) if truth else 0.0, "n": len(truth), **per_label}


def site_metrics(truth: Iterable[Iterable[int]], pred: Iterable[Iterable[int]],
                 candidates: Iterable[int] | None = None) -> dict[str, float]:
    """Micro precision, recall, F1 over (record, position) pairs; MCC when the number of
    candidate positions per record is given; exact-match rate."""
    tp = fp = fn = tn = exact = n = 0
    cands = iter(candidates) if candidates is not None else None
    for t, p in zip(truth, pred, strict=True):
        ts, ps = set(t), set(p)
        tp_i, fp_i, fn_i = len(ts & ps), len(ps - ts), len(ts - ps)
        tp, fp, fn = tp + tp_i, fp + fp_i, fn + fn_i
        if cands is not None:
            tn += next(cands) - tp_i - fp_i - fn_i
        exact += ts == ps
        n += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {"precision": precision, "recall": recall, "f1": _f1(tp, fp, fn),
           "exact": exact / n if n else 0.0, "n": n}
    if cands is not None:
        out["mcc"] = _mcc(tp, fp, fn, tn)
    return out


def per_residue_metrics(truth: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Per-residue accuracy (Q3 for 3-state secondary structure), mean per-protein accuracy, and
    macro-F1 over the residue labels (a residue the prediction lacks counts as missed)."""
    right = total = 0
    per_protein = []
    hits_of, true_of, pred_of = Counter(), Counter(), Counter()
    for t, p in zip(truth, pred, strict=True):
        pairs = list(zip(t, p))
        hits = sum(a == b for a, b in pairs)
        right, total = right + hits, total + len(t)
        per_protein.append(hits / len(t) if len(t) else 0.0)
        true_of.update(t)
        pred_of.update(b for _, b in pairs)
        hits_of.update(a for a, b in pairs if a == b)
    labels = sorted(set(true_of) | set(pred_of))
    f1s = [2 * hits_of[lab] / (true_of[lab] + pred_of[lab]) for lab in labels]
    return {"accuracy": right / total if total else 0.0,
            "protein_accuracy": float(np.mean(per_protein)) if per_protein else 0.0,
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "residues": total, "n": len(truth)}


def random_site_baseline(sequences: Sequence[str], truth: Sequence[Sequence[int]]) -> dict[str, float]:
    """Expected micro scores of guessing, per record, as many positions as there are sites,
    uniformly among all residues: precision = recall = sites / residues per record."""
    hits = sum(len(t) * len(t) / len(s) for s, t in zip(sequences, truth) if s)
    total = sum(len(t) for t in truth)
    score = hits / total if total else 0.0
    return {"precision": score, "recall": score, "f1": score}
