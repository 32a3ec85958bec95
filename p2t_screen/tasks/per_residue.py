"""Per-residue tasks: exactly one label per residue used."""

from __future__ import annotations

import torch

from .grammar import (
    PerResidueGrammar,
)
from .inputs import (
    protein_of,
)
from .kind import TaskKind, register_kind
from .spec import TaskResult, TaskSpec


class PerResidueKind(TaskKind):
    name = "per_residue"
    output_columns = ("residue_labels", "confidence", "residue_probs")
    side_input = "skip"

    def validate(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            raise ValueError(f"per-residue task {spec.name!r} needs at least two labels")
        if spec.codes is not None and (len(spec.codes) != len(spec.labels)
                                       or len(set(spec.codes)) != len(spec.codes)):
            raise ValueError(f"per-residue task {spec.name!r}: codes must give one distinct "
                             f"character per label")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def encode(self, spec, label, sequence):
        labels, sequence = list(label), protein_of(sequence)
        if len(labels) != len(sequence):
            raise ValueError(f"task {spec.name!r}: {len(labels)} labels for {len(sequence)} residues")
        unknown = set(labels) - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        return labels

    def grammar(self, spec, vocab, sequences, max_steps, device):
        lengths = [len(protein_of(s)) for s in sequences]
        return PerResidueGrammar(vocab, spec.labels, torch.tensor(lengths, device=device),
                                 max(lengths, default=0) + 1)

    def read_label(self, spec, text):
        text = str(text or "").strip()
        if spec.codes:
            table = dict(zip(spec.codes, spec.labels))
            bad = sorted(set(text) - set(table))
            if bad:
                raise ValueError(f"unknown residue label codes {bad} (known: {spec.codes})")
            return [table[c] for c in text]
        return list(text)

    def truth_of(self, result):
        return result.residue_labels

    def parse(self, spec, tokens, probs, first_probs):
        mean = float(sum(probs) / len(probs)) if probs else None
        return TaskResult(residue_labels=list(tokens), confidence=mean, residue_probs=list(probs))


register_kind(PerResidueKind())
