"""The blocks of one stacked decode as one grammar, forced-token table and temperature column.

G blocks of B rows make R = G x B decoder rows, block g = task g over the batch's B inputs. The
blocks are sorted longest grammar first, so the blocks still running are always a prefix of the
stack (`active`): a block whose grammar has ended leaves from the end, and the rows that run
are `live_rows` = active x B.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .blocks import Decoded, TaskBlock


class Stack:
    """The blocks of a stacked decode; `active` counts the blocks still running (a prefix)."""

    def __init__(self, blocks: Sequence[TaskBlock], batch: int, eos_id: int, vocab_size: int,
                 device: torch.device) -> None:
        self.order = sorted(range(len(blocks)), key=lambda i: -blocks[i].grammar.max_steps)
        self.blocks = [blocks[i] for i in self.order]
        self.batch, self.active = batch, len(blocks)
        self.max_steps = self.blocks[0].grammar.max_steps
        self.eos_id = eos_id
        self.eos = torch.zeros((batch, vocab_size), dtype=torch.bool, device=device)  # a finished block's mask
        self.eos[:, eos_id] = True
        self.block_task_ids = [b.task_id for b in self.blocks]  # (G,) on the host: which task each block is
        self.task_ids = torch.tensor(self.block_task_ids, device=device).repeat_interleave(batch)  # (R,)
        self.forced = self.forced_len = None
        if any(b.forced is not None for b in self.blocks):
            width = max(b.forced.shape[1] for b in self.blocks if b.forced is not None)
            self.forced = torch.zeros((len(blocks) * batch, width), dtype=torch.long, device=device)
            self.forced_len = torch.zeros(len(blocks) * batch, dtype=torch.long, device=device)
            for g, b in enumerate(self.blocks):
                if b.forced is not None:
                    self.forced[g * batch:(g + 1) * batch, : b.forced.shape[1]] = b.forced
                    self.forced_len[g * batch:(g + 1) * batch] = b.forced_len
        # Blocks that keep their label distributions: each row's label ids, padded to the widest (R, K).
        self.label_width = max((len(b.label_ids) for b in self.blocks), default=0)
        self.label_index = None
        if self.label_width:
            table = [list(b.label_ids) + [0] * (self.label_width - len(b.label_ids)) for b in self.blocks]
            self.label_index = torch.tensor(table, dtype=torch.long, device=device).repeat_interleave(batch, 0)
        temps = [b.temperature for b in self.blocks]
        self.temperature: float | Tensor = 1.0 if all(t == 1.0 for t in temps) else \
            torch.tensor(temps, device=device).repeat_interleave(batch)[:, None]  # (R, 1)

    @property
    def live_rows(self) -> int:
        """Decoder rows still running: the active blocks' rows."""
        return self.active * self.batch

    def allowed(self, step: int) -> Tensor:  # (live_rows, V)
        masks = [b.grammar.allowed(step) if step < b.grammar.max_steps else self.eos
                 for b in self.blocks[: self.active]]
        return masks[0] if len(masks) == 1 else torch.cat(masks)

    def bias(self, step: int) -> Tensor | None:  # (live_rows, V) or None
        biases = [b.grammar.bias(step) if step < b.grammar.max_steps else None for b in self.blocks[: self.active]]
        if all(x is None for x in biases):
            return None
        like = next(x for x in biases if x is not None)
        return torch.cat([(like.new_zeros(()) if x is None else x).expand(self.batch, like.shape[-1])
                          for x in biases])

    def temperature_of_live_rows(self) -> float | Tensor:
        return self.temperature if isinstance(self.temperature, float) else self.temperature[: self.live_rows]

    def advance(self, tokens: Tensor) -> None:
        """Each active block's grammar consumes its rows' tokens."""
        for g, block in enumerate(self.blocks[: self.active]):
            block.grammar.advance(tokens[g * self.batch:(g + 1) * self.batch])

    def running_after(self, step: int, done: Tensor, check_done: bool) -> int:
        """Blocks that still run at step + 1: those whose grammar goes on and, when `check_done`
        (one host sync), that still have an unfinished row, or one behind them does. Only
        grammars whose rows may end well before their bound are worth the check."""
        active = sum(1 for b in self.blocks[: self.active] if b.grammar.max_steps > step + 1)
        if check_done and any(b.grammar.rows_end_early for b in self.blocks[:active]):
            unfinished = (~done[: active * self.batch].view(active, self.batch).all(1)).tolist()
            active = max((g + 1 for g, u in enumerate(unfinished) if u), default=0)
        return active

    def label_dists(self, logp: Tensor) -> Tensor:
        """The live rows' reported distribution over their block's labels (live_rows, K), from
        reported log-probabilities (live_rows, V)."""
        return logp.gather(1, self.label_index[: logp.shape[0]]).exp()

    def split(self, tokens: Tensor, probs: Tensor, first: Tensor, dists: Tensor | None = None) -> list[Decoded]:
        """Each block's rows, in the order the blocks were given."""
        out = []
        for g, b in enumerate(self.blocks):
            rows, steps = slice(g * self.batch, (g + 1) * self.batch), b.grammar.max_steps
            kept = dists[rows, :steps, : len(b.label_ids)] if dists is not None and b.label_ids else None
            out.append(Decoded(tokens[rows, :steps], probs[rows, :steps], first[rows], kept))
        in_given_order: list[Decoded] = [None] * len(out)  # type: ignore[list-item]
        for g, i in enumerate(self.order):
            in_given_order[i] = out[g]
        return in_given_order
