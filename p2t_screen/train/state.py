"""Resumable training state: a checkpoint file tied to the run that wrote it by a fingerprint,
written to a temporary file and renamed into place (a crash never leaves half a checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError


def save_state(path: Path, fingerprint: str, payload: dict[str, Any]) -> None:
    """Write `payload` (tensors, state dicts, plain values) with the run's fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"fingerprint": fingerprint, **payload}, tmp)
    tmp.replace(path)


def load_state(path: Path, fingerprint: str, mismatch: str) -> dict[str, Any] | None:
    """The saved payload, None when there is none; a UsageError (`path` + `mismatch`) when it
    belongs to another run."""
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("fingerprint") != fingerprint:
        raise UsageError(f"{path} {mismatch}")
    return data


@dataclass
class RunState:
    """Where a run is; saved with the weights so it can resume."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    best: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
