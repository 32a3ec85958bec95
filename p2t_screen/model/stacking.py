"""How decoder rows meet memory rows.

A batch's memory has B rows, one per input. A stacked decode runs G tasks over it at once: its
R = G x B decoder rows hold one block of B rows per task, so decoder row r reads memory row
r % B. Cross-attention and the pointer product regroup the decoder rows by memory row
(`by_memory_row`) instead of copying the memory G times; side inputs say which decoder rows read
them (`RowInput`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RowInput:
    """A side input: `value` (B, ...) holds one entry per memory row, and `readers` (R,) bool says
    which decoder rows read it (None: all). Decoder row r reads memory row r % B: a stacked decode puts
    the rows of G tasks one block of B after another (R = G x B), all over the same memory."""

    value: Tensor
    readers: Tensor | None = None

    def mask(self, like: Tensor) -> Tensor:
        """`readers` shaped to scale a (R, ...) tensor like `like` (ones when every row reads it)."""
        if self.readers is None:
            return torch.ones((), dtype=like.dtype, device=like.device)
        return self.readers[: like.shape[0]].view(-1, *[1] * (like.dim() - 1)).to(like.dtype)


@dataclass(frozen=True)
class SideInputs:
    """What the decoder reads beside its tokens, each enabled by a `DecoderConfig` option and None
    when off or when no row of the batch uses it (see `RowInput` for which rows do).

    `residue` (B, S, D), residue_skip: memory row j is added to the decoder input at position j.
    `pointer` (B, S, D), site_pointer: memory row p scores position token p.
    `pooled` (B, D), pooled_memory: added to every input.
    `task` (R,), task_every_step: task token ids whose embeddings join every input.
    """

    residue: RowInput | None = None
    pointer: RowInput | None = None
    pooled: RowInput | None = None
    task: Tensor | None = None


def by_memory_row(x: Tensor, batch: int) -> Tensor:
    """Decoder rows (G*B, T, ...) -> (B, G*T, ...): each memory row's G stacked rows side by side,
    so one attention or product over a memory row serves all of them (no copy of the memory)."""
    groups, t = x.shape[0] // batch, x.shape[1]
    x = x.view(groups, batch, t, *x.shape[2:]).transpose(0, 1)
    return x.reshape(batch, groups * t, *x.shape[3:])


def by_decoder_row(x: Tensor, groups: int) -> Tensor:
    """The inverse of `by_memory_row`: (B, G*T, ...) -> (G*B, T, ...)."""
    batch, t = x.shape[0], x.shape[1] // groups
    x = x.view(batch, groups, t, *x.shape[2:]).transpose(0, 1)
    return x.reshape(groups * batch, t, *x.shape[3:])
