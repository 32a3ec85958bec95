"""Several models in one run: each window of records goes through every model's Screener, and
their rows are merged back into one batch, by record and then in the order the tasks were asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..io.records import Record
from .screener import ProgressFn, Screener, StopFn


class MultiScreener:
    """Screeners of different models over the same records, windowed alike (the first one's
    windows); rows come out as one batch per window, in input order."""

    def __init__(self, screeners: list[Screener], schema: pa.Schema, order: list[str] | None = None) -> None:
        """`order`: task names in the order their rows come for each record (default: by screener)."""
        if not screeners:
            raise ValueError("MultiScreener needs at least one screener")
        self.screeners, self.schema = screeners, schema
        names = order or [t.name for s in screeners for t in s.tasks]
        self.order = {name: i for i, name in enumerate(names)}

    def work(self, record: Record) -> int:
        """Residues all models together spend on one record (the unit of progress)."""
        return sum(s.work(record) for s in self.screeners)

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               windows_done: int = 0, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """As `Screener.screen`: one merged record batch per window, after the first `windows_done`."""
        it, index, first = iter(records), 0, self.screeners[0]
        while window := first._next_window(it):
            if index >= windows_done:
                batches = [s._screen_window(window, None, should_stop) for s in self.screeners]
                yield self._merge(batches)
            if progress:
                progress(len(window), sum(self.work(r) for r in window))
            index += 1

    def _merge(self, batches: list[pa.RecordBatch]) -> pa.RecordBatch:
        table = pa.Table.from_batches(batches, schema=self.schema)
        rank = pa.array([self.order[t] for t in table.column("task").to_pylist()], pa.int32())
        keyed = table.append_column("_rank", rank)
        order = pc.sort_indices(keyed, [("input_index", "ascending"), ("_rank", "ascending")])  # stable
        merged = table.take(order).combine_chunks()
        return merged.to_batches()[0] if merged.num_rows else pa.RecordBatch.from_pylist([], schema=self.schema)
