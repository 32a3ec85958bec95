"""Streaming Parquet output: numbered part files that appear atomically (write, fsync, rename).

The output folder is a plain Parquet dataset: `part-NNNNN.parquet` files, plus `_p2t_run.json`
(run description) and, once the run finished, `_SUCCESS`. Readers skip names starting with
'_' or '.', so temporary files and markers never pollute the data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UsageError

PART_PATTERN = "part-{:05d}.parquet"


RUN_FILE, SUCCESS_FILE = "_p2t_run.json", "_SUCCESS"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def existing_parts(out_dir: Path) -> list[Path]:
    """Completed part files in an output folder, in order."""
    return sorted(out_dir.glob("part-*.parquet")) if out_dir.is_dir() else []


@dataclass(frozen=True)
class OutputState:
    """What an output folder already holds for this run."""

    parts_done: int = 0  # completed parts to keep (a resumed run skips their windows)
    complete: bool = False  # `_SUCCESS` is there: nothing left to do


def _clear(out_dir: Path) -> None:
    for path in existing_parts(out_dir) + [out_dir / n for n in (RUN_FILE, SUCCESS_FILE)]:
        path.unlink(missing_ok=True)


def prepare_output(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> OutputState:
    """Create, resume or (with `overwrite`) restart an output folder; never mix two runs.

    A folder written by the same run (same fingerprint: input, model, tasks, policies, windows)
    resumes after its last complete part; anything else is refused with what differs.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a folder")
    for tmp in out_dir.glob(".*.tmp") if out_dir.is_dir() else []:
        tmp.unlink()  # a part interrupted while being written
    parts = existing_parts(out_dir)
    run_file = out_dir / RUN_FILE
    if overwrite or (not parts and not run_file.exists()):
        if out_dir.is_dir():
            _clear(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return OutputState()
    previous = _read_fingerprint(run_file)
    if previous is None:
        raise UsageError(f"output folder {out_dir} holds results of unknown origin; pass "
                         "--overwrite to replace them or choose another folder")
    differs = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
    if differs:
        raise UsageError(f"output folder {out_dir} holds a different run ({', '.join(differs)} "
                         "changed); pass --overwrite to start fresh, or choose another folder")
    expected = [out_dir / PART_PATTERN.format(i) for i in range(len(parts))]
    if parts != expected:
        raise UsageError(f"output folder {out_dir}: part files are not numbered 0..{len(parts) - 1}; "
                         "pass --overwrite to start fresh")
    return OutputState(parts_done=len(parts), complete=(out_dir / SUCCESS_FILE).exists())


def _read_fingerprint(run_file: Path) -> dict[str, Any] | None:
    try:
        return json.loads(run_file.read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


class PartWriter:
    """Writes each record batch as the next numbered part file."""

    def __init__(self, out_dir: Path, schema: pa.Schema, run: dict[str, Any], first_part: int = 0) -> None:
        self.out_dir = out_dir
        self.schema = schema
        self.parts = first_part
        self.rows = 0
        if first_part == 0:  # a resumed run keeps the original description
            _atomic_write_bytes(out_dir / RUN_FILE, (json.dumps(run, indent=2) + "\n").encode())

    def write(self, batch: pa.RecordBatch) -> Path:
        """Write one part; it becomes visible only when complete."""
        path = self.out_dir / PART_PATTERN.format(self.parts)
        tmp = path.with_name(f".{path.name}.tmp")
        table = pa.Table.from_batches([batch.replace_schema_metadata(self.schema.metadata)])
        pq.write_table(table, tmp, compression="zstd")
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.parts += 1
        self.rows += batch.num_rows
        return path

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the run complete; an empty run still leaves one (empty) part with the schema."""
        if self.parts == 0:
            self.write(pa.RecordBatch.from_pylist([], schema=self.schema))
        _atomic_write_bytes(self.out_dir / SUCCESS_FILE,
                            (json.dumps(summary, indent=2) + "\n").encode())
