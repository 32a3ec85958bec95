"""Per-residue tasks: exactly one label per residue used."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .conformal import highest_safe_threshold, label_sets, miss_losses
from .grammar import PerResidueGrammar
from .kind import SideInput, TaskKind, register_kind
from .metrics import per_residue_metrics
from .readout import Chart, ResidueTrack, TaskSummary, WideColumn, share, value_counts
from .spec import TaskResult, TaskSpec


class PerResidueKind(TaskKind):
    """One of the spec's labels for every residue (e.g. 3-state secondary structure); `codes`
    gives one character per label for label strings like "HHEC" in data files."""

    name = "per_residue"
    output_columns = ("residue_labels", "confidence", "residue_probs")
    answer_column = "residue_labels"
    primary_metric = "accuracy"
    report_metrics = ("accuracy", "macro_f1")
    classical_family = "residue_window"  # see train.classical
    side_input = SideInput.RESIDUE
    one_pass_without_feedback = True
    residue_tracks = True
    conformal_method = ("conformal risk control over proteins of the share of residues whose true label is "
                        "outside their set: each residue's labels with p >= t")
    conformal_reads_dists = True
    # Teacher forcing lets a per-residue decoder lower its loss by copying the previous label
    # (labels come in runs) instead of reading the encoder; hiding half of the previous labels
    # during training forces it to read the encoder.
    default_input_dropout = 0.5

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if len(spec.labels) < 2:
            raise ValueError(f"per-residue task {spec.name!r} needs at least two labels")
        if spec.codes is not None and (len(spec.codes) != len(spec.labels)
                                       or len(set(spec.codes)) != len(spec.codes)):
            raise ValueError(f"per-residue task {spec.name!r}: codes must give one distinct "
                             f"character per label")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def output_steps(self, spec, max_residues):
        return max_residues + 1

    def min_output_steps(self, spec, max_residues):
        return max_residues + 1

    def encode(self, spec, label, protein):
        labels = list(label)
        if len(labels) != len(protein):
            raise ValueError(f"task {spec.name!r}: {len(labels)} labels for {len(protein)} residues")
        unknown = set(labels) - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        return labels

    def grammar(self, spec, vocab, proteins, max_steps, device):
        lengths = [len(p) for p in proteins]
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

    def check_label(self, spec, label, protein):
        if len(label) != len(protein):
            raise ValueError(f"{len(label)} residue labels for {len(protein)} residues")

    def fit_label(self, spec, label, residues):
        return label[:residues]

    def label_counts(self, spec, label):
        return list(label)

    def parse(self, spec, tokens, probs, first_probs):
        mean = float(sum(probs) / len(probs)) if probs else None
        return TaskResult(residue_labels=list(tokens), confidence=mean, residue_probs=list(probs))

    def empty_answer(self, spec, protein):
        return [""] * len(protein)

    def score(self, spec, proteins, truth, preds):
        return per_residue_metrics(truth, preds)

    def baseline(self, spec, train, test):
        by_aa: dict[str, Counter] = defaultdict(Counter)
        for protein, label in train:
            for aa, lab in zip(protein, label):
                by_aa[aa][lab] += 1
        overall = Counter(lab for _, label in train for lab in label).most_common(1)[0][0]
        rule = {aa: c.most_common(1)[0][0] for aa, c in by_aa.items()}
        preds = [[rule.get(aa, overall) for aa in protein] for protein, _ in test]
        return ("amino-acid composition: most frequent label of each residue type",
                self.score(spec, [p for p, _ in test], [lab for _, lab in test], preds))

    def reported_events(self, spec, columns, truth):
        """Each residue's probability against whether its label is the true one."""
        return list(zip(columns["residue_probs"], (p == t for p, t in zip(columns["residue_labels"], truth))))

    def conformal_scores(self, spec, result, truth):
        """The probability the protein's residues give their true labels (residues,)."""
        index = {lab: k for k, lab in enumerate(spec.labels)}
        dists = np.asarray(result.label_dists)  # (residues, K)
        return dists[np.arange(len(truth)), [index[t] for t in truth]]

    def fit_conformal(self, spec, scores, level):
        """The highest probability threshold at which the expected share of a protein's residues
        left out of their sets is at most 1 - level: risk control over proteins, the units that
        are exchangeable (residues of one protein are not)."""
        losses = miss_losses(scores, [np.ones(len(p), dtype=bool) for p in scores])
        return {"threshold": highest_safe_threshold(losses, 1.0 - level)}

    def conformal_answer(self, spec, result, params):
        """Each residue's set as its labels' codes in the spec's order ("HC"; "" when no label
        reaches the threshold); `set_size` the mean set size over the residues."""
        inside = label_sets(np.asarray(result.label_dists), params["threshold"])  # (residues, K)
        bits = inside.astype(np.int64) @ (np.int64(1) << np.arange(inside.shape[1], dtype=np.int64))  # (residues,)
        codes = "".join(self.codes(spec).values())
        result.residue_sets = [_set_codes(codes, b) for b in bits.tolist()]
        result.set_size = float(inside.sum(1).mean()) if len(inside) else 0.0

    def conformal_check(self, spec, result, truth):
        codes = self.codes(spec)
        covered = sum(codes[t] in s for t, s in zip(truth, result.residue_sets))
        return float(covered), len(truth), result.set_size

    def codes(self, spec: TaskSpec) -> dict[str, str]:
        """label -> the one character that stands for it in code strings (the spec's codes, else
        each label's first letter where those differ, else A, B, C...)."""
        if spec.codes:
            return dict(zip(spec.labels, spec.codes))
        first = [lab[:1].upper() for lab in spec.labels]
        letters = first if len(set(first)) == len(first) else [chr(65 + i) for i in range(len(spec.labels))]
        return dict(zip(spec.labels, letters))

    def wide_columns(self, spec):
        legend = " ".join(f"{c}={lab}" for lab, c in self.codes(spec).items())
        return (WideColumn("", pa.string(), f"one code per residue used ({legend})"),
                WideColumn("_confidence", pa.float32(), "mean probability of the residues' labels"),
                WideColumn("_set_size", pa.float32(), "mean size of the residues' conformal label sets at "
                           "the run's coverage (1: every residue sure)"))

    def code_string(self, spec: TaskSpec, labels: list[str]) -> str:
        """Labels as one code per residue (e.g. "HHEC")."""
        codes = self.codes(spec)
        return "".join(codes.get(lab, "?") for lab in labels)

    def wide_values(self, spec, row):
        return self.code_string(spec, row["residue_labels"] or []), row["confidence"], row.get("set_size")

    def residue_track(self, spec, row):
        labels = row["residue_labels"] or []
        return ResidueTrack(self.code_string(spec, labels), list(labels),
                            list(row["residue_probs"] or [None] * len(labels)))

    def summary(self, spec):
        return CompositionSummary(spec.name, labels=spec.labels)


@lru_cache(maxsize=65536)
def _set_codes(codes: str, bits: int) -> str:
    """The codes of the labels whose bits are set, in label order (a residue's set, e.g. "HC")."""
    return "".join(c for k, c in enumerate(codes) if bits >> k & 1)


@dataclass
class CompositionSummary(TaskSummary):
    """The share of residues given each label."""

    labels: tuple[str, ...] = ()
    residues: Counter = field(default_factory=Counter)

    def add_answers(self, rows, sequences):
        self.residues.update(value_counts(pc.list_flatten(rows.column("residue_labels"))))

    def headline(self):
        return f"{share(self.residues, top=len(self.labels))} of residues"

    def answer_charts(self):
        total = max(sum(self.residues.values()), 1)
        return [Chart(f"{self.task}: label composition", "bars", list(self.labels),
                      {"share of residues": [self.residues[lab] / total for lab in self.labels]},
                      ylabel="share of residues")]


register_kind(PerResidueKind())
