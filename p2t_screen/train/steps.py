"""Optimisation: the teacher-forced loss, the learning-rate schedule and one optimiser step,
shared by `p2t train`, `p2t pretrain` and the plain step loop `train_steps`."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.model import P2TModel
from .examples import Batch, Example, batches, collate


def loss_on(model: P2TModel, batch: Batch, hidden: Tensor | None = None,
            per_example: bool = False) -> Tensor:
    """Weighted mean cross-entropy over label and `<eos>` tokens.

    `hidden` (B, T, E) replaces the encoder pass when its outputs are cached (frozen encoder).
    `per_example`: average each example's tokens first, then the examples, so a class label
    (one token) weighs as much as a 500-residue secondary structure; by default every token
    weighs the same (Prot2Token's loss), and long per-residue outputs dominate a mixed batch.
    """
    if hidden is None:
        memory, keep = model.encode(batch.esm)
    else:
        keep = batch.esm.ne(model.encoder.padding_idx)
        memory = model.decoder.project_memory(hidden, keep)
    if batch.molecules is not None:
        mol, mol_keep = model.molecule(batch.molecules)
        keep = keep if keep is not None else torch.ones(memory.shape[:2], dtype=torch.bool,
                                                       device=memory.device)
        memory = torch.cat([memory, mol.to(memory.dtype)], dim=1)
        keep = torch.cat([keep, mol_keep & batch.has_ligand[:, None]], dim=1)
    inputs = batch.inputs
    silent = [model.vocab.id(t.token) for t in model.config.tasks if not model.feeds_back(t)]
    if silent:  # these tasks never see their previous outputs: <pad> after the prompt
        rows = torch.isin(inputs[:, 1], torch.tensor(silent, device=inputs.device))
        after = torch.arange(inputs.shape[1], device=inputs.device) >= 2
        inputs = inputs.masked_fill(rows[:, None] & after, model.vocab.pad_id)
    logits = model.decoder(inputs, model.decoder.memory_kv(memory), keep,
                           side=model.side_inputs(memory, inputs[:, 1], keep))  # (B, L-1, V)
    target = batch.targets
    valid = target.ne(model.vocab.pad_id)
    valid[:, 0] = False  # the task token is given, not predicted
    w = valid.float() * batch.weights
    ce = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, L-1)
    if per_example:
        total = w.sum(1)
        counted = total > 0
        return ((ce * w).sum(1)[counted] / total[counted]).mean()
    return (ce * w).sum() / w.sum().clamp_min(1e-8)


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup, then cosine decay to 10% of the peak, over `steps` optimiser steps
    (Prot2Token's recipe)."""

    steps: int
    lr: float = 5e-4
    warmup: int = 100

    def at(self, step: int) -> float:
        """The learning rate of step `step` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor, params: Iterable[Tensor],
                   grad_clip: float, lr: float) -> float:
    """One step at learning rate `lr` on the gradients of `loss`, clipped to norm `grad_clip`;
    returns the loss as a number."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.detach().item()


def train_steps(model: P2TModel, examples: Sequence[Example], schedule: LRSchedule, *,
                max_tokens: int = 8192, weight_decay: float = 0.01, grad_clip: float = 1.0,
                mask_prob: float = 0.0, seed: int = 0,
                on_step: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Run `schedule.steps` AdamW steps on shuffled batches of `examples` (no epochs, no
    validation: see `train.run` for that); returns the loss of every step."""
    if not examples:
        raise ValueError("no training examples")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=weight_decay)
    model.train()
    losses: list[float] = []
    stream = batches(examples, max_tokens, rng)
    for step in range(schedule.steps):
        batch: Batch = collate(next(stream), mask_prob, gen, model.config.encoder.max_residues + 2,
                               model.config.molecule)
        lr = schedule.at(step)
        losses.append(optimizer_step(optimizer, loss_on(model, batch.to(device)), model.parameters(),
                                     grad_clip, lr))
        if on_step:
            on_step(step, losses[-1], lr)
    model.eval()
    return losses
