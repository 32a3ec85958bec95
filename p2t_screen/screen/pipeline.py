"""`screen_file`: FASTA in, Parquet dataset out. Checks everything it can before loading weights.

Order of work: resolve the model's config (no weights) -> check the input under the policy ->
load weights -> stream windows of records through the Screener -> write parts -> mark success.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import InputError, OutputError, UsageError
from ..io.fasta import check_fasta
from ..io.ligands import Ligand
from ..io.records import OnInvalid, OnLong, ReadPolicy, Record
from ..io.schema import SCHEMA_VERSION, schema_with_metadata
from ..io.writer import SUCCESS_FILE, OutputLock, OutputState, PartWriter, inspect_output, output_folder
from ..model.config import ModelConfig
from ..model.model import P2TModel
from ..model.runtime import dtype_name, resolve_device, resolve_dtype
from ..model.store import file_sha256, load_model, model_checksum
from ..model.trunk import shared_depth
from ..tasks.spec import TaskSpec
from .expansion import Pairing
from .multi import MultiScreener
from .routing import route_tasks
from .run_record import StatusCounts, run_metadata, with_thresholds
from .screener import HostMemoryGuard, ScreenConfig, Screener, StopFn
from .sources import check_protein_library, count_library, library_records, load_ligands, load_pairing, readable_input
from .stages import InLine, ReadAhead, WriteBehind


class Progress(Protocol):
    """What the pipeline reports; the CLI renders it (rich bar or plain log lines)."""

    def start(self, records: int, residues: int) -> None: ...
    def advance(self, records: int, residues: int) -> None: ...
    def finish(self) -> None: ...


@dataclass
class RunSummary:
    """What a finished screen did, per task and status."""

    output: str
    records: int = 0
    residues: int = 0
    rows: int = 0
    parts: int = 0
    seconds: float = 0.0
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    resumed_parts: int = 0  # parts kept from an interrupted earlier attempt
    already_complete: bool = False  # the folder held this finished run; nothing was recomputed

    @property
    def all_ok(self) -> bool:
        """True when every row has status ok."""
        return all(set(c) <= {"ok"} for c in self.status_counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "records": self.records, "residues": self.residues,
                "rows": self.rows, "parts": self.parts, "seconds": round(self.seconds, 3),
                "status_counts": self.status_counts, "resumed_parts": self.resumed_parts}


@dataclass(frozen=True)
class ScreenRequest:
    """One screening run, as the CLI or a pipeline describes it."""

    input: Path
    output: Path
    model: str | None = None  # model directory or installed name; None: each task's model (`route_tasks`)
    tasks: tuple[str, ...] = ("all",)
    device: str = "auto"
    dtype: str = "auto"
    on_invalid: OnInvalid = OnInvalid.ERROR
    on_long: OnLong = OnLong.TRUNCATE
    screen: ScreenConfig = ScreenConfig()
    overwrite: bool = False
    command: str = ""
    shard: tuple[int, int] | None = None  # (i, N): only records whose seq_hash falls in shard i of N
    partner: Path | None = None  # FASTA of partner proteins for pair tasks
    pair_by_id: bool = False  # pair each record with the partner of the same id (else with all)
    ligand: tuple[str, ...] = ()  # SMILES for protein-ligand tasks (--ligand, repeatable)
    ligands: Path | None = None  # a .smi file of ligands (--ligands)
    thresholds: tuple[tuple[str, float], ...] = ()  # (task, p): decision thresholds of "flags" tasks
    wait: bool = False  # another run holds the output folder: wait for it instead of refusing
    allow_nucleotide: bool = False  # screen a library that looks like DNA/RNA anyway
    force: bool = False  # use an output folder that holds files but no p2t run
    input_label: str | None = None  # how the run record names the input (a stream: "-")

    def __post_init__(self) -> None:
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise UsageError(f"shard must be i/N with 0 <= i < N, got {i}/{n}")


@dataclass(frozen=True)
class _Route:
    """One model of a run and the tasks it answers."""

    path: Path
    config: ModelConfig
    tasks: list[TaskSpec]


@dataclass(frozen=True)
class _Plan:
    """Everything a run has checked before loading weights."""

    routes: list[_Route]
    device: torch.device
    dtype: torch.dtype
    policy: ReadPolicy
    pairing: Pairing | None
    ligands: list[Ligand] | None
    records: int
    residues: int
    fingerprint: dict[str, Any]
    checksums: list[str] = field(default_factory=list)  # each route's model checksum, computed once
    requested: tuple[str, ...] = ()  # the task names as asked ("all" selects every task of the model)

    @property
    def tasks(self) -> list[TaskSpec]:
        """Every task of the run, in the order they were asked."""
        return _in_order(self.routes, self.requested)

    @property
    def order(self) -> list[str]:
        return [t.name for t in self.tasks]


def _in_order(routes: list[_Route], requested: tuple[str, ...]) -> list[TaskSpec]:
    """The routes' tasks in the order they were asked ('all': the model's own order)."""
    found = {t.name: t for r in routes for t in r.tasks}
    asked = [n for n in dict.fromkeys(requested) if n in found]
    return [found[n] for n in asked] or list(found.values())


def _routes(req: ScreenRequest) -> list[_Route]:
    routes = []
    for path, config, names in route_tasks(list(req.tasks), req.model):
        routes.append(_Route(path, config, config.select_tasks(names)))
    tasks = with_thresholds([t for r in routes for t in r.tasks], req.thresholds)
    by_name = {t.name: t for t in tasks}
    routes = [_Route(r.path, r.config, [by_name[t.name] for t in r.tasks]) for r in routes]
    limits = {r.config.encoder.max_residues for r in routes}
    if len(limits) > 1:
        raise UsageError(f"the models for these tasks read different sequence lengths "
                         f"({', '.join(f'{r.path.name}: {r.config.encoder.max_residues}' for r in routes)}); "
                         "screen them in separate runs")
    return routes


def _plan(req: ScreenRequest) -> _Plan:
    """Resolve and check the request (models and tasks, device, input, partners, ligands)."""
    routes = _routes(req)
    tasks = _in_order(routes, req.tasks)
    device = resolve_device(req.device)
    dtype = resolve_dtype(req.dtype, device)
    policy = ReadPolicy(req.on_invalid, req.on_long, routes[0].config.encoder.max_residues)
    if req.input.is_dir():
        raise InputError(f"{req.input} is a directory, not a FASTA file")
    if not req.input.is_file():
        raise InputError(f"input file not found: {req.input}")
    if policy.on_invalid is OnInvalid.ERROR or policy.on_long is OnLong.ERROR:
        check_fasta(req.input, policy)
    pairing = load_pairing(req.partner, req.pair_by_id, tasks, policy)
    ligands = load_ligands(req.ligand, req.ligands, tasks)
    records, residues, nucleotide_share = count_library(req.input, policy, req.shard)
    check_protein_library(req.input, nucleotide_share, req.allow_nucleotide)
    checksums = [model_checksum(r.path) for r in routes]  # load_model reuses them
    fingerprint = {
        "input_sha256": file_sha256(req.input),
        **({"model_sha256": checksums[0]} if len(routes) == 1 else {"models_sha256": checksums}),
        **({"partner_sha256": file_sha256(req.partner), "pair_by_id": req.pair_by_id}
           if pairing else {}),
        **({"ligands": [[lig.id, lig.smiles] for lig in ligands]} if ligands else {}),
        "tasks": [t.name for t in tasks], "dtype": dtype_name(dtype),
        "policy": [policy.on_invalid.value, policy.on_long.value],
        "shard": list(req.shard) if req.shard else None, "schema_version": SCHEMA_VERSION,
        **({"memory": req.screen.memory_layout} if req.screen.memory_layout else {}),
        **({"thresholds": dict(req.thresholds)} if req.thresholds else {}),
    }
    return _Plan(routes, device, dtype, policy, pairing, ligands, records, residues, fingerprint, checksums, req.tasks)


def _run_metadata(req: ScreenRequest, plan: _Plan, models: list[P2TModel]) -> dict[str, Any]:
    """The run record of a local screen: the shared facts, then where and how it ran."""
    first = plan.routes[0]
    return {
        **run_metadata(first.config, first.path, models[0].checksum, plan.tasks, str(plan.device), plan.dtype,
                       plan.policy, req.screen.max_tokens),
        "models": [{"name": r.config.name, "path": str(r.path), "sha256": m.checksum,
                    "tasks": [t.name for t in r.tasks]} for r, m in zip(plan.routes, models)],
        "created": datetime.now(timezone.utc).isoformat(),
        "command": req.command or " ".join(sys.argv), "input": req.input_label or str(req.input),
        "torch": torch.__version__, "python": platform.python_version(),
        "host": platform.node() or os.uname().nodename,
        "shard": f"{req.shard[0]}/{req.shard[1]}" if req.shard else None, "fingerprint": plan.fingerprint,
        "records": plan.records,  # input records this run screens: readers of a partial run say how many are missing
        "memory": req.screen.memory_layout or first.config.memory_layout,
        **({"partner": str(req.partner), "pair_by_id": req.pair_by_id} if plan.pairing else {}),
        **({"ligands": len(plan.ligands)} if plan.ligands else {}),
    }


def screen_file(req: ScreenRequest, progress: Progress | None = None, should_stop: StopFn | None = None,
                memory_guard: HostMemoryGuard | None = None) -> RunSummary:
    """Screen a FASTA file into a Parquet dataset folder; returns what was done.

    Rerunning the same request after an interruption resumes after the last complete part.
    `should_stop` (polled between batches) stops cleanly with `Stopped`; completed parts stay.
    """
    output = output_folder(req.output)  # a symbolic link is followed once: the run writes its target, the link stays
    with readable_input(req.input, output) as path:
        return _screen_file(replace(req, input=path, output=output, input_label=req.input_label or str(req.input)),
                            progress, should_stop, memory_guard)


def _screen_file(req: ScreenRequest, progress: Progress | None, should_stop: StopFn | None,
                 memory_guard: HostMemoryGuard | None) -> RunSummary:
    plan = _plan(req)
    with OutputLock(req.output, req.wait, req.command):
        state = inspect_output(req.output, plan.fingerprint, req.overwrite, req.force)
        if state.complete:
            done = json.loads((req.output / SUCCESS_FILE).read_text())
            return RunSummary(**{**done, "already_complete": True})
        # Weights load before the folder is touched: a model that fails to load leaves it as it was.
        models = [load_model(r.path, plan.device, plan.dtype, checksum=c) for r, c in zip(plan.routes, plan.checksums)]
        return _screen(req, plan, state, models, progress, should_stop, memory_guard)


def _screen(req: ScreenRequest, plan: _Plan, state: OutputState, models: list[P2TModel],
            progress: Progress | None, should_stop: StopFn | None,
            memory_guard: HostMemoryGuard | None) -> RunSummary:
    run = _run_metadata(req, plan, models)
    depth = shared_depth(models) if len(models) > 1 else 0  # layers run once per batch (model.trunk)
    if len(models) > 1:
        run["shared_encoder_layers"] = depth
    schema = schema_with_metadata(run)
    try:
        return _write(req, plan, state, models, run, schema, depth, progress, should_stop, memory_guard)
    except OSError as exc:  # disk full, read-only, permissions, the folder removed under us
        where = exc.filename or req.output
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}; finished parts are kept: fix that "
                          "and rerun the same command to resume") from None


def _write(req: ScreenRequest, plan: _Plan, state: OutputState, models: list[P2TModel], run: dict[str, Any],
           schema: Any, depth: int, progress: Progress | None, should_stop: StopFn | None,
           memory_guard: HostMemoryGuard | None) -> RunSummary:
    writer = PartWriter(req.output, schema, run, state)
    screeners = [Screener(m, r.tasks, req.screen, schema, memory_guard, plan.pairing, plan.ligands)
                 for m, r in zip(models, plan.routes)]
    screener = screeners[0] if len(screeners) == 1 else MultiScreener(screeners, schema, plan.order, depth=depth)

    def records() -> Iterator[Record]:
        return library_records(req.input, plan.policy, req.shard)

    residues = plan.residues
    if plan.pairing or plan.ligands or len(screeners) > 1:  # progress counts every model's, pair's, ligand's
        residues = sum(screener.work(r) for r in records())
    summary = RunSummary(output=str(req.output), records=plan.records, residues=residues,
                         resumed_parts=state.parts_done)
    counts = StatusCounts(t.name for t in plan.tasks)
    counts.add_parts(req.output / p["file"] for p in state.parts)
    start = time.perf_counter()
    if progress:
        progress.start(plan.records, residues)
    staged = req.screen.host_stages
    behind = WriteBehind(writer.write) if staged else InLine(writer.write)  # Parquet work overlaps the model's
    try:
        for batch in screener.screen(ReadAhead(records()) if staged else records(),
                                     progress.advance if progress else None,
                                     resume_after=state.parts[-1]["last"] if state.parts else -1,
                                     should_stop=should_stop):
            behind.put(batch)
            counts.add(batch)
    finally:
        try:
            behind.close()  # every window screened so far is written, also when stopping
        finally:
            if progress:
                progress.finish()
    summary.seconds = time.perf_counter() - start
    summary.status_counts = counts.as_dict()
    summary.rows = counts.rows
    summary.parts = writer.parts or 1  # an empty run still leaves one empty part with the schema
    writer.finish(summary.to_dict())
    return summary
