"""`p2t eval`: resolve data arguments to (task, file), screen, score, and compare to baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .datasets import TaskSource, load_task
from .errors import UsageError
from .evaluate import baseline as fit_baseline
from .evaluate import evaluate
from .model import P2TModel
from .modelio import load_model
from .pipeline import with_thresholds
from .runtime import resolve_device
from .trainconfig import load_config


def resolve_data(model: P2TModel, args: list[str]) -> list[tuple[str, TaskSource]]:
    """`TASK=FILE`, a file inside a folder named after a task, or a training config."""
    out: list[tuple[str, TaskSource]] = []
    names = {t.name for t in model.config.tasks}
    for arg in args:
        if "=" in arg:
            task, path = arg.split("=", 1)
            out.append((task, TaskSource(Path(path))))
        elif arg.endswith((".toml", ".yaml", ".yml")):
            cfg = load_config(Path(arg))
            out += [(t.spec.name, t.source) for t in cfg.tasks if t.source and t.spec.name in names]
        elif Path(arg).parent.name in names:
            out.append((Path(arg).parent.name, TaskSource(Path(arg))))
        else:
            raise UsageError(f"cannot tell which task {arg!r} is for: write TASK={arg} "
                             f"(tasks of this model: {', '.join(sorted(names))})")
    return out


def run_eval(model_ref: str, data: list[str], split: str, with_baseline: bool, device: str,
             max_tokens: int, thresholds: tuple[tuple[str, float], ...] = ()) -> dict[str, Any]:
    """Metrics per task (and baselines) as a JSON-ready report; `thresholds` as `p2t screen
    --threshold` sets them."""
    model = load_model(model_ref, resolve_device(device))
    report: dict[str, Any] = {"model": model.config.name, "sha256": model.checksum, "split": split,
                              "tasks": {}}
    resolved = resolve_data(model, data)
    specs = {s.name: s for s in with_thresholds([model.config.task(t) for t, _ in resolved], thresholds)}
    for task, source in resolved:
        spec = specs[task]
        labelled = load_task(spec, source, model.config.encoder.max_residues)
        examples = [e for s, v in labelled.items() if split in (s, "all") for e in v]
        if not examples:
            raise UsageError(f"{source.path}: no {split} examples for task {task}")
        entry: dict[str, Any] = {"kind": spec.kind, "data": str(source.path), "examples": len(examples),
                                 "metrics": evaluate(model, spec, examples, max_tokens)}
        if spec.encoding == "flags":
            entry["threshold"] = spec.decision_threshold
        if with_baseline and labelled["train"]:
            name, metrics = fit_baseline(spec, labelled["train"], examples)
            entry["baseline"] = {"name": name, "metrics": metrics}
        report["tasks"][task] = entry
    return report
