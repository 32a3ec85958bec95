"""Encoders that share their bottom layers run them once.

Models fine-tuned from one ESM2 (the published Prot2Token checkpoints tune only the top layers
of ESM2-650M) hold identical copies of its embedding and lower layers. `shared_depth` finds how
many layers several models' encoders share, by a sha256 of each layer's tensors; a `SharedTrunk`
then runs those layers once per batch and each model only its own layers above them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

import torch
from torch import Tensor

from .encoder import EncoderState, esm2_embed, esm2_layers
from .model import P2TModel


def _digest(module: torch.nn.Module, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _embedding_digest(model: P2TModel) -> str:
    """sha256 of the embedding, with what shapes its output: token dropout, rotary frequencies,
    memory layout, residue limit, heads."""
    cfg = model.config
    head = (f"{cfg.encoder.token_dropout}|{cfg.encoder.rotary_inv_freq}|{cfg.memory_layout}|"
            f"{cfg.encoder.max_residues}|{cfg.encoder.attention_heads}")
    return _digest(model.encoder.embed_tokens, head)


def shared_depth(models: list[P2TModel]) -> int:
    """Encoder layers all `models` share from the bottom (0 when they share no layer); layers are
    hashed bottom up and only until the first that differs."""
    if len(models) < 2 or len({_embedding_digest(m) for m in models}) > 1:
        return 0
    depth, most = 0, min(len(m.encoder.layers) for m in models)
    while depth < most and len({_digest(m.encoder.layers[depth]) for m in models}) == 1:
        depth += 1
    return depth


class SharedTrunk:
    """Runs the shared bottom `depth` layers once per batch (keyed by the caller) and hands each
    model the state to continue from; only the latest batch is kept."""

    def __init__(self, base: P2TModel, depth: int) -> None:
        self.base, self.depth = base, depth
        self._key: Hashable | None = None
        self._state: EncoderState | None = None
        self.trunk_runs = 0  # batches whose trunk ran (the rest were served from the kept one)

    def hidden(self, model: P2TModel, tokens: Tensor, key: Hashable) -> Tensor:
        """`model`'s last-layer representations (B, T, E) for `tokens`, the trunk computed once per key."""
        if key != self._key:
            state = esm2_embed(self.base.encoder, tokens, self.base.config.encoder.rotary_inv_freq)
            self._state, self._key = esm2_layers(self.base.encoder, state, self.depth), key
            self.trunk_runs += 1
        return model.encoder.emb_layer_norm_after(esm2_layers(model.encoder, self._state).x)
