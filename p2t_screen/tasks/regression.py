"""Regression tasks: Prot2Token's squashed decimal string, one character per token."""

from __future__ import annotations

import math
from typing import Any

from .grammar import (
    regression_grammar,
)
from .kind import TaskKind, _sequence_probability, register_kind
from .spec import TaskResult, TaskSpec

REGRESSION_LOW, REGRESSION_HIGH = 0.0001, 0.9999  # Prot2Token's squashed label range


REGRESSION_DECIMALS = 4


class RegressionKind(TaskKind):
    name = "regression"
    output_columns = ("value", "confidence")

    def validate(self, spec: TaskSpec) -> None:
        if spec.value_range is None or spec.value_range[0] >= spec.value_range[1]:
            raise ValueError(f"regression task {spec.name!r} needs value_range (min < max)")

    def label_tokens(self, spec: TaskSpec, max_residues: int) -> list[str]:
        return [*(str(d) for d in range(10)), "."]

    def encode(self, spec: TaskSpec, label: Any, sequence: str) -> list[str]:
        lo, hi = spec.value_range
        x = min(max(float(label), lo), hi)  # the format cannot express values outside the range
        y = (x - lo) / (hi - lo) * (REGRESSION_HIGH - REGRESSION_LOW) + REGRESSION_LOW
        return list(str(round(y, REGRESSION_DECIMALS)))

    def grammar(self, spec, vocab, sequences, max_steps, device):
        return regression_grammar(vocab, len(sequences), REGRESSION_DECIMALS, device)

    def read_label(self, spec, text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {text!r}")
        return value

    def truth_of(self, result):
        return result.value

    def parse(self, spec, tokens, probs, first_probs):
        lo, hi = spec.value_range
        y = float("".join(tokens))
        x = (y - REGRESSION_LOW) / (REGRESSION_HIGH - REGRESSION_LOW) * (hi - lo) + lo
        return TaskResult(value=x, confidence=_sequence_probability(probs))


register_kind(RegressionKind())
