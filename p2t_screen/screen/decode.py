"""Batched, grammar-constrained greedy decoding.

The whole batch decodes together; finished rows are tracked by a device mask and write `<pad>`.
The loop never calls `.item()` per token: the only host sync is an occasional "all done?" check
for grammars whose length bound is loose (sites, multi-label).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model.decoder import Decoder, SideInputs
from ..tasks.grammar import Grammar, TableGrammar

EARLY_EXIT_EVERY = 8
NextLogits = Callable[[int, Tensor], Tensor]  # (step just taken, its tokens (B,)) -> logits (B, V)


@dataclass
class Decoded:
    """Decoder output for one task and batch, still on the device."""

    tokens: Tensor  # (B, S) chosen ids, <pad> after <eos>
    probs: Tensor  # (B, S) probability of each chosen token under the constrained distribution
    first_probs: Tensor  # (B, V) constrained distribution at the first step (class tasks)


def _choose(logits: Tensor, allowed: Tensor, done: Tensor, pad_id: int,
            bias: Tensor | None = None, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(token, its reported probability, reported log-probabilities): the choice reads the
    untempered distribution (plus `bias`); only the reported probabilities are tempered."""
    masked = logits.float().masked_fill(~allowed, float("-inf"))  # (B, V)
    logp = torch.log_softmax(masked, dim=-1)
    best = (logp if bias is None else logp + bias).argmax(-1)
    token = torch.where(done, torch.full_like(done, pad_id, dtype=torch.long), best)
    reported = logp if temperature == 1.0 else torch.log_softmax(masked / temperature, dim=-1)
    prob = reported.gather(1, token[:, None]).squeeze(1).exp().masked_fill(done, 0.0)
    return token, prob, reported


@torch.no_grad()
def greedy_decode(decoder: Decoder, memory_kv: list[tuple[Tensor, Tensor]], memory_keep: Tensor | None,
                  prompt: Tensor, grammar: Grammar, eos_id: int, pad_id: int = 0,
                  forced: Tensor | None = None, forced_len: Tensor | None = None,
                  side: SideInputs | None = None, feedback: bool = True, temperature: float = 1.0) -> Decoded:
    """Decode up to `grammar.max_steps` tokens after `prompt` (B, P) for every row, KV-cached.

    `forced` (B, F) with `forced_len` (B,): per-row prompt tokens of different lengths. Row b's
    first forced_len[b] steps take forced[b] instead of the model's choice (probability 1), so
    a row-specific prompt costs no padding inside the sequence; they are still returned in
    `tokens` (callers strip them). `side`: see `SideInputs`.
    `feedback=False`: the decoder reads `<pad>` instead of each chosen token (the model was trained
    so), so every step's logits come from one pass over the prompt and `<pad>`s.
    `temperature` divides the logits of the reported probabilities (calibration), never the choice.
    """
    batch, plen = prompt.shape
    steps = grammar.max_steps
    if not feedback:
        if forced is not None:
            raise ValueError("forced prompt tokens need feedback")
        inputs = torch.cat([prompt, prompt.new_full((batch, steps - 1), pad_id)], dim=1)
        ahead = decoder(inputs, memory_kv, memory_keep, None, 0, side)[:, plen - 1:]  # (B, steps, V)
        return _greedy(ahead[:, 0], lambda step, token: ahead[:, step + 1], grammar, eos_id, pad_id,
                       temperature=temperature)
    caches = decoder.new_caches(batch, plen + steps, memory_kv[0][0])
    first = decoder(prompt, memory_kv, memory_keep, caches, 0, side)[:, -1]  # (B, V)

    def next_logits(step: int, token: Tensor) -> Tensor:
        return decoder(token[:, None], memory_kv, memory_keep, caches, plen + step, side)[:, -1]

    return _greedy(first, next_logits, grammar, eos_id, pad_id, forced, forced_len, temperature)


def _greedy(logits: Tensor, next_logits: NextLogits, grammar: Grammar, eos_id: int, pad_id: int,
            forced: Tensor | None = None, forced_len: Tensor | None = None, temperature: float = 1.0) -> Decoded:
    """The choice loop shared by both decoders: constrain, choose, record, advance the grammar."""
    batch, steps, device = logits.shape[0], grammar.max_steps, logits.device
    tokens = torch.full((batch, steps), pad_id, dtype=torch.long, device=device)
    probs = torch.zeros((batch, steps), dtype=torch.float32, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    first = None
    loose_bound = not isinstance(grammar, TableGrammar)
    for step in range(steps):
        token, prob, logp = _choose(logits, grammar.allowed(step), done, pad_id, grammar.bias(step), temperature)
        if forced is not None and step < forced.shape[1]:
            given = forced_len > step
            token = torch.where(given, forced[:, step], token)
            prob = prob.masked_fill(given, 1.0)
        if first is None:
            first = logp.exp()
        tokens[:, step], probs[:, step] = token, prob
        grammar.advance(token)
        done = done | token.eq(eos_id)
        if step == steps - 1:
            break
        if loose_bound and step % EARLY_EXIT_EVERY == EARLY_EXIT_EVERY - 1 and bool(done.all()):
            tokens, probs = tokens[:, : step + 1], probs[:, : step + 1]
            break
        logits = next_logits(step, token)
    return Decoded(tokens=tokens, probs=probs, first_probs=first)
