"""What screening one (input, task) gives: a typed result, or a failure with a status."""

from __future__ import annotations

from dataclasses import dataclass

from ..io.records import Status
from ..tasks.spec import TaskResult


@dataclass(frozen=True)
class Failure:
    """A (record, task) that produced no prediction."""

    status: Status
    error: str


Outcome = TaskResult | Failure
