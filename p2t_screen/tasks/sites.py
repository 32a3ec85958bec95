"""Site tasks: ascending 1-based positions of the protein, optionally after a candidates prompt."""

from __future__ import annotations

import torch

from .grammar import SitesGrammar
from .kind import SideInput, TaskKind, register_kind, sequence_probability
from .metrics import random_site_baseline, site_metrics
from .spec import SEP, TaskResult, TaskSpec

CANDIDATES = "candidates"


class SitesKind(TaskKind):
    """Positions among the candidates (residues of the spec's types), ascending, then `<eos>`.

    Prompt "candidates": the decoder is first given every candidate position, then `<sep>`, and
    writes the positive ones (Prot2Token's kinase phosphorylation-site format)."""

    name = "sites"
    output_columns = ("sites", "confidence", "site_probs")
    answer_column = "sites"
    primary_metric = "f1"
    report_metrics = ("precision", "recall", "f1", "mcc")
    classical_family = "site_window"  # see train.classical
    prompts = ("", CANDIDATES)
    side_input = SideInput.POINTER

    def label_tokens(self, spec, max_residues):
        return [str(p) for p in range(1, max_residues + 1)] + ([SEP] if spec.prompt else [])

    def output_steps(self, spec, max_residues):
        # candidates, <sep>, as many outputs, <eos>
        return 2 * max_residues + 2 if spec.prompt else max_residues + 1

    def candidates(self, spec: TaskSpec, protein: str) -> list[int]:
        """1-based positions of the protein that may be sites."""
        allowed = spec.residues
        return [i + 1 for i, aa in enumerate(protein) if allowed is None or aa in allowed]

    def prompt_tokens(self, spec, protein):
        if spec.prompt == CANDIDATES:
            return [str(p) for p in self.candidates(spec, protein)] + [SEP]
        return []

    def encode(self, spec, label, protein):
        sites = sorted(set(int(p) for p in label))
        legal = set(self.candidates(spec, protein))
        bad = [p for p in sites if p not in legal]
        if bad:
            raise ValueError(f"task {spec.name!r}: positions {bad[:5]} are not valid sites")
        return [str(p) for p in sites]

    def grammar(self, spec, vocab, proteins, max_steps, device):
        width = max((len(p) for p in proteins), default=0) + 1
        cand = torch.zeros((len(proteins), width), dtype=torch.bool)
        for row, protein in enumerate(proteins):
            cand[row, self.candidates(spec, protein)] = True
        most = int(cand.sum(1).max().item()) if len(proteins) else 0  # host tensor: no device sync
        # A prompted row first replays its candidates and `<sep>`, then writes at most as many.
        steps = min(max_steps, (2 * most + 2) if spec.prompt else most + 1)
        return SitesGrammar(vocab, cand.to(device), steps, vocab.id(SEP) if spec.prompt else None)

    def read_label(self, spec, text):
        try:
            return sorted({int(t) for t in str(text or "").split(";") if t.strip()})
        except ValueError:
            raise ValueError(f"positions must be integers joined by ';': {text!r}") from None

    def fit_label(self, spec, label, residues):
        return [p for p in label if p <= residues]

    def parse(self, spec, tokens, probs, first_probs):
        return TaskResult(sites=[int(t) for t in tokens], confidence=sequence_probability(probs),
                          site_probs=list(probs))

    def empty_answer(self, spec, protein):
        return []

    def score(self, spec, proteins, truth, preds):
        return site_metrics(truth, preds, candidates=[len(self.candidates(spec, p)) for p in proteins])

    def baseline(self, spec, train, test):
        return ("random positions, as many as true sites",
                random_site_baseline([p for p, _ in test], [lab for _, lab in test]))

    def reported_events(self, spec, columns, truth):
        """Each predicted site's probability against whether it is a true site."""
        true = set(truth)
        return [(p, site in true) for site, p in zip(columns["sites"], columns["site_probs"])]


register_kind(SitesKind())
