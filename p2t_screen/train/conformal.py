"""Conformal calibration of a model from labelled proteins, and its coverage measured.

`calibrate_tasks` screens a task's held-out proteins through the real screening path
(`Screener.predict`, constrained decoding, the task's temperature), asks the task's kind for each
protein's scores (`TaskKind.conformal_scores`) and stores the constants of every level in the
model directory (`trust.store`). `build_domain` indexes the representations of the training
proteins and fixes the in-domain threshold on held-out ones (`trust.domain`). `coverage_report`
is what `p2t eval` shows: at each level, how often the answers held the truth and how large they
were, overall and split by `in_domain`.

`p2t calibrate MODEL TASK=FILE` (`run_calibrate`) does all of it for any model, an imported
Prot2Token checkpoint included; `p2t train` calls it on the validation split after training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..model.encoder import encoder_tokens
from ..model.model import P2TModel
from ..model.store import file_sha256, load_model
from ..screen.batching import token_budget_batches
from ..screen.screener import ScreenConfig, Screener
from ..tasks.inputs import ModelInput
from ..tasks.spec import TaskResult, TaskSpec
from ..tasks.conformal import LEVELS, level_key
from ..trust.domain import DomainIndex, build_index, pooled
from ..trust.store import TaskCalibration, now, write_calibration
from .data import Labelled

Results = list[TaskResult | None]


def predict_results(model: P2TModel, spec: TaskSpec, examples: Sequence[Labelled],
                    max_tokens: int = 8192) -> Results:
    """Each example's result with its label distributions kept (None where the row failed):
    every distinct input screened once, in token-budget batches."""
    screener = Screener(model, [spec], ScreenConfig(max_tokens=max_tokens), keep_label_dists=True)
    keys = list(dict.fromkeys(e.input for e in examples))
    found: dict[ModelInput, Any] = {}
    for batch in token_budget_batches(keys, lambda k: k.encoder_length, max_tokens):
        found.update(zip(batch, screener.predict(batch, [spec])[spec.name]))
    return [found[e.input] if isinstance(found[e.input], TaskResult) else None for e in examples]


def fit_task(spec: TaskSpec, examples: Sequence[Labelled], results: Results,
             source: Mapping[str, Any] | None = None) -> TaskCalibration:
    """A task's conformal constants at every level of LEVELS, from held-out labelled examples and
    their results (failed rows give no scores: at run time they get no answer either)."""
    kind = spec.task_kind
    if not kind.has_conformal(spec):
        raise UsageError(f"task {spec.name!r} ({spec.kind}{', encoding ' + spec.encoding if spec.encoding else ''}) "
                         "has no conformal answers")
    scores = [kind.conformal_scores(spec, r, e.label) for e, r in zip(examples, results) if r is not None]
    if not scores:
        raise UsageError(f"task {spec.name!r}: no calibration example gave a result")
    return TaskCalibration(kind=spec.kind, method=kind.conformal_method, examples=len(scores),
                           levels={level_key(v): kind.fit_conformal(spec, scores, v) for v in LEVELS},
                           temperature=spec.temperature,
                           threshold=spec.decision_threshold if spec.has_threshold else None,
                           source=dict(source or {}), created=now())


@dataclass
class _Tally:
    covered: float = 0.0
    units: int = 0
    sizes: float = 0.0
    proteins: int = 0

    def add(self, covered: float, units: int, size: float) -> None:
        self.covered, self.units = self.covered + covered, self.units + units
        self.sizes, self.proteins = self.sizes + size, self.proteins + 1

    def to_dict(self) -> dict[str, float]:
        return {"coverage": self.covered / self.units if self.units else float("nan"),
                "mean_size": self.sizes / self.proteins if self.proteins else float("nan"),
                "proteins": self.proteins, "units": self.units}


def coverage_report(spec: TaskSpec, calibration: TaskCalibration, examples: Sequence[Labelled],
                    results: Results) -> dict[str, Any]:
    """At each stored level: the share of units (proteins; residues for per-residue tasks) whose
    answer held the truth (for risk-controlled calls: one minus the mean loss), the mean set
    size or interval width, overall and split by `in_domain` where the model has an index. A
    failed row counts as not covered."""
    kind, out = spec.task_kind, {}
    for level in LEVELS:
        params = calibration.params(level)
        tallies = {"all": _Tally(), "in_domain": _Tally(), "out_of_domain": _Tally()}
        for example, result in zip(examples, results):
            if result is None:
                tallies["all"].add(0.0, 1, float("nan"))
                continue
            kind.conformal_answer(spec, result, params)
            found = kind.conformal_check(spec, result, example.label)
            tallies["all"].add(*found)
            if result.in_domain is not None:
                tallies["in_domain" if result.in_domain else "out_of_domain"].add(*found)
        out[level_key(level)] = {name: t.to_dict() for name, t in tallies.items() if t.proteins}
    return out


def representations(model: P2TModel, proteins: Sequence[str], max_tokens: int = 8192) -> np.ndarray:
    """Each protein's pooled memory (N, D): the representation the domain index compares."""
    out: dict[str, np.ndarray] = {}
    device = next(model.parameters()).device
    enc = model.encoder
    distinct = list(dict.fromkeys(proteins))
    with torch.inference_mode():
        for batch in token_budget_batches(distinct, lambda p: len(p) + 2, max_tokens):
            tokens = encoder_tokens([ModelInput(p) for p in batch], device)
            memory, _ = model.encode(tokens)
            residues = tokens.ne(enc.padding_idx) & tokens.ne(enc.cls_idx) & tokens.ne(enc.eos_idx)  # (B, T)
            out.update(zip(batch, pooled(memory, residues).float().cpu().numpy()))
    return np.stack([out[p] for p in proteins]) if proteins else np.zeros((0, model.config.decoder.dim))


def build_domain(model: P2TModel, train: Sequence[str], held_out: Sequence[str],
                 max_tokens: int = 8192) -> tuple[DomainIndex, dict[str, Any]]:
    """The domain index of the distinct training proteins, its threshold fixed on the distinct
    held-out ones, and the entry the calibration file keeps about it."""
    train, held_out = list(dict.fromkeys(train)), list(dict.fromkeys(held_out))
    index = build_index(representations(model, train, max_tokens), representations(model, held_out, max_tokens))
    entry = {"proteins": int(index.vectors.shape[0]), "training_proteins": len(train), "held_out": len(held_out),
             "dims": int(index.vectors.shape[1]), "neighbours": index.neighbours, "threshold": index.threshold,
             "created": now()}
    return index, entry


def calibrate_model(model_dir: Path, held_out: Mapping[str, Sequence[Labelled]],
                    train_proteins: Sequence[str] = (), sources: Mapping[str, Mapping[str, Any]] | None = None,
                    max_tokens: int = 8192, progress: Callable[[str, dict[str, Any]], None] | None = None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Calibrate every task of `held_out` (task -> held-out labelled examples) and, given
    training proteins, build the domain index; store both in the model directory and return
    what was stored, with each task's coverage on its own calibration examples."""
    model = load_model(model_dir, device)
    specs = {t.name: t for t in model.config.tasks}
    unknown = sorted(set(held_out) - set(specs))
    if unknown:
        raise UsageError(f"model {model_dir} offers no task {', '.join(map(repr, unknown))} "
                         f"(it offers: {', '.join(specs)})")
    found: dict[str, Any] = {"tasks": {}}
    if train_proteins:
        proteins = [e.input.protein for examples in held_out.values() for e in examples]
        index, entry = build_domain(model, train_proteins, proteins, max_tokens)
        index.save(model_dir)
        write_calibration(model_dir, domain=entry)
        model.domain = index.to(next(model.parameters()).device)
        found["domain"] = entry
        if progress:
            progress("domain", entry)
    fits = {}
    for name, examples in held_out.items():
        spec = specs[name]
        results = predict_results(model, spec, examples, max_tokens)
        fits[name] = fit_task(spec, examples, results, (sources or {}).get(name))
        found["tasks"][name] = {"calibration": fits[name].to_dict(),
                                "coverage_on_calibration": coverage_report(spec, fits[name], examples, results)}
        if progress:
            progress(name, found["tasks"][name])
    write_calibration(model_dir, fits)
    return found


def source_of(path: Path, split: str) -> dict[str, Any]:
    """Where calibration examples came from: the file, its sha256 and the split used."""
    return {"file": str(Path(path).resolve()), "sha256": file_sha256(Path(path)), "split": split}


def held_out_split(labelled: Mapping[str, list[Labelled]], split: str) -> tuple[str, list[Labelled]]:
    """The examples a calibration uses: `split` itself, or for "auto" the `calibration` rows,
    else the `valid` rows, else (a file without a split column: every row is `train`) all rows."""
    if split == "all":
        return "all", [e for rows in labelled.values() for e in rows]
    if split != "auto":
        return split, list(labelled.get(split, []))
    for name in ("calibration", "valid"):
        if labelled.get(name):
            return name, list(labelled[name])
    only_train = not any(rows for name, rows in labelled.items() if name != "train")
    return ("all", list(labelled["train"])) if only_train else ("valid", [])


def run_calibrate(model_ref: str, data: list[str], split: str = "auto", max_tokens: int = 8192,
                  device: str = "cpu", domain: bool = True,
                  progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`p2t calibrate`: each TASK=FILE's held-out rows calibrate the task (`held_out_split`); with
    `domain`, the files' `train` rows (when the held-out rows are not the whole file) index the
    applicability domain. The model directory gains (or updates) `calibration.json` and
    `domain.safetensors`."""
    from ..model.locations import resolve_model_path
    from ..model.runtime import resolve_device
    from ..model.store import read_model_config
    from .data import load_task
    from .evaluate import resolve_data

    path = resolve_model_path(model_ref)
    config = read_model_config(path)
    held_out: dict[str, list[Labelled]] = {}
    sources: dict[str, dict[str, Any]] = {}
    train: list[str] = []
    for task, source in resolve_data(config, data):
        spec = config.task(task)
        labelled = load_task(spec, source, config.encoder.max_residues)
        used, examples = held_out_split(labelled, split)
        if not examples:
            raise UsageError(f"{source.path}: no {split if split != 'auto' else 'calibration or valid'} rows "
                             f"for task {task} (the split column says which rows are held out)")
        held_out[task] = examples
        sources[task] = source_of(source.path, used)
        if used != "all":
            train += [e.input.protein for e in labelled["train"]]
    return calibrate_model(path, held_out, train if domain else (), sources, max_tokens, progress,
                           resolve_device(device))
