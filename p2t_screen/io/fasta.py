"""Streaming FASTA reading (plain or gzip, detected by content) into `Record`s."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from ..errors import InputError
from .records import _ASCII_WS, ReadPolicy, Record, _checked, _describe, _forbidden, _make_record, _policy_note

_GZIP_MAGIC = b"\x1f\x8b"


# A UTF-8 byte-order mark as seen through latin-1 decoding, and as text.
_BOMS = ("\xef\xbb\xbf", "\ufeff")


def _utf8_header(text: str) -> str:
    # File lines are latin-1 decoded (lossless); headers are really UTF-8.
    return text.encode("latin-1").decode("utf-8", errors="replace")


class Digest(Protocol):
    """What `hashlib` objects offer that a reader feeds: the bytes, in order."""

    def update(self, data: bytes, /) -> None: ...


class _Digesting(io.RawIOBase):
    """A file's bytes, as stored, fed to `digest` as they are read (each byte once, in order)."""

    def __init__(self, raw: io.RawIOBase, digest: Digest) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int | None:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open(path: str | os.PathLike, digest: Digest | None) -> io.BufferedReader:
    if digest is None:
        return open(path, "rb")
    return io.BufferedReader(_Digesting(open(path, "rb", buffering=0), digest), 1 << 20)


def _file_lines(path: str | os.PathLike, digest: Digest | None = None) -> Iterator[str]:
    """Lines of a plain or gzip file, latin-1 decoded, with any newline convention; `digest`, when
    given, is fed every byte of the file as stored (gzip: the compressed bytes)."""
    name = os.fspath(path)
    try:
        fh = _open(path, digest)
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    with fh:
        try:
            # Sniff magic bytes rather than trusting the extension; peek keeps pipes working.
            compressed = fh.peek(2)[:2] == _GZIP_MAGIC
            binary = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
            with io.TextIOWrapper(binary, encoding="latin-1", newline=None) as text:
                yield from text  # to the end of the file: gzip reads past its last member's padding
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise InputError(f"{name}: gzip data is truncated or corrupt ({exc})") from exc
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc}") from exc


def _split_records(
    lines: Iterable[str], source: str, decode_header: Callable[[str], str]
) -> Iterator[tuple[str, str]]:
    """(header, raw sequence text) pairs; raises InputError when text precedes the first header."""
    header: str | None = None
    chunks: list[str] = []
    for lineno, line in enumerate(lines, 1):
        if lineno == 1:
            for bom in _BOMS:
                line = line.removeprefix(bom)
        body = line.strip(_ASCII_WS)
        if not body:
            continue
        if body.startswith(">"):
            if header is not None:
                yield header, "".join(chunks)
            header, chunks = decode_header(body[1:]).strip(), []
        elif header is None:
            raise InputError(
                f"{source}: line {lineno}: expected a FASTA header starting with '>' "
                "(this does not look like a FASTA file)"
            )
        else:
            chunks.append(body)
    if header is not None:
        yield header, "".join(chunks)


def _parsed(
    lines: Iterable[str], policy: ReadPolicy, source: str, decode_header: Callable[[str], str]
) -> Iterator[Record]:
    for index, (header, raw) in enumerate(_split_records(lines, source, decode_header)):
        words = header.split(maxsplit=1)
        yield _make_record(index, words[0] if words else "", header, raw, policy)


def read_fasta(path: str | os.PathLike, policy: ReadPolicy) -> Iterator[Record]:
    """Stream records from a FASTA file (plain or gzip), applying the read policy."""
    source = os.fspath(path)
    records = _parsed(_file_lines(path), policy, source, _utf8_header)
    yield from _checked(records, policy, source)


def scan_fasta(path: str | os.PathLike, policy: ReadPolicy, digest: Digest | None = None,
               max_problems: int = 20) -> Iterator[Record]:
    """Every record of a FASTA file in one streaming pass, those the policy forbids included;
    after the last one, one InputError names each forbidden record (the first `max_problems`).
    `digest` (e.g. `hashlib.sha256()`), when given, is fed the file's bytes as stored."""
    if max_problems < 1:
        raise ValueError(f"max_problems must be at least 1, got {max_problems}")
    source = os.fspath(path)
    problems: list[str] = []
    hidden = 0
    for record in _parsed(_file_lines(path, digest), policy, source, _utf8_header):
        if _forbidden(record, policy):
            if len(problems) < max_problems:
                problems.append(_describe(record))
            else:
                hidden += 1
        yield record
    if problems:
        total = len(problems) + hidden
        note = _policy_note(policy)
        lines = [f"{source}: {total} record(s) rejected by the read policy ({note}):"]
        lines += [f"  {problem}" for problem in problems]
        if hidden:
            lines.append(f"  and {hidden} more")
        raise InputError("\n".join(lines))


def check_fasta(path: str | os.PathLike, policy: ReadPolicy, max_problems: int = 20) -> int:
    """Validate a whole FASTA file in one streaming pass and return its record count."""
    return sum(1 for _ in scan_fasta(path, policy, max_problems=max_problems))


def parse_fasta_text(text: str, policy: ReadPolicy) -> list[Record]:
    """Parse FASTA held in a string (handy in tests and notebooks)."""
    source = "<text>"
    lines = io.StringIO(text, newline=None)
    return list(_checked(_parsed(lines, policy, source, str), policy, source))
