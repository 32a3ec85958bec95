"""Class tasks: exactly one label token."""

from __future__ import annotations

from .grammar import (
    class_grammar,
)
from .kind import TaskKind, register_kind
from .spec import TaskResult, TaskSpec


class ClassKind(TaskKind):
    name = "class"
    output_columns = ("label", "confidence", "label_probs")
    needs_first_probs = True

    def validate(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            raise ValueError(f"class task {spec.name!r} needs at least two labels")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def encode(self, spec, label, sequence):
        if label not in spec.labels:
            raise ValueError(f"unknown label {label!r} for task {spec.name!r}")
        return [label]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        return class_grammar(vocab, spec.labels, len(sequences), device)

    def read_label(self, spec, text):
        label = str(text).strip()
        if label not in spec.labels:
            raise ValueError(f"unknown class {label!r} (known: {', '.join(spec.labels)})")
        return label

    def truth_of(self, result):
        return result.label

    def parse(self, spec, tokens, probs, first_probs):
        dist = [(lab, first_probs[lab]) for lab in spec.labels]
        return TaskResult(label=tokens[0], confidence=probs[0], label_probs=dist)


register_kind(ClassKind())
