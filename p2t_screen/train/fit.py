"""`p2t train`: data -> model -> epochs of mixed-task batches -> validation -> best model directory.

Runs are repeatable (every step reseeds from the run seed and the step number) and resumable:
a checkpoint beside the output (`<output>.train/state.pt`) holds weights, optimiser and position,
and a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..io.fasta import read_fasta
from ..io.records import ReadPolicy
from ..model.encoder import EncoderConfig, tokenize
from ..model.esm_io import load_esm2
from ..model.init import init_alignment, init_position_tokens
from ..model.model import P2TModel, create_model
from ..model.molecule import MoleculeConfig, molecule_vocab
from ..model.store import BUNDLED, load_model, save_model
from ..screen.batching import shuffled_batches
from ..tasks.inputs import encoder_input, ligand_of
from ..tasks.metrics import PRIMARY
from .config import TaskEntry, TrainRunConfig
from .data import Labelled, load_task, summarise
from .evaluate import evaluate
from .steps import Example, TrainConfig, collate, loss_on, lr_at, make_example

Event = Callable[[str, dict[str, Any]], None]


@dataclass
class FitState:
    """Where a run is; saved with the weights so it can resume."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    best: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


def state_dir(cfg: TrainRunConfig) -> Path:
    """Training state lives beside the model directory, never inside it."""
    return cfg.output.with_name(cfg.output.name + ".train")


def config_fingerprint(cfg: TrainRunConfig) -> str:
    """Identifies a config so a resume never continues a different run."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()


def _decoder_len(cfg: TrainRunConfig) -> int:
    if any(t.spec.prompt for t in cfg.tasks):  # candidates, <sep>, as many outputs, <eos>
        return 2 * cfg.encoder.max_residues + 4
    long_kinds = {"per_residue", "sites"}
    if any(t.spec.kind in long_kinds for t in cfg.tasks):
        return cfg.encoder.max_residues + 3
    return max(len(t.spec.labels) + 2 for t in cfg.tasks) + 8  # regression: 7 tokens


def build_model(cfg: TrainRunConfig, smiles: list[str] = ()) -> P2TModel:
    """A fresh model for the config's tasks, its encoder new, loaded, or taken from `init`;
    protein-ligand tasks add a molecule encoder whose vocabulary is the training `smiles`."""
    specs = [t.spec for t in cfg.tasks]
    opts = dict(asdict(cfg.decoder), max_len=_decoder_len(cfg))
    if any(t.inputs == "ligand" for t in specs):
        opts["molecule"] = MoleculeConfig(molecule_vocab(smiles), dim=cfg.decoder.dim,
                                          **asdict(cfg.molecule))
    align = opts.pop("align_init")
    enc = cfg.encoder
    if enc.init:
        base = load_model(enc.init)
        model = create_model(cfg.name, replace(base.config.encoder, source=BUNDLED), specs,
                             encoder=base.encoder, **opts)
        _copy_decoder(base, model)
        return model
    if enc.source == "new":
        ecfg = EncoderConfig(BUNDLED, enc.num_layers, enc.embed_dim, enc.attention_heads,
                             max_residues=enc.max_residues)
        model = create_model(cfg.name, ecfg, specs, **opts)
    else:
        loaded_cfg, encoder = load_esm2(enc.source)
        # A frozen encoder is referenced; a fine-tuned one is stored with the model.
        source = enc.source if enc.trainable_layers() == 0 else BUNDLED
        model = create_model(cfg.name, replace(loaded_cfg, source=source, max_residues=enc.max_residues),
                             specs, encoder=encoder, **opts)
    if align:
        init_position_tokens(model, scale=1.0)
        init_alignment(model)
    else:
        init_position_tokens(model)
    return model


def _copy_decoder(base: P2TModel, model: P2TModel) -> None:
    """Copy every decoder weight whose shape matches; token rows are matched by token string."""
    own, src = model.decoder.state_dict(), base.decoder.state_dict()
    rows = [(model.vocab.id(t), base.vocab.id(t)) for t in model.vocab.tokens if t in base.vocab]
    new_ids, old_ids = (torch.tensor(x) for x in zip(*rows))
    with torch.no_grad():
        for key, value in own.items():
            if key in ("embedding.weight", "output.weight", "output.bias"):
                value[new_ids] = src[key][old_ids]
            elif key in src and src[key].shape == value.shape:
                value.copy_(src[key])
            elif key in ("pos_embed", "memory_pos") and key in src:
                n = min(len(value), len(src[key]))
                value[:n] = src[key][:n]


def set_trainable(model: P2TModel, layers: int | None) -> None:
    """Freeze the encoder (0), train its last N layers, or all of it (None)."""
    for p in model.encoder.parameters():
        p.requires_grad = layers is None
    if layers:
        for layer in model.encoder.layers[-layers:]:
            for p in layer.parameters():
                p.requires_grad = True
        for p in model.encoder.emb_layer_norm_after.parameters():
            p.requires_grad = True


def _split_of(sequence: str) -> str:
    bucket = int(hashlib.sha256(sequence.encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def load_labelled(cfg: TrainRunConfig, entry: TaskEntry) -> dict[str, list[Labelled]]:
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
            out[split].append(Labelled(rec.seq_id, seq, sites, split, rec.truncated))
    return out


def _token_weights(entry: TaskEntry, train: list[Labelled]) -> dict[str, float] | None:
    """Inverse-frequency weights of label tokens (mean 1 over the labels seen)."""
    if not entry.class_weights or entry.spec.kind not in ("class", "multilabel", "per_residue"):
        return None
    counts: Counter = Counter()
    for ex in train:
        counts.update([ex.label] if entry.spec.kind == "class" else ex.label)
    total, n = sum(counts.values()), len(counts)
    return {lab: total / (n * c) for lab, c in counts.items()}


def epoch_plan(examples: dict[str, list[Example]], cfg: TrainRunConfig, epoch: int) -> list[list[Example]]:
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
    return shuffled_batches(chosen, lambda e: len(encoder_input(e.sequence)), cfg.train.max_tokens, rng)


class EncoderCache:
    """Frozen-encoder outputs per sequence (fp16 on the host), so epochs cost only the decoder."""

    def __init__(self) -> None:
        self.hidden: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def batch(self, model: P2TModel, batch: list[Example], esm: torch.Tensor) -> torch.Tensor:
        inputs = [encoder_input(e.sequence) for e in batch]
        missing = list(dict.fromkeys(s for s in inputs if s not in self.hidden))
        if missing:
            device = next(model.parameters()).device
            out = model.encoder_hidden(tokenize(missing, device))
            for i, seq in enumerate(missing):
                self.hidden[seq] = out[i, : len(seq) + 2].to("cpu", torch.float16)
        hidden = torch.zeros(len(batch), esm.shape[1], model.encoder.embed_dim)
        for i, seq in enumerate(inputs):
            h = self.hidden[seq]
            hidden[i, : h.shape[0]] = h.float()
        return hidden


def _save_state(cfg: TrainRunConfig, model: P2TModel, optimizer, state: FitState) -> None:
    folder = state_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".state.pt.tmp"
    torch.save({"fingerprint": config_fingerprint(cfg), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "state": json.dumps(asdict(state))}, tmp)
    tmp.replace(folder / "state.pt")


def _load_state(cfg: TrainRunConfig, model: P2TModel, optimizer) -> FitState | None:
    path = state_dir(cfg) / "state.pt"
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data["fingerprint"] != config_fingerprint(cfg):
        raise UsageError(f"{path} belongs to a different training config; pass --fresh to start "
                         "over (it will be deleted)")
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    return FitState(**json.loads(data["state"]))


def spread(items: list, n: int) -> list:
    """At most `n` items evenly spaced over the list: data files are often sorted (by label,
    cluster, length), so the first `n` would be a biased sample."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def validate(model: P2TModel, cfg: TrainRunConfig, valid: dict[str, list[Labelled]]) -> dict[str, dict]:
    """Each task's metrics on (up to `valid_max`) validation examples, via the screening path."""
    model.eval()
    out = {}
    for entry in cfg.tasks:
        examples = spread(valid[entry.spec.name], cfg.train.valid_max)
        if examples:
            out[entry.spec.name] = evaluate(model, entry.spec, examples, cfg.train.max_tokens)
    model.train()
    return out


def _score(metrics: dict[str, dict], cfg: TrainRunConfig) -> float:
    values = [metrics[t.spec.name][PRIMARY[t.spec.kind]] for t in cfg.tasks if t.spec.name in metrics]
    values = [v for v in values if v == v]  # NaN (e.g. constant predictions) counts as 0 below
    return sum(values) / len(cfg.tasks) if values else 0.0


def fit(cfg: TrainRunConfig, device: torch.device, fresh: bool = False,
        on_event: Event | None = None) -> dict[str, Any]:
    """Train, validate every epoch, keep the best model in `cfg.output`; returns a summary."""
    emit = on_event or (lambda kind, data: None)
    if fresh and state_dir(cfg).exists():
        shutil.rmtree(state_dir(cfg))
    labelled = {t.spec.name: load_labelled(cfg, t) for t in cfg.tasks}
    smiles = [ligand_of(e.sequence) for t in cfg.tasks if t.spec.inputs == "ligand"
              for e in labelled[t.spec.name]["train"]]
    torch.manual_seed(cfg.seed)  # initial weights are part of a repeatable run
    model = build_model(cfg, smiles)
    for entry in cfg.tasks:
        if not labelled[entry.spec.name]["train"]:
            raise UsageError(f"task {entry.spec.name}: no training examples")
        if entry.tune_threshold and not labelled[entry.spec.name]["valid"]:
            raise UsageError(f"task {entry.spec.name}: tune_threshold needs validation examples")
    data_summary = {t.spec.name: summarise(t.spec, labelled[t.spec.name]) for t in cfg.tasks}
    emit("data", data_summary)
    examples = {t.spec.name: [make_example(model, t.spec.name, e.sequence, e.label,
                                           _token_weights(t, labelled[t.spec.name]["train"]),
                                           t.input_dropout)
                              for e in labelled[t.spec.name]["train"]] for t in cfg.tasks}
    valid = {name: d["valid"] for name, d in labelled.items()}
    layers = cfg.encoder.trainable_layers()
    set_trainable(model, layers)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    state = FitState() if fresh else (_load_state(cfg, model, optimizer) or FitState())
    plans = [epoch_plan(examples, cfg, e) for e in range(cfg.train.epochs)]
    total = sum(map(len, plans)) if cfg.train.max_steps is None else min(
        cfg.train.max_steps, sum(map(len, plans)))
    sched = TrainConfig(steps=total, lr=cfg.train.lr, warmup=cfg.train.warmup)
    cache = EncoderCache() if layers == 0 and cfg.encoder.cache and cfg.train.mask_prob == 0 else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    emit("start", {"steps": total, "resumed_at": state.step, "epochs": cfg.train.epochs,
                   "encoder_cache": cache is not None})
    while state.epoch < cfg.train.epochs and state.step < total:
        started, seqs, losses = time.perf_counter(), 0, []
        plan = plans[state.epoch]
        while state.batch < len(plan) and state.step < total:
            batch = plan[state.batch]
            torch.manual_seed(cfg.seed * 1_000_003 + state.step)  # dropout: same per step on resume
            gen = torch.Generator().manual_seed(cfg.seed * 7_919 + state.step)
            tensors = collate(batch, cfg.train.mask_prob, gen, cfg.encoder.max_residues + 2,
                              model.config.molecule)
            hidden = cache.batch(model, batch, tensors.esm).to(device) if cache else None
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, sched)
            with autocast:
                loss = loss_on(model, tensors.to(device), hidden, cfg.train.loss == "example")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            losses.append(loss.detach().item())
            seqs += len(batch)
            state.step += 1
            state.batch += 1
            emit("step", {"step": state.step, "total": total, "loss": losses[-1],
                          "lr": optimizer.param_groups[0]["lr"], "epoch": state.epoch})
            if state.step % cfg.train.checkpoint_every == 0:
                _save_state(cfg, model, optimizer, state)
        if state.batch < len(plan):  # stopped by max_steps mid-epoch
            _save_state(cfg, model, optimizer, state)
            break
        seconds = time.perf_counter() - started
        metrics = validate(model, cfg, valid)
        score = _score(metrics, cfg)
        report = {"epoch": state.epoch, "loss": sum(losses) / max(len(losses), 1), "seconds": seconds,
                  "seq_per_s": seqs / seconds if seconds else 0.0, "score": score, "metrics": metrics}
        state.history.append(report)
        if score > state.best:
            state.best = score
            _save_model(cfg, model, state, data_summary)
        emit("epoch", {**report, "best": state.best})
        state.epoch, state.batch = state.epoch + 1, 0
        _save_state(cfg, model, optimizer, state)
    if not state.history or not (cfg.output / "config.json").exists():
        _save_model(cfg, model, state, data_summary)  # a max_steps run still leaves a model
    thresholds = tune_thresholds(cfg, device, valid, state, data_summary)
    if thresholds:
        emit("thresholds", thresholds)
    return {"output": str(cfg.output), "steps": state.step, "best": state.best, "history": state.history,
            "thresholds": thresholds}


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 15))  # 0.05 .. 0.70


def tune_thresholds(cfg: TrainRunConfig, device: torch.device, valid: dict[str, list[Labelled]],
                    state: FitState, data: dict) -> dict[str, dict]:
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
        name, metric = entry.spec.name, PRIMARY[entry.spec.kind]
        scores = {t: evaluate(model, replace(specs[name], threshold=t), valid[name],
                              cfg.train.max_tokens)[metric] for t in THRESHOLDS}
        best = max(THRESHOLDS, key=lambda t: (scores[t], -abs(t - 0.5)))
        specs[name] = replace(specs[name], threshold=best)
        found[name] = {"threshold": best, "metric": metric, "examples": len(valid[name]),
                       "validation": {str(t): v for t, v in scores.items()}}
    model.config = replace(model.config, tasks=tuple(specs[s.name] for s in model.config.tasks))
    _save_model(cfg, model, state, data, found)
    return found


def _save_model(cfg: TrainRunConfig, model: P2TModel, state: FitState, data: dict,
                thresholds: dict | None = None) -> None:
    auxiliary = [t.spec.name for t in cfg.tasks if t.auxiliary]
    extra = {"training": {"config": cfg.origin, "seed": cfg.seed, "steps": state.step,
                          "epoch": state.epoch, "encoder_train": cfg.encoder.train,
                          "history": state.history, **({"thresholds": thresholds} if thresholds else {}),
                          **({"auxiliary": auxiliary} if auxiliary else {})},
             "data": data}
    # Auxiliary tasks shaped the weights but are not offered: their specs stay out of the model.
    offered = replace(model.config, tasks=tuple(t for t in model.config.tasks if t.name not in auxiliary))
    save_model(model, cfg.output, extra, offered)
