"""What a window of records asks of the model, and the batches it runs in.

A window's plan holds its distinct model inputs (each with the number of rows it serves, so an
identical sequence is computed once) and, per pair or ligand form, each ok record's companions.
`plan_batches` is the one batch loop every screener runs: inputs of one form at a time, sorted
by length, filled up to the token budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..io.records import Record, Status
from ..tasks.inputs import INPUTS, LIGAND, PAIR, PROTEIN, ModelInput
from .batching import token_budget_batches
from .expansion import Companion, Expansion

StopFn = Callable[[], bool]


class Stopped(Exception):
    """Screening stopped on request (a signal) between two batches."""


@dataclass(frozen=True)
class WindowPlan:
    """A window's distinct inputs (each with the number of rows it serves) and, per pair or ligand
    form, each ok record's companions."""

    copies: Counter[ModelInput]
    companions: dict[str, dict[int, list[Companion]]]


def plan_window(window: list[Record], forms: set[str], expansion: Expansion) -> WindowPlan:
    """The plan of a window for tasks reading the input `forms` (protein, pair, ligand)."""
    ok = [r for r in window if r.status is Status.OK]
    copies: Counter[ModelInput] = Counter()
    if PROTEIN in forms:
        copies.update(ModelInput(r.used_sequence) for r in ok)
    companions = {form: {r.input_index: expansion.companions(r, form) for r in ok}
                  for form in (PAIR, LIGAND) if form in forms}
    for per_record in companions.values():
        for items in per_record.values():
            copies.update(c.input for c in items if c.input)
    return WindowPlan(copies, companions)


def plan_batches(plan: WindowPlan, length: Callable[[ModelInput], int], max_tokens: int,
                 should_stop: StopFn | None = None) -> Iterator[tuple[str, list[ModelInput]]]:
    """(input form, batch) for every distinct input of the plan, one form after another, each
    form's inputs in length-sorted batches within `max_tokens`; `Stopped` when `should_stop` says
    so before a batch."""
    for form in INPUTS:
        keys = [k for k in plan.copies if k.inputs == form]
        for batch in token_budget_batches(keys, length, max_tokens):
            if should_stop and should_stop():
                raise Stopped("stopped on request")
            yield form, batch
