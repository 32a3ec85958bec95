"""Records: normalised, validated input sequences, with the policies for invalid and over-long ones."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from ..errors import InputError

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids
ENCODER_ALPHABET: frozenset[str] = frozenset(AMINO_ACIDS + "XBUZO")


class Status(str, Enum):
    """Per-row status values shared by reading, encoding and output."""

    OK = "ok"
    INVALID = "invalid"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    OOM = "oom"
    ERROR = "error"


class OnInvalid(str, Enum):
    """What to do with a record containing characters outside the encoder alphabet."""

    ERROR = "error"
    SKIP = "skip"
    X = "x"


class OnLong(str, Enum):
    """What to do with a record longer than the encoder limit."""

    TRUNCATE = "truncate"
    SKIP = "skip"
    ERROR = "error"


@dataclass(frozen=True)
class ReadPolicy:
    """How invalid and over-long records are treated."""

    on_invalid: OnInvalid = OnInvalid.ERROR
    on_long: OnLong = OnLong.TRUNCATE
    max_residues: int = 1022

    def __post_init__(self) -> None:
        # Accept plain strings (e.g. straight from CLI options); unknown values raise ValueError.
        object.__setattr__(self, "on_invalid", OnInvalid(self.on_invalid))
        object.__setattr__(self, "on_long", OnLong(self.on_long))
        limit = self.max_residues
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"max_residues must be a positive integer, got {limit!r}")


@dataclass(frozen=True, slots=True)
class Record:
    """One input sequence after normalisation and validation."""

    input_index: int
    seq_id: str
    header: str
    sequence: str
    status: Status
    error: str | None
    residues_used: int
    truncated: bool
    # SHA-256 hex digest of the full normalised sequence, computed once where the record is made
    # (the read-ahead thread of a screen), not again for each of its rows.
    seq_hash: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seq_hash", hashlib.sha256(self.sequence.encode("utf-8")).hexdigest())

    @property
    def used_sequence(self) -> str:
        """The residues actually given to the encoder (after truncation)."""
        return self.sequence[: self.residues_used]


# Only ASCII whitespace counts: bytes such as 0xA0 or 0x85 in a sequence are garbage, not spacing.
_ASCII_WS = " \t\n\r\v\f"


# ASCII-only upper-casing: str.upper() would turn e.g. 'ß' into 'SS' and hide a bad byte.
_NORMALISE = str.maketrans(string.ascii_lowercase, string.ascii_uppercase, _ASCII_WS)


_TO_X = str.maketrans({c: "X" for c in string.ascii_uppercase if c not in ENCODER_ALPHABET})


_INVALID_RE = re.compile(f"[^{''.join(sorted(ENCODER_ALPHABET))}]")


def _make_record(index: int, seq_id: str, header: str, raw: str, policy: ReadPolicy) -> Record:
    """Normalise and validate one sequence; policy violations become non-OK statuses here."""

    def rejected(sequence: str, status: Status, error: str) -> Record:
        return Record(index, seq_id, header, sequence, status, error, 0, False)

    seq = raw.translate(_NORMALISE).removesuffix("*")
    if not seq:
        return rejected("", Status.EMPTY, "empty sequence")
    candidate = seq.translate(_TO_X) if policy.on_invalid is OnInvalid.X else seq
    bad = _INVALID_RE.search(candidate)
    if bad is not None:
        reason = f"invalid character {bad.group()!r} at position {bad.start() + 1}"
        return rejected(seq, Status.INVALID, reason)
    seq, limit = candidate, policy.max_residues
    if len(seq) <= limit:
        return Record(index, seq_id, header, seq, Status.OK, None, len(seq), False)
    if policy.on_long is OnLong.TRUNCATE:
        return Record(index, seq_id, header, seq, Status.OK, None, limit, True)
    reason = f"sequence of {len(seq)} residues exceeds the encoder limit of {limit}"
    return rejected(seq, Status.TOO_LONG, reason)


def _forbidden(record: Record, policy: ReadPolicy) -> bool:
    """Whether the policy says this record must stop the run."""
    if record.status is Status.INVALID:
        return policy.on_invalid is OnInvalid.ERROR
    return record.status is Status.TOO_LONG and policy.on_long is OnLong.ERROR


def _describe(record: Record) -> str:
    label = f"id {record.seq_id!r}" if record.seq_id else "no id"
    return f"record {record.input_index + 1} ({label}): {record.error}"


def _policy_note(policy: ReadPolicy) -> str:
    return f"on_invalid={policy.on_invalid.value}, on_long={policy.on_long.value}"


def _checked(records: Iterable[Record], policy: ReadPolicy, source: str) -> Iterator[Record]:
    """Pass records through, raising InputError at the first one the policy forbids."""
    for record in records:
        if _forbidden(record, policy):
            raise InputError(f"{source}: {_describe(record)} [{_policy_note(policy)}]")
        yield record


def records_from_sequences(
    items: Iterable[tuple[str, str] | str], policy: ReadPolicy
) -> Iterator[Record]:
    """Records from (id, sequence) pairs or bare sequences (named seq1, seq2, ...)."""

    def build() -> Iterator[Record]:
        for index, item in enumerate(items):
            seq_id, raw = (f"seq{index + 1}", item) if isinstance(item, str) else item
            yield _make_record(index, seq_id, seq_id, raw, policy)

    yield from _checked(build(), policy, "input")
