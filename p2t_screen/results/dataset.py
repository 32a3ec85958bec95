"""A finished (or partial) screen read back: its run metadata, its tasks, its rows record by record.

Every reader opens results here, so every reader checks them first: each part against the run
record (name, size, sha256, key order), and whether the run finished. A damaged or foreign part
is refused with how to repair it; an unfinished run is refused unless the reader allows partial
results, and then says what is missing.

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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import P2TError, UsageError
from ..io.schema import read_run_metadata
from ..io.writer import (NOT_THIS_PART, RUN_FILE, SUCCESS_FILE, beside, check_parts, existing_parts, part_matches,
                         read_record)
from ..model.store import read_model_config
from ..tasks.spec import TaskSpec

BATCH_ROWS = 4096


@dataclass(frozen=True)
class Results:
    """A p2t output folder (or one part file) opened for reading, its parts checked first."""

    path: Path
    parts: tuple[Path, ...]
    run: dict[str, Any]  # the run metadata (schema metadata of the parts)
    finished: dict[str, Any] | None = None  # the `_SUCCESS` summary, when the run finished
    specs: dict[str, TaskSpec] = field(default_factory=dict)  # the run's tasks, in run order
    unfinished: str | None = None  # what is missing, when the run has not finished (read with allow_partial)

    @classmethod
    def open(cls, path: Path | str, allow_partial: bool = False) -> Results:
        """Open a screen's output, every part checked against the run record first. UsageError
        says what is wrong with `path`: a damaged or foreign part, a missing record, or (unless
        `allow_partial`) a run that has not finished."""
        path = Path(path)
        unfinished = None
        if path.is_dir():
            parts, unfinished = _checked_parts(path)
            if unfinished and not allow_partial:
                raise UnfinishedRun(f"{path} holds an {unfinished}. Rerun the screen that writes it to finish it "
                                    "(it resumes), or pass --allow-partial to read the rows written so far")
        elif path.is_file():
            parts = [_checked_part_file(path)]
        elif beside(path, "old").is_dir():
            raise UsageError(f"no results folder at {path}: a run replacing it (--overwrite) was killed mid-swap "
                             f"and its previous results wait in {beside(path, 'old').name}; rerun that screen (or any "
                             "p2t screen with this output) to put them back or finish the swap")
        else:
            raise UsageError(f"no such results folder: {path}")
        try:
            run = read_run_metadata(pq.read_schema(parts[0]))
        except (ValueError, OSError, pa.ArrowInvalid) as exc:
            raise UsageError(f"{parts[0]} is not a p2t output ({exc})") from None
        finished = _read_json(path / SUCCESS_FILE) if path.is_dir() and not unfinished else None
        return cls(path, tuple(parts), run, finished, task_specs(run), unfinished)

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


class UnfinishedRun(UsageError):
    """Results of a run that has not finished, opened without allow_partial."""


def _repair_hint(record: dict[str, Any]) -> str:
    command = str(record.get("command") or "").strip()
    how = f" (`{command}`)" if command else ""
    return (f"rerun the screen that wrote it{how}: it keeps the parts that check out and recomputes the rest, "
            "or start again with --overwrite")


def _checked_parts(folder: Path) -> tuple[list[Path], str | None]:
    """The parts of an output folder, each checked against the run record (`_p2t_run.json`), and
    what is missing when the run has not finished. A folder of Parquet files with no run record
    and no numbered parts is a Ray run's output: read as it is (Ray writes no record)."""
    record = read_record(folder / RUN_FILE)
    if record is None:
        if existing_parts(folder) or (folder / RUN_FILE).exists():
            raise UsageError(f"{folder}: its run record {RUN_FILE} is missing or unreadable, so its parts cannot "
                             "be checked; rerun the screen with --overwrite to write them again")
        other = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(("_", ".")))
        if not other:
            raise UsageError(f"{folder} holds no p2t results: no Parquet files")
        return other, None
    listed = record.get("parts") or []
    _, problem = check_parts(folder, listed)
    if problem:
        raise UsageError(f"{folder} cannot be read: {problem}. To repair it, {_repair_hint(record)}")
    if not listed:
        raise UnfinishedRun(f"{folder} holds no p2t results yet: the run is still at work, or stopped before "
                            "its first part")
    parts = [folder / entry["file"] for entry in listed]
    return parts, None if (folder / SUCCESS_FILE).is_file() else _missing(record, parts)


def _missing(record: dict[str, Any], parts: list[Path]) -> str:
    """What an unfinished run lacks, in words: how many records have rows, of how many."""
    written = pa.chunked_array([pq.read_table(p, columns=["input_index"]).column(0) for p in parts])
    count = len(pc.unique(written)) if len(written) else 0
    last = record["parts"][-1].get("last", -1)
    total = record.get("records")
    if isinstance(total, int) and count >= total:
        return (f"unfinished run: all {total:,} input records have rows, but the run stopped before marking "
                f"itself finished ({SUCCESS_FILE} is missing)")
    if isinstance(total, int):
        return (f"unfinished run: {count:,} of {total:,} input records have rows; the other {total - count:,} "
                f"(input_index after {last}) are missing")
    return f"unfinished run: {count:,} input records have rows; the records after input_index {last} are missing"


def _checked_part_file(path: Path) -> Path:
    """One part file, checked against its folder's run record when the record lists it."""
    record = read_record(path.parent / RUN_FILE) or {}
    entry = next((e for e in record.get("parts") or [] if isinstance(e, dict) and e.get("file") == path.name), None)
    if entry is not None and not part_matches(path, entry):
        raise UsageError(f"{path} cannot be read: it {NOT_THIS_PART}. To repair it, {_repair_hint(record)}")
    return path


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
