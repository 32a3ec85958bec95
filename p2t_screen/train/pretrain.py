"""Masked-language pre-training of an ESM2 encoder on unlabelled sequences (`p2t pretrain`).

ESM2's own objective: 15% of the residues are chosen; of those 80% become `<mask>`, 10% a random
amino acid and 10% stay; the loss is cross-entropy on the chosen residues through fair-esm's
`lm_head`. Long sequences are cut to a random window (`crop`), as ESM2 crops to 1024. The result
is a fair-esm checkpoint (`.pt`) that `p2t train` takes as `encoder.source`.

Runs are repeatable (each step reseeds from the seed and the step number) and resumable: a
checkpoint beside the output (`<output>.train/state.pt`) holds weights, optimiser and step.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from esm.model.esm2 import ESM2
from torch import Tensor

from ..errors import UsageError
from ..io.records import AMINO_ACIDS
from ..model.encoder import ALPHABET, EncoderConfig, esm2_forward, tokenize
from ..model.esm_io import save_esm_checkpoint
from ..screen.batching import shuffled_batches
from .state import load_state, save_state
from .steps import LRSchedule, optimizer_step

_AA_IDS = torch.tensor([ALPHABET.get_idx(a) for a in AMINO_ACIDS])


@dataclass(frozen=True)
class PretrainConfig:
    """Encoder shape and optimiser settings of a masked-LM run."""

    steps: int
    num_layers: int = 4
    embed_dim: int = 128
    attention_heads: int = 8
    crop: int = 512  # longest window of a sequence seen in one example
    max_tokens: int = 16384  # padded encoder tokens per batch
    lr: float = 1e-3
    warmup: int = 500
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200

    def fingerprint(self, sequences: Sequence[str]) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for seq in sequences:
            digest.update(seq.encode() + b"\n")
        return digest.hexdigest()


def mask_tokens(tokens: Tensor, prob: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT/ESM masking of residue tokens: (inputs, targets) with targets -100 where unchosen."""
    residues = (tokens != ALPHABET.padding_idx) & (tokens != ALPHABET.cls_idx) & (tokens != ALPHABET.eos_idx)
    chosen = (torch.rand(tokens.shape, generator=gen) < prob) & residues
    roll = torch.rand(tokens.shape, generator=gen)
    inputs = tokens.masked_fill(chosen & (roll < 0.8), ALPHABET.mask_idx)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    random_aa = _AA_IDS[torch.randint(len(_AA_IDS), tokens.shape, generator=gen)]
    inputs = torch.where(swap, random_aa, inputs)
    return inputs, tokens.masked_fill(~chosen, -100)


def mlm_loss(encoder: ESM2, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the chosen residues."""
    logits = encoder.lm_head(esm2_forward(encoder, inputs))  # (B, T, V)
    return F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100)


def crop(sequence: str, length: int, rng: random.Random) -> str:
    """A random window of at most `length` residues."""
    if len(sequence) <= length:
        return sequence
    start = rng.randrange(len(sequence) - length + 1)
    return sequence[start:start + length]


def _epoch_batches(sequences: Sequence[str], cfg: PretrainConfig, epoch: int) -> list[list[str]]:
    rng = random.Random(cfg.seed * 100_003 + epoch)
    windows = [crop(s, cfg.crop, rng) for s in sequences]
    return shuffled_batches(windows, len, cfg.max_tokens, rng)


@torch.no_grad()
def evaluate_mlm(encoder: ESM2, sequences: Sequence[str], cfg: PretrainConfig,
                 device: torch.device) -> dict[str, float]:
    """Masked-LM loss, perplexity and accuracy on held-out sequences (fixed masks)."""
    gen = torch.Generator().manual_seed(12345)
    rng = random.Random(12345)
    windows = [crop(s, cfg.crop, rng) for s in sequences]
    total, right, nll = 0, 0, 0.0
    encoder.eval()
    for batch in shuffled_batches(windows, len, cfg.max_tokens, rng):
        inputs, targets = mask_tokens(tokenize(batch), cfg.mask_prob, gen)
        logits = encoder.lm_head(esm2_forward(encoder, inputs.to(device))).float()
        targets = targets.to(device)
        chosen = targets.ne(-100)
        nll += F.cross_entropy(logits[chosen], targets[chosen], reduction="sum").item()
        right += int((logits[chosen].argmax(-1) == targets[chosen]).sum())
        total += int(chosen.sum())
    encoder.train()
    loss = nll / max(total, 1)
    return {"loss": loss, "perplexity": math.exp(loss), "accuracy": right / max(total, 1),
            "residues": total}


def pretrain(sequences: Sequence[str], valid: Sequence[str], cfg: PretrainConfig, output: Path,
             device: torch.device, fresh: bool = False,
             on_event: Callable[[str, dict], None] | None = None,
             stage_over: Callable[[int], bool] | None = None) -> dict:
    """Train an ESM2 encoder by masked-LM and write it to `output` (.pt); returns a summary.

    `stage_over(step)`, asked after each step: True ends this stage there, its state saved, and
    returns {"paused_at": step, ...} without writing `output`; the same call again resumes and
    ends exactly where an uninterrupted run does (a schedule split into stages of bounded time)."""
    if not sequences:
        raise UsageError("pretrain: no training sequences")
    emit = on_event or (lambda event, data: None)
    state_path = output.with_name(output.name + ".train") / "state.pt"
    fingerprint = cfg.fingerprint(sequences)
    torch.manual_seed(cfg.seed)
    encoder = EncoderConfig("new", cfg.num_layers, cfg.embed_dim, cfg.attention_heads).build().to(device)
    encoder.train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, index, spent = 0, 0, 0, 0.0
    saved = None if fresh else load_state(
        state_path, fingerprint, "belongs to a different pre-training run (settings or sequences "
        "changed); pass --fresh to start over")
    if saved is not None:
        encoder.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step, epoch, index = saved["step"], saved["epoch"], saved["index"]
        spent = saved.get("seconds", 0.0)  # the earlier stages' training time
    schedule = LRSchedule(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup)
    emit("start", {"steps": cfg.steps, "resumed_at": step, "sequences": len(sequences)})
    plan = _epoch_batches(sequences, cfg, epoch)
    started, residues = time.perf_counter(), 0
    while step < cfg.steps:
        if index >= len(plan):
            epoch, index = epoch + 1, 0
            plan = _epoch_batches(sequences, cfg, epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
        inputs, targets = mask_tokens(tokenize(plan[index]), cfg.mask_prob, gen)
        loss = optimizer_step(optimizer, mlm_loss(encoder, inputs.to(device), targets.to(device)),
                              encoder.parameters(), cfg.grad_clip, schedule.at(step))
        residues += sum(map(len, plan[index]))
        step, index = step + 1, index + 1
        emit("step", {"step": step, "total": cfg.steps, "loss": loss, "epoch": epoch,
                      "lr": optimizer.param_groups[0]["lr"],
                      "residues_per_s": residues / (time.perf_counter() - started)})
        pause = step < cfg.steps and stage_over is not None and stage_over(step)
        seconds = spent + time.perf_counter() - started
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or pause:
            save_state(state_path, fingerprint, {"model": encoder.state_dict(), "optimizer": optimizer.state_dict(),
                                                 "step": step, "epoch": epoch, "index": index, "seconds": seconds})
        if pause:
            emit("paused", {"step": step, "total": cfg.steps, "state": str(state_path)})
            return {"paused_at": step, "steps": cfg.steps, "state": str(state_path), "seconds": seconds}
    return _finish(encoder, valid, cfg, output, device, (step, epoch, spent + time.perf_counter() - started),
                   len(sequences), emit)


def _finish(encoder: ESM2, valid: Sequence[str], cfg: PretrainConfig, output: Path, device: torch.device,
            done: tuple[int, int, float], train_sequences: int, emit: Callable[[str, dict], None]) -> dict:
    """Held-out metrics, the checkpoint and its summary file; `done`: (steps, epochs seen, training
    seconds over every stage)."""
    step, epoch, seconds = done
    metrics = evaluate_mlm(encoder, valid, cfg, device) if valid else {}
    output.parent.mkdir(parents=True, exist_ok=True)
    save_esm_checkpoint(encoder.cpu().eval(), output)
    summary = {"output": str(output), "steps": step, "epochs_seen": epoch, "seconds": seconds, "valid": metrics,
               "config": asdict(cfg), "train_sequences": train_sequences}
    output.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    emit("done", summary)
    return summary
