"""Streaming Parquet output that cannot lie about what it holds.

The output folder is a plain Parquet dataset: `part-NNNNN.parquet` files, plus `_p2t_run.json`
(the run's description and the record of every finished part: file, rows, bytes, sha256, first
and last input index) and, once the run finished, `_SUCCESS`. Readers skip names starting with
'_' or '.', so temporary files and markers never pollute the data.

- A part appears atomically (write, fsync, rename) and is then listed in the run record (itself
  rewritten atomically); a part that is not listed, or does not match its entry, is never counted.
- Before resuming, or declaring a finished run "nothing to do", every listed part is checked
  (present, size, sha256, rows, key order); the run resumes from the first part that fails.
- One writer per folder: an OS lock (`flock`, released when its holder dies, even by SIGKILL)
  on a file beside the folder; a second run refuses at once, naming the holder, or waits.
- `--overwrite` is a replacement: the new run is written beside the old one and takes its place
  only once its first part is written, so a failure before that leaves the old results intact.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import OutputError, UsageError

PART_PATTERN = "part-{:05d}.parquet"
ROW_GROUP_ROWS = 16_384  # a reader streaming a part holds one row group, not the whole part
RUN_FILE, SUCCESS_FILE = "_p2t_run.json", "_SUCCESS"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def existing_parts(out_dir: Path) -> list[Path]:
    """Part files in an output folder, in order (listed in the run record or not)."""
    return sorted(out_dir.glob("part-*.parquet")) if out_dir.is_dir() else []


class OutputLock:
    """The one-writer lock of an output folder: `flock` on `.<name>.p2t-lock` beside it, holding
    the holder's pid, host and command. `wait`: block until the holder finishes."""

    def __init__(self, out_dir: Path, wait: bool = False, command: str = "") -> None:
        self.out_dir, self.path = out_dir, out_dir.with_name(f".{out_dir.name}.p2t-lock")
        self.wait, self.command, self.fh = wait, command, None

    def __enter__(self) -> OutputLock:
        try:  # the first write of a run: an unwritable place fails here, before any work
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.path.open("a+")
        except OSError as exc:
            raise OutputError(f"cannot write the output folder {self.out_dir}: {exc.strerror or exc} "
                              f"({self.path.parent})") from None
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise UsageError(f"output folder {self.out_dir} is being written by "
                             f"another p2t run ({holder}); wait for it to finish, or pass --wait") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {socket.gethostname()}: {self.command}".strip(": ") + "\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


@dataclass(frozen=True)
class OutputState:
    """What an output folder already holds for this run, verified."""

    parts: tuple[dict[str, Any], ...] = ()  # record entries of the parts kept (a resume skips their windows)
    complete: bool = False  # `_SUCCESS` is there and every part checks out: nothing left to do
    replace: bool = False  # --overwrite of a non-empty folder: write beside it, swap in after one part

    @property
    def parts_done(self) -> int:
        return len(self.parts)


def inspect_output(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool, force: bool = False) -> OutputState:
    """What the folder holds for this run, changing nothing. A folder written by the same run (same
    fingerprint: input, models, tasks, policies) resumes after its last verified part; another
    p2t run is refused with what differs (or, with `overwrite`, will be replaced); a non-empty
    folder that holds no p2t run is refused unless `force` (then replaced with `overwrite`, else
    written into)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a folder")
    held = [p for p in out_dir.iterdir() if not p.name.startswith(".")] if out_dir.is_dir() else []
    if not held:
        return OutputState()
    record = _read_record(out_dir / RUN_FILE)
    if record is None and not force:
        names = ", ".join(sorted(p.name for p in held)[:3])
        raise UsageError(f"output folder {out_dir} holds {len(held)} file(s) that are no p2t run ({names}); "
                         "choose another folder, or pass --force to use it anyway (with --overwrite: replace it)")
    if overwrite or record is None:
        return OutputState(replace=overwrite)
    previous = record.get("fingerprint", {})
    differs = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
    if differs:
        raise UsageError(f"output folder {out_dir} holds a different run ({', '.join(differs)} "
                         "changed); pass --overwrite to start fresh, or choose another folder")
    parts = _verified(out_dir, record.get("parts", []))
    complete = (out_dir / SUCCESS_FILE).exists() and len(parts) == len(record.get("parts", []))
    return OutputState(parts=tuple(parts), complete=complete)


def _read_record(run_file: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(run_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and "fingerprint" in doc else None


def _verified(out_dir: Path, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listed parts that check out, up to the first that does not (the run resumes there)."""
    kept, last = [], -1
    for i, entry in enumerate(listed):
        path = out_dir / str(entry.get("file", ""))
        if entry.get("file") != PART_PATTERN.format(i) or not path.is_file():
            break
        if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
            break
        if entry.get("rows", 0) and not last < entry.get("first", -1) <= entry.get("last", -1):
            break  # keys must rise from part to part: a copied or reordered part is not this one
        last = entry.get("last", last)
        kept.append(entry)
    return kept


class PartWriter:
    """Writes each record batch as the next numbered part file and lists it in the run record."""

    def __init__(self, out_dir: Path, schema: pa.Schema, run: dict[str, Any], state: OutputState = OutputState()
                 ) -> None:
        self.final, self.schema = out_dir, schema
        self.record = {**run, "parts": list(state.parts)}
        self.out_dir = out_dir.with_name(f".{out_dir.name}.p2t-new") if state.replace else out_dir
        if self.out_dir != out_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)  # a replacement that never finished
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._tidy()
        self._save_record()

    @property
    def parts(self) -> int:
        return len(self.record["parts"])

    def _tidy(self) -> None:
        """Remove what the record does not vouch for: unlisted or damaged parts, temporary files,
        an old `_SUCCESS` (the run is not finished until `finish`)."""
        listed = {p["file"] for p in self.record["parts"]}
        for path in existing_parts(self.out_dir):
            if path.name not in listed:
                path.unlink()
        for path in [*self.out_dir.glob(".*.tmp"), self.out_dir / SUCCESS_FILE]:
            path.unlink(missing_ok=True)

    def _save_record(self) -> None:
        _atomic_write_bytes(self.out_dir / RUN_FILE, (json.dumps(self.record, indent=2) + "\n").encode())

    def write(self, batch: pa.RecordBatch) -> Path:
        """Write one part; it becomes visible only when complete, and counts once listed."""
        name = PART_PATTERN.format(self.parts)
        path = self.out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        pq.write_table(pa.Table.from_batches([batch.replace_schema_metadata(self.schema.metadata)]), tmp,
                       compression="zstd", row_group_size=ROW_GROUP_ROWS)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        index = batch.column("input_index").to_pylist()
        self.record["parts"].append({"file": name, "rows": batch.num_rows, "bytes": path.stat().st_size,
                                     "sha256": _sha256(path), "first": min(index, default=-1),
                                     "last": max(index, default=-1)})
        self._save_record()
        if self.out_dir != self.final:
            self._swap_in()
        return self.final / name

    def _swap_in(self) -> None:
        """The replacement has its first part: it takes the old folder's place."""
        aside = self.final.with_name(f".{self.final.name}.p2t-old")
        shutil.rmtree(aside, ignore_errors=True)
        if self.final.exists():
            os.replace(self.final, aside)
        os.replace(self.out_dir, self.final)
        shutil.rmtree(aside, ignore_errors=True)
        self.out_dir = self.final

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the run complete; an empty run still leaves one (empty) part with the schema."""
        if self.parts == 0:
            self.write(pa.RecordBatch.from_pylist([], schema=self.schema))
        _atomic_write_bytes(self.out_dir / SUCCESS_FILE, (json.dumps(summary, indent=2) + "\n").encode())
