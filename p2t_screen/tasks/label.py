"""Class tasks: exactly one label token."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from .conformal import conformal_quantile
from .grammar import class_grammar
from .kind import TaskKind, register_kind
from .metrics import class_metrics
from .readout import MeanProbs, TaskSummary, WideColumn, label_chart, share, value_counts
from .spec import TaskResult, TaskSpec


class ClassKind(TaskKind):
    """One of the spec's labels; the result keeps every class's probability."""

    name = "class"
    output_columns = ("label", "confidence", "label_probs")
    answer_column = "label"
    primary_metric = "macro_f1"
    report_metrics = ("accuracy", "macro_f1", "mcc")
    classical_family = "composition_class"  # see train.classical
    needs_first_probs = True
    scalar = True
    conformal_method = "split conformal on 1 - p(true class): the classes with p >= 1 - q (LAC)"

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if len(spec.labels) < 2:
            raise ValueError(f"class task {spec.name!r} needs at least two labels")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def encode(self, spec, label, protein):
        if label not in spec.labels:
            raise ValueError(f"unknown label {label!r} for task {spec.name!r}")
        return [label]

    def grammar(self, spec, vocab, proteins, max_steps, device):
        return class_grammar(vocab, spec.labels, len(proteins), device)

    def read_label(self, spec, text):
        label = str(text).strip()
        if label not in spec.labels:
            raise ValueError(f"unknown class {label!r} (known: {', '.join(spec.labels)})")
        return label

    def label_counts(self, spec, label):
        return [label]

    def parse(self, spec, tokens, probs, first_probs):
        dist = [(lab, first_probs[lab]) for lab in spec.labels]
        return TaskResult(label=tokens[0], confidence=probs[0], label_probs=dist)

    def empty_answer(self, spec, protein):
        return ""

    def score(self, spec, proteins, truth, preds):
        return class_metrics(truth, preds)

    def baseline(self, spec, train, test):
        top = Counter(label for _, label in train).most_common(1)[0][0]
        return (f"majority class '{top}'",
                self.score(spec, [p for p, _ in test], [lab for _, lab in test], [top] * len(test)))

    def reported_events(self, spec, columns, truth):
        """The confidence is the probability that the chosen class is the true one."""
        return [(columns["confidence"], columns["label"] == truth)]

    def conformal_scores(self, spec, result, truth):
        return 1.0 - dict(result.label_probs)[truth]

    def fit_conformal(self, spec, scores, level):
        return {"q": conformal_quantile(scores, level)}

    def conformal_answer(self, spec, result, params):
        q = params["q"]
        chosen = [lab for lab, p in result.label_probs if q is None or p >= 1.0 - q]
        result.label_set, result.set_size = chosen, float(len(chosen))

    def conformal_check(self, spec, result, truth):
        return float(truth in result.label_set), 1, result.set_size

    def wide_columns(self, spec):
        return (WideColumn("", pa.string(), f"predicted class: {' | '.join(spec.labels)}"),
                WideColumn("_prob", pa.float32(), "probability of the predicted class"),
                WideColumn("_set", pa.string(), "conformal set of classes at the run's coverage, joined by ';'"))

    def wide_values(self, spec, row):
        chosen = row.get("label_set")
        return row["label"], row["confidence"], None if chosen is None else ";".join(chosen)

    def summary(self, spec):
        return ClassSummary(spec.name, labels=spec.labels)


@dataclass
class ClassSummary(TaskSummary):
    """Proteins per predicted class and the mean probability the model gives each class."""

    labels: tuple[str, ...] = ()
    counts: Counter = field(default_factory=Counter)
    probs: MeanProbs = field(default_factory=MeanProbs)

    def add_answers(self, rows, sequences):
        self.counts.update(value_counts(rows.column("label")))
        self.probs.add(rows.column("label_probs"))

    def headline(self):
        return share(self.counts)

    def answer_charts(self):
        return [label_chart(f"{self.task}: predicted classes", self.labels, self.counts, self.rows, self.probs)]


register_kind(ClassKind())
