"""Site tasks: ascending 1-based positions of the protein, optionally after a candidates prompt."""

from __future__ import annotations

import torch

from .grammar import (
    SitesGrammar,
)
from .inputs import (
    protein_of,
)
from .kind import TaskKind, _sequence_probability, register_kind
from .spec import SEP, TaskResult, TaskSpec


class SitesKind(TaskKind):
    name = "sites"
    output_columns = ("sites", "confidence", "site_probs")
    side_input = "pointer"

    def label_tokens(self, spec, max_residues):
        return [str(p) for p in range(1, max_residues + 1)] + ([SEP] if spec.prompt else [])

    def candidates(self, spec: TaskSpec, sequence: str) -> list[int]:
        """1-based positions of the (first) protein that may be sites."""
        allowed = spec.residues
        return [i + 1 for i, aa in enumerate(protein_of(sequence)) if allowed is None or aa in allowed]

    def prompt_tokens(self, spec, sequence):
        if spec.prompt == "candidates":
            return [str(p) for p in self.candidates(spec, sequence)] + [SEP]
        return []

    def encode(self, spec, label, sequence):
        sites = sorted(set(int(p) for p in label))
        legal = set(self.candidates(spec, sequence))
        bad = [p for p in sites if p not in legal]
        if bad:
            raise ValueError(f"task {spec.name!r}: positions {bad[:5]} are not valid sites")
        return [str(p) for p in sites]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        width = max((len(protein_of(s)) for s in sequences), default=0) + 1
        cand = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, seq in enumerate(sequences):
            cand[row, self.candidates(spec, seq)] = True
        most = int(cand.sum(1).max().item()) if len(sequences) else 0
        # A prompted row first replays its candidates and `<sep>`, then writes at most as many.
        steps = min(max_steps, (2 * most + 2) if spec.prompt else most + 1)
        return SitesGrammar(vocab, cand.to(device), steps, vocab.id(SEP) if spec.prompt else None)

    def read_label(self, spec, text):
        try:
            return sorted({int(t) for t in str(text or "").split(";") if t.strip()})
        except ValueError:
            raise ValueError(f"positions must be integers joined by ';': {text!r}") from None

    def truth_of(self, result):
        return result.sites

    def parse(self, spec, tokens, probs, first_probs):
        return TaskResult(sites=[int(t) for t in tokens], confidence=_sequence_probability(probs),
                          site_probs=list(probs))


register_kind(SitesKind())
