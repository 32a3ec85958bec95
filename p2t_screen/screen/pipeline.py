"""`screen_file`: FASTA in, Parquet dataset out. Checks everything it can before loading weights.

Order of work (`_ScreenRun`, one object from request to written parts): route the tasks to their
models (configs, no weights) -> read the input once (policy check, counts, digest) -> lock and
inspect the output folder -> load weights -> stream windows of records through the Screener ->
write parts -> mark success.
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
from ..io.records import OnInvalid, OnLong, ReadPolicy, Record
from ..io.schema import SCHEMA_VERSION, schema_with_metadata
from ..io.writer import (RUN_FILE, SUCCESS_FILE, OutputLock, OutputState, PartWriter, inspect_output, output_folder,
                         read_record)
from ..model.config import MASKED, ModelConfig
from ..model.model import P2TModel
from ..model.runtime import dtype_name, resolve_device, resolve_dtype
from ..model.store import file_sha256, load_model, model_checksum
from ..model.trunk import shared_depth
from ..tasks.spec import TaskSpec
from .config import DEFAULT_MAX_TOKENS
from .multi import MultiScreener
from .routing import route_tasks
from .run_record import StatusCounts, run_metadata, with_thresholds
from .screener import HostMemoryGuard, ScreenConfig, Screener, StopFn, compiled_shapes
from .sources import (check_protein_library, library_records, load_ligands, load_pairing, readable_input,
                      survey_library)
from .stages import InLine, ReadAhead, WriteBehind
from .tuning import device_meter, fit_budget


class Progress(Protocol):
    """What the pipeline reports; the CLI renders it (rich bar or plain log lines)."""

    def start(self, records: int, residues: int) -> None: ...
    def advance(self, records: int, residues: int) -> None: ...
    def finish(self) -> None: ...
    def note(self, message: str) -> None: ...  # a line about the run (what it measured of the device)


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
    config: ModelConfig  # read once, by routing; loading the weights reuses it
    tasks: list[TaskSpec]


def _routes(req: ScreenRequest) -> list[_Route]:
    """The run's models, each with its tasks (decision thresholds applied); models that read
    different sequence lengths cannot share one read policy."""
    routed = [(path, config, config.select_tasks(names))
              for path, config, names in route_tasks(list(req.tasks), req.model)]
    # Thresholds are checked against every selected task, whichever model answers it.
    tuned = {t.name: t for t in with_thresholds([t for *_, tasks in routed for t in tasks], req.thresholds)}
    routes = [_Route(path, config, [tuned[t.name] for t in tasks]) for path, config, tasks in routed]
    limits = {r.config.encoder.max_residues for r in routes}
    if len(limits) > 1:
        raise UsageError(f"the models for these tasks read different sequence lengths "
                         f"({', '.join(f'{r.path.name}: {r.config.encoder.max_residues}' for r in routes)}); "
                         "screen them in separate runs")
    return routes


def _in_order(routes: list[_Route], requested: tuple[str, ...]) -> list[TaskSpec]:
    """The routes' tasks in the order they were asked ('all': the model's own order)."""
    found = {t.name: t for r in routes for t in r.tasks}
    asked = [n for n in dict.fromkeys(requested) if n in found]
    return [found[n] for n in asked] or list(found.values())


class _ScreenRun:
    """One screen, from request to written parts.

    Built from the request, it holds the plan: every check that needs no weights, each done once
    (tasks routed to models, device and dtype, the read policy, the input read in one pass,
    partners, ligands, model checksums, the fingerprint that decides whether a folder resumes).
    `screen` then locks and inspects the output folder, loads the weights and writes the parts.
    """

    def __init__(self, req: ScreenRequest, progress: Progress | None = None, should_stop: StopFn | None = None,
                 memory_guard: HostMemoryGuard | None = None) -> None:
        self.req = req
        self.progress, self.should_stop, self.memory_guard = progress, should_stop, memory_guard
        self.routes = _routes(req)
        self.tasks = _in_order(self.routes, req.tasks)  # every task of the run, in the order asked
        self.device = resolve_device(req.device)
        self.dtype = resolve_dtype(req.dtype, self.device)
        self.policy = ReadPolicy(req.on_invalid, req.on_long, self.routes[0].config.encoder.max_residues)
        if req.input.is_dir():
            raise InputError(f"{req.input} is a directory, not a FASTA file")
        if not req.input.is_file():
            raise InputError(f"input file not found: {req.input}")
        self.pairing = load_pairing(req.partner, req.pair_by_id, self.tasks, self.policy)
        self.ligands = load_ligands(req.ligand, req.ligands, self.tasks)
        # The one pass over the input before the weights: every record checked, the shard counted, the bytes hashed.
        self.library = survey_library(req.input, self.policy, req.shard)
        check_protein_library(req.input, self.library.nucleotide_share, req.allow_nucleotide)
        self.checksums = [model_checksum(r.path) for r in self.routes]  # load_model reuses them
        self.fingerprint = self._fingerprint()

    def _fingerprint(self) -> dict[str, Any]:
        """What must match for an output folder to be resumed (or found complete) by this run."""
        req = self.req
        return {
            "input_sha256": self.library.sha256,
            **({"model_sha256": self.checksums[0]} if len(self.routes) == 1 else {"models_sha256": self.checksums}),
            **({"partner_sha256": file_sha256(req.partner), "pair_by_id": req.pair_by_id}
               if self.pairing else {}),
            **({"ligands": [[lig.id, lig.smiles] for lig in self.ligands]} if self.ligands else {}),
            "tasks": [t.name for t in self.tasks], "dtype": dtype_name(self.dtype),
            "policy": [self.policy.on_invalid.value, self.policy.on_long.value],
            "shard": list(req.shard) if req.shard else None, "schema_version": SCHEMA_VERSION,
            **({"memory": MASKED} if req.screen.fast_memory else {}),  # --fast-memory
            **({"thresholds": dict(req.thresholds)} if req.thresholds else {}),
            "coverage": req.screen.coverage,
        }

    def screen(self) -> RunSummary:
        """Lock the output folder; a folder holding this finished run is left as it is, else the
        weights load and the parts are written (resuming after the last complete one)."""
        req = self.req
        with OutputLock(req.output, req.wait, req.command):
            state = inspect_output(req.output, self.fingerprint, req.overwrite, req.force)
            if state.complete:
                done = json.loads((req.output / SUCCESS_FILE).read_text())
                return RunSummary(**{**done, "already_complete": True})
            # Weights load before the folder is touched: a model that fails to load leaves it as it was.
            models = self._load_models()
            try:
                return self._write_parts(state, models)
            except OSError as exc:  # disk full, read-only, permissions, the folder removed under us
                where = exc.filename or req.output
                raise OutputError(f"cannot write {where}: {exc.strerror or exc}; finished parts are kept: fix that "
                                  "and rerun the same command to resume") from None

    def _load_models(self) -> list[P2TModel]:
        return [load_model(r.path, self.device, self.dtype, checksum=c, config=r.config)
                for r, c in zip(self.routes, self.checksums)]

    def _tune(self, models: list[P2TModel], state: OutputState) -> tuple[ScreenConfig, dict[str, Any]]:
        """The screen config with `--max-tokens auto` resolved (`screen.tuning`), and what was found."""
        config = self.req.screen
        if config.max_tokens is not None:
            return config, {}
        earlier = read_record(self.req.output / RUN_FILE) if state.parts else None
        if earlier and isinstance(earlier.get("max_tokens"), int):
            # A resume batches as its first attempt did (the budget decides the batches): same numbers.
            return (replace(config, max_tokens=earlier["max_tokens"]),
                    {"max_tokens_auto": earlier.get("max_tokens_auto", "reused from the first attempt")})
        meter = device_meter(self.device) if self.library.longest else None  # no valid record: nothing to fit
        if meter is None:
            return (replace(config, max_tokens=DEFAULT_MAX_TOKENS),
                    {"max_tokens_auto": "the fixed default (no device memory to measure)"})
        trial = replace(config, max_tokens=DEFAULT_MAX_TOKENS, compile=False)  # eager: no compile per trial
        screeners = [Screener(m, r.tasks, trial, pairs=self.pairing, ligands=self.ligands)
                     for m, r in zip(models, self.routes)]
        search = fit_budget(screeners, self.library.longest, meter)
        self._note(search.describe())
        return replace(config, max_tokens=search.max_tokens), {"max_tokens_auto": search.to_dict()}

    def _note_trust(self, screeners: list[Screener]) -> None:
        """Say once per run which answers carry no stated coverage or domain flag, and why."""
        bare = [t.name for s in screeners for t in s.tasks if t.name not in s.conformal]
        if bare:
            self._note(f"no conformal calibration fits task(s) {', '.join(bare)}: their intervals and sets "
                       "(value_lo/value_hi, label_set, site_set, residue_sets) are null; "
                       "`p2t calibrate MODEL TASK=FILE` adds one")
        blind = [s.model_name for s in screeners if s.model.domain is None]
        if blind:
            self._note(f"model(s) {', '.join(blind)} have no domain index: domain_score and in_domain are null")

    def _note(self, message: str) -> None:
        if self.progress is not None:
            self.progress.note(message)

    def _metadata(self, models: list[P2TModel], shared_layers: int, config: ScreenConfig,
                  tuning: dict[str, Any]) -> dict[str, Any]:
        """The run record of a local screen: the shared facts, then where and how it ran."""
        req, first = self.req, self.routes[0]
        return {
            **run_metadata(first.config, first.path, models[0].checksum, self.tasks, str(self.device), self.dtype,
                           self.policy, config.max_tokens),
            **tuning,  # what the run measured of its device before the first batch (`screen.tuning`)
            "packed_encoder": config.packed_encoder,
            # How far to trust the rows: the conformal level, and each task's calibration (`trust`).
            "coverage": config.coverage,
            "conformal": {t.name: _conformal_record(m, t, config.coverage)
                          for r, m in zip(self.routes, models) for t in r.tasks},
            "domain": {r.config.name: m.domain and {"threshold": m.domain.threshold,
                                                   "proteins": int(m.domain.vectors.shape[0])}
                       for r, m in zip(self.routes, models)},
            "models": [{"name": r.config.name, "path": str(r.path), "sha256": m.checksum,
                        "tasks": [t.name for t in r.tasks]} for r, m in zip(self.routes, models)],
            "created": datetime.now(timezone.utc).isoformat(),
            "command": req.command or " ".join(sys.argv), "input": req.input_label or str(req.input),
            "torch": torch.__version__, "python": platform.python_version(),
            "host": platform.node() or os.uname().nodename,
            "shard": f"{req.shard[0]}/{req.shard[1]}" if req.shard else None, "fingerprint": self.fingerprint,
            # The input records this run screens: readers of a partial run say how many are missing.
            "records": self.library.records,
            "memory": MASKED if req.screen.fast_memory else first.config.memory_layout,
            **({"partner": str(req.partner), "pair_by_id": req.pair_by_id} if self.pairing else {}),
            **({"ligands": len(self.ligands)} if self.ligands else {}),
            **({"shared_encoder_layers": shared_layers} if len(models) > 1 else {}),
            # --compile: the shapes each model's compiled decoder steps may see (`decode.compile`)
            **({"compiled_shapes": {r.config.name: compiled_shapes(r.config, config).describe()
                                    for r in self.routes}} if req.screen.compile else {}),
        }

    def _records(self) -> Iterator[Record]:
        return library_records(self.req.input, self.policy, self.req.shard)

    def _write_parts(self, state: OutputState, models: list[P2TModel]) -> RunSummary:
        """Stream the records through the models into parts, then mark the run finished."""
        req, progress = self.req, self.progress
        depth = shared_depth(models) if len(models) > 1 else 0  # layers run once per batch (model.trunk)
        config, tuning = self._tune(models, state)
        run = self._metadata(models, depth, config, tuning)
        schema = schema_with_metadata(run)
        writer = PartWriter(req.output, schema, run, state)
        screeners = [Screener(m, r.tasks, config, schema, self.memory_guard, self.pairing, self.ligands)
                     for m, r in zip(models, self.routes)]
        self._note_trust(screeners)
        screener = screeners[0] if len(screeners) == 1 else MultiScreener(
            screeners, schema, [t.name for t in self.tasks], depth=depth)
        residues = self.library.residues
        if self.pairing or self.ligands or len(screeners) > 1:  # progress counts every model's, pair's, ligand's
            residues = sum(screener.work(r) for r in self._records())
        summary = RunSummary(output=str(req.output), records=self.library.records, residues=residues,
                             resumed_parts=state.parts_done)
        counts = StatusCounts(t.name for t in self.tasks)
        counts.add_parts(req.output / p["file"] for p in state.parts)
        start = time.perf_counter()
        if progress:
            progress.start(self.library.records, residues)
        staged = req.screen.host_stages
        behind = WriteBehind(writer.write) if staged else InLine(writer.write)  # Parquet work overlaps the model's
        try:
            for batch in screener.screen(ReadAhead(self._records()) if staged else self._records(),
                                         progress.advance if progress else None,
                                         resume_after=state.parts[-1]["last"] if state.parts else -1,
                                         should_stop=self.should_stop):
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


def _conformal_record(model: P2TModel, spec: TaskSpec, level: float) -> dict[str, Any] | None:
    """What the run record keeps of a task's calibration (None: its conformal columns are null)."""
    found = model.calibrations.get(spec.name)
    if found is None or not found.fits(spec) or not spec.task_kind.has_conformal(spec):
        return None
    return {"method": found.method, "examples": found.examples, "source": found.source,
            "created": found.created, "params": found.params(level)}


def screen_file(req: ScreenRequest, progress: Progress | None = None, should_stop: StopFn | None = None,
                memory_guard: HostMemoryGuard | None = None) -> RunSummary:
    """Screen a FASTA file into a Parquet dataset folder; returns what was done.

    Rerunning the same request after an interruption resumes after the last complete part.
    `should_stop` (polled between batches) stops cleanly with `Stopped`; completed parts stay.
    """
    output = output_folder(req.output)  # a symbolic link is followed once: the run writes its target, the link stays
    with readable_input(req.input, output) as path:
        # The record names the input by its absolute path, so readers find it from any folder.
        label = req.input_label or (str(req.input) if str(req.input) == "-" else os.path.abspath(req.input))
        local = replace(req, input=path, output=output, input_label=label)
        return _ScreenRun(local, progress, should_stop, memory_guard).screen()
