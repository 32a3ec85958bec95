"""One task's block of a stacked decode: its B decoder rows over a batch of B inputs, and what
decoding them gives back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..tasks.grammar import Grammar
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab


@dataclass
class Decoded:
    """Decoder output for one task and batch, still on the device."""

    tokens: Tensor  # (B, S) chosen ids, <pad> after <eos>
    probs: Tensor  # (B, S) probability of each chosen token under the constrained distribution
    first_probs: Tensor  # (B, V) constrained distribution at the first step (class tasks)
    # (B, S, K) each step's reported distribution over the block's `label_ids` (None: not asked)
    label_dists: Tensor | None = None


@dataclass(frozen=True)
class TaskBlock:
    """One task's block of a stacked decode: its prompt token, grammar over the batch's B rows and,
    optionally, per-row forced prompt tokens `forced` (B, F) of lengths `forced_len` (B,): row b's
    first forced_len[b] steps take forced[b] instead of the model's choice (probability 1), so a
    row-specific prompt costs no padding inside the sequence; they are still returned in `tokens`
    (callers strip them: `prompts`). `temperature` divides the logits of the reported
    probabilities (calibration), never the choice. `label_ids`: when given, each step's reported
    distribution over these tokens is kept (`Decoded.label_dists`: conformal label sets)."""

    task_id: int
    grammar: Grammar
    forced: Tensor | None = None
    forced_len: Tensor | None = None
    temperature: float = 1.0
    prompts: tuple[tuple[int, ...], ...] = ()  # each row's forced prompt ids (what `forced` holds)
    label_ids: tuple[int, ...] = ()

    @property
    def prompt_lengths(self) -> list[int]:
        """How many leading tokens of each row's output are its forced prompt."""
        return [len(p) for p in self.prompts]


def task_block(spec: TaskSpec, vocab: Vocab, proteins: Sequence[str], max_steps: int,
               device: torch.device, label_dists: bool = False) -> TaskBlock:
    """A task's block over a batch of proteins: its grammar and any per-row prompt of its kind;
    `label_dists`: keep each step's distribution over the task's labels."""
    kind = spec.task_kind
    grammar = kind.grammar(spec, vocab, proteins, max_steps, device)
    prompts = tuple(tuple(vocab.ids(kind.prompt_tokens(spec, p))) for p in proteins)
    forced = forced_len = None
    if any(prompts):
        lengths = [len(p) for p in prompts]
        table = torch.full((len(prompts), max(lengths)), vocab.pad_id, dtype=torch.long)
        for row, ids in enumerate(prompts):
            table[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        forced, forced_len = table.to(device), torch.tensor(lengths, device=device)
    return TaskBlock(vocab.id(spec.token), grammar, forced, forced_len, spec.reported_temperature, prompts,
                     tuple(vocab.ids(spec.labels)) if label_dists else ())
