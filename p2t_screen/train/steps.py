"""Teacher-forced training of a p2t model: examples -> token-budget batches -> AdamW steps.

The decoder sees `<bos> <task_X> label... <eos>`; the loss covers the label tokens and `<eos>`
(the task token is given, never predicted), pads are ignored.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.encoder import ALPHABET, tokenize
from ..model.model import P2TModel
from ..model.molecule import MoleculeConfig
from ..screen.batching import shuffled_batches
from ..tasks.inputs import encoder_input, ligand_of
from ..tasks.kind import KINDS

# Teacher forcing lets a per-residue decoder lower its loss by copying the previous label
# (labels come in runs) instead of reading the encoder; hiding half of the previous labels
# during training forces it to read the encoder. Pointer-like kinds need their previous token.
DEFAULT_INPUT_DROPOUT = {"per_residue": 0.5}


@dataclass(frozen=True)
class Example:
    """One (sequence, task) training pair, label already turned into decoder ids."""

    sequence: str
    target: tuple[int, ...]  # <bos> <task> label... <eos>
    weights: tuple[float, ...] | None = None  # per predicted token (target[1:]); None = all 1
    input_dropout: float = 0.0  # chance each previous label token is hidden from the decoder


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and batching settings (Prot2Token's recipe: AdamW, warmup, cosine, clip 1)."""

    steps: int
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 100
    max_tokens: int = 8192
    grad_clip: float = 1.0
    mask_prob: float = 0.0  # fraction of encoder input residues replaced by <mask>
    seed: int = 0


def make_example(model: P2TModel, task: str, sequence: str, label: object,
                 token_weights: dict[str, float] | None = None, input_dropout: float | None = None
                 ) -> Example:
    """Turn a label in its natural form into a training example; ValueError names the problem.

    `token_weights` (e.g. inverse label frequencies) scales the loss of those output tokens.
    """
    spec = model.config.task(task)
    kind = KINDS[spec.kind]
    tokens = kind.encode(spec, label, sequence)
    prompt = kind.prompt_tokens(spec, sequence)  # given to the decoder, never predicted
    vocab = model.vocab
    target = (vocab.bos_id, vocab.id(spec.token), *vocab.ids(prompt), *vocab.ids(tokens), vocab.eos_id)
    if len(target) > model.config.decoder.max_len + 1:
        raise ValueError(f"task {task}: {len(prompt) + len(tokens)} prompt and label tokens exceed "
                         "the decoder length")
    weights = None
    if token_weights or prompt:
        weights = (0.0, *([0.0] * len(prompt)),
                   *((token_weights or {}).get(t, 1.0) for t in tokens), 1.0)
    if input_dropout is None:
        input_dropout = DEFAULT_INPUT_DROPOUT.get(spec.kind, 0.0)
    return Example(sequence, target, weights, input_dropout)


def batches(examples: Sequence[Example], max_tokens: int, rng: random.Random) -> Iterator[list[Example]]:
    """Endless shuffled batches of similar length, each within the padded-token budget."""
    while True:
        yield from shuffled_batches(examples, _length, max_tokens, rng)


def _length(example: Example) -> int:
    return len(encoder_input(example.sequence))


@dataclass(frozen=True)
class Batch:
    """Model inputs and targets of one training batch."""

    esm: Tensor  # (B, T) encoder tokens, some masked as augmentation
    inputs: Tensor  # (B, L-1) decoder inputs, some previous labels hidden
    targets: Tensor  # (B, L-1) next tokens
    weights: Tensor  # (B, L-1) loss weight of each target
    molecules: Tensor | None = None  # (B, M) SMILES ids when any row has a ligand
    has_ligand: Tensor | None = None  # (B,) rows whose molecule memory the decoder may read

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(t) for t in (self.esm, self.inputs, self.targets, self.weights,
                                         self.molecules, self.has_ligand)))


def collate(batch: list[Example], mask_prob: float, gen: torch.Generator, max_width: int = 0,
            molecule: MoleculeConfig | None = None) -> Batch:
    """Tensors for a list of examples (padding, augmentation and loss weights included)."""
    esm = tokenize([encoder_input(e.sequence) for e in batch])
    smiles = [ligand_of(e.sequence) for e in batch]
    molecules = has_ligand = None
    if molecule is not None and any(s is not None for s in smiles):
        # Rows without a ligand get a stub "C" (never attended to: see has_ligand).
        molecules = molecule.encode([s if s is not None else "C" for s in smiles])
        has_ligand = torch.tensor([s is not None for s in smiles])
    # Pad widths to a multiple of 32 (at most `max_width`): fewer distinct shapes keep the CPU
    # allocator from fragmenting over a long run (padding is masked, so results do not change).
    extra = min(-esm.shape[1] % 32, max(max_width - esm.shape[1], 0))
    if extra:
        esm = F.pad(esm, (0, extra), value=ALPHABET.padding_idx)
    if mask_prob > 0:
        residues = (esm != ALPHABET.padding_idx) & (esm != ALPHABET.cls_idx) & (esm != ALPHABET.eos_idx)
        hit = (torch.rand(esm.shape, generator=gen) < mask_prob) & residues
        esm = esm.masked_fill(hit, ALPHABET.mask_idx)
    width = max(len(e.target) for e in batch)
    dec = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.ones((len(batch), width - 1))
    for i, e in enumerate(batch):
        dec[i, : len(e.target)] = torch.tensor(e.target)
        if e.weights is not None:
            weights[i, : len(e.weights)] = torch.tensor(e.weights)
    inputs = dec[:, :-1]
    rates = torch.tensor([e.input_dropout for e in batch])[:, None]  # (B, 1)
    if bool((rates > 0).any()):
        hide = torch.rand(inputs.shape, generator=gen) < rates
        hide[:, :2] = False  # <bos> and the task token always stay
        inputs = inputs.masked_fill(hide, 0)
    return Batch(esm, inputs, dec[:, 1:], weights, molecules, has_ligand)


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
        memory, keep = model.decoder.project_memory(hidden), batch.esm.ne(model.encoder.padding_idx)
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
                           **model.side_inputs(memory, inputs[:, 1], keep))  # (B, L-1, V)
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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(model: P2TModel, examples: Sequence[Example], cfg: TrainConfig,
          on_step: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Run `cfg.steps` optimiser steps; returns the loss of every step."""
    if not examples:
        raise ValueError("no training examples")
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses: list[float] = []
    stream = batches(examples, cfg.max_tokens, rng)
    for step in range(cfg.steps):
        batch = collate(next(stream), cfg.mask_prob, gen, model.config.encoder.max_residues + 2,
                        model.config.molecule)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = loss_on(model, batch.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(loss.detach().item())
        if on_step:
            on_step(step, losses[-1], optimizer.param_groups[0]["lr"])
    model.eval()
    return losses
