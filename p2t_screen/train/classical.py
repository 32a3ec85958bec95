"""Classical baselines: what a bioinformatician's first lines of scikit-learn reach.

Each task kind names the family it is compared with (`TaskKind.classical_family`); this module
holds the families. All are fitted on the task's training split, tuned (where they have a
threshold) on its validation split, and scored on the test split with the kind's own `score`:

- "residue_window": logistic regression on a one-hot window of +-7 residues around each residue
  (the GOR-like single-sequence baseline of per-residue tasks);
- "site_window": the same window model over the candidate residues, site when its probability
  reaches a threshold tuned on validation;
- "composition_class": logistic regression on amino-acid + dipeptide composition + log length;
- "composition_multilabel": one logistic regression per label on the same features, one decision
  threshold for all labels tuned on validation;
- "composition_ridge": ridge regression on the same features.

scikit-learn is a dev/tools dependency, imported only when a baseline is fitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from ..io.records import AMINO_ACIDS
from ..tasks.kind import ProteinLabels
from ..tasks.spec import TaskSpec

WINDOW_HALF = 7  # residues each side of the centre
NO_RESIDUE = len(AMINO_ACIDS)  # window column for positions beyond either end of the chain
WINDOW_SYMBOLS = len(AMINO_ACIDS) + 1
MAX_WINDOW_ROWS = 300_000  # training residues (or candidates) a window model is fitted on
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
SEED = 0

_CODE = np.full(256, -1, dtype=np.int64)
_CODE[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(len(AMINO_ACIDS))


def residue_codes(protein: str) -> np.ndarray:
    """0..19 for the 20 standard amino acids (AMINO_ACIDS order), -1 for anything else."""
    return _CODE[np.frombuffer(protein.encode("ascii", "replace"), dtype=np.uint8)]


def composition_features(proteins: Sequence[str]) -> np.ndarray:
    """(N, 421): 20 amino-acid fractions, 400 dipeptide fractions (first residue major), log length.
    Fractions are over all residues (dipeptides: over all L-1 neighbour pairs), so non-standard
    residues lower them rather than being counted."""
    out = np.zeros((len(proteins), 421), dtype=np.float64)
    for row, protein in enumerate(proteins):
        codes = residue_codes(protein)
        n = len(codes)
        ok = codes[codes >= 0]
        out[row, :20] = np.bincount(ok, minlength=20) / max(n, 1)
        a, b = codes[:-1], codes[1:]
        both = (a >= 0) & (b >= 0)
        out[row, 20:420] = np.bincount(a[both] * 20 + b[both], minlength=400) / max(n - 1, 1)
        out[row, 420] = np.log(max(n, 1))
    return out


def window_features(proteins: Sequence[str], picks: Sequence[tuple[int, int]] | None = None,
                    half: int = WINDOW_HALF):
    """Sparse (R, (2*half+1) * 21) one-hot windows: column k*21 + s is "the residue at offset
    k - half is symbol s" (s < 20 an amino acid, 20 beyond the chain; non-standard residues set
    no column). Rows are the `picks` (protein index, 0-based position), or every residue in order."""
    from scipy.sparse import csr_matrix

    # One padded array for all proteins: `half` NO_RESIDUE columns before each chain and after the last.
    pads = np.full(half, NO_RESIDUE, dtype=np.int64)
    parts, starts, at = [pads], [], half
    for protein in proteins:
        parts += [residue_codes(protein), pads]
        starts.append(at)
        at += len(protein) + half
    padded = np.concatenate(parts)
    if picks is None:
        centres = np.concatenate([s + np.arange(len(p)) for s, p in zip(starts, proteins)] or [np.zeros(0, int)])
    else:
        centres = np.asarray([starts[i] + pos for i, pos in picks], dtype=np.int64).reshape(-1)
    symbols = padded[centres[:, None] + np.arange(-half, half + 1)]  # (R, 2*half+1)
    cols = np.arange(2 * half + 1) * WINDOW_SYMBOLS + symbols  # (R, 2*half+1)
    keep = symbols >= 0
    rows = np.broadcast_to(np.arange(len(centres))[:, None], symbols.shape)
    return csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
                      shape=(len(centres), (2 * half + 1) * WINDOW_SYMBOLS))


def _sample(n: int, limit: int) -> np.ndarray:
    """Sorted indices of at most `limit` of n items, drawn with a fixed seed."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(SEED).choice(n, size=limit, replace=False))


def _linear(name: str) -> type:
    """A scikit-learn linear model class, with a clear error where scikit-learn is absent."""
    try:
        from sklearn import linear_model
    except ImportError:
        raise UsageError("classical baselines need scikit-learn: pip install scikit-learn") from None
    return getattr(linear_model, name)


def _logistic():
    return _linear("LogisticRegression")(max_iter=1000)


def _scaled(model):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), model)


def _score(spec: TaskSpec, data: ProteinLabels, preds: Sequence[Any]) -> dict[str, float]:
    return spec.task_kind.score(spec, [p for p, _ in data], [lab for _, lab in data], preds)


def _split_rows(values: Sequence, proteins: Sequence[str]) -> list[list]:
    """Per-protein lists from one flat sequence of per-residue values."""
    ends = np.cumsum([len(p) for p in proteins])
    return [list(values[a:b]) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]


def residue_window(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                   test: ProteinLabels) -> tuple[str, dict[str, float]]:
    """Per-residue labels from a logistic regression over one-hot windows."""
    picks = [(i, j) for i, (protein, _) in enumerate(train) for j in range(len(protein))]
    chosen = [picks[k] for k in _sample(len(picks), MAX_WINDOW_ROWS)]
    model = _logistic().fit(window_features([p for p, _ in train], chosen),
                            [train[i][1][j] for i, j in chosen])
    proteins = [p for p, _ in test]
    preds = _split_rows(model.predict(window_features(proteins)), proteins)
    name = (f"logistic regression, one-hot window of +-{WINDOW_HALF} residues "
            f"({len(chosen):,} of {len(picks):,} training residues)")
    return name, _score(spec, test, preds)


def _best_threshold(spec: TaskSpec, valid: ProteinLabels, decide: Callable[[float], list]) -> float:
    """The threshold of THRESHOLDS with the best validation primary metric (ties: the nearest 0.5)."""
    primary = spec.task_kind.primary_metric
    return max(THRESHOLDS, key=lambda t: (_score(spec, valid, decide(t))[primary], -abs(t - 0.5)))


def site_window(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                test: ProteinLabels) -> tuple[str, dict[str, float]]:
    """Sites where the window model's probability reaches a threshold tuned on validation."""
    kind = spec.task_kind

    def candidates(data: ProteinLabels) -> list[tuple[int, int]]:
        return [(i, pos - 1) for i, (protein, _) in enumerate(data) for pos in kind.candidates(spec, protein)]

    picks = candidates(train)
    chosen = [picks[k] for k in _sample(len(picks), MAX_WINDOW_ROWS)]
    sites = [set(label) for _, label in train]
    y = [j + 1 in sites[i] for i, j in chosen]
    if len(set(y)) < 2:
        raise UsageError(f"task {spec.name!r}: training candidates are all {'sites' if y and y[0] else 'non-sites'}")
    model = _logistic().fit(window_features([p for p, _ in train], chosen), y)

    def predictor(data: ProteinLabels) -> Callable[[float], list[list[int]]]:
        cands = candidates(data)
        prob = model.predict_proba(window_features([p for p, _ in data], cands))[:, 1] if cands else np.zeros(0)

        def decide(t: float) -> list[list[int]]:
            out: list[list[int]] = [[] for _ in data]
            for (i, j), p in zip(cands, prob):
                if p >= t:
                    out[i].append(j + 1)
            return out
        return decide

    threshold = _best_threshold(spec, valid, predictor(valid))
    name = (f"logistic regression, one-hot window of +-{WINDOW_HALF} residues over the candidates "
            f"({len(chosen):,} of {len(picks):,}), threshold {threshold:.2f} tuned on validation")
    return name, _score(spec, test, predictor(test)(threshold))


COMPOSITION = "amino-acid + dipeptide composition + log length"


def composition_class(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                      test: ProteinLabels) -> tuple[str, dict[str, float]]:
    """One class per protein from a logistic regression on composition features."""
    model = _scaled(_logistic()).fit(composition_features([p for p, _ in train]), [lab for _, lab in train])
    preds = list(model.predict(composition_features([p for p, _ in test])))
    return f"logistic regression on {COMPOSITION}", _score(spec, test, preds)


def composition_multilabel(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                           test: ProteinLabels) -> tuple[str, dict[str, float]]:
    """One-vs-rest logistic regressions on composition features; one threshold tuned on validation."""
    x = composition_features([p for p, _ in train])
    models = {}
    for lab in spec.labels:
        y = np.array([lab in label for _, label in train])
        models[lab] = _scaled(_logistic()).fit(x, y) if 0 < y.sum() < len(y) else float(y.mean() if len(y) else 0)

    def predictor(data: ProteinLabels) -> Callable[[float], list[list[str]]]:
        feats = composition_features([p for p, _ in data])
        prob = np.stack([m.predict_proba(feats)[:, 1] if not isinstance(m, float) else np.full(len(data), m)
                         for m in models.values()], axis=1)  # (N, labels)
        return lambda t: [[lab for lab, p in zip(spec.labels, row) if p >= t] for row in prob]

    threshold = _best_threshold(spec, valid, predictor(valid))
    return (f"one-vs-rest logistic regression on {COMPOSITION}, threshold {threshold:.2f} tuned on validation",
            _score(spec, test, predictor(test)(threshold)))


def composition_ridge(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                      test: ProteinLabels) -> tuple[str, dict[str, float]]:
    """A value per protein from a ridge regression on composition features."""
    model = _scaled(_linear("Ridge")(alpha=1.0)).fit(composition_features([p for p, _ in train]),
                                          [float(lab) for _, lab in train])
    preds = [float(v) for v in model.predict(composition_features([p for p, _ in test]))]
    return f"ridge regression on {COMPOSITION}", _score(spec, test, preds)


FAMILIES: dict[str, Callable[[TaskSpec, ProteinLabels, ProteinLabels, ProteinLabels], tuple[str, dict]]] = {
    "residue_window": residue_window,
    "site_window": site_window,
    "composition_class": composition_class,
    "composition_multilabel": composition_multilabel,
    "composition_ridge": composition_ridge,
}


def classical_baseline(spec: TaskSpec, train: ProteinLabels, valid: ProteinLabels,
                       test: ProteinLabels) -> tuple[str, dict[str, float]] | None:
    """The kind's classical baseline fitted on `train` (tuned on `valid`), scored on `test`:
    (description, metrics); None when the kind names no family. Without validation examples,
    thresholds are tuned on the training split."""
    family = spec.task_kind.classical_family
    if not family:
        return None
    if family not in FAMILIES:
        raise ValueError(f"task {spec.name!r}: unknown classical baseline family {family!r} "
                         f"(known: {sorted(FAMILIES)})")
    if not train:
        raise UsageError(f"task {spec.name!r}: a classical baseline needs training examples")
    return FAMILIES[family](spec, train, valid or train, test)
