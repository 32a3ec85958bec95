"""Token grammars for constrained decoding, as batched tensor state machines.

Every grammar answers `allowed(step) -> [B, V] bool` and consumes the chosen tokens with
`advance(tokens)`; `bias(step)` may add offsets to the legal tokens' log-probabilities before
the choice (a decision threshold), never to the probabilities reported. All state lives on the
device, so the decoding loop never waits for the host.
`max_steps` bounds the loop: by the last step only `<eos>` is legal, so every row terminates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .vocab import Vocab


class Grammar:
    """Base class: a legal-token mask per decoding step for a batch of rows."""

    max_steps: int
    # Whether rows may end well before `max_steps` (a loose bound, such as a sites task's), so the
    # decoding loop checks now and then whether all of a block's rows are done.
    rows_end_early: bool = True

    def allowed(self, step: int) -> Tensor:  # (B, V) bool
        raise NotImplementedError

    def advance(self, tokens: Tensor) -> None:  # tokens: (B,)
        """Update per-row state with the tokens just chosen (default: stateless)."""

    def bias(self, step: int) -> Tensor | None:  # (B, V) or (1, V) float, or None
        """Offsets added to the log-probabilities for choosing the token (default: none)."""
        return None


def _one_hot(vocab_size: int, ids: Sequence[int], device: torch.device) -> Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    if ids:
        mask[torch.tensor(list(ids), device=device)] = True
    return mask


class TableGrammar(Grammar):
    """Legality depends only on the step: row `step` of a (max_steps, V) table, same for all rows."""

    rows_end_early = False  # a table's few steps are its length: nothing to gain from checking

    def __init__(self, table: Tensor, batch: int, offsets: Tensor | None = None) -> None:
        self.table = table
        self.batch = batch
        self.max_steps = table.shape[0]
        self.offsets = offsets  # (max_steps, V) choice offsets, or None

    def allowed(self, step: int) -> Tensor:
        return self.table[step].expand(self.batch, -1)

    def bias(self, step: int) -> Tensor | None:
        return None if self.offsets is None else self.offsets[step][None, :]


def regression_grammar(vocab: Vocab, batch: int, decimals: int, device: torch.device) -> TableGrammar:
    """Prot2Token's regression string `0.d[d...]`: '0', '.', 1..decimals digits, `<eos>`."""
    v = len(vocab)
    digits = _one_hot(v, vocab.ids([str(d) for d in range(10)]), device)
    eos = _one_hot(v, [vocab.eos_id], device)
    rows = [_one_hot(v, [vocab.id("0")], device), _one_hot(v, [vocab.id(".")], device), digits]
    rows += [digits | eos] * (decimals - 1)
    rows.append(eos)
    return TableGrammar(torch.stack(rows), batch)


def class_grammar(vocab: Vocab, labels: Sequence[str], batch: int, device: torch.device) -> TableGrammar:
    """Exactly one class token, then `<eos>`."""
    v = len(vocab)
    table = torch.stack([_one_hot(v, vocab.ids(labels), device), _one_hot(v, [vocab.eos_id], device)])
    return TableGrammar(table, batch)


def flags_grammar(vocab: Vocab, labels: Sequence[str], absent: str, batch: int, device: torch.device,
                  threshold: float = 0.5) -> TableGrammar:
    """One decision per label, in order: the label's token (present) or `absent`, then `<eos>`.

    A label is chosen when its probability reaches `threshold`: its token's log-probability
    gets the offset log((1 - t) / t), so p >= t exactly when log p + offset >= log(1 - p).
    """
    v = len(vocab)
    absent_id = vocab.id(absent)
    rows = [_one_hot(v, [vocab.id(lab), absent_id], device) for lab in labels]
    table = torch.stack([*rows, _one_hot(v, [vocab.eos_id], device)])
    offsets = None
    if threshold != 0.5:
        offsets = torch.zeros(table.shape, device=device)
        offsets[torch.arange(len(labels), device=device), torch.tensor(vocab.ids(labels), device=device)] = \
            math.log((1.0 - threshold) / threshold)
    return TableGrammar(table, batch, offsets)


class PerResidueGrammar(Grammar):
    """Exactly one label per residue used (row lengths differ), then `<eos>`."""

    def __init__(self, vocab: Vocab, labels: Sequence[str], lengths: Tensor, max_steps: int) -> None:
        device = lengths.device
        self.lengths = lengths[:, None]  # (B, 1)
        self.labels = _one_hot(len(vocab), vocab.ids(labels), device)[None, :]  # (1, V)
        self.eos = _one_hot(len(vocab), [vocab.eos_id], device)[None, :]  # (1, V)
        self.max_steps = max_steps  # longest row + 1, known on the host (no device sync)

    def allowed(self, step: int) -> Tensor:
        return torch.where(step < self.lengths, self.labels, self.eos)


class MultiLabelGrammar(Grammar):
    """Any subset of labels, each at most once, in canonical order, then `<eos>`."""

    def __init__(self, vocab: Vocab, labels: Sequence[str], batch: int, device: torch.device,
                 max_steps: int | None = None) -> None:
        rank = torch.full((len(vocab),), -1, dtype=torch.long, device=device)
        rank[torch.tensor(vocab.ids(labels), device=device)] = torch.arange(len(labels), device=device)
        self.rank = rank  # (V,) canonical rank of each label token, -1 elsewhere
        self.eos = _one_hot(len(vocab), [vocab.eos_id], device)[None, :]
        self.last = torch.full((batch, 1), -1, dtype=torch.long, device=device)  # (B, 1)
        # At most every label then <eos>, or fewer when the decoder is shorter (imported models).
        self.max_steps = min(len(labels) + 1, max_steps or len(labels) + 1)

    def allowed(self, step: int) -> Tensor:
        if step >= self.max_steps - 1:
            return self.eos.expand(self.last.shape[0], -1)
        return (self.rank[None, :] > self.last) | self.eos

    def advance(self, tokens: Tensor) -> None:
        r = self.rank[tokens][:, None]
        self.last = torch.where(r >= 0, r, self.last)


class SitesGrammar(Grammar):
    """Strictly ascending 1-based positions among each row's candidates, then `<eos>`.

    `candidates` is (B, P+1) bool: candidates[b, p] says position p may be emitted for row b
    (inside the residues used and of an allowed residue type). Column 0 is never a candidate.
    """

    def __init__(self, vocab: Vocab, candidates: Tensor, max_steps: int,
                 sep_id: int | None = None) -> None:
        device = candidates.device
        # Prompted tasks replay the candidates then `sep_id`; the ascending order restarts there.
        self.sep_id = sep_id
        n_pos = candidates.shape[1] - 1
        pos_ids = torch.tensor(vocab.ids([str(p) for p in range(1, n_pos + 1)]), device=device)
        pos_of = torch.full((len(vocab),), -1, dtype=torch.long, device=device)
        pos_of[pos_ids] = torch.arange(1, n_pos + 1, device=device)
        self.pos_ids, self.pos_of = pos_ids, pos_of
        self.candidates = candidates[:, 1:]  # (B, P)
        self.positions = torch.arange(1, n_pos + 1, device=device)[None, :]  # (1, P)
        self.eos_id, self.vocab_size = vocab.eos_id, len(vocab)
        self.last = torch.zeros((candidates.shape[0], 1), dtype=torch.long, device=device)
        self.max_steps = max_steps

    def allowed(self, step: int) -> Tensor:
        batch = self.candidates.shape[0]
        mask = torch.zeros((batch, self.vocab_size), dtype=torch.bool, device=self.candidates.device)
        mask[:, self.eos_id] = True
        if step < self.max_steps - 1:
            mask[:, self.pos_ids] = self.candidates & (self.positions > self.last)
        return mask

    def advance(self, tokens: Tensor) -> None:
        p = self.pos_of[tokens][:, None]
        self.last = torch.where(p > 0, p, self.last)
        if self.sep_id is not None:
            self.last = self.last.masked_fill(tokens[:, None].eq(self.sep_id), 0)
