"""Site tasks: ascending 1-based positions of the protein, optionally after a candidates prompt."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .conformal import false_call_losses, lowest_safe_threshold
from .grammar import SitesGrammar
from .kind import SideInput, TaskKind, register_kind, sequence_probability
from .metrics import random_site_baseline, site_metrics
from .readout import Chart, ResidueTrack, TaskSummary, WideColumn, share, value_counts
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
    residue_tracks = True
    conformal_method = ("conformal risk control of the share of false sites among the calls: the "
                        "predicted sites with p >= t")

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
        sites = sorted({int(p) for p in label})
        legal = set(self.candidates(spec, protein))
        bad = [p for p in sites if p not in legal]
        if bad:
            raise ValueError(f"task {spec.name!r}: positions {bad[:5]} are not valid sites")
        return [str(p) for p in sites]

    def grammar(self, spec, vocab, proteins, max_steps, device):
        width = max((len(p) for p in proteins), default=0) + 1
        cand = torch.zeros((len(proteins), width), dtype=torch.bool)
        most = 0  # the most candidates of any row, counted on the host
        for row, protein in enumerate(proteins):
            positions = self.candidates(spec, protein)
            cand[row, positions] = True
            most = max(most, len(positions))
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

    def conformal_scores(self, spec, result, truth):
        true = set(truth)
        return (np.array(result.site_probs, dtype=np.float64),
                np.array([site in true for site in result.sites], dtype=bool))

    def fit_conformal(self, spec, scores, level):
        losses = false_call_losses([p for p, _ in scores], [t for _, t in scores])
        threshold = lowest_safe_threshold(losses, 1.0 - level)
        return {"threshold": None if np.isinf(threshold) else threshold}  # None: no call is safe

    def conformal_answer(self, spec, result, params):
        t = params["threshold"]
        chosen = [] if t is None else [s for s, p in zip(result.sites, result.site_probs) if p >= t]
        result.site_set, result.set_size = chosen, float(len(chosen))

    def conformal_check(self, spec, result, truth):
        true = set(truth)
        false = sum(s not in true for s in result.site_set) / len(result.site_set) if result.site_set else 0.0
        return 1.0 - false, 1, result.set_size

    def wide_columns(self, spec):
        return (WideColumn("", pa.string(), "predicted 1-based positions, ascending, joined by ';'"),
                WideColumn("_count", pa.int32(), "number of predicted sites"),
                WideColumn("_controlled", pa.string(), "sites kept under conformal control of the share "
                           "of false calls, joined by ';'"))

    def wide_values(self, spec, row):
        sites, kept = row["sites"] or [], row.get("site_set")
        return ";".join(map(str, sites)), len(sites), None if kept is None else ";".join(map(str, kept))

    def residue_track(self, spec, row):
        n = row["residues_used"]
        codes, probs = ["-"] * n, [None] * n
        for pos, p in zip(row["sites"] or [], row["site_probs"] or []):
            if 1 <= pos <= n:
                codes[pos - 1], probs[pos - 1] = "+", p
        return ResidueTrack("".join(codes), ["site" if c == "+" else "" for c in codes], probs)

    def summary(self, spec):
        return SiteSummary(spec.name)


@dataclass
class SiteSummary(TaskSummary):
    """Sites per protein and, where the sequences are known, the residue types chosen."""

    per_protein: Counter = field(default_factory=Counter)
    residue_types: Counter = field(default_factory=Counter)
    sequences_seen: int = 0

    def add_answers(self, rows, sequences):
        column = rows.column("sites")
        self.per_protein.update(value_counts(pc.list_value_length(column)))
        for sites, sequence in zip(column.to_pylist(), sequences or ()):
            if sequence is not None:
                self.sequences_seen += 1
                self.residue_types.update(sequence[p - 1] for p in sites or () if 0 < p <= len(sequence))

    def headline(self):
        n = max(self.rows, 1)
        mean = sum(k * c for k, c in self.per_protein.items()) / n
        return f"{mean:.2g} sites per protein" + (f" ({share(self.residue_types)})" if self.residue_types else "")

    def answer_charts(self):
        most = max(self.per_protein, default=0)
        bins = list(range(most + 1))
        charts = [Chart(f"{self.task}: sites per protein", "bars", [str(k) for k in bins],
                        {"proteins": [self.per_protein[k] for k in bins]}, xlabel="sites")]
        if self.sequences_seen:
            kinds = sorted(self.residue_types)
            charts.append(Chart(f"{self.task}: residue type of the sites", "bars", kinds,
                                {"sites": [self.residue_types[k] for k in kinds]}, ylabel="sites",
                                note=f"over the {self.sequences_seen} proteins whose sequence was read"))
        return charts


register_kind(SitesKind())
