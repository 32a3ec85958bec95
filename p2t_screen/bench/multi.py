"""`p2t bench`'s several-models rows: K models screened one after another against K models in one
pass, with and without their shared encoder trunk run once per batch (in memory, no Parquet)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import torch

from ..io.records import ReadPolicy, records_from_sequences
from ..io.schema import SCHEMA
from ..model.model import P2TModel
from ..model.runtime import resolve_dtype
from ..model.store import load_model
from ..screen.config import ScreenConfig
from ..screen.multi import MultiScreener
from ..screen.screener import Screener
from ..tasks.spec import TaskSpec
from .measure import Timing, sync
from .shapes import scalar_twin


def _screen(screener: Screener | MultiScreener, seqs: list[str], policy: ReadPolicy) -> pa.Table:
    return pa.Table.from_batches(list(screener.screen(records_from_sequences(seqs, policy))), schema=SCHEMA)


@torch.inference_mode()
def time_models_together(models: list[P2TModel], seqs: list[str], max_tokens: int,
                         tasks: list[list[TaskSpec]] | None = None) -> tuple[list[Timing], bool, int]:
    """(timings: separately, together sharing the trunk, together without; whether all three
    wrote the same rows; shared encoder layers)."""
    config = ScreenConfig(max_tokens=max_tokens)
    tasks = tasks or [list(m.config.tasks) for m in models]  # each model's tasks (default: all of them)
    policy = ReadPolicy(on_invalid="skip", max_residues=models[0].config.encoder.max_residues)
    residues = sum(len(s) for s in seqs)
    device = next(models[0].parameters()).device
    timings, tables = [], []
    start = time.perf_counter()
    alone = [_screen(Screener(m, t, config), seqs, policy) for m, t in zip(models, tasks)]
    sync(device)
    timings.append(Timing(f"{len(models)} models, one after another", len(seqs), residues,
                          time.perf_counter() - start))
    depth = 0
    for share in (True, False):
        multi = MultiScreener([Screener(m, t, config) for m, t in zip(models, tasks)], SCHEMA, share=share)
        depth = max(depth, multi.depth)
        start = time.perf_counter()
        tables.append(_screen(multi, seqs, policy))
        sync(device)
        label = f"together, trunk of {multi.depth} layers run once" if multi.depth else "together, no sharing"
        timings.append(Timing(label, len(seqs), residues, time.perf_counter() - start))
    merged = pa.concat_tables(alone)
    same = all(_answers(t) == _answers(merged) for t in tables)
    return timings, same, depth


def _answers(table: pa.Table) -> list[tuple]:
    rows = table.select(["input_index", "task", "value", "label", "labels", "sites", "residue_labels"]).to_pylist()
    return sorted(tuple(str(v) for v in r.values()) for r in rows)


def together_scenario(model: P2TModel, specs: list[TaskSpec], tmp: Path, seqs: list[str], max_tokens: int,
                      dev: torch.device, dtype: str, log: Callable[[str], None]
                      ) -> tuple[str, list[Timing], bool, list[str]]:
    """Two models that share one encoder (the model and a twin with other task heads) screened
    one after another, and together with and without the shared trunk."""
    twin = load_model(scalar_twin(model.float().cpu(), tmp / "together"), dev, resolve_dtype(dtype, dev))
    pair = [load_model(model.source, dev, resolve_dtype(dtype, dev)), twin]
    log("[several models] one after another, then together")
    timings, same, depth = time_models_together(pair, seqs, max_tokens, [specs, list(twin.config.tasks)])
    title = f"several models: {model.config.name} + a twin with other task heads, sharing its encoder"
    notes = [f"shared encoder layers: {depth} of {model.config.encoder.num_layers}; together vs one after "
             f"another: {timings[0].seconds / timings[1].seconds:.2f}x faster with the shared trunk, "
             f"{timings[0].seconds / timings[2].seconds:.2f}x without; rows identical in all three: {same}"]
    return title, timings, same, notes
