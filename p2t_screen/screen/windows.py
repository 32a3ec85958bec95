"""Windows: contiguous runs of records sorted and deduplicated together, each written as one part.

A window closes at `window_records` records, or at a residue budget that adapts to the measured
speed so that a window takes about `window_seconds` of work: an interrupted run of any size keeps
all but about a minute of its work. A resumed run passes over every record up to the last input
index its verified parts hold, so windows need not match those of the earlier attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from ..io.records import Record

FIRST_WINDOW_RESIDUES = 20_000  # the first window's budget, before any speed is known


class Windows:
    """Cuts a record stream into windows; `took` reports how long the last one took."""

    def __init__(self, records: Iterator[Record], max_records: int, max_residues: int, seconds: float | None,
                 resume_after: int = -1, on_skipped: Callable[[Record], None] | None = None) -> None:
        self.it, self.max_records, self.max_residues, self.seconds = records, max_records, max_residues, seconds
        self.budget = min(max_residues, FIRST_WINDOW_RESIDUES) if seconds else max_residues
        self.resume_after, self.on_skipped = resume_after, on_skipped

    def _records(self) -> Iterator[Record]:
        for record in self.it:
            if record.input_index <= self.resume_after:  # already in a verified part
                if self.on_skipped:
                    self.on_skipped(record)
                continue
            yield record

    def next(self) -> list[Record]:
        """The next window (empty at the end of the input)."""
        window: list[Record] = []
        residues = 0
        for record in islice(self._records(), self.max_records):
            window.append(record)
            residues += record.residues_used
            if residues >= self.budget:
                break
        return window

    def took(self, seconds: float, residues: int) -> None:
        """The last window's work: the next budget aims at `self.seconds` at that speed."""
        if self.seconds and seconds > 0 and residues > 0:
            self.budget = max(1, min(self.max_residues, int(residues / seconds * self.seconds)))
