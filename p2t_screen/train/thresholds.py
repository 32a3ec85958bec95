"""After training: decision thresholds tuned on validation data, the trained model saved with
its training record (auxiliary tasks left out of what it offers), and tasks withdrawn from what
a saved model offers once measured (`withdraw_tasks`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from ..model.model import P2TModel
from ..model.store import CONFIG_FILE, load_model, save_model, stored_extra
from ..tasks.spec import TaskSpec
from .config import TrainingConfig
from .data import Labelled
from .evaluate import evaluate
from .state import RunState

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 15))  # 0.05 .. 0.70


def tune_thresholds(cfg: TrainingConfig, device: torch.device, valid: dict[str, list[Labelled]],
                    state: RunState, data: dict) -> dict[str, dict]:
    """Decision thresholds of the tasks marked `tune_threshold`: on the saved (best) model and
    the task's whole validation split, the threshold in THRESHOLDS with the best primary metric
    (ties: the one nearest 0.5) is written into the saved model's task spec."""
    entries = [t for t in cfg.tasks if t.tune_threshold]
    if not entries:
        return {}
    model = load_model(cfg.output, device)
    specs = {spec.name: spec for spec in model.config.tasks}
    found: dict[str, dict] = {}
    for entry in entries:
        name, metric = entry.spec.name, entry.spec.task_kind.primary_metric
        scores = {t: evaluate(model, replace(specs[name], threshold=t), valid[name],
                              cfg.train.max_tokens)[metric] for t in THRESHOLDS}
        best = max(THRESHOLDS, key=lambda t: (scores[t], -abs(t - 0.5)))
        specs[name] = replace(specs[name], threshold=best)
        found[name] = {"threshold": best, "metric": metric, "examples": len(valid[name]),
                       "validation": {str(t): v for t, v in scores.items()}}
    model.config = replace(model.config, tasks=tuple(specs[s.name] for s in model.config.tasks))
    save_trained(cfg, model, state, data, found)
    return found


def save_trained(cfg: TrainingConfig, model: P2TModel, state: RunState, data: dict,
                 thresholds: dict | None = None) -> None:
    """Save the model to `cfg.output` with its training record; auxiliary tasks are not offered."""
    auxiliary = [t.spec.name for t in cfg.tasks if t.auxiliary]
    extra = {"training": {"config": cfg.origin, "seed": cfg.seed, "steps": state.step,
                          "epoch": state.epoch, "encoder_train": cfg.encoder.train,
                          "history": state.history, **({"thresholds": thresholds} if thresholds else {}),
                          **({"auxiliary": auxiliary} if auxiliary else {})},
             "data": data}
    # Auxiliary tasks shaped the weights but are not offered: their specs stay out of the model.
    offered = replace(model.config, tasks=tuple(t for t in model.config.tasks if t.name not in auxiliary))
    save_model(model, cfg.output, extra, offered)


def withdraw_tasks(model_dir: Path, reasons: Mapping[str, str]) -> None:
    """Stop offering the tasks named in `reasons` (name -> why): their specs leave the saved
    model, weights unchanged, so `p2t screen` no longer runs them. The training record keeps
    each one's spec and reason under `withdrawn`, so it can still be measured."""
    model = load_model(model_dir)
    unknown = sorted(set(reasons) - {t.name for t in model.config.tasks})
    if unknown:
        raise ValueError(f"model {model_dir} offers no task {', '.join(map(repr, unknown))}")
    extra = stored_extra(Path(model_dir), model.config)
    gone = extra.setdefault("training", {}).setdefault("withdrawn", {})
    for spec in model.config.tasks:
        if spec.name in reasons:
            gone[spec.name] = {"reason": reasons[spec.name], "spec": spec.to_dict()}
    kept = tuple(t for t in model.config.tasks if t.name not in reasons)
    if not kept:
        raise ValueError(f"withdrawing {', '.join(reasons)} would leave model {model_dir} offering no task")
    save_model(model, Path(model_dir), extra, replace(model.config, tasks=kept))


def withdrawn_specs(model_dir: Path) -> dict[str, TaskSpec]:
    """The specs of the tasks `withdraw_tasks` took out of a saved model, by name."""
    doc = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    gone = doc.get("training", {}).get("withdrawn", {})
    return {name: TaskSpec.from_dict(info["spec"]) for name, info in gone.items()}
