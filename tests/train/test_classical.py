"""Classical baselines: feature builders on hand-computed cases, and on synthetic data with a
learnable signal each family beats the kind's trivial baseline."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from p2t_screen.errors import UsageError
from p2t_screen.tasks.kind import KINDS
from p2t_screen.tasks.spec import TaskSpec
from p2t_screen.train.classical import FAMILIES, classical_baseline, composition_features, window_features

pytest.importorskip("sklearn")

AA = "ACDEFGHIKLMNPQRSTVWY"


def random_proteins(n: int, seed: int, low: int = 40, high: int = 90) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(AA), size=int(rng.integers(low, high)))) for _ in range(n)]


def splits(pairs: list) -> tuple[list, list, list]:
    """60% train, 20% valid, 20% test."""
    n = len(pairs)
    return pairs[: n * 3 // 5], pairs[n * 3 // 5: n * 4 // 5], pairs[n * 4 // 5:]


def primary(spec: TaskSpec, result: tuple[str, dict]) -> float:
    return result[1][spec.task_kind.primary_metric]


def trivial(spec: TaskSpec, train: list, test: list) -> float:
    return spec.task_kind.baseline(spec, train, test)[1][spec.task_kind.primary_metric]


def test_composition_features_hand_computed():
    acax = composition_features(["ACA", "AXC"])
    a, c = AA.index("A"), AA.index("C")
    assert acax.shape == (2, 421)
    assert acax[0, a] == pytest.approx(2 / 3) and acax[0, c] == pytest.approx(1 / 3)
    assert acax[0, :20].sum() == pytest.approx(1.0)
    # dipeptides AC and CA, each one of the two neighbour pairs
    assert acax[0, 20 + a * 20 + c] == pytest.approx(0.5) and acax[0, 20 + c * 20 + a] == pytest.approx(0.5)
    assert acax[0, 20:420].sum() == pytest.approx(1.0)
    assert acax[0, 420] == pytest.approx(math.log(3))
    # X counts in the length, not as a residue type; no dipeptide touching it is counted
    assert acax[1, a] == pytest.approx(1 / 3) and acax[1, c] == pytest.approx(1 / 3)
    assert acax[1, 20:420].sum() == 0.0


def test_window_features_hand_computed():
    # half 1: three offsets (-1, 0, +1), 21 symbols each; symbol 20 is "beyond the chain"
    a, c, d = AA.index("A"), AA.index("C"), AA.index("D")
    every = window_features(["AC", "D"], half=1).toarray()
    assert every.shape == (3, 63)
    expected = [{20, 21 + a, 42 + c}, {a, 21 + c, 42 + 20}, {20, 21 + d, 42 + 20}]
    assert [set(np.flatnonzero(row)) for row in every] == expected
    assert set(np.unique(every)) == {0.0, 1.0}
    picked = window_features(["AC", "D"], picks=[(1, 0), (0, 1)], half=1).toarray()
    assert [set(np.flatnonzero(row)) for row in picked] == [expected[2], expected[1]]
    unknown = window_features(["AXC"], half=1).toarray()
    assert set(np.flatnonzero(unknown[1])) == {a, 42 + c}  # the X at the centre sets no column


def test_residue_window_beats_the_per_residue_type_baseline():
    # A residue's label is set by its left neighbour: invisible to the per-amino-acid rule.
    spec = TaskSpec(name="neighbour", kind="per_residue", labels=("after_h", "other"))
    pairs = [(p, ["after_h" if i and p[i - 1] in "AILMFVW" else "other" for i in range(len(p))])
             for p in random_proteins(120, seed=1)]
    train, valid, test = splits(pairs)
    result = classical_baseline(spec, train, valid, test)
    assert "window of +-7" in result[0]
    assert primary(spec, result) > 0.95 > trivial(spec, train, test) + 0.1


def test_site_window_finds_a_motif():
    # S or T followed by P is a site (a kinase-like motif); other S/T are not.
    spec = TaskSpec(name="motif", kind="sites", residues="ST")
    pairs = [(p, [i + 1 for i in range(len(p) - 1) if p[i] in "ST" and p[i + 1] == "P"])
             for p in random_proteins(150, seed=2)]
    train, valid, test = splits(pairs)
    result = classical_baseline(spec, train, valid, test)
    assert "tuned on validation" in result[0]
    assert primary(spec, result) > 0.9 > trivial(spec, train, test) + 0.5


def test_composition_class_beats_the_majority_class():
    spec = TaskSpec(name="basic", kind="class", labels=("basic", "acidic"))
    proteins = random_proteins(200, seed=3)
    pairs = [(p, "basic" if p.count("K") + p.count("R") > p.count("D") + p.count("E") else "acidic")
             for p in proteins]
    train, valid, test = splits(pairs)
    assert primary(spec, classical_baseline(spec, train, valid, test)) > trivial(spec, train, test) + 0.3


def test_composition_multilabel_beats_label_frequencies():
    spec = TaskSpec(name="rich", kind="multilabel", labels=("w_rich", "c_rich", "long"))

    def labels(p: str) -> list[str]:
        found = {"w_rich": p.count("W") / len(p) > 0.05, "c_rich": p.count("C") / len(p) > 0.05,
                 "long": len(p) > 65}
        return [lab for lab in spec.labels if found[lab]]

    train, valid, test = splits([(p, labels(p)) for p in random_proteins(300, seed=4)])
    result = classical_baseline(spec, train, valid, test)
    assert "threshold" in result[0]
    assert primary(spec, result) > trivial(spec, train, test) + 0.2


def test_composition_ridge_ranks_a_composition_value():
    spec = TaskSpec(name="hydro", kind="regression", value_range=(0.0, 1.0))
    rng = np.random.default_rng(5)
    pairs = [(p, sum(aa in "AILMFVW" for aa in p) / len(p) + float(rng.normal(0, 0.02)))
             for p in random_proteins(200, seed=5)]
    train, valid, test = splits(pairs)
    assert primary(spec, classical_baseline(spec, train, valid, test)) > 0.8


def test_every_kind_names_a_known_family_or_none(monkeypatch):
    assert {k.classical_family for k in KINDS.values()} - {""} <= set(FAMILIES)
    monkeypatch.setattr(KINDS["class"], "classical_family", "")
    spec = TaskSpec(name="c", kind="class", labels=("a", "b"))
    assert classical_baseline(spec, [("ACD", "a")], [], [("ACD", "a")]) is None


def test_without_scikit_learn_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    spec = TaskSpec(name="c", kind="class", labels=("a", "b"))
    with pytest.raises(UsageError, match="pip install scikit-learn"):
        classical_baseline(spec, [("ACDE", "a"), ("KKRR", "b")], [], [("ACD", "a")])


def test_the_runtime_package_imports_without_scikit_learn():
    code = ("import sys; sys.modules['sklearn'] = sys.modules['scipy'] = None; "
            "import p2t_screen, p2t_screen.train.evaluate, p2t_screen.train.classical, p2t_screen.cli")
    subprocess.run([sys.executable, "-c", code], check=True)
