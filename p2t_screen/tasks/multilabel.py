"""Multi-label tasks: the labels present in canonical order, or one present/absent decision per
label ("flags").
"""

from __future__ import annotations

from .grammar import (
    MultiLabelGrammar,
    flags_grammar,
)
from .kind import TaskKind, _sequence_probability, register_kind
from .spec import ABSENT, TaskResult, TaskSpec


class MultiLabelKind(TaskKind):
    name = "multilabel"
    output_columns = ("labels", "confidence", "label_probs")

    def validate(self, spec: TaskSpec) -> None:
        if not spec.labels:
            raise ValueError(f"multi-label task {spec.name!r} needs labels")
        if spec.encoding == "flags" and ABSENT in spec.labels:
            raise ValueError(f"multi-label task {spec.name!r}: {ABSENT!r} cannot be a label")

    def label_tokens(self, spec, max_residues):
        return [*spec.labels, ABSENT] if spec.encoding == "flags" else list(spec.labels)

    def encode(self, spec, label, sequence):
        chosen = set(label)
        unknown = chosen - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        if spec.encoding == "flags":
            return [lab if lab in chosen else ABSENT for lab in spec.labels]
        return [lab for lab in spec.labels if lab in chosen]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        if spec.encoding == "flags":
            return flags_grammar(vocab, spec.labels, ABSENT, len(sequences), device, spec.decision_threshold)
        return MultiLabelGrammar(vocab, spec.labels, len(sequences), device, max_steps)

    def read_label(self, spec, text):
        labels = [t.strip() for t in str(text or "").split(";") if t.strip()]
        unknown = sorted(set(labels) - set(spec.labels))
        if unknown:
            raise ValueError(f"unknown labels {unknown} (known: {', '.join(spec.labels)})")
        return [lab for lab in spec.labels if lab in labels]

    def truth_of(self, result):
        return result.labels

    def parse(self, spec, tokens, probs, first_probs):
        """With encoding "flags", `label_probs` holds every label's probability of being present;
        otherwise the emitted labels with the probability of each emission."""
        confidence = _sequence_probability(probs)
        if spec.encoding == "flags":
            present = [p if tok == lab else 1.0 - p for lab, tok, p in zip(spec.labels, tokens, probs)]
            return TaskResult(labels=[tok for tok in tokens if tok != ABSENT], confidence=confidence,
                              label_probs=list(zip(spec.labels, present)))
        return TaskResult(labels=list(tokens), confidence=confidence, label_probs=list(zip(tokens, probs)))


register_kind(MultiLabelKind())
