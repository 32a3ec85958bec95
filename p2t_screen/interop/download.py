"""Downloads that a user asked for (`p2t pull`): streamed to a `.part` file beside the target,
resumed with an HTTP Range request after an interruption, and renamed into place only when the
whole file is there and checked, so a half-written or foreign file never looks finished.

Nothing a server says is taken on trust: a body must reach the length it states (Content-Length,
or the total of a Content-Range), a resume must start where it was asked to, the first bytes must
not be an HTML page, the file must be the kind its name says (`file_checks`), and its size and
sha256 must match where they are known. A cut transfer keeps its `.part` (a resume continues it);
bytes that cannot continue it are deleted. Two pulls of one file take turns on an OS lock.

Uses `requests` (a well-kept HTTP client); nothing here runs unless a user runs `p2t pull`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import socket
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Protocol

import requests

from ..errors import P2TError, P2TWarning
from .file_checks import ContentError, EsmCheckpoint, check_content, check_head

CHUNK = 1 << 16  # bytes per read: an interrupted transfer keeps all but the last read
TIMEOUT = (15, 120)  # seconds: connect, between bytes
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(P2TError):
    """A download that could not be made or whose bytes are not the expected ones."""


class TransferProgress(Protocol):
    """What a download reports; the CLI renders it (a rich bar, or plain log lines)."""

    def start(self, name: str, total: int | None, done: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Fetched:
    """A file in place: where, its size, its sha256 and where it came from (a URL or a path)."""

    path: Path
    size: int
    sha256: str
    source: str


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextmanager
def locked(dest: Path) -> Iterator[None]:
    """Hold an OS lock (`flock` on `<dest>.lock`) while `dest` is fetched and installed, so that
    two pulls of one file take turns instead of writing into one `.part`; the second waits,
    saying once who holds it. The lock file stays: removing it would let a third pull lock a new
    file while the second still waits on the old one."""
    lock = dest.with_name(dest.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DownloadError(f"cannot create the lock file {lock}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            warnings.warn(f"{dest.name} is being pulled by {holder} (lock {lock}): waiting for it to finish",
                          P2TWarning, stacklevel=3)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _sign(fd)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _sign(fd: int) -> None:
    """Write who holds the lock into the lock file, for the message of a pull that waits."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # a full disk: the holder's name only informs a waiting pull, the lock itself holds


def fetch(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
          expect: EsmCheckpoint | None = None, progress: TransferProgress | None = None,
          hint: str = "") -> Fetched:
    """Download `url` to `dest` (resuming a `.part` left by an earlier attempt), checking every
    response against the length and range it states and the file against its kind, `expect`
    and, when known, `size` and `sha256`. Callers hold `locked(dest)`. `hint` ends every network
    error message (what to do offline)."""
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        # identity: a compressed body would not match the lengths and ranges the server states
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as response:
            sha256 = sha256 or _linked_sha256(response)
            _receive(response, part, have, url, hint, progress, dest.name)
        return _verify(part, dest, url, size, sha256, expect)
    except requests.RequestException as exc:  # before the body (after it began, _receive reports)
        raise DownloadError(f"cannot download {url}: {_reason(exc)}{hint}") from None
    except OSError as exc:
        raise _write_error(exc, part, resumable=True) from None


def _receive(response: requests.Response, part: Path, have: int, url: str, hint: str,
             progress: TransferProgress | None, name: str) -> None:
    """Write the body of `response` into `part`, which already holds `have` bytes."""
    status = response.status_code
    if have and status == 416:  # asked for bytes past the end: the part may already be whole
        _check_whole(response, part, have, url)
        return
    if status >= 400:
        raise DownloadError(f"cannot download {url}: HTTP {status} {response.reason}{hint}")
    start, total = _span(response, part, have, url)
    chunks = response.iter_content(CHUNK)
    first = next(chunks, b"")
    if start == 0:  # the start of the file: refuse a portal's page before it overwrites anything
        try:
            check_head(first, name)
        except ContentError as exc:
            kept = f"; the {have} bytes kept from before are untouched" if have else ""
            raise DownloadError(f"{url}: got {_sentence(exc)} Nothing was written{kept}.") from None
    if progress:
        progress.start(name, total, start)
    try:
        got, dropped = _save(chain([first], chunks), part, start, progress)
    finally:
        if progress:
            progress.finish()
    if total is not None and got > total:
        part.unlink()
        raise DownloadError(f"{url}: the server sent {got - start} bytes from byte {start} of a file it "
                            f"says is {total} bytes; the partial file was deleted, nothing installed")
    if dropped or (total is not None and got < total):
        of = f" of {total}" if total is not None else ""
        raise DownloadError(f"cannot download {url}: {dropped or 'the body ended early'}; the transfer "
                            f"stopped at {got}{of} bytes (run the same command again to resume){hint}")


def _span(response: requests.Response, part: Path, have: int, url: str) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's length, as the response states them. A
    206 must start at the byte asked for; otherwise its bytes cannot continue the part."""
    if response.status_code != 206:  # a whole file (a server may ignore a Range): start over
        length = response.headers.get("Content-Length", "")
        return 0, int(length) if length.isdigit() else None
    stated = response.headers.get("Content-Range")
    match = _RANGE.fullmatch((stated or "").strip())
    if match is None or int(match[1]) != have:
        part.unlink(missing_ok=True)
        said = f"Content-Range {stated!r}" if stated else "no Content-Range"
        raise DownloadError(f"{url}: asked for the file from byte {have}, the server answered 206 with "
                            f"{said}; those bytes cannot continue the partial file, which was deleted "
                            "(run the same command again to download it from the start)")
    return have, int(match[3]) if match[3] != "*" else int(match[2]) + 1


def _check_whole(response: requests.Response, part: Path, have: int, url: str) -> None:
    """A 416 to a resume means the part is whole, if the length the server states agrees."""
    match = re.fullmatch(r"bytes \*/(\d+)", (response.headers.get("Content-Range") or "").strip())
    if match and int(match[1]) != have:
        part.unlink()
        raise DownloadError(f"{url}: the partial file holds {have} bytes but the server says the file is "
                            f"{match[1]}; it was deleted (run the same command again to download it from the start)")


def _save(chunks: Iterable[bytes], part: Path, start: int,
          progress: TransferProgress | None) -> tuple[int, str | None]:
    """Write `chunks` into `part` from byte `start` (synced to disk); returns the bytes the part
    holds and, if the connection failed mid-body, how."""
    dropped = None
    with part.open("ab" if start else "wb") as fh:
        try:
            for chunk in chunks:
                fh.write(chunk)
                if progress:
                    progress.advance(len(chunk))
        except requests.exceptions.ChunkedEncodingError:  # keep what arrived: a resume continues it
            dropped = "the connection dropped before the end of the body"
        except requests.RequestException as exc:  # requests reports a stalled read as ConnectionError
            dropped = f"the connection failed mid-body ({type(exc).__name__})"
        fh.flush()
        os.fsync(fh.fileno())
    return part.stat().st_size, dropped


def _verify(part: Path, dest: Path, origin: str, size: int | None, sha256: str | None,
            expect: EsmCheckpoint | None) -> Fetched:
    """Check the whole `part` (kind, `expect`, size, sha256) and rename it to `dest`; a part that
    fails is deleted, since a resume would only add to the wrong bytes."""
    try:
        check_content(part, dest.name, expect)
    except ContentError as exc:
        part.unlink()
        raise DownloadError(f"{origin}: got {_sentence(exc)} It was deleted, nothing installed.") from None
    got_size, got_sha = part.stat().st_size, sha256_of(part)
    if (size is not None and got_size != size) or (sha256 is not None and got_sha != sha256):
        part.unlink()
        expected = ", ".join(x for x in (f"{size} bytes" if size is not None else "",
                                         f"sha256 {sha256}" if sha256 else "") if x)
        raise DownloadError(f"{origin}: the downloaded file does not match its catalogue entry (got {got_size} "
                            f"bytes, sha256 {got_sha}; expected {expected}); it was deleted, nothing installed")
    os.replace(part, dest)
    return Fetched(dest, got_size, got_sha, origin)


def _sentence(exc: ContentError) -> str:
    """What a content check found, ended as a sentence (the HTML page's ends in a question)."""
    text = str(exc)
    return text if text.endswith(("?", ".")) else text + "."


def copy_in(source: Path, dest: Path, *, size: int | None = None, sha256: str | None = None,
            expect: EsmCheckpoint | None = None) -> Fetched:
    """Install a file carried in by hand (`p2t pull --from DIR`), with the same checks and the
    same atomic rename as a download. Callers hold `locked(dest)`."""
    if not source.is_file():
        raise DownloadError(f"{source}: file not found (p2t pull --from looks for the published file names)")
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, part.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        return _verify(part, dest, str(source), size, sha256, expect)
    except OSError as exc:
        raise _write_error(exc, part, resumable=False) from None


def _write_error(exc: OSError, part: Path, resumable: bool) -> DownloadError:
    """One line for a write that failed: a full disk keeps a part a resume can continue."""
    kept = part.stat().st_size if part.exists() else 0
    if not resumable:  # a copy starts over every time: its partial file is of no use
        part.unlink(missing_ok=True)
    if exc.errno == errno.ENOSPC:
        then = (f"{kept} bytes kept; free space and run the same command again to resume" if resumable
                else "the partial copy was deleted; free space and run the same command again")
        return DownloadError(f"no space left on device while writing {part}: {then}")
    return DownloadError(f"cannot write {exc.filename or part}: {exc.strerror or exc}")


def _linked_sha256(response: requests.Response) -> str | None:
    """The sha256 a Hugging Face server states for an LFS file (`X-Linked-Etag`, on the first
    response of a redirect chain), else None."""
    for r in (*response.history, response):
        tag = (r.headers.get("X-Linked-Etag") or "").removeprefix("W/").strip('"')
        if len(tag) == 64 and all(c in "0123456789abcdef" for c in tag):
            return tag
    return None


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # before any byte was written
        return "the connection dropped before the body arrived (run the same command again)"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (offline, or the host refused it)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__
