"""Task kinds: label -> tokens -> parsed result round trips, and the published formats."""

from __future__ import annotations

import pytest

from p2t_screen.tasks.catalog import CATALOG
from p2t_screen.tasks.kind import KINDS
from p2t_screen.tasks.spec import ABSENT, TaskSpec

STABILITY = CATALOG["stability"]


def roundtrip(spec: TaskSpec, label, sequence: str = "MSTYKRNA"):
    kind = KINDS[spec.kind]
    tokens = kind.encode(spec, label, sequence)
    probs = [0.5] * len(tokens)
    first = {lab: 1.0 / len(spec.labels) for lab in spec.labels}
    return tokens, kind.parse(spec, tokens, probs, first)


def test_regression_uses_prot2token_digit_format():
    # (x - min) / (max - min) * 0.9998 + 0.0001 with min -1.97, max 3.4, rounded to 4 places
    tokens, result = roundtrip(STABILITY, 0.62)
    y = (0.62 + 1.97) / (3.4 + 1.97) * 0.9998 + 0.0001
    assert "".join(tokens) == str(round(y, 4)) == "0.4823"
    assert tokens == ["0", ".", "4", "8", "2", "3"]
    assert result.value == pytest.approx(0.62, abs=(3.4 + 1.97) * 1e-4)


def test_regression_clamps_labels_outside_the_range():
    tokens, result = roundtrip(STABILITY, 99.0)
    assert "".join(tokens) == "0.9999"
    assert result.value == pytest.approx(3.4)


def test_class_roundtrip_keeps_every_class_probability():
    spec = TaskSpec("kingdom", "class", labels=("archaea", "bacteria"))
    tokens, result = roundtrip(spec, "bacteria")
    assert tokens == ["bacteria"]
    assert result.label == "bacteria"
    assert [lab for lab, _ in result.label_probs] == ["archaea", "bacteria"]
    with pytest.raises(ValueError, match="unknown label"):
        KINDS["class"].encode(spec, "viruses", "")


def test_multilabel_is_canonical_order_without_repeats():
    spec = CATALOG["localization_deeploc"]
    tokens, result = roundtrip(spec, ["Nucleus", "Cytoplasm", "Nucleus"])
    assert tokens == ["Cytoplasm", "Nucleus"]
    assert result.labels == ["Cytoplasm", "Nucleus"]


def test_multilabel_flags_write_one_decision_per_label():
    spec = TaskSpec("ligands", "multilabel", labels=("ATP", "zinc", "DNA"), encoding="flags")
    kind = KINDS["multilabel"]
    assert kind.label_tokens(spec, 10) == ["ATP", "zinc", "DNA", ABSENT]
    tokens = kind.encode(spec, ["DNA", "ATP"], "MKT")
    assert tokens == ["ATP", ABSENT, "DNA"]
    assert kind.encode(spec, [], "MKT") == [ABSENT] * 3
    result = kind.parse(spec, tokens, [0.9, 0.8, 0.6], {})
    assert result.labels == ["ATP", "DNA"]
    # every label's probability of being present: zinc was absent with probability 0.8
    assert [lab for lab, _ in result.label_probs] == ["ATP", "zinc", "DNA"]
    assert [q for _, q in result.label_probs] == pytest.approx([0.9, 0.2, 0.6])
    assert result.confidence == pytest.approx(0.9 * 0.8 * 0.6)
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown labels"):
        kind.encode(spec, ["heme"], "MKT")


def test_sites_sorted_and_restricted_to_candidate_residues():
    spec = TaskSpec("phospho", "sites", residues="STY")
    tokens, result = roundtrip(spec, [4, 2], "MSTYKRNA")
    assert tokens == ["2", "4"]
    assert result.sites == [2, 4]
    with pytest.raises(ValueError, match="not valid sites"):
        KINDS["sites"].encode(spec, [5], "MSTYKRNA")  # K is not S/T/Y
    with pytest.raises(ValueError, match="not valid sites"):
        KINDS["sites"].encode(CATALOG["positions_s"], [9], "MSTYKRNA")  # past the end


def test_per_residue_needs_one_label_per_residue():
    spec = CATALOG["secondary_structure"]
    labels = ["coil_or_loop", "alpha_helix", "alpha_helix", "beta_sheet"]
    tokens, result = roundtrip(spec, labels, "MKTA")
    assert result.residue_labels == labels
    assert result.confidence == pytest.approx(0.5)
    with pytest.raises(ValueError, match="3 labels for 4 residues"):
        KINDS["per_residue"].encode(spec, labels[:3], "MKTA")


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown kind"):
        TaskSpec("x", "ranking")
    with pytest.raises(ValueError, match="needs value_range"):
        TaskSpec("x", "regression")
    with pytest.raises(ValueError, match="unknown fields"):
        TaskSpec.from_dict({"name": "x", "kind": "sites", "colour": "red"})
    assert TaskSpec("abc", "sites").token == "<task_abc>"
    with pytest.raises(ValueError, match="encoding must be one of"):
        TaskSpec("x", "multilabel", labels=("a",), encoding="bits")
    with pytest.raises(ValueError, match="encoding 'flags' needs kind 'multilabel'"):
        TaskSpec("x", "class", labels=("a", "b"), encoding="flags")
    with pytest.raises(ValueError, match="a threshold needs encoding 'flags'"):
        TaskSpec("x", "multilabel", labels=("a",), threshold=0.3)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\), got 1.0"):
        TaskSpec("x", "multilabel", labels=("a",), encoding="flags", threshold=1.0)


def test_spec_dict_roundtrip():
    for spec in CATALOG.values():
        assert TaskSpec.from_dict(spec.to_dict()) == spec
