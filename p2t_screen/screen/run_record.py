"""What a run records about itself: decision thresholds, status counts of finished parts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..errors import UsageError
from ..io.writer import existing_parts
from ..tasks.spec import TaskSpec

THRESHOLD_HELP = ("TASK=P: emit a label of multi-label 'flags' task TASK at probability >= P "
                  "(default: the model's; repeatable)")


def parse_thresholds(values: Sequence[str] | None) -> tuple[tuple[str, float], ...]:
    """`--threshold` values "TASK=P" -> ((task, p), ...)."""
    out = []
    for value in values or ():
        name, sep, number = value.partition("=")
        try:
            p = float(number)
        except ValueError:
            p = None
        if not sep or not name.strip() or p is None:
            raise UsageError(f"--threshold: expected TASK=P (e.g. binding=0.3), got {value!r}")
        out.append((name.strip(), p))
    return tuple(out)


def threshold_metadata(tasks: Sequence[TaskSpec]) -> dict[str, Any]:
    """Run-metadata entry: the decision threshold each multi-label "flags" task runs at."""
    found = {t.name: t.decision_threshold for t in tasks if t.encoding == "flags"}
    return {"thresholds": found} if found else {}


def with_thresholds(tasks: list[TaskSpec], thresholds: Iterable[tuple[str, float]]) -> list[TaskSpec]:
    """The selected tasks with user decision thresholds (multi-label "flags" tasks only)."""
    given = {str(name): float(p) for name, p in thresholds}
    selected = {t.name for t in tasks}
    for name in given:
        if name not in selected:
            raise UsageError(f"--threshold {name}=...: {name!r} is not among the selected tasks "
                             f"({', '.join(sorted(selected))})")
    out = []
    for spec in tasks:
        if spec.name in given:
            if spec.encoding != "flags":
                raise UsageError(f"--threshold {spec.name}=...: only multi-label tasks with "
                                 f"encoding 'flags' have a decision threshold ({spec.name}: kind {spec.kind}, "
                                 f"encoding {spec.encoding or 'list'!r})")
            try:
                spec = replace(spec, threshold=given[spec.name])
            except ValueError as exc:
                raise UsageError(f"--threshold {spec.name}={given[spec.name]}: {exc}") from None
        out.append(spec)
    return out


def _previous_counts(out_dir: Path, parts: int) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for part in existing_parts(out_dir)[:parts]:
        table = pq.read_table(part, columns=["task", "status"])
        for task, status in zip(table.column("task").to_pylist(), table.column("status").to_pylist()):
            counts.setdefault(task, Counter())[status] += 1
    return counts
