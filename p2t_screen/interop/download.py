"""Downloads that a user asked for (`p2t pull`): streamed to a `.part` file beside the target,
resumed with an HTTP Range request after an interruption, checked for size and sha256, and
renamed into place only when complete, so a half-written file never looks finished.

Uses `requests` (a well-kept HTTP client); nothing here runs unless a user runs `p2t pull`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests

from ..errors import P2TError

CHUNK = 1 << 16  # bytes per read: an interrupted transfer keeps all but the last read
TIMEOUT = (15, 120)  # seconds: connect, between bytes


class DownloadError(P2TError):
    """A download that could not be made or whose bytes are not the expected ones."""


class TransferProgress(Protocol):
    """What a download reports; the CLI renders it (a rich bar, or plain log lines)."""

    def start(self, name: str, total: int | None, done: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Fetched:
    """A file in place: where, its size and its sha256."""

    path: Path
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
          progress: TransferProgress | None = None, hint: str = "") -> Fetched:
    """Download `url` to `dest` (resuming a `.part` left by an earlier attempt); `size` and
    `sha256`, when known, must match. `hint` ends every network error message (what to do offline)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT,
                          headers={"Range": f"bytes={have}-"} if have else {}) as response:
            sha256 = sha256 or _linked_sha256(response)
            if not (have and response.status_code == 416):  # 416: the part is already whole
                _write(response, part, have, url, hint, progress, dest.name)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot download {url}: {_reason(exc)}{hint}") from None
    return _verify(part, dest, url, size, sha256)


def _write(response: requests.Response, part: Path, have: int, url: str, hint: str,
           progress: TransferProgress | None, name: str) -> int:
    if response.status_code >= 400:
        raise DownloadError(f"cannot download {url}: HTTP {response.status_code} {response.reason}{hint}")
    if have and response.status_code != 206:  # the server ignored the Range: start over
        have = 0
    length = response.headers.get("Content-Length")
    total = have + int(length) if length and length.isdigit() else None
    if progress:
        progress.start(name, total, have)
    try:
        with part.open("ab" if have else "wb") as fh:
            try:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    have += len(chunk)
                    if progress:
                        progress.advance(len(chunk))
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                pass  # the connection dropped mid-body: keep what arrived, report it below
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if progress:
            progress.finish()
    if total is not None and have < total:
        raise DownloadError(f"cannot download {url}: the transfer stopped at {have} of {total} bytes "
                            f"(run the same command again to resume){hint}")
    return have


def _verify(part: Path, dest: Path, url: str, size: int | None, sha256: str | None) -> Fetched:
    got_size, got_sha = part.stat().st_size, sha256_of(part)
    if (size is not None and got_size != size) or (sha256 is not None and got_sha != sha256):
        part.unlink()
        expected = ", ".join(x for x in (f"{size} bytes" if size is not None else "",
                                         f"sha256 {sha256}" if sha256 else "") if x)
        raise DownloadError(f"{url}: the downloaded file does not match its catalogue entry (got {got_size} "
                            f"bytes, sha256 {got_sha}; expected {expected}); it was deleted, nothing installed")
    os.replace(part, dest)
    return Fetched(dest, got_size, got_sha)


def copy_in(source: Path, dest: Path, *, size: int | None = None, sha256: str | None = None) -> Fetched:
    """Install a file carried in by hand (`p2t pull --from DIR`), with the same checks and the
    same atomic rename as a download."""
    if not source.is_file():
        raise DownloadError(f"{source}: file not found (p2t pull --from looks for the published file names)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with source.open("rb") as src, part.open("wb") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return _verify(part, dest, str(source), size, sha256)


def _linked_sha256(response: requests.Response) -> str | None:
    """The sha256 a Hugging Face server states for an LFS file (`X-Linked-Etag`, on the first
    response of a redirect chain), else None."""
    for r in (*response.history, response):
        tag = (r.headers.get("X-Linked-Etag") or "").removeprefix("W/").strip('"')
        if len(tag) == 64 and all(c in "0123456789abcdef" for c in tag):
            return tag
    return None


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (offline, or the host refused it)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__
