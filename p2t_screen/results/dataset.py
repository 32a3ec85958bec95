"""A finished (or partial) screen read back: its run metadata, its tasks, its rows record by record.

Rows are streamed part by part and batch by batch, so reading 100,000 proteins costs memory for
one batch and one record's rows, not for the dataset. Within a p2t output all rows of one input
record are adjacent (a window writes its records whole, rows in input order), which is what
lets `records()` group them on the fly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import P2TError, UsageError
from ..io.schema import read_run_metadata
from ..io.writer import RUN_FILE, SUCCESS_FILE, existing_parts
from ..model.store import read_model_config
from ..tasks.spec import TaskSpec

BATCH_ROWS = 4096


@dataclass(frozen=True)
class Results:
    """A p2t output folder (or one part file) opened for reading."""

    path: Path
    parts: tuple[Path, ...]
    run: dict[str, Any]  # the run metadata (schema metadata of the parts)
    finished: dict[str, Any] | None = None  # the `_SUCCESS` summary, when the run finished
    specs: dict[str, TaskSpec] = field(default_factory=dict)  # the run's tasks, in run order

    @classmethod
    def open(cls, path: Path | str) -> Results:
        """Open a screen's output; UsageError says what is wrong with `path`."""
        path = Path(path)
        if path.is_dir():  # a local run's numbered parts, else any Parquet files (a Ray run's)
            parts = existing_parts(path) or sorted(p for p in path.glob("*.parquet")
                                                   if not p.name.startswith(("_", ".")))
            if not parts:
                hint = " (the run is still at work, or stopped before its first part)" if (path / RUN_FILE).exists() else ""
                raise UsageError(f"{path} holds no p2t results: no Parquet files{hint}")
        elif path.is_file():
            parts = [path]
        else:
            raise UsageError(f"no such results folder: {path}")
        try:
            run = read_run_metadata(pq.read_schema(parts[0]))
        except (ValueError, OSError, pa.ArrowInvalid) as exc:
            raise UsageError(f"{parts[0]} is not a p2t output ({exc})") from None
        finished = _read_json(path / SUCCESS_FILE) if path.is_dir() else None
        return cls(path, tuple(parts), run, finished, task_specs(run))

    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    def batches(self, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The rows, part by part, in batches of at most `batch_rows`."""
        for part in self.parts:
            yield from pq.ParquetFile(part).iter_batches(batch_size=batch_rows, columns=columns)

    def records(self, batch_rows: int = BATCH_ROWS) -> Iterator[list[dict[str, Any]]]:
        """The rows of each input record together (as dicts), in the order written."""
        group: list[dict[str, Any]] = []
        for batch in self.batches(batch_rows=batch_rows):
            for row in batch.to_pylist():
                if group and row["input_index"] != group[0]["input_index"]:
                    yield group
                    group = []
                group.append(row)
        if group:
            yield group


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def task_specs(run: dict[str, Any]) -> dict[str, TaskSpec]:
    """The run's task specs: from its metadata (p2t >= 0.2), else from the models it names, when
    they are still where the run found them."""
    stored = run.get("task_specs")
    if stored:
        specs = {name: TaskSpec.from_dict(d) for name, d in stored.items()}
    else:
        specs = {}
        for entry in run.get("models") or [run.get("model") or {}]:
            try:
                config = read_model_config(entry["path"])
            except (P2TError, KeyError, TypeError) as exc:
                raise UsageError(f"these results do not carry their task specs (written by an older p2t) and "
                                 f"their model {entry.get('path')!r} cannot be read ({exc}); "
                                 "rerun the screen with this p2t") from None
            specs.update({t.name: t for t in config.tasks})
    missing = [t for t in run.get("tasks", []) if t not in specs]
    if missing:
        raise UsageError(f"no task spec for {', '.join(missing)} in these results' metadata or models")
    return {name: specs[name] for name in run.get("tasks", [])}
