"""Streaming Parquet output: numbered part files that appear atomically (write, fsync, rename).

The output folder is a plain Parquet dataset: `part-NNNNN.parquet` files, plus `_p2t_run.json`
(run description) and, once the run finished, `_SUCCESS`. Readers skip names starting with
'_' or '.', so temporary files and markers never pollute the data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import UsageError

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


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Create the output folder; refuse to mix with an earlier run unless `overwrite`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a folder")
    leftovers = existing_parts(out_dir) + [out_dir / n for n in (RUN_FILE, SUCCESS_FILE)
                                           if (out_dir / n).exists()]
    if leftovers and not overwrite:
        raise UsageError(f"output folder {out_dir} already holds results; pass --overwrite to "
                         "replace them or choose another folder")
    for path in leftovers:
        path.unlink()
    for tmp in out_dir.glob(".*.tmp") if out_dir.is_dir() else []:
        tmp.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


class PartWriter:
    """Writes each record batch as the next numbered part file."""

    def __init__(self, out_dir: Path, schema: pa.Schema, run: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.schema = schema
        self.parts = 0
        self.rows = 0
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
