"""The screened sequences, read back from the input FASTA for the outputs that show residues.

Output rows keep each sequence's hash, not its residues. Per-residue formats and report tracks
read the residues from the library again, in one forward pass alongside the rows (both are in
input order), and check every sequence against the hash the run recorded, so a different or
edited FASTA is an error, not a silent mismatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError
from ..io.fasta import read_fasta
from ..io.records import OnLong, ReadPolicy, Record


class InputSequences:
    """Sequences of a run's input by input index, read forward (a step back reopens the file)."""

    def __init__(self, path: Path, on_invalid: str = "error") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"cannot read the screened library {self.path}: no such file "
                             "(pass --fasta with the FASTA that was screened)")
        self.policy = ReadPolicy(on_invalid=on_invalid, on_long=OnLong.TRUNCATE, max_residues=10**9)
        self._records: Iterator[Record] = iter(())
        self._current: Record | None = None

    @classmethod
    def of_run(cls, run: dict[str, Any], fasta: Path | None = None) -> InputSequences | None:
        """The run's library (`fasta`, else the input the run names when it is a file still there)."""
        on_invalid = (run.get("policy") or {}).get("on_invalid", "error")
        if fasta is not None:
            return cls(fasta, on_invalid)
        named = Path(str(run.get("input") or ""))
        return cls(named, on_invalid) if str(named) not in ("", "-") and named.is_file() else None

    def _restart(self) -> None:
        self._records = read_fasta(self.path, self.policy)
        self._current = None

    def sequence(self, input_index: int, seq_hash: str) -> str:
        """The full normalised sequence of the record at `input_index`, checked against its hash."""
        if self._current is None or self._current.input_index > input_index:
            self._restart()
        while self._current is None or self._current.input_index < input_index:
            self._current = next(self._records, None)
            if self._current is None or self._current.input_index > input_index:
                self._current = None
                raise InputError(f"{self.path} has no record {input_index + 1}: it is not the library "
                                 "these results were screened from (pass --fasta with that file)")
        record = self._current
        if record.seq_hash != seq_hash:
            raise InputError(f"{self.path}: record {input_index + 1} ({record.seq_id!r}) differs from the "
                             "sequence that was screened; pass --fasta with the library these results came from")
        return record.sequence
