"""Evaluation on labelled data through the real screening path, and trivial baselines.

Predictions come from `Screener.screen` (constrained greedy decoding, the code `p2t screen`
runs); metrics compare them with the labels in their natural form.

`run_eval` is `p2t eval`: data arguments resolved to (task, file), screened, scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.records import ReadPolicy, records_from_sequences
from ..model.config import ModelConfig
from ..model.model import P2TModel
from ..model.runtime import resolve_device
from ..model.store import load_model
from ..screen.batching import token_budget_batches
from ..screen.expansion import Pairing
from ..screen.run_record import with_thresholds
from ..screen.screener import ScreenConfig, Screener
from ..tasks.inputs import LIGAND, PAIR, ModelInput
from ..tasks.spec import TaskResult, TaskSpec
from .classical import classical_baseline
from .config import load_config
from .conformal import coverage_report, predict_results
from .data import Labelled, TaskSource, load_task


def predict_columns(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
                    max_tokens: int = 8192) -> list[dict[str, Any] | None]:
    """Each example's output columns via `Screener.screen` (None where the row failed). Pair
    examples screen the protein with its partner, paired by a per-example id; ligand examples
    (each with its own ligand) are decoded as inputs directly."""
    if spec.inputs == LIGAND:
        return _predict_inputs(model, spec, examples, max_tokens)
    policy = ReadPolicy(on_invalid="skip", max_residues=model.config.encoder.max_residues)
    pairing = None
    if spec.inputs == PAIR:
        records = records_from_sequences([(f"e{i}", e.input.protein) for i, e in enumerate(examples)], policy)
        pairing = Pairing(tuple(records_from_sequences(
            [(f"e{i}", e.input.partner) for i, e in enumerate(examples)], policy)), by_id=True)
    else:
        records = records_from_sequences([(e.id, e.input.protein) for e in examples], policy)
    screener = Screener(model, [spec], ScreenConfig(max_tokens=max_tokens), pairs=pairing)
    found: list[dict[str, Any] | None] = [None] * len(examples)
    for batch in screener.screen(records):
        for row in batch.to_pylist():
            if row["status"] == "ok":
                found[row["input_index"]] = row
    return found


def predict_labels(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
                   max_tokens: int = 8192) -> list[Any]:
    """Predictions in natural form, one per example (see `predict_columns`); a failed row counts
    as the kind's empty answer."""
    return answers(spec, examples, predict_columns(model, spec, examples, max_tokens))


def answers(spec: TaskSpec, examples: Sequence[Labelled], columns: Sequence[dict[str, Any] | None]) -> list[Any]:
    """The answer of each example's columns in natural form; a failed row (None) counts as the
    kind's empty answer."""
    kind = spec.task_kind
    return [kind.answer(row) if row is not None else kind.empty_answer(spec, e.input.protein)
            for row, e in zip(columns, examples)]


def _predict_inputs(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
                    max_tokens: int) -> list[dict[str, Any] | None]:
    screener = Screener(model, [spec], ScreenConfig(max_tokens=max_tokens))
    keys = list(dict.fromkeys(e.input for e in examples))
    found: dict[ModelInput, Any] = {}
    for batch in token_budget_batches(keys, lambda k: k.encoder_length, max_tokens):
        found.update(zip(batch, screener.predict(batch, [spec])[spec.name]))
    return [found[e.input].columns() if isinstance(found[e.input], TaskResult) else None for e in examples]


def score(spec: TaskSpec, examples: Sequence[Labelled], preds: Sequence[Any]) -> dict[str, float]:
    """The task kind's metrics for predictions against the examples' labels."""
    return spec.task_kind.score(spec, [e.input.protein for e in examples], [e.label for e in examples], preds)


def evaluate(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
             max_tokens: int = 8192) -> dict[str, float]:
    """Screen the examples and score the predictions."""
    return score(spec, examples, predict_labels(model, spec, examples, max_tokens))


def baseline(spec: TaskSpec, train: Sequence[Labelled], test: Sequence[Labelled]) -> tuple[str, dict]:
    """The kind's trivial baseline fitted on `train`, scored on `test`: (description, metrics)."""
    return spec.task_kind.baseline(spec, [(e.input.protein, e.label) for e in train],
                                   [(e.input.protein, e.label) for e in test])


def classical(spec: TaskSpec, train: Sequence[Labelled], valid: Sequence[Labelled],
              test: Sequence[Labelled]) -> tuple[str, dict] | None:
    """The kind's classical baseline (`train.classical`) fitted on `train`, tuned on `valid`,
    scored on `test`: (description, metrics), or None when the kind has none."""
    def pairs(examples: Sequence[Labelled]) -> list[tuple[str, Any]]:
        return [(e.input.protein, e.label) for e in examples]
    return classical_baseline(spec, pairs(train), pairs(valid), pairs(test))


def resolve_data(config: ModelConfig, args: list[str]) -> list[tuple[str, TaskSource]]:
    """`TASK=FILE`, a file inside a folder named after a task, or a training config."""
    out: list[tuple[str, TaskSource]] = []
    names = {t.name for t in config.tasks}
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
             max_tokens: int, thresholds: tuple[tuple[str, float], ...] = (),
             with_classical: bool = False) -> dict[str, Any]:
    """Metrics per task (and baselines) as a JSON-ready report; `thresholds` as `p2t screen
    --threshold` sets them; `with_classical` adds the classical baseline (needs scikit-learn)."""
    model = load_model(model_ref, resolve_device(device))
    report: dict[str, Any] = {"model": model.config.name, "sha256": model.checksum, "split": split,
                              "tasks": {}}
    resolved = resolve_data(model.config, data)
    specs = {s.name: s for s in with_thresholds([model.config.task(t) for t, _ in resolved], thresholds)}
    for task, source in resolved:
        spec = specs[task]
        labelled = load_task(spec, source, model.config.encoder.max_residues)
        examples = [e for s, v in labelled.items() if split in (s, "all") for e in v]
        if not examples:
            raise UsageError(f"{source.path}: no {split} examples for task {task}")
        entry: dict[str, Any] = {"kind": spec.kind, "data": str(source.path), "examples": len(examples),
                                 "metrics": evaluate(model, spec, examples, max_tokens)}
        if spec.has_threshold:
            entry["threshold"] = spec.decision_threshold
        found = model.calibrations.get(task)
        if found is not None and found.fits(spec) and spec.task_kind.has_conformal(spec):
            # At every stored level: how often the intervals / sets held the truth, and their size.
            entry["coverage"] = coverage_report(spec, found, examples,
                                                predict_results(model, spec, examples, max_tokens))
        if with_baseline and labelled["train"]:
            name, metrics = baseline(spec, labelled["train"], examples)
            entry["baseline"] = {"name": name, "metrics": metrics}
        found = (classical(spec, labelled["train"], labelled["valid"], examples)
                 if with_classical and labelled["train"] else None)
        if found is not None:
            entry["classical"] = {"name": found[0], "metrics": found[1]}
        report["tasks"][task] = entry
    return report
