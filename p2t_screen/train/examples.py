"""Training examples: labels turned into decoder targets, and batches of them as tensors.

The decoder sees `<bos> <task_X> [prompt...] label... <eos>`; the loss covers the label tokens
and `<eos>` (the task token and prompt are given, never predicted), pads are ignored.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.encoder import ALPHABET, encoder_tokens
from ..model.model import P2TModel
from ..model.molecule import MoleculeConfig
from ..screen.batching import shuffled_batches
from ..tasks.inputs import ModelInput, as_input


@dataclass(frozen=True)
class Example:
    """One (input, task) training pair, label already turned into decoder ids."""

    input: ModelInput
    target: tuple[int, ...]  # <bos> <task> label... <eos>
    weights: tuple[float, ...] | None = None  # per predicted token (target[1:]); None = all 1
    input_dropout: float = 0.0  # chance each previous label token is hidden from the decoder


def make_example(model: P2TModel, task: str, item: ModelInput | str, label: object,
                 token_weights: dict[str, float] | None = None, input_dropout: float | None = None
                 ) -> Example:
    """Turn a label in its natural form into a training example; ValueError names the problem.

    `item` is the model input (a plain string: one protein). `token_weights` (e.g. inverse label
    frequencies) scales the loss of those output tokens; `input_dropout` (None: the kind's
    default) hides previous label tokens from the decoder.
    """
    spec = model.config.task(task)
    kind, item = spec.task_kind, as_input(item)
    tokens = kind.encode(spec, label, item.protein)
    prompt = kind.prompt_tokens(spec, item.protein)  # given to the decoder, never predicted
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
        input_dropout = kind.default_input_dropout
    return Example(item, target, weights, input_dropout)


def batches(examples: Sequence[Example], max_tokens: int, rng: random.Random) -> Iterator[list[Example]]:
    """Endless shuffled batches of similar length, each within the padded-token budget."""
    while True:
        yield from shuffled_batches(examples, _length, max_tokens, rng)


def _length(example: Example) -> int:
    return example.input.encoder_length


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
    esm = encoder_tokens([e.input.encoder_input for e in batch])
    smiles = [e.input.ligand for e in batch]
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
