"""What a run records about itself, locally or on Ray: the facts in its metadata, the
fingerprint that decides whether a folder can be resumed, the decision thresholds it ran at,
and the rows per task and status."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ..version import __version__
from ..errors import UsageError
from ..io.records import ReadPolicy
from ..model.config import ModelConfig
from ..model.runtime import dtype_name
from ..tasks.spec import TaskSpec



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
    found = {t.name: t.decision_threshold for t in tasks if t.has_threshold}
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
            if not spec.has_threshold:
                raise UsageError(f"--threshold {spec.name}=...: only multi-label tasks with "
                                 f"encoding 'flags' have a decision threshold ({spec.name}: kind {spec.kind}, "
                                 f"encoding {spec.encoding or 'list'!r})")
            try:
                spec = replace(spec, threshold=given[spec.name])
            except ValueError as exc:
                raise UsageError(f"--threshold {spec.name}={given[spec.name]}: {exc}") from None
        out.append(spec)
    return out


class StatusCounts:
    """Rows per task and status, counted from Arrow tables or batches (two columns only)."""

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        self.by_task: dict[str, Counter] = {t: Counter() for t in tasks}

    def add(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Count the (task, status) pairs of `rows`."""
        if rows.num_rows == 0:
            return
        keys = pc.binary_join_element_wise(rows.column("task"), rows.column("status"), "\0")
        for item in pc.value_counts(keys).to_pylist():
            task, status = item["values"].split("\0")
            self.by_task.setdefault(task, Counter())[status] += item["counts"]

    def add_parts(self, parts: Iterable[Path]) -> None:
        """Count the rows of finished part files."""
        for part in parts:
            self.add(pq.read_table(part, columns=["task", "status"]))

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {task: dict(c) for task, c in self.by_task.items()}

    @property
    def rows(self) -> int:
        return sum(sum(c.values()) for c in self.by_task.values())


def run_metadata(config: ModelConfig, model_path: Path | str, checksum: str, tasks: Sequence[TaskSpec],
                 device: str, dtype: torch.dtype, policy: ReadPolicy, max_tokens: int) -> dict[str, Any]:
    """The facts every run records in its output's schema metadata (local and Ray alike)."""
    return {
        "p2t_version": __version__,
        "model": {"name": config.name, "path": str(model_path), "sha256": checksum},
        "encoder": {"source": config.encoder.source, "layers": config.encoder.num_layers,
                    "width": config.encoder.embed_dim, "max_residues": config.encoder.max_residues},
        "tasks": [t.name for t in tasks], "task_specs": {t.name: t.to_dict() for t in tasks},
        "device": device, "dtype": dtype_name(dtype),
        "policy": {"on_invalid": policy.on_invalid.value, "on_long": policy.on_long.value},
        "max_tokens": max_tokens,
        **threshold_metadata(tasks),
    }
