"""Multi-label tasks: the labels present in canonical order, or one present/absent decision per
label ("flags").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .conformal import highest_safe_threshold, miss_losses
from .grammar import MultiLabelGrammar, flags_grammar
from .kind import TaskKind, register_kind, sequence_probability
from .metrics import multilabel_metrics
from .readout import Chart, MeanProbs, TaskSummary, WideColumn, label_chart, value_counts
from .spec import ABSENT, TaskResult, TaskSpec

FLAGS = "flags"


class MultiLabelKind(TaskKind):
    """Any subset of the spec's labels.

    Encoding "" (Prot2Token's format): the labels present, in the spec's order, then `<eos>`.
    Encoding "flags": one decision per label in the spec's order, the label's token when present
    and `<absent>` when not, then `<eos>`; each decision is then a probability of that label
    (given the decisions before it), which a decision threshold acts on.
    """

    name = "multilabel"
    output_columns = ("labels", "confidence", "label_probs")
    answer_column = "labels"
    primary_metric = "micro_f1"
    report_metrics = ("micro_f1", "macro_f1", "exact")
    classical_family = "composition_multilabel"  # see train.classical
    encodings = ("", FLAGS)
    threshold_encodings = (FLAGS,)
    scalar = True
    conformal_method = ("conformal risk control of the share of true labels missed: the labels with "
                        "p(present) >= t ('flags' encoding only)")

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if not spec.labels:
            raise ValueError(f"multi-label task {spec.name!r} needs labels")
        if spec.encoding == FLAGS and ABSENT in spec.labels:
            raise ValueError(f"multi-label task {spec.name!r}: {ABSENT!r} cannot be a label")

    def label_tokens(self, spec, max_residues):
        return [*spec.labels, ABSENT] if spec.encoding == FLAGS else list(spec.labels)

    def min_output_steps(self, spec, max_residues):
        return len(spec.labels) + 1 if spec.encoding == FLAGS else 1

    def encode(self, spec, label, protein):
        chosen = set(label)
        unknown = chosen - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        if spec.encoding == FLAGS:
            return [lab if lab in chosen else ABSENT for lab in spec.labels]
        return [lab for lab in spec.labels if lab in chosen]

    def grammar(self, spec, vocab, proteins, max_steps, device):
        if spec.encoding == FLAGS:
            return flags_grammar(vocab, spec.labels, ABSENT, len(proteins), device, spec.decision_threshold)
        return MultiLabelGrammar(vocab, spec.labels, len(proteins), device, max_steps)

    def read_label(self, spec, text):
        labels = [t.strip() for t in str(text or "").split(";") if t.strip()]
        unknown = sorted(set(labels) - set(spec.labels))
        if unknown:
            raise ValueError(f"unknown labels {unknown} (known: {', '.join(spec.labels)})")
        return [lab for lab in spec.labels if lab in labels]

    def label_counts(self, spec, label):
        return list(label)

    def parse(self, spec, tokens, probs, first_probs):
        """With encoding "flags", `label_probs` holds every label's probability of being present;
        otherwise the emitted labels with the probability of each emission."""
        confidence = sequence_probability(probs)
        if spec.encoding == FLAGS:
            present = [p if tok == lab else 1.0 - p for lab, tok, p in zip(spec.labels, tokens, probs)]
            return TaskResult(labels=[tok for tok in tokens if tok != ABSENT], confidence=confidence,
                              label_probs=list(zip(spec.labels, present)))
        return TaskResult(labels=list(tokens), confidence=confidence, label_probs=list(zip(tokens, probs)))

    def empty_answer(self, spec, protein):
        return []

    def score(self, spec, proteins, truth, preds):
        return multilabel_metrics(truth, preds, labels=spec.labels)

    def baseline(self, spec, train, test):
        freq = Counter(lab for _, label in train for lab in label)
        chosen = [lab for lab in spec.labels if freq[lab] >= len(train) / 2]
        if not chosen and freq:
            chosen = [freq.most_common(1)[0][0]]
        return (f"label frequencies: always {chosen}",
                self.score(spec, [p for p, _ in test], [lab for _, lab in test], [chosen] * len(test)))

    def reported_events(self, spec, columns, truth):
        """Each label probability ("flags": of being present; otherwise of the emitted label)
        against whether the protein has that label."""
        return [(row["prob"], row["label"] in truth) for row in columns["label_probs"]]

    def has_conformal(self, spec):
        return spec.encoding == FLAGS  # otherwise only the emitted labels have a probability

    def conformal_scores(self, spec, result, truth):
        probs = np.array([p for _, p in result.label_probs], dtype=np.float64)
        return probs, np.array([lab in set(truth) for lab, _ in result.label_probs])

    def fit_conformal(self, spec, scores, level):
        losses = miss_losses([p for p, _ in scores], [t for _, t in scores])
        return {"threshold": highest_safe_threshold(losses, 1.0 - level)}

    def conformal_answer(self, spec, result, params):
        chosen = [lab for lab, p in result.label_probs if p >= params["threshold"]]
        result.label_set, result.set_size = chosen, float(len(chosen))

    def conformal_check(self, spec, result, truth):
        true = set(truth)
        missed = len(true - set(result.label_set)) / len(true) if true else 0.0
        return 1.0 - missed, 1, result.set_size

    def wide_columns(self, spec):
        what = ("each label's probability of being present" if spec.encoding == FLAGS
                else "each label's emission probability")
        return (WideColumn("", pa.string(), f"predicted labels joined by ';' (of {' | '.join(spec.labels)})"),
                WideColumn("_probs", pa.string(), f"{what}, in the same order, joined by ';'"),
                WideColumn("_controlled", pa.string(), "labels called under conformal risk control of "
                           "the share of true labels missed, joined by ';'"))

    def wide_values(self, spec, row):
        p = {item["label"]: item["prob"] for item in row["label_probs"] or ()}
        labels, chosen = row["labels"] or [], row.get("label_set")
        return (";".join(labels), ";".join(f"{p[lab]:.3f}" for lab in labels if lab in p),
                None if chosen is None else ";".join(chosen))

    def summary(self, spec):
        return LabelSetSummary(spec.name, labels=spec.labels)


@dataclass
class LabelSetSummary(TaskSummary):
    """Proteins with each label, the mean probability given to it, and labels per protein."""

    labels: tuple[str, ...] = ()
    counts: Counter = field(default_factory=Counter)
    per_protein: Counter = field(default_factory=Counter)
    probs: MeanProbs = field(default_factory=MeanProbs)

    def add_answers(self, rows, sequences):
        column = rows.column("labels")
        self.counts.update(value_counts(pc.list_flatten(column)))
        self.per_protein.update(value_counts(pc.list_value_length(column)))
        self.probs.add(rows.column("label_probs"))

    def headline(self):
        n = max(self.rows, 1)
        top = ", ".join(f"{lab} {c / n:.0%}" for lab, c in self.counts.most_common(3))
        return f"{top or 'no labels'}; none {self.per_protein[0] / n:.0%}"

    def answer_charts(self):
        most = max(self.per_protein, default=0)
        return [label_chart(f"{self.task}: proteins with each label", self.labels, self.counts, self.rows,
                            self.probs),
                Chart(f"{self.task}: labels per protein", "bars", [str(k) for k in range(most + 1)],
                      {"proteins": [self.per_protein[k] for k in range(most + 1)]}, xlabel="labels")]


register_kind(MultiLabelKind())
