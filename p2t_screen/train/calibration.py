"""Calibration of the probabilities a screen reports, and a per-task temperature that fixes it.

Each kind says which events its reported probabilities state (`TaskKind.reported_events`: a
class's confidence that the chosen class is right, a residue's probability that its label is
right, a flag's probability that the label is present...). Calibration compares them with how
often the events come true: the expected calibration error (ECE) over 10 equal-width bins and
the reliability table behind it.

A task's temperature (`TaskSpec.temperature`) divides the logits behind its reported
probabilities, never those behind its choices (`decode.choice`). It is fitted on validation
data: the one that minimises the log-loss of the reported probabilities against their events,
found by golden-section search over log T. Each trial temperature is a real screen of the
validation examples, so what is fitted is exactly what `p2t screen` reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..model.model import P2TModel
from ..model.store import load_model, save_model, stored_extra
from ..tasks.spec import TaskSpec
from .data import Labelled
from .evaluate import predict_columns

BINS = 10
TEMPERATURE_RANGE = (0.1, 10.0)
SEARCH_STEPS = 6  # golden-section steps: log T known to within ~0.13 (T within ~14%)
EPS = 1e-6


def reported_events(spec: TaskSpec, examples: Sequence[Labelled],
                    columns: Sequence[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, whether each came true) over all examples' reported probabilities;
    failed rows report none."""
    kind = spec.task_kind
    pairs = [ev for e, row in zip(examples, columns) if row is not None
             for ev in kind.reported_events(spec, row, e.label)]
    return (np.array([p for p, _ in pairs], dtype=np.float64),
            np.array([bool(h) for _, h in pairs], dtype=bool))


def reliability(probs: np.ndarray, hits: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """One row per equal-width bin of [0, 1] (the last bin includes 1.0): its bounds, the number
    of probabilities in it, their mean and how often their events came true."""
    which = np.minimum((probs * bins).astype(int), bins - 1)  # (N,)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "n": n,
                     "confidence": float(probs[inside].mean()) if n else float("nan"),
                     "accuracy": float(hits[inside].mean()) if n else float("nan")})
    return rows


def expected_calibration_error(probs: np.ndarray, hits: np.ndarray, bins: int = BINS) -> float:
    """Sum over bins of (share of probabilities in the bin) x |mean probability - hit rate|."""
    if len(probs) == 0:
        return float("nan")
    return float(sum(r["n"] / len(probs) * abs(r["confidence"] - r["accuracy"])
                     for r in reliability(probs, hits, bins) if r["n"]))


def log_loss(probs: np.ndarray, hits: np.ndarray) -> float:
    """Mean negative log-likelihood of the events under their reported probabilities."""
    p = np.clip(probs, EPS, 1 - EPS)
    return float(-np.mean(np.where(hits, np.log(p), np.log(1 - p))))


def calibration(spec: TaskSpec, examples: Sequence[Labelled],
                columns: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """ECE, log-loss and reliability table of a task's reported probabilities (None: it reports none)."""
    probs, hits = reported_events(spec, examples, columns)
    if len(probs) == 0:
        return None
    return {"events": len(probs), "ece": expected_calibration_error(probs, hits),
            "log_loss": log_loss(probs, hits), "bins": reliability(probs, hits)}


def fit_temperature(model: P2TModel, spec: TaskSpec, valid: Sequence[Labelled],
                    max_tokens: int = 8192, poor_ece: float = 0.0) -> dict[str, Any] | None:
    """The temperature with the lowest validation log-loss of the reported probabilities, and the
    validation calibration at 1.0 and at it (None: the task reports no probabilities). Where the
    validation ECE at 1.0 is `poor_ece` or less, 1.0 is kept without a search (a temperature
    fitted to noise only moves well-calibrated probabilities about)."""
    def screened(t: float) -> dict[str, Any] | None:
        return calibration(spec, valid, predict_columns(model, replace(spec, temperature=t), valid, max_tokens))

    before = screened(1.0)
    if before is None:
        return None
    if before["ece"] <= poor_ece:
        return {"temperature": 1.0, "examples": len(valid), "validation_before": before,
                "validation_after": before, "kept": True}
    tried = {1.0: before}

    def loss(log_t: float) -> float:
        t = math.exp(log_t)
        tried.setdefault(t, screened(t))
        return tried[t]["log_loss"]

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    golden = (math.sqrt(5) - 1) / 2
    a, b = high - golden * (high - low), low + golden * (high - low)
    for _ in range(SEARCH_STEPS):
        if loss(a) <= loss(b):
            high, b = b, a
            a = high - golden * (high - low)
        else:
            low, a = a, b
            b = low + golden * (high - low)
    best = min(tried, key=lambda t: tried[t]["log_loss"])  # 1.0 stays when nothing beats it
    return {"temperature": best, "examples": len(valid),
            "validation_before": before, "validation_after": tried[best]}


def calibrate_model(model_dir: Path, valid: Mapping[str, Sequence[Labelled]], max_tokens: int = 8192,
                    progress: Callable[[str, dict[str, Any]], None] | None = None,
                    poor_ece: float = 0.0) -> dict[str, dict[str, Any]]:
    """Fit the temperature of every offered task with validation examples in `valid` and store
    it in the model's task specs (the rest of the model directory unchanged); returns the fits,
    each also handed to `progress(task, fit)` as it is found. A task whose validation ECE at 1.0 is
    `poor_ece` or less keeps 1.0. The training record keeps each temperature with its validation
    ECE before and after."""
    model = load_model(model_dir)
    fits = {}
    for spec in model.config.tasks:
        if valid.get(spec.name):
            fit = fit_temperature(model, replace(spec, temperature=None), valid[spec.name], max_tokens, poor_ece)
            if fit is not None:
                fits[spec.name] = fit
                if progress is not None:
                    progress(spec.name, fit)
    tasks = tuple(replace(s, temperature=fits[s.name]["temperature"]) if s.name in fits else s
                  for s in model.config.tasks)
    extra = stored_extra(Path(model_dir), model.config)
    extra.setdefault("training", {})["temperatures"] = {
        name: {"temperature": f["temperature"], "examples": f["examples"],
               "validation_ece_before": f["validation_before"]["ece"],
               "validation_ece_after": f["validation_after"]["ece"]} for name, f in fits.items()}
    save_model(model, Path(model_dir), extra, replace(model.config, tasks=tasks))
    return fits
