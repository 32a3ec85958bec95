"""Evaluation on labelled data through the real screening path, and trivial baselines.

Predictions come from `Screener.screen` (constrained greedy decoding, the code `p2t screen`
runs); metrics compare them with the labels in their natural form.

`run_eval` is `p2t eval`: data arguments resolved to (task, file), screened, scored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.records import ReadPolicy, records_from_sequences
from ..model.model import P2TModel
from ..model.runtime import resolve_device
from ..model.store import load_model
from ..screen.batching import token_budget_batches
from ..screen.expansion import Pairing
from ..screen.run_record import with_thresholds
from ..screen.screener import ScreenConfig, Screener
from ..tasks.inputs import PAIR_SEP, encoder_input, protein_of
from ..tasks.kind import KINDS
from ..tasks.metrics import KIND_METRICS, random_site_baseline
from ..tasks.spec import TaskResult, TaskSpec
from .config import load_config
from .data import Labelled, TaskSource, load_task

_FROM_ROW = {"regression": "value", "class": "label", "multilabel": "labels", "sites": "sites",
             "per_residue": "residue_labels"}


def _empty_prediction(spec: TaskSpec, example: Labelled) -> Any:
    """What a failed row counts as: nothing predicted (it still counts against the model)."""
    return {"regression": float("nan"), "class": "", "multilabel": [], "sites": [],
            "per_residue": [""] * len(protein_of(example.sequence))}[spec.kind]


def predict_labels(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
                   max_tokens: int = 8192) -> list[Any]:
    """Predictions in natural form, one per example, via `Screener.screen`.

    Pair examples ("A/B") screen A with B as its partner, paired by a per-example id."""
    policy = ReadPolicy(on_invalid="skip", max_residues=model.config.encoder.max_residues)
    pairing = None
    if spec.inputs == "pair":
        halves = [e.sequence.split(PAIR_SEP, 1) for e in examples]
        records = records_from_sequences([(f"e{i}", a) for i, (a, _) in enumerate(halves)], policy)
        pairing = Pairing(tuple(records_from_sequences(
            [(f"e{i}", b) for i, (_, b) in enumerate(halves)], policy)), by_id=True)
    elif spec.inputs == "ligand":  # each example has its own ligand: decode the inputs directly
        screener = Screener(model, [spec], ScreenConfig(max_tokens=max_tokens))
        keys = list(dict.fromkeys(e.sequence for e in examples))
        found: dict[str, Any] = {}
        for batch in token_budget_batches(keys, lambda k: len(encoder_input(k)), max_tokens):
            found.update(zip(batch, screener.predict(batch, [spec])[spec.name]))
        return [getattr(found[e.sequence], _FROM_ROW[spec.kind]) if isinstance(found[e.sequence], TaskResult)
                else _empty_prediction(spec, e) for e in examples]
    else:
        records = records_from_sequences([(e.id, e.sequence) for e in examples], policy)
    screener = Screener(model, [spec], ScreenConfig(max_tokens=max_tokens), pairs=pairing)
    column = _FROM_ROW[spec.kind]
    preds: list[Any] = [None] * len(examples)
    for batch in screener.screen(records):
        for row in batch.to_pylist():
            i = row["input_index"]
            preds[i] = row[column] if row["status"] == "ok" else _empty_prediction(spec, examples[i])
    return preds


def score(spec: TaskSpec, examples: Sequence[Labelled], preds: Sequence[Any]) -> dict[str, float]:
    """The task kind's metrics for predictions against the examples' labels."""
    truth = [e.label for e in examples]
    fn = KIND_METRICS[spec.kind]
    if spec.kind == "multilabel":
        return fn(truth, preds, labels=spec.labels)
    if spec.kind == "sites":
        kind = KINDS["sites"]
        return fn(truth, preds, candidates=[len(kind.candidates(spec, e.sequence)) for e in examples])
    if spec.kind == "regression":
        pairs = [(t, p) for t, p in zip(truth, preds) if p == p]  # failed rows (NaN) are reported
        out = fn([t for t, _ in pairs], [p for _, p in pairs])
        return {**out, "failed": len(truth) - len(pairs)}
    return fn(truth, preds)


def evaluate(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
             max_tokens: int = 8192) -> dict[str, float]:
    """Screen the examples and score the predictions."""
    return score(spec, examples, predict_labels(model, spec, examples, max_tokens))


def baseline(spec: TaskSpec, train: Sequence[Labelled], test: Sequence[Labelled]) -> tuple[str, dict]:
    """A trivial baseline fitted on `train`, scored on `test`: (description, metrics)."""
    if spec.kind == "regression":
        mean = sum(e.label for e in train) / len(train)
        return f"train mean {mean:.3f}", score(spec, test, [mean] * len(test))
    if spec.kind == "class":
        top = Counter(e.label for e in train).most_common(1)[0][0]
        return f"majority class '{top}'", score(spec, test, [top] * len(test))
    if spec.kind == "multilabel":
        freq = Counter(lab for e in train for lab in e.label)
        chosen = [lab for lab in spec.labels if freq[lab] >= len(train) / 2]
        if not chosen and freq:
            chosen = [freq.most_common(1)[0][0]]
        return f"label frequencies: always {chosen}", score(spec, test, [chosen] * len(test))
    if spec.kind == "per_residue":
        by_aa: dict[str, Counter] = defaultdict(Counter)
        for e in train:
            for aa, lab in zip(e.sequence, e.label):
                by_aa[aa][lab] += 1
        overall = Counter(lab for e in train for lab in e.label).most_common(1)[0][0]
        rule = {aa: c.most_common(1)[0][0] for aa, c in by_aa.items()}
        preds = [[rule.get(aa, overall) for aa in e.sequence] for e in test]
        return "amino-acid composition: most frequent label of each residue type", score(spec, test, preds)
    truth = [e.label for e in test]
    return ("random positions, as many as true sites",
            random_site_baseline([protein_of(e.sequence) for e in test], truth))


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
            name, metrics = baseline(spec, labelled["train"], examples)
            entry["baseline"] = {"name": name, "metrics": metrics}
        report["tasks"][task] = entry
    return report
