"""Blocks and parts: how a record stream is cut for the model, and for the output.

A **block** is a contiguous run of records deduplicated, sorted by length and batched together.
Its bounds follow the input alone: a block closes at `max_records` records or `max_residues`
residues, counted from the first record of the input (a resumed run's passed-over records
included). So the batches, and with them every number the model computes, do not depend on how
fast the machine is or where an earlier attempt stopped: a resumed run equals an uninterrupted
one bit for bit, and so do two runs on machines of different speed.

A **part** (one output file) is one or more whole blocks. It closes after about `seconds` of
work, or at `max_records` records / `max_residues` residues, so an interruption loses at most
about that much work (or one block, where one block takes longer); a stop asked for by a signal
writes the blocks already finished (`parts`). A resumed run passes over every record up to the
last input index its verified parts hold: a block's end, when the earlier attempt ran with the
same token budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pyarrow as pa

from ..io.records import Record
from .planning import Stopped


class Blocks:
    """Cuts a record stream into blocks fixed by the input; records up to `resume_after` (already
    in verified parts) count towards their block's bounds but are passed over."""

    def __init__(self, records: Iterator[Record], max_records: int, max_residues: int,
                 resume_after: int = -1, on_skipped: Callable[[Record], None] | None = None) -> None:
        self.it, self.max_records, self.max_residues = records, max_records, max_residues
        self.resume_after, self.on_skipped = resume_after, on_skipped

    def next(self) -> list[Record]:
        """The next block's records still to screen (empty at the end of the input)."""
        block: list[Record] = []
        records = residues = 0
        for record in self.it:
            records += 1
            residues += record.residues_used
            if record.input_index > self.resume_after:
                block.append(record)
            elif self.on_skipped:
                self.on_skipped(record)
            if records >= self.max_records or residues >= self.max_residues:
                if block:
                    return block
                records = residues = 0  # a block wholly in the verified parts
        return block


class Part:
    """The rows of the blocks screened since the last part closed, and how much work they were."""

    def __init__(self, schema: pa.Schema, max_records: int, max_residues: int, seconds: float | None) -> None:
        self.schema, self.max_records, self.max_residues, self.seconds = schema, max_records, max_residues, seconds
        self.rows: list[pa.RecordBatch] = []
        self.records = self.residues = 0
        self.spent = 0.0

    def __bool__(self) -> bool:
        return bool(self.rows)

    def add(self, rows: pa.RecordBatch, block: list[Record], seconds: float) -> None:
        self.rows.append(rows)
        self.records += len(block)
        self.residues += sum(r.residues_used for r in block)
        self.spent += seconds

    def full(self) -> bool:
        return (self.records >= self.max_records or self.residues >= self.max_residues
                or (self.seconds is not None and self.spent >= self.seconds))

    def take(self) -> pa.RecordBatch:
        """The part's rows as one record batch, in input order; the part starts empty again."""
        rows, self.rows = self.rows, []
        self.records = self.residues = 0
        self.spent = 0.0
        return rows[0] if len(rows) == 1 else one_batch(pa.Table.from_batches(rows, schema=self.schema))


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """`table`'s rows as a single record batch (an empty one keeps the schema)."""
    table = table.combine_chunks()
    return table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)


def parts(blocks: Blocks, screen_block: Callable[[list[Record]], pa.RecordBatch], part: Part
          ) -> Iterator[pa.RecordBatch]:
    """Each block's rows (`screen_block`) gathered into parts, one record batch per part. When
    `screen_block` raises `Stopped`, the part of the blocks already finished comes out first."""
    while block := blocks.next():
        started = time.perf_counter()
        try:
            rows = screen_block(block)
        except Stopped:
            if part:
                yield part.take()
            raise
        part.add(rows, block, time.perf_counter() - started)
        if part.full():
            yield part.take()
    if part:
        yield part.take()
