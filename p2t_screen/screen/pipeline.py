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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch

from .. import __version__
from ..errors import InputError, UsageError
from ..io.fasta import check_fasta, read_fasta
from ..io.ligands import Ligand, check_smiles, read_ligands
from ..io.records import OnInvalid, OnLong, ReadPolicy, Record
from ..io.schema import SCHEMA_VERSION, schema_with_metadata
from ..io.writer import SUCCESS_FILE, PartWriter, prepare_output
from ..model.runtime import dtype_name, resolve_device, resolve_dtype
from ..model.store import (
    file_sha256,
    load_model,
    model_checksum,
    read_model_config,
    resolve_model_path,
)
from .expansion import Pairing
from .run_record import (
    _previous_counts,
    threshold_metadata,
    with_thresholds,
)
from .screener import MemoryGuard, ScreenConfig, Screener, StopFn


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
    model: str | None = None  # model directory or bundled name; None = default model
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

    def __post_init__(self) -> None:
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise UsageError(f"shard must be i/N with 0 <= i < N, got {i}/{n}")


def parse_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """'i/N' -> (i, N); without text, SLURM array variables give the default (else no sharding)."""
    env = os.environ if env is None else env
    if text is None:
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return None
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/N (e.g. 0/8), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text}: need 0 <= i < N")
    return i, n


def in_shard(record: Record, shard: tuple[int, int] | None) -> bool:
    """Deterministic by sequence hash, so identical sequences always share a shard."""
    return shard is None or int(record.seq_hash[:16], 16) % shard[1] == shard[0]


def _records(path: Path, policy: ReadPolicy, shard: tuple[int, int] | None) -> Iterator[Record]:
    return (r for r in read_fasta(path, policy) if in_shard(r, shard))


def _scan(path: Path, policy: ReadPolicy, shard: tuple[int, int] | None) -> tuple[int, int]:
    records = residues = 0
    for record in _records(path, policy, shard):
        records += 1
        residues += record.residues_used
    return records, residues


def _pairing(req: ScreenRequest, tasks: list, policy: ReadPolicy) -> Pairing | None:
    """Partner proteins for pair tasks, checked before any weights load."""
    pair_tasks = [t.name for t in tasks if t.inputs == "pair"]
    if req.partner is None:
        if pair_tasks:
            raise UsageError(f"task(s) {', '.join(pair_tasks)} read protein pairs: give the partner "
                             "proteins with --partner FASTA (or choose other --tasks)")
        return None
    if not pair_tasks:
        raise UsageError("--partner was given, but none of the selected tasks reads protein pairs")
    if not req.partner.is_file():
        raise InputError(f"partner file not found: {req.partner}")
    # Every partner must be usable: a bad one would silently drop rows of every record.
    strict = ReadPolicy(OnInvalid.ERROR, policy.on_long, policy.max_residues)
    partners = tuple(read_fasta(req.partner, strict))
    bad = [p for p in partners if p.status.value != "ok"]
    if bad:
        raise InputError(f"{req.partner}: partner {bad[0].seq_id!r} is {bad[0].status.value} "
                         f"({bad[0].error}); every partner must be a valid protein")
    if not partners:
        raise InputError(f"{req.partner}: no partner proteins")
    if req.pair_by_id:
        ids = Counter(p.seq_id for p in partners)
        dupes = sorted(i for i, n in ids.items() if n > 1)
        if dupes:
            raise InputError(f"{req.partner}: partner ids must be unique to pair by id; repeated: "
                             f"{dupes[:5]}")
    return Pairing(partners, req.pair_by_id)


def _ligands(req: ScreenRequest, tasks: list) -> list[Ligand] | None:
    """Ligands of protein-ligand tasks, checked before any weights load. A --ligand given on
    the command line must be valid; a file's invalid SMILES become rows with status invalid."""
    ligand_tasks = [t.name for t in tasks if t.inputs == "ligand"]
    if not req.ligand and req.ligands is None:
        if ligand_tasks:
            raise UsageError(f"task(s) {', '.join(ligand_tasks)} read a ligand besides each protein: "
                             "give --ligand SMILES or --ligands FILE.smi (or choose other --tasks)")
        return None
    if not ligand_tasks:
        raise UsageError("--ligand/--ligands was given, but none of the selected tasks reads ligands")
    out = []
    for i, smiles in enumerate(req.ligand, start=1):
        try:
            check_smiles(smiles)
        except ValueError as exc:
            raise UsageError(f"--ligand {smiles!r}: invalid SMILES: {exc}") from None
        out.append(Ligand(f"ligand{i}", smiles))
    if req.ligands is not None:
        out += read_ligands(req.ligands)
    names = [lig.id for lig in out]
    if len(set(names)) != len(names):
        raise UsageError(f"ligand names repeat across --ligand and --ligands: {names}")
    return out


def screen_file(req: ScreenRequest, progress: Progress | None = None,
                should_stop: StopFn | None = None, memory_guard: MemoryGuard | None = None) -> RunSummary:
    """Screen a FASTA file into a Parquet dataset folder; returns what was done.

    Rerunning the same request after an interruption resumes after the last complete part.
    `should_stop` (polled between batches) stops cleanly with `Stopped`; completed parts stay.
    """
    model_path = resolve_model_path(req.model)
    config = read_model_config(model_path)
    tasks = with_thresholds(config.select_tasks(list(req.tasks)), req.thresholds)
    device = resolve_device(req.device)
    dtype = resolve_dtype(req.dtype, device)
    policy = ReadPolicy(req.on_invalid, req.on_long, config.encoder.max_residues)
    if not req.input.is_file():
        raise InputError(f"input file not found: {req.input}")
    if policy.on_invalid is OnInvalid.ERROR or policy.on_long is OnLong.ERROR:
        check_fasta(req.input, policy)
    pairing = _pairing(req, tasks, policy)
    ligands = _ligands(req, tasks)
    records, residues = _scan(req.input, policy, req.shard)
    fingerprint = {
        "input_sha256": file_sha256(req.input), "model_sha256": model_checksum(model_path),
        **({"partner_sha256": file_sha256(req.partner), "pair_by_id": req.pair_by_id}
           if pairing else {}),
        **({"ligands": [[lig.id, lig.smiles] for lig in ligands]} if ligands else {}),
        "tasks": [t.name for t in tasks], "dtype": dtype_name(dtype),
        "policy": [policy.on_invalid.value, policy.on_long.value],
        "windows": [req.screen.window_records, req.screen.window_residues],
        "shard": list(req.shard) if req.shard else None, "schema_version": SCHEMA_VERSION,
        **({"memory": req.screen.memory} if req.screen.memory else {}),
        **({"thresholds": dict(req.thresholds)} if req.thresholds else {}),
    }
    state = prepare_output(req.output, fingerprint, req.overwrite)
    if state.complete:
        done = json.loads((req.output / SUCCESS_FILE).read_text())
        return RunSummary(**{**done, "already_complete": True})

    model = load_model(model_path, device, dtype)
    run = {
        "p2t_version": __version__, "created": datetime.now(timezone.utc).isoformat(),
        "command": req.command or " ".join(sys.argv), "input": str(req.input),
        "model": {"name": config.name, "path": str(model_path), "sha256": model.checksum},
        "encoder": {"source": config.encoder.source, "layers": config.encoder.num_layers,
                    "width": config.encoder.embed_dim, "max_residues": config.encoder.max_residues},
        "tasks": [t.name for t in tasks], "device": str(device), "dtype": dtype_name(dtype),
        "policy": {"on_invalid": policy.on_invalid.value, "on_long": policy.on_long.value},
        "max_tokens": req.screen.max_tokens, "torch": torch.__version__,
        "python": platform.python_version(), "host": platform.node() or os.uname().nodename,
        "shard": f"{req.shard[0]}/{req.shard[1]}" if req.shard else None, "fingerprint": fingerprint,
        "memory": req.screen.memory or config.memory,
        **({"partner": str(req.partner), "pair_by_id": req.pair_by_id} if pairing else {}),
        **({"ligands": len(ligands)} if ligands else {}),
        **threshold_metadata(tasks),
    }
    schema = schema_with_metadata(run)
    writer = PartWriter(req.output, schema, run, first_part=state.parts_done)
    screener = Screener(model, tasks, req.screen, schema, memory_guard, pairing, ligands)
    if pairing or ligands:  # progress counts the residues of every pair and ligand
        residues = sum(screener.work(r) for r in _records(req.input, policy, req.shard))
    summary = RunSummary(output=str(req.output), records=records, residues=residues,
                         resumed_parts=state.parts_done)
    counts = {t.name: Counter() for t in tasks}
    for task, previous in _previous_counts(req.output, state.parts_done).items():
        counts.setdefault(task, Counter()).update(previous)
    start = time.perf_counter()
    if progress:
        progress.start(records, residues)
    try:
        for batch in screener.screen(_records(req.input, policy, req.shard),
                                     progress.advance if progress else None,
                                     skip_windows=state.parts_done, should_stop=should_stop):
            writer.write(batch)
            for task, status in zip(batch.column("task").to_pylist(), batch.column("status").to_pylist()):
                counts[task][status] += 1
    finally:
        if progress:
            progress.finish()
    summary.seconds = time.perf_counter() - start
    summary.status_counts = {t: dict(c) for t, c in counts.items()}
    summary.rows = sum(sum(c.values()) for c in counts.values())
    summary.parts = writer.parts or 1  # an empty run still leaves one empty part with the schema
    writer.finish(summary.to_dict())
    return summary
