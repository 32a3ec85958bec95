"""Streaming Parquet output that cannot lie about what it holds.

The output folder is a plain Parquet dataset: `part-NNNNN.parquet` files, plus `_p2t_run.json`
(the run's description and the record of every finished part: file, rows, bytes, sha256, first
and last input index) and, once the run finished, `_SUCCESS`. Readers skip names starting with
'_' or '.', so temporary files and markers never pollute the data.

- A part appears atomically (write, fsync, rename) and is then listed in the run record (itself
  rewritten atomically); a part that is not listed, or does not match its entry, is never counted.
- Before resuming, or declaring a finished run "nothing to do", every listed part is checked
  (present, size, sha256, rows, key order); the run resumes from the first part that fails.
- The output path is resolved once, before anything else (`output_folder`): a symbolic link is
  followed and the run works on the folder it points to, so the link stays a link.
- One writer per folder: an OS lock (`flock`, released when its holder dies, even by SIGKILL)
  on `.<name>.p2t-lock` beside the folder; a second run refuses at once, naming the holder, or
  waits. The holder removes the lock file before it lets go, so none is left after a run.
- `--overwrite` is a replacement: the new run is written in `.<name>.p2t-new` beside the old
  folder and takes its place only once its first part is written, so a failure before that
  leaves the old results intact. The swap is one `renameat2(RENAME_EXCHANGE)` where Linux and
  the file system allow it (the output path never goes missing, not even for readers), else two
  renames: the old folder to `.<name>.p2t-old`, then the new one in.

Recovery rule. A run killed in the middle of a swap leaves a state that the names alone decide;
every run settles it as soon as it holds the lock (before reading the folder), and again when
it lets go. Whatever stands at the output path is the truth (the swap commits when the new
folder arrives there). So: (1) no folder at the output path but a `.p2t-old`: the run died
between the two renames, and `.p2t-old` goes back to the output path; (2) what is left beside
it is then stale and deleted: `.p2t-new` holds an unfinished replacement (or, after an exchange,
the old results it replaced), and `.p2t-old` old results that a finished swap replaced. A crash at any instant therefore leaves the old
results or the finished swap at the output path, never neither, and no hidden folder outlives
the next run.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
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
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


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


def beside(out_dir: Path, role: str) -> Path:
    """The hidden path `.<name>.p2t-<role>` beside an output folder (role: lock, new, old)."""
    return out_dir.with_name(f".{out_dir.name}.p2t-{role}")


def output_folder(path: Path) -> Path:
    """The real folder that output path `path` names, its symbolic links resolved once; the
    UsageError or OutputError says what keeps it from being one (a dangling or looping link, a
    file at the path or above it)."""
    above = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if above is not None:
        _check_link(above, path)
        if not above.is_dir():
            if above == path:
                raise UsageError(f"output path {path} is {_what(path)}, not a folder: choose another output path, "
                                 "or remove it")
            raise OutputError(f"cannot write the output folder {path}: {above} is {_what(above)}, not a folder")
    real = Path(os.path.realpath(path))
    if not real.name:
        raise UsageError(f"output path {path} is the root of the file system: choose a folder in it")
    return real


def _check_link(link: Path, path: Path) -> None:
    """Refuse a symbolic link (at `path` or above it) that leads nowhere, naming where it leads."""
    if not link.is_symlink():
        return
    try:
        os.stat(link)
    except OSError as exc:
        where = f"output path {path}" if link == path else f"output path {path} lies under {link}, which"
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{where} is a symbolic link that leads back to itself (a loop): point it at a "
                             "folder, or remove the link") from None
        raise UsageError(f"{where} is a symbolic link to {os.path.realpath(link)}, which does not exist: "
                         "create the folder it points to, or remove the link") from None


def _what(path: Path) -> str:
    """'a file', or 'a symbolic link to X, which is a file', for messages about a non-folder."""
    kind = "a file" if path.is_file() else "something else (a pipe, socket or device)"
    return f"a symbolic link to {os.path.realpath(path)}, which is {kind}" if path.is_symlink() else kind


def _cannot_write(out_dir: Path, exc: OSError) -> OutputError:
    """The error of a failed first write beside an output folder, naming the real cause."""
    at = Path(exc.filename).parent if exc.filename else out_dir.parent  # the folder it failed to write in
    denied = f"no permission to create files in {at}"
    causes = {errno.EACCES: denied, errno.EPERM: denied, errno.EROFS: f"{at} is on a read-only file system",
              errno.ENOSPC: f"no space left on the device of {at}", errno.ENOTDIR: f"{at} is not a folder"}
    cause = causes.get(exc.errno, f"{exc.strerror or exc} ({exc.filename or at})")
    return OutputError(f"cannot write the output folder {out_dir}: {cause}")


class OutputLock:
    """The one-writer lock of an output folder: `flock` on `.<name>.p2t-lock` beside it, holding
    the holder's pid, host and command. `wait`: block until the holder finishes. Once held, it
    settles a replacement that a killed run left half done (`settle_replacement`)."""

    def __init__(self, out_dir: Path, wait: bool = False, command: str = "") -> None:
        self.out_dir, self.path = out_dir, beside(out_dir, "lock")
        self.wait, self.command, self.fh = wait, command, None

    def __enter__(self) -> OutputLock:
        self.fh = self._acquire()
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {socket.gethostname()}: {self.command}".strip(": ") + "\n")
        self.fh.flush()
        try:
            settle_replacement(self.out_dir)
        except BaseException:
            self._release()
            raise
        return self

    def _acquire(self) -> Any:
        """Open and lock the lock file; again if its holder removed it meanwhile (the lock we got
        is then on a file no other run can find)."""
        while True:
            try:  # the first write of a run: an unwritable place fails here, before any work
                self.out_dir.parent.mkdir(parents=True, exist_ok=True)
                fh = self.path.open("a+")
            except OSError as exc:
                raise _cannot_write(self.out_dir, exc) from None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise UsageError(f"output folder {self.out_dir} is being written by "
                                 f"another p2t run ({holder}); wait for it to finish, or pass --wait") from None
            if _names(self.path, fh):
                return fh
            fh.close()

    def __exit__(self, *exc: Any) -> None:
        if self.fh is None:
            return
        try:  # an --overwrite that stopped before its first part leaves nothing beside the folder
            settle_replacement(self.out_dir)
        except OutputError:
            if exc[0] is None:  # a failing run's own error says more; the next run settles again
                raise
        finally:
            self._release()

    def _release(self) -> None:
        try:  # unlinked before unlocking: a run waiting on this file then finds the name gone and retries
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def _names(path: Path, fh: Any) -> bool:
    """Whether `path` still names the open file `fh`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fh.fileno())
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def settle_replacement(out_dir: Path) -> None:
    """Finish or undo an --overwrite that a killed run left half done (the recovery rule of the
    module docstring). Only the holder of the folder's lock may call it."""
    old, new = beside(out_dir, "old"), beside(out_dir, "new")
    if old.is_dir() and not os.path.lexists(out_dir):  # killed between the two renames of a swap
        try:
            os.replace(old, out_dir)
        except OSError as exc:
            raise OutputError(f"cannot put the previous results {old} back at {out_dir} (a run replacing them "
                              f"was killed): {exc.strerror or exc}") from None
    for leftover in (new, old):
        if os.path.lexists(leftover):
            try:
                shutil.rmtree(leftover)
            except OSError as exc:
                raise OutputError(f"cannot remove {leftover}, left by an --overwrite that did not finish: "
                                  f"{exc.strerror or exc} ({exc.filename})") from None


@functools.cache
def _renameat2() -> Any:
    """libc's `renameat2`, or None where the C library has none (not Linux, or glibc < 2.28)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders at `a` and `b` in one atomic step; False, changing nothing, where the
    system or the file system cannot (the caller then renames twice)."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


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
    record = read_record(out_dir / RUN_FILE)
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
    parts, _ = check_parts(out_dir, record.get("parts", []))
    complete = (out_dir / SUCCESS_FILE).exists() and len(parts) == len(record.get("parts", []))
    return OutputState(parts=tuple(parts), complete=complete)


def read_record(run_file: Path) -> dict[str, Any] | None:
    """The run record in `run_file` (`_p2t_run.json`), or None where it is missing or not one."""
    try:
        doc = json.loads(run_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and "fingerprint" in doc else None


NOT_THIS_PART = ("is not the part this run wrote (its size or sha256 differs from the run record: damaged, "
                 "or replaced by another run's part)")


def part_matches(path: Path, entry: dict[str, Any]) -> bool:
    """Whether the part file at `path` has the size and sha256 its run-record entry lists."""
    return path.stat().st_size == entry.get("bytes") and _sha256(path) == entry.get("sha256")


def check_parts(out_dir: Path, listed: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The listed parts that check out, up to the first that does not (a resume starts there),
    and what is wrong with that one (None when every listed part checks out)."""
    kept, last = [], -1
    for i, entry in enumerate(listed):
        name = str(entry.get("file", "")) if isinstance(entry, dict) else ""
        path = out_dir / name
        if name != PART_PATTERN.format(i):
            return kept, f"the run record lists {name or 'an entry'!r} where {PART_PATTERN.format(i)} belongs"
        if not path.is_file():
            return kept, f"{name} is missing"
        if not part_matches(path, entry):
            return kept, f"{name} {NOT_THIS_PART}"
        if entry.get("rows", 0) and not last < entry.get("first", -1) <= entry.get("last", -1):
            # keys must rise from part to part: a copied or reordered part is not this one
            return kept, f"{name} holds input records out of order (a copied or reordered part)"
        last = entry.get("last", last)
        kept.append(entry)
    return kept, None


class PartWriter:
    """Writes each record batch as the next numbered part file and lists it in the run record."""

    def __init__(self, out_dir: Path, schema: pa.Schema, run: dict[str, Any], state: OutputState = OutputState()
                 ) -> None:
        self.final, self.schema = out_dir, schema
        self.record = {**run, "parts": list(state.parts)}
        self.out_dir = beside(out_dir, "new") if state.replace else out_dir
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
        """The replacement has its first part: it takes the old folder's place. The caller holds
        the folder's lock; a crash at any step is settled by the next run (module docstring)."""
        new, final = self.out_dir, self.final
        if not (os.path.lexists(final) and _exchange(new, final)):
            if os.path.lexists(final):
                # Until the next rename no folder stands at `final`: a run killed here finds the
                # old one at `.p2t-old` and puts it back.
                os.replace(final, beside(final, "old"))
            os.replace(new, final)
        self.out_dir = final
        # The old results now stand at `.p2t-new` (after an exchange) or `.p2t-old` (after two renames).
        # Best effort: what is left is removed again, or named, when the lock is let go.
        for leftover in (new, beside(final, "old")):
            shutil.rmtree(leftover, ignore_errors=True)

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the run complete; an empty run still leaves one (empty) part with the schema."""
        if self.parts == 0:
            self.write(pa.RecordBatch.from_pylist([], schema=self.schema))
        _atomic_write_bytes(self.out_dir / SUCCESS_FILE, (json.dumps(summary, indent=2) + "\n").encode())
