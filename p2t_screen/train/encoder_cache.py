"""Frozen-encoder outputs kept per input, so the epochs of a frozen-encoder run cost only the
decoder."""

from __future__ import annotations

import torch

from ..model.encoder import encoder_tokens
from ..model.model import P2TModel
from ..tasks.inputs import ModelInput
from .examples import Example


class EncoderCache:
    """Encoder outputs per distinct encoder input (fp16 on the host)."""

    def __init__(self) -> None:
        self.hidden: dict[ModelInput, torch.Tensor] = {}

    @torch.no_grad()
    def batch(self, model: P2TModel, batch: list[Example], esm: torch.Tensor) -> torch.Tensor:
        """The encoder's last layer (B, T, E) for a batch whose tokens are `esm` (B, T)."""
        inputs = [e.input.encoder_input for e in batch]
        missing = list(dict.fromkeys(i for i in inputs if i not in self.hidden))
        if missing:
            device = next(model.parameters()).device
            out = model.encoder_hidden(encoder_tokens(missing, device))
            for i, item in enumerate(missing):
                self.hidden[item] = out[i, : item.encoder_length + 2].to("cpu", torch.float16)
        hidden = torch.zeros(len(batch), esm.shape[1], model.encoder.embed_dim)
        for i, item in enumerate(inputs):
            h = self.hidden[item]
            hidden[i, : h.shape[0]] = h.float()
        return hidden
