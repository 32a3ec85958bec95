"""The choice of each decoding step's tokens: greedy under the grammar's mask, with probabilities
reported under an optional temperature (calibration) that never changes the choice."""

from __future__ import annotations

import torch
from torch import Tensor


def choose(logits: Tensor, allowed: Tensor, done: Tensor, pad_id: int,
           bias: Tensor | None = None, temperature: float | Tensor = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(token, its reported probability, reported log-probabilities) for logits (R, V): the choice
    reads the untempered distribution over the `allowed` tokens (R, V) plus `bias`; only the
    reported probabilities are tempered (`temperature`: a number, or (R, 1) per row). Rows already
    `done` (R,) take `<pad>` with probability 0."""
    masked = logits.float().masked_fill(~allowed, float("-inf"))  # (R, V)
    logp = torch.log_softmax(masked, dim=-1)
    best = (logp if bias is None else logp + bias).argmax(-1)
    token = torch.where(done, torch.full_like(done, pad_id, dtype=torch.long), best)
    plain = isinstance(temperature, float) and temperature == 1.0
    reported = logp if plain else torch.log_softmax(masked / temperature, dim=-1)
    prob = reported.gather(1, token[:, None]).squeeze(1).exp().masked_fill(done, 0.0)
    return token, prob, reported
