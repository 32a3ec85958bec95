"""ESM2 protein encoders (fair-esm modules): config, tokens, and forward passes that use
`scaled_dot_product_attention` on fair-esm's own weights: over a padded batch, or packed, over
its real tokens only (`esm2_forward_packed`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from esm.data import Alphabet
from esm.model.esm2 import ESM2
from torch import Tensor

from ..errors import check_fields
from ..tasks.inputs import ModelInput

ALPHABET = Alphabet.from_architecture("ESM-1b")
MAX_PARAMETERS = 100e9  # a sanity limit on a config's implied size (ESM2-15B: 15e9), before allocating


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an ESM2 encoder and where its weights come from."""

    source: str  # "bundled" (weights in the model dir), a fair-esm model name, or a .pt path
    num_layers: int
    embed_dim: int
    attention_heads: int
    token_dropout: bool = True
    max_residues: int = 1022
    # Rotary inverse frequencies taken from a checkpoint whose stored values differ from the
    # fp32 recomputation (imported Prot2Token/HF ESM2 files); None = recompute in fp32.
    rotary_inv_freq: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_fields(self, positive=("num_layers", "embed_dim", "attention_heads", "max_residues"),
                     ceilings={"num_layers": 512, "embed_dim": 1 << 15, "attention_heads": 1024,
                               "max_residues": 1 << 16})
        if self.embed_dim % self.attention_heads or (self.embed_dim // self.attention_heads) % 2:
            raise ValueError(f"encoder width {self.embed_dim} does not split into {self.attention_heads} heads "
                             "of even size")
        if self.num_layers * 12 * self.embed_dim**2 > MAX_PARAMETERS:
            raise ValueError(f"an encoder of {self.num_layers} layers x width {self.embed_dim} would hold "
                             f"~{self.num_layers * 12 * self.embed_dim**2 / 1e9:.0f}B parameters, beyond p2t's "
                             f"sanity limit of {MAX_PARAMETERS / 1e9:.0f}B")
        if self.rotary_inv_freq is not None:
            freqs = tuple(float(f) for f in self.rotary_inv_freq)
            if len(freqs) * 2 * self.attention_heads != self.embed_dim:
                raise ValueError(f"rotary_inv_freq has {len(freqs)} values; head size "
                                 f"{self.embed_dim // self.attention_heads} needs half as many")
            object.__setattr__(self, "rotary_inv_freq", freqs)

    def build(self) -> ESM2:
        """An ESM2 module of this shape (weights still to be loaded)."""
        return ESM2(num_layers=self.num_layers, embed_dim=self.embed_dim,
                    attention_heads=self.attention_heads, alphabet=ALPHABET,
                    token_dropout=self.token_dropout)


_LUT = np.full(256, ALPHABET.unk_idx, dtype=np.int64)
for _tok in ALPHABET.all_toks:
    if len(_tok) == 1:
        _LUT[ord(_tok)] = ALPHABET.get_idx(_tok)


def _ids(residues: str) -> np.ndarray:
    return _LUT[np.frombuffer(residues.encode("ascii"), dtype=np.uint8)]


def encoder_tokens(inputs: Sequence[ModelInput], device: torch.device | None = None) -> Tensor:
    """ESM2 token ids of model inputs, right-padded with `<pad>`: (B, L_max + 2).

    A protein gives `<cls> A <eos>`; a pair gives `<cls> A <eos> B <eos>` (how Prot2Token's
    tokenizer encodes one); a ligand is not the protein encoder's (see `ModelInput.encoder_input`)."""
    width = max((i.encoder_length for i in inputs), default=0) + 2
    out = np.full((len(inputs), width), ALPHABET.padding_idx, dtype=np.int64)
    for row, item in enumerate(inputs):
        a = len(item.protein)
        out[row, 0] = ALPHABET.cls_idx
        out[row, 1:a + 1] = _ids(item.protein)
        out[row, a + 1] = ALPHABET.eos_idx
        if item.partner is not None:
            b = len(item.partner)
            out[row, a + 2:a + b + 2] = _ids(item.partner)
            out[row, a + b + 2] = ALPHABET.eos_idx
    tokens = torch.from_numpy(out)
    if device is not None and device.type == "cuda":  # pinned: the copy runs async, the host goes on
        return tokens.pin_memory().to(device, non_blocking=True)
    return tokens.to(device) if device is not None else tokens


def tokenize(sequences: Sequence[str], device: torch.device | None = None) -> Tensor:
    """`<cls> seq <eos>` token ids of plain protein sequences (see `encoder_tokens`)."""
    return encoder_tokens([ModelInput(s) for s in sequences], device)


@dataclass
class EncoderState:
    """The encoder's running state between layers: hidden states (B, T, E), the attention keep-mask
    (B, 1, 1, T) and the rotary tables; `layers_done` layers have been applied."""

    x: Tensor
    keep: Tensor
    rotary: tuple[Tensor, Tensor]
    layers_done: int = 0


def esm2_embed(model: ESM2, tokens: Tensor, inv_freq: tuple[float, ...] | None = None) -> EncoderState:
    """Token embeddings (with ESM2's token-dropout scaling) and the masks every layer uses."""
    padding = tokens.eq(model.padding_idx)  # (B, T)
    x = model.embed_tokens(tokens)
    if model.token_dropout:
        x = x.masked_fill((tokens == model.mask_idx).unsqueeze(-1), 0.0)
        lengths = (~padding).sum(-1)
        observed = (tokens == model.mask_idx).sum(-1).to(x.dtype) / lengths
        x = x * _token_dropout_scale(observed)[:, None, None]
    x = x * (~padding).unsqueeze(-1).to(x.dtype)
    keep = (~padding)[:, None, None, :]  # (B, 1, 1, T): True = attend
    rotary = _rotary_tables(model.embed_dim // model.attention_heads, tokens.shape[1], x, inv_freq)
    return EncoderState(x, keep, rotary)


def esm2_layers(model: ESM2, state: EncoderState, stop: int | None = None) -> EncoderState:
    """Apply `model`'s layers from `state.layers_done` up to `stop` (default: all)."""
    x = state.x
    stop = len(model.layers) if stop is None else stop
    for layer in model.layers[state.layers_done:stop]:
        x = x + _self_attention(layer.self_attn, layer.self_attn_layer_norm(x), state.keep, state.rotary)
        x = x + _feed_forward(layer, x)
    return EncoderState(x, state.keep, state.rotary, max(stop, state.layers_done))


def esm2_forward(model: ESM2, tokens: Tensor, inv_freq: tuple[float, ...] | None = None) -> Tensor:
    """Last-layer representations (B, T, E), numerically equivalent to fair-esm's forward.

    Same weights and operations, but attention runs through `scaled_dot_product_attention`
    (fused kernels, no (B, H, T, T) weight tensor kept) instead of fair-esm's explicit bmm.
    `inv_freq` overrides the rotary frequencies (EncoderConfig.rotary_inv_freq).
    """
    return model.emb_layer_norm_after(esm2_layers(model, esm2_embed(model, tokens, inv_freq)).x)


def esm2_forward_packed(model: ESM2, tokens: Tensor, inv_freq: tuple[float, ...] | None = None) -> Tensor:
    """`esm2_forward` computed on the real tokens only: (B, T, E), zeros at `<pad>` positions.

    The batch's tokens are packed into one (N, E) sequence of N real tokens (no padded position
    is embedded, projected or attended), and attention runs per protein on jagged nested tensors
    (varlen kernels on CUDA). Equal to the padded forward at every real position, up to float
    rounding; padded positions, which a masked memory never reads, come back as zeros.
    """
    keep = tokens.ne(model.padding_idx)  # (B, T)
    lengths = keep.sum(1)
    offsets = F.pad(lengths.cumsum(0), (1, 0))  # (B + 1,)
    flat = tokens[keep]  # (N,)
    x = model.embed_tokens(flat)  # (N, E)
    if model.token_dropout:
        masked = flat.eq(model.mask_idx)
        x = x.masked_fill(masked[:, None], 0.0)
        protein = torch.repeat_interleave(torch.arange(len(lengths), device=tokens.device), lengths)  # (N,)
        observed = torch.zeros(len(lengths), dtype=x.dtype, device=x.device).index_add_(
            0, protein, masked.to(x.dtype)) / lengths
        x = x * _token_dropout_scale(observed)[protein][:, None]
    position = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)[keep]  # (N,)
    cos, sin = _rotary_tables(model.embed_dim // model.attention_heads, tokens.shape[1], x, inv_freq)
    rotary = cos[position][:, None, :], sin[position][:, None, :]  # (N, 1, hd)
    for layer in model.layers:
        x = x + _packed_attention(layer.self_attn, layer.self_attn_layer_norm(x), offsets, rotary)
        x = x + _feed_forward(layer, x)
    out = x.new_zeros((*tokens.shape, x.shape[-1]))
    out[keep] = model.emb_layer_norm_after(x)
    return out


def _token_dropout_scale(observed: Tensor) -> Tensor:
    """ESM2's token-dropout rescaling per protein, from its share of `<mask>` tokens (B,)."""
    return (1 - 0.15 * 0.8) / (1 - observed)


def _feed_forward(layer: torch.nn.Module, x: Tensor) -> Tensor:
    return layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))


def _packed_attention(attn: torch.nn.Module, x: Tensor, offsets: Tensor, rotary: tuple[Tensor, Tensor]) -> Tensor:
    n, e = x.shape
    h = attn.num_heads
    cos, sin = rotary
    q = _rotate(attn.q_proj(x).view(n, h, e // h), cos, sin)  # (N, H, hd)
    k = _rotate(attn.k_proj(x).view(n, h, e // h), cos, sin)
    v = attn.v_proj(x).view(n, h, e // h)
    with warnings.catch_warnings():  # the CPU fallback warns of its prototype internals
        warnings.simplefilter("ignore", UserWarning)
        jagged = [torch.nested.nested_tensor_from_jagged(t, offsets).transpose(1, 2) for t in (q, k, v)]
        out = F.scaled_dot_product_attention(*jagged, scale=1 / math.sqrt(e // h))  # (B, H, j, hd)
    return attn.out_proj(out.transpose(1, 2).values().reshape(n, e))  # (N, E)


def _self_attention(attn: torch.nn.Module, x: Tensor, keep: Tensor,
                    rotary: tuple[Tensor, Tensor]) -> Tensor:
    b, t, e = x.shape
    h = attn.num_heads
    q = attn.q_proj(x).view(b, t, h, e // h).transpose(1, 2)  # (B, H, T, hd)
    k = attn.k_proj(x).view(b, t, h, e // h).transpose(1, 2)
    v = attn.v_proj(x).view(b, t, h, e // h).transpose(1, 2)
    cos, sin = rotary
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1 / math.sqrt(e // h))
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, e))  # (B, T, E)


def rotary_inv_freq(head_dim: int, device: torch.device | None = None) -> Tensor:
    """ESM2's rotary inverse frequencies, computed in fp32: (head_dim / 2,)."""
    return 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))


def _rotary_tables(head_dim: int, length: int, like: Tensor,
                   inv_freq: tuple[float, ...] | None = None) -> tuple[Tensor, Tensor]:
    # Built in fp32 from scratch: the module's inv_freq buffer loses precision under bf16/fp16.
    if inv_freq is None:
        inv_freq = rotary_inv_freq(head_dim, like.device)
    else:
        inv_freq = torch.tensor(inv_freq, dtype=torch.float32, device=like.device)
    t = torch.arange(length, device=like.device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos().to(like.dtype), emb.sin().to(like.dtype)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin
