"""Regression tasks: Prot2Token's squashed decimal string, one character per token."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .conformal import conformal_quantile
from .grammar import regression_grammar
from .kind import TaskKind, register_kind, sequence_probability
from .metrics import regression_metrics
from .readout import Histogram, TaskSummary, WideColumn
from .spec import TaskResult, TaskSpec

REGRESSION_LOW, REGRESSION_HIGH = 0.0001, 0.9999  # Prot2Token's squashed label range
REGRESSION_DECIMALS = 4


class RegressionKind(TaskKind):
    """A value in the spec's range, written "0.dddd": y = (x - min) / (max - min) squashed into
    [0.0001, 0.9999] and rounded to four places (Prot2Token's format)."""

    name = "regression"
    output_columns = ("value", "confidence")
    answer_column = "value"
    primary_metric = "spearman"
    report_metrics = ("spearman", "pearson", "rmse")
    classical_family = "composition_ridge"  # see train.classical
    scalar = True
    conformal_method = "split conformal on the absolute error: value +- q"

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.value_range is None or spec.value_range[0] >= spec.value_range[1]:
            raise ValueError(f"regression task {spec.name!r} needs value_range (min < max)")

    def label_tokens(self, spec: TaskSpec, max_residues: int) -> list[str]:
        return [*(str(d) for d in range(10)), "."]

    def min_output_steps(self, spec: TaskSpec, max_residues: int) -> int:
        return REGRESSION_DECIMALS + 2  # 0 . d d d d, then <eos> (never fed back)

    def encode(self, spec: TaskSpec, label: Any, protein: str) -> list[str]:
        lo, hi = spec.value_range
        x = min(max(float(label), lo), hi)  # the format cannot express values outside the range
        y = (x - lo) / (hi - lo) * (REGRESSION_HIGH - REGRESSION_LOW) + REGRESSION_LOW
        return list(str(round(y, REGRESSION_DECIMALS)))

    def grammar(self, spec, vocab, proteins, max_steps, device):
        return regression_grammar(vocab, len(proteins), REGRESSION_DECIMALS, device)

    def read_label(self, spec, text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {text!r}")
        return value

    def parse(self, spec, tokens, probs, first_probs):
        lo, hi = spec.value_range
        y = float("".join(tokens))
        x = (y - REGRESSION_LOW) / (REGRESSION_HIGH - REGRESSION_LOW) * (hi - lo) + lo
        return TaskResult(value=x, confidence=sequence_probability(probs))

    def empty_answer(self, spec, protein):
        return float("nan")

    def score(self, spec, proteins, truth, preds):
        pairs = [(t, p) for t, p in zip(truth, preds) if not math.isnan(p)]  # failed rows (NaN) are reported
        out = regression_metrics([t for t, _ in pairs], [p for _, p in pairs])
        return {**out, "failed": len(truth) - len(pairs)}

    def baseline(self, spec, train, test):
        mean = sum(label for _, label in train) / len(train)
        return (f"train mean {mean:.3f}",
                self.score(spec, [p for p, _ in test], [lab for _, lab in test], [mean] * len(test)))

    def conformal_scores(self, spec, result, truth):
        return abs(result.value - float(truth))

    def fit_conformal(self, spec, scores, level):
        return {"q": conformal_quantile(scores, level)}

    def conformal_answer(self, spec, result, params):
        """value +- q, within the range the model can write; no q (too few calibration proteins
        for this level): the whole range."""
        lo, hi = spec.value_range
        q = params["q"]
        result.value_lo = lo if q is None else max(lo, result.value - q)
        result.value_hi = hi if q is None else min(hi, result.value + q)
        result.set_size = result.value_hi - result.value_lo

    def conformal_check(self, spec, result, truth):
        return float(result.value_lo <= float(truth) <= result.value_hi), 1, result.set_size

    def wide_columns(self, spec):
        lo, hi = spec.value_range
        return (WideColumn("", pa.float64(), f"predicted value (the model's range {lo:g} to {hi:g})"),
                WideColumn("_interval", pa.string(), "conformal interval 'low to high' at the run's coverage"))

    def wide_values(self, spec, row):
        interval = (f"{row['value_lo']:.4g} to {row['value_hi']:.4g}" if row.get("value_lo") is not None
                    else None)
        return row["value"], interval

    def summary(self, spec):
        return ValueSummary(spec.name, values=Histogram(*spec.value_range))


@dataclass
class ValueSummary(TaskSummary):
    """The distribution of predicted values."""

    values: Histogram = field(default_factory=lambda: Histogram(0.0, 1.0))

    def add_answers(self, rows, sequences):
        self.values.add(rows.column("value"))

    def headline(self):
        v = self.values
        if not v.n:
            return "-"
        return f"mean {v.mean:.3g} (sd {v.sd:.2g}; {v.low:.3g} to {v.high:.3g})"

    def answer_charts(self):
        return [self.values.chart(f"{self.task}: predicted values", "value")]


register_kind(RegressionKind())
