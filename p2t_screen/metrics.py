"""Task metrics, computed from true and predicted labels in their natural form."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def site_metrics(truth: Iterable[Iterable[int]], pred: Iterable[Iterable[int]]) -> dict[str, float]:
    """Micro precision, recall and F1 over (record, position) pairs, plus exact-match rate."""
    tp = fp = fn = exact = n = 0
    for t, p in zip(truth, pred, strict=True):
        ts, ps = set(t), set(p)
        tp += len(ts & ps)
        fp += len(ps - ts)
        fn += len(ts - ps)
        exact += ts == ps
        n += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "exact": exact / n if n else 0.0, "n": n}


def random_site_baseline(sequences: Sequence[str], truth: Sequence[Sequence[int]]) -> dict[str, float]:
    """Expected micro scores of guessing, per record, as many positions as there are sites,
    uniformly among all residues: precision = recall = sites / residues per record."""
    hits = sum(len(t) * len(t) / len(s) for s, t in zip(sequences, truth) if s)
    total = sum(len(t) for t in truth)
    score = hits / total if total else 0.0
    return {"precision": score, "recall": score, "f1": score}
