"""Multi-label tasks: the labels present in canonical order, or one present/absent decision per
label ("flags").
"""

from __future__ import annotations

from collections import Counter

from .grammar import MultiLabelGrammar, flags_grammar
from .kind import TaskKind, register_kind, sequence_probability
from .metrics import multilabel_metrics
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


register_kind(MultiLabelKind())
