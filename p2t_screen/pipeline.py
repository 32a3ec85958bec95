"""`screen_file`: FASTA in, Parquet dataset out. Checks everything it can before loading weights.

Order of work: resolve the model's config (no weights) -> check the input under the policy ->
load weights -> stream windows of records through the Screener -> write parts -> mark success.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch

from . import __version__
from .errors import InputError
from .fasta import OnInvalid, OnLong, ReadPolicy, check_fasta, read_fasta
from .modelio import load_model, read_model_config, resolve_model_path
from .predict import ScreenConfig, Screener
from .runtime import dtype_name, resolve_device, resolve_dtype
from .schema import schema_with_metadata
from .writer import PartWriter, prepare_output


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

    @property
    def all_ok(self) -> bool:
        """True when every row has status ok."""
        return all(set(c) <= {"ok"} for c in self.status_counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "records": self.records, "residues": self.residues,
                "rows": self.rows, "parts": self.parts, "seconds": round(self.seconds, 3),
                "status_counts": self.status_counts}


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


def _scan(path: Path, policy: ReadPolicy) -> tuple[int, int]:
    records = residues = 0
    for record in read_fasta(path, policy):
        records += 1
        residues += record.residues_used
    return records, residues


def screen_file(req: ScreenRequest, progress: Progress | None = None) -> RunSummary:
    """Screen a FASTA file into a Parquet dataset folder; returns what was done."""
    model_path = resolve_model_path(req.model)
    config = read_model_config(model_path)
    tasks = config.select_tasks(list(req.tasks))
    device = resolve_device(req.device)
    dtype = resolve_dtype(req.dtype, device)
    policy = ReadPolicy(req.on_invalid, req.on_long, config.encoder.max_residues)
    if not req.input.is_file():
        raise InputError(f"input file not found: {req.input}")
    if policy.on_invalid is OnInvalid.ERROR or policy.on_long is OnLong.ERROR:
        check_fasta(req.input, policy)
    records, residues = _scan(req.input, policy)
    prepare_output(req.output, req.overwrite)

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
    }
    schema = schema_with_metadata(run)
    writer = PartWriter(req.output, schema, run)
    screener = Screener(model, tasks, req.screen, schema)
    summary = RunSummary(output=str(req.output), records=records, residues=residues)
    counts: dict[str, Counter] = {t.name: Counter() for t in tasks}
    start = time.perf_counter()
    if progress:
        progress.start(records, residues)
    for batch in screener.screen(read_fasta(req.input, policy),
                                 progress.advance if progress else None):
        writer.write(batch)
        for task, status in zip(batch.column("task").to_pylist(), batch.column("status").to_pylist()):
            counts[task][status] += 1
    if progress:
        progress.finish()
    summary.seconds = time.perf_counter() - start
    summary.status_counts = {t: dict(c) for t, c in counts.items()}
    summary.rows = sum(sum(c.values()) for c in counts.values())
    writer.finish(summary.to_dict())
    summary.parts = writer.parts
    return summary
