"""Several models in one run: each window of records goes through every model's Screener, and
their rows are merged back into one batch, by record and then in the order the tasks were asked.

When the models' encoders share their bottom layers (same tensors, by sha256: `model.trunk`) and
the models batch alike, each batch runs that trunk once and every model only its own top layers,
projection and decoder; the outputs are those of running each model alone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..io.records import Record
from ..model.trunk import SharedTrunk, shared_depth
from .planning import StopFn, WindowPlan, plan_batches
from .screener import ProgressFn, Results, Screener
from .windows import one_batch, parts


class MultiScreener:
    """Screeners of different models over the same records, windowed alike (the first one's
    windows); rows come out as one batch per window, in input order."""

    def __init__(self, screeners: list[Screener], schema: pa.Schema, order: list[str] | None = None,
                 share: bool = True, depth: int | None = None) -> None:
        """`order`: task names in the order their rows come for each record (default: by screener).
        `share`: run a shared encoder trunk once per batch (False: each model runs its whole encoder);
        `depth`: the layers the models share, when already known (`model.trunk.shared_depth`)."""
        if not screeners:
            raise ValueError("MultiScreener needs at least one screener")
        self.screeners, self.schema = screeners, schema
        names = order or [t.name for s in screeners for t in s.tasks]
        self.order = {name: i for i, name in enumerate(names)}
        alike = len({(s.memory_layout, s.config.max_tokens) for s in screeners}) == 1
        if depth is None:
            depth = shared_depth([s.model for s in screeners])
        self.depth = depth if share and alike else 0
        self.trunk = SharedTrunk(screeners[0].model, self.depth) if self.depth else None
        for s in screeners:
            s.use_trunk(self.trunk)

    def work(self, record: Record) -> int:
        """Residues all models together spend on one record (the unit of progress)."""
        return sum(s.work(record) for s in self.screeners)

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               resume_after: int = -1, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """As `Screener.screen`: one merged record batch per part (the first screener's blocks)."""
        first = self.screeners[0]
        blocks = first.blocks(records, resume_after, progress, self.work)

        def screen_block(block: list[Record]) -> pa.RecordBatch:
            rows = self._screen_window(block, should_stop)
            if progress:
                progress(len(block), sum(self.work(r) for r in block))
            return rows

        yield from parts(blocks, screen_block, first.part(self.schema))

    def _screen_window(self, window: list[Record], should_stop: StopFn | None) -> pa.RecordBatch:
        plans = [s.plan(window) for s in self.screeners]
        if self.trunk is not None and len({frozenset(p.copies) for p in plans}) == 1:
            results = self._run_together(plans[0], should_stop)
        else:
            results = [s.run_window(p, None, should_stop) for s, p in zip(self.screeners, plans)]
        return self._merge([s.rows(window, p, r) for s, p, r in zip(self.screeners, plans, results)])

    def _run_together(self, plan: WindowPlan, should_stop: StopFn | None) -> list[Results]:
        """Every model on each batch in turn, so the shared trunk runs once per batch."""
        results: list[Results] = [{} for _ in self.screeners]
        length, budget = self.screeners[0].batch_length(), self.screeners[0].config.max_tokens
        for form, batch in plan_batches(plan, length, budget, should_stop):
            for s, found in zip(self.screeners, results):
                if s.by_input[form]:
                    found.update(s.run_batch(batch, s.by_input[form]))
        return results

    def _merge(self, batches: list[pa.RecordBatch]) -> pa.RecordBatch:
        table = pa.Table.from_batches(batches, schema=self.schema)
        rank = pa.array([self.order[t] for t in table.column("task").to_pylist()], pa.int32())
        keyed = table.append_column("_rank", rank)
        order = pc.sort_indices(keyed, [("input_index", "ascending"), ("_rank", "ascending")])  # stable
        return one_batch(table.take(order))
