"""Initialisations that make position-reading tasks learnable quickly (shared sinusoidal codes,
aligned cross-attention); they change starting weights only, never shapes.
"""

from __future__ import annotations

import math

import torch

from .model import P2TModel


def sinusoid(positions: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position codes (Vaswani et al.), unit RMS: (positions, dim)."""
    pos = torch.arange(positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-torch.log(torch.tensor(1e4)) / dim))
    table = torch.zeros(positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


@torch.no_grad()
def init_position_tokens(model: P2TModel, scale: float = 0.5) -> None:
    """Start memory positions, decoder positions and position tokens from shared sinusoidal codes.

    Residue p sits at memory index p (after `<cls>`); giving the memory slot, decoder position p
    and the input embedding and output row of token "p" one shared code lets alignment and
    pointing be learned once for all positions instead of separately for each of ~1000. Only the
    initialisation changes: every tensor keeps its shape and stays trainable.
    """
    dec = model.decoder
    dim = dec.cfg.dim
    n = max(model.config.encoder.max_residues + 2, dec.cfg.max_len, dec.cfg.memory_positions)
    codes = sinusoid(n, dim) * scale
    if dec.memory_pos is not None:
        dec.memory_pos.copy_(codes[: len(dec.memory_pos)])
    # Decoder input j predicts the label of residue j (memory index j) in per-residue tasks.
    dec.pos_embed.copy_(codes[: len(dec.pos_embed)])
    for p in range(1, n):
        if str(p) in model.vocab:
            i = model.vocab.id(str(p))
            dec.embedding.weight[i] = codes[p]
            dec.output.weight[i] = codes[p]


@torch.no_grad()
def init_alignment(model: P2TModel, gain: float = 2.0, token_scale: float = 0.02) -> None:
    """Start every cross-attention looking up the memory slot of its own decoder position.

    Call after `init_position_tokens` (scale 1): queries and keys start as `gain` x identity
    (biases zero), so the shared position code in the decoder input matches the same code in
    the memory, and decoder step j attends to residue j from the first step on; token
    embeddings start small so the position code dominates the query. Per-residue and site tasks
    then learn what to read instead of first having to find where to read, which from a random
    start takes thousands of steps. Only the initialisation changes; every weight stays trainable.
    """
    dec = model.decoder
    dim = dec.cfg.dim
    eye = torch.eye(dim) * gain
    for layer in dec.layers:
        proj = layer.cross_attn.in_proj
        proj.weight[:dim] = eye  # queries
        proj.weight[dim:2 * dim] = eye  # keys
        proj.bias[:2 * dim] = 0.0
    positions = [model.vocab.id(t) for t in model.vocab.tokens if t.isdigit()]
    codes = dec.embedding.weight[positions].clone()
    dec.embedding.weight.mul_(token_scale)
    dec.embedding.weight[positions] = codes  # position tokens keep their shared code
    if dec.cfg.task_every_step:  # then the task embedding tells tasks apart: unit RMS, not small
        tasks = [model.vocab.id(t.token) for t in model.config.tasks]
        dec.embedding.weight[tasks] = torch.randn(len(tasks), dim)
    dec.embedding.weight[0] = 0.0  # <pad>
    # Output rows keep the code's direction but not its size: a normalised state (norm ~sqrt(D))
    # against unit-scale codes would start with logits near +-D, and a loss in the tens.
    dec.output.weight[positions] /= math.sqrt(dim)
