"""`p2t train`: data -> model -> epochs of mixed-task batches -> validation -> best model directory.

Runs are repeatable (every step reseeds from the run seed and the step number) and resumable:
a checkpoint beside the output (`<output>.train/state.pt`) holds weights, optimiser and position,
and a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..io.fasta import read_fasta
from ..io.records import ReadPolicy
from ..model.model import P2TModel
from ..screen.batching import shuffled_batches
from ..tasks.inputs import LIGAND, ModelInput
from .build import build_model, set_trainable
from .config import TaskEntry, TrainingConfig
from .data import Labelled, load_task, summarise
from .conformal import calibrate_model, source_of
from .encoder_cache import EncoderCache
from .evaluate import evaluate
from .examples import Example, collate, make_example
from .state import RunState, load_state, save_state
from .steps import LRSchedule, loss_on, optimizer_step
from .thresholds import save_trained, tune_thresholds

Event = Callable[[str, dict[str, Any]], None]


def state_dir(cfg: TrainingConfig) -> Path:
    """Training state lives beside the model directory, never inside it."""
    return cfg.output.with_name(cfg.output.name + ".train")


def config_fingerprint(cfg: TrainingConfig) -> str:
    """Identifies a config so a resume never continues a different run."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()


def _split_of(sequence: str) -> str:
    bucket = int(hashlib.sha256(sequence.encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def load_labelled(cfg: TrainingConfig, entry: TaskEntry) -> dict[str, list[Labelled]]:
    """A task's validated examples; self-supervised labels are computed from the sequences."""
    if entry.source is not None:
        return load_task(entry.spec, entry.source, cfg.encoder.max_residues)
    fasta, residue = entry.self_supervised
    out: dict[str, list[Labelled]] = {"train": [], "valid": [], "test": []}
    policy = ReadPolicy(on_invalid="skip", max_residues=cfg.encoder.max_residues)
    for rec in read_fasta(fasta, policy):
        if rec.residues_used:
            seq = rec.used_sequence
            sites = [i + 1 for i, aa in enumerate(seq) if aa == residue]
            split = _split_of(rec.sequence)
            out[split].append(Labelled(rec.seq_id, ModelInput(seq), sites, split, rec.truncated))
    return out


def _token_weights(entry: TaskEntry, train: list[Labelled]) -> dict[str, float] | None:
    """Inverse-frequency weights of label tokens (mean 1 over the labels seen)."""
    if not entry.class_weights:
        return None
    counts: Counter = Counter()
    for ex in train:
        counts.update(entry.spec.task_kind.label_counts(entry.spec, ex.label))
    if not counts:  # the kind has no label tokens to weigh (regression, sites)
        return None
    total, n = sum(counts.values()), len(counts)
    return {lab: total / (n * c) for lab, c in counts.items()}


def epoch_plan(examples: dict[str, list[Example]], cfg: TrainingConfig, epoch: int) -> list[list[Example]]:
    """This epoch's batches: per-task sampling (weight, cap), length-grouped, shuffled; the same
    plan for the same (seed, epoch), so a resumed run replays it exactly."""
    rng = random.Random(cfg.seed * 100_003 + epoch)
    chosen: list[Example] = []
    for entry in cfg.tasks:
        pool = examples[entry.spec.name]
        n = int(len(pool) * entry.weight)
        if entry.max_per_epoch is not None:
            n = min(n, entry.max_per_epoch)
        chosen += [pool[rng.randrange(len(pool))] for _ in range(n)] if n > len(pool) else rng.sample(pool, n)
    return shuffled_batches(chosen, lambda e: e.input.encoder_length, cfg.train.max_tokens, rng)


def spread(items: list, n: int) -> list:
    """At most `n` items evenly spaced over the list: data files are often sorted (by label,
    cluster, length), so the first `n` would be a biased sample."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def validate(model: P2TModel, cfg: TrainingConfig, valid: dict[str, list[Labelled]]) -> dict[str, dict]:
    """Each task's metrics on (up to `valid_max`) validation examples, via the screening path."""
    model.eval()
    out = {}
    for entry in cfg.tasks:
        examples = spread(valid[entry.spec.name], cfg.train.valid_max)
        if examples:
            out[entry.spec.name] = evaluate(model, entry.spec, examples, cfg.train.max_tokens)
    model.train()
    return out


def _score(metrics: dict[str, dict], cfg: TrainingConfig) -> float:
    """The epoch's score: the mean primary validation metric of the tasks the model will offer
    (auxiliary ones are trained for the shared weights, not kept for their own figures)."""
    offered = [t for t in cfg.tasks if not t.auxiliary]
    values = [metrics[t.spec.name][t.spec.task_kind.primary_metric] for t in offered if t.spec.name in metrics]
    values = [v for v in values if v == v]  # NaN (e.g. constant predictions) counts as 0 below
    return sum(values) / len(offered) if values else 0.0


@dataclass
class _Prepared:
    """A run's model and data, before its first step."""

    model: P2TModel
    examples: dict[str, list[Example]]
    valid: dict[str, list[Labelled]]
    data: dict[str, Any]


def _prepare(cfg: TrainingConfig, emit: Event) -> _Prepared:
    labelled = {t.spec.name: load_labelled(cfg, t) for t in cfg.tasks}
    smiles = [e.input.ligand for t in cfg.tasks if t.spec.inputs == LIGAND
              for e in labelled[t.spec.name]["train"]]
    torch.manual_seed(cfg.seed)  # initial weights are part of a repeatable run
    model = build_model(cfg, smiles)
    for entry in cfg.tasks:
        if not labelled[entry.spec.name]["train"]:
            raise UsageError(f"task {entry.spec.name}: no training examples")
        if entry.tune_threshold and not labelled[entry.spec.name]["valid"]:
            raise UsageError(f"task {entry.spec.name}: tune_threshold needs validation examples")
    data = {t.spec.name: summarise(t.spec, labelled[t.spec.name]) for t in cfg.tasks}
    emit("data", data)
    examples = {t.spec.name: [make_example(model, t.spec.name, e.input, e.label,
                                           _token_weights(t, labelled[t.spec.name]["train"]),
                                           t.input_dropout)
                              for e in labelled[t.spec.name]["train"]] for t in cfg.tasks}
    return _Prepared(model, examples, {name: d["valid"] for name, d in labelled.items()}, data)


class _Trainer:
    """The optimiser loop of one run: steps, checkpoints, epochs with validation."""

    def __init__(self, cfg: TrainingConfig, prepared: _Prepared, device: torch.device, fresh: bool,
                 emit: Event) -> None:
        self.cfg, self.prep, self.emit = cfg, prepared, emit
        model = prepared.model
        layers = cfg.encoder.trainable_layers()
        set_trainable(model, layers)
        model.to(device).train()
        self.device = device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.state = RunState() if fresh else (self._load() or RunState())
        self.plans = [epoch_plan(prepared.examples, cfg, e) for e in range(cfg.train.epochs)]
        planned = sum(map(len, self.plans))
        self.total = planned if cfg.train.max_steps is None else min(cfg.train.max_steps, planned)
        self.schedule = LRSchedule(steps=self.total, lr=cfg.train.lr, warmup=cfg.train.warmup)
        frozen = layers == 0 and cfg.encoder.cache and cfg.train.mask_prob == 0
        self.cache = EncoderCache() if frozen else None
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def _load(self) -> RunState | None:
        data = load_state(state_dir(self.cfg) / "state.pt", config_fingerprint(self.cfg),
                          "belongs to a different training config; pass --fresh to start over "
                          "(it will be deleted)")
        if data is None:
            return None
        self.prep.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        return RunState(**json.loads(data["state"]))

    def save(self) -> None:
        save_state(state_dir(self.cfg) / "state.pt", config_fingerprint(self.cfg),
                   {"model": self.prep.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "state": json.dumps(asdict(self.state))})

    def step(self, batch: list[Example]) -> float:
        cfg, state, model = self.cfg, self.state, self.prep.model
        torch.manual_seed(cfg.seed * 1_000_003 + state.step)  # dropout: same per step on resume
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + state.step)
        tensors = collate(batch, cfg.train.mask_prob, gen, cfg.encoder.max_residues + 2, model.config.molecule)
        hidden = self.cache.batch(model, batch, tensors.esm).to(self.device) if self.cache else None
        with self.autocast:
            loss = loss_on(model, tensors.to(self.device), hidden, cfg.train.loss == "example")
        return optimizer_step(self.optimizer, loss, self.params, cfg.train.grad_clip, self.schedule.at(state.step))

    def epoch(self) -> bool:
        """Run the rest of the current epoch; False when max_steps stopped it part-way."""
        cfg, state = self.cfg, self.state
        started, seqs, losses = time.perf_counter(), 0, []
        plan = self.plans[state.epoch]
        while state.batch < len(plan) and state.step < self.total:
            losses.append(self.step(plan[state.batch]))
            seqs += len(plan[state.batch])
            state.step, state.batch = state.step + 1, state.batch + 1
            self.emit("step", {"step": state.step, "total": self.total, "loss": losses[-1],
                               "lr": self.optimizer.param_groups[0]["lr"], "epoch": state.epoch})
            if state.step % cfg.train.checkpoint_every == 0:
                self.save()
        if state.batch < len(plan):
            self.save()
            return False
        seconds = time.perf_counter() - started
        metrics = validate(self.prep.model, cfg, self.prep.valid)
        score = _score(metrics, cfg)
        report = {"epoch": state.epoch, "loss": sum(losses) / max(len(losses), 1), "seconds": seconds,
                  "seq_per_s": seqs / seconds if seconds else 0.0, "score": score, "metrics": metrics}
        state.history.append(report)
        if score > state.best:
            state.best = score
            save_trained(cfg, self.prep.model, state, self.prep.data)
        self.emit("epoch", {**report, "best": state.best})
        state.epoch, state.batch = state.epoch + 1, 0
        self.save()
        return True


def run_training(cfg: TrainingConfig, device: torch.device, fresh: bool = False,
                 on_event: Event | None = None) -> dict[str, Any]:
    """Train, validate every epoch, keep the best model in `cfg.output`; returns a summary."""
    emit = on_event or (lambda event, data: None)
    if fresh and state_dir(cfg).exists():
        shutil.rmtree(state_dir(cfg))
    prepared = _prepare(cfg, emit)
    trainer = _Trainer(cfg, prepared, device, fresh, emit)
    state = trainer.state
    emit("start", {"steps": trainer.total, "resumed_at": state.step, "epochs": cfg.train.epochs,
                   "encoder_cache": trainer.cache is not None})
    while state.epoch < cfg.train.epochs and state.step < trainer.total:
        if not trainer.epoch():
            break
    if not state.history or not (cfg.output / "config.json").exists():
        save_trained(cfg, prepared.model, state, prepared.data)  # a max_steps run still leaves a model
    thresholds = tune_thresholds(cfg, device, prepared.valid, state, prepared.data)
    if thresholds:
        emit("thresholds", thresholds)
    trust = calibrate_trained(cfg, prepared, device)
    if trust:
        emit("calibration", trust)
    return {"output": str(cfg.output), "steps": state.step, "best": state.best, "history": state.history,
            "thresholds": thresholds, "calibration": trust}


def calibrate_trained(cfg: TrainingConfig, prepared: _Prepared, device: torch.device) -> dict[str, Any]:
    """Conformal calibration of the saved model's offered tasks on their validation splits (the
    epoch and thresholds already chosen on them; `train.conformal`), and its domain index over the
    training proteins; {} when no offered task has validation examples."""
    offered = [t for t in cfg.tasks if not t.auxiliary and t.spec.task_kind.has_conformal(t.spec)
               and prepared.valid.get(t.spec.name)]
    if not offered:
        return {}
    sources = {t.spec.name: source_of(t.source.path, "valid") for t in offered if t.source is not None}
    train = [e.input.protein for examples in prepared.examples.values() for e in examples]
    return calibrate_model(cfg.output, {t.spec.name: prepared.valid[t.spec.name] for t in offered}, train,
                           sources, cfg.train.max_tokens, device=device)
