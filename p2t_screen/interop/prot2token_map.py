"""Prot2Token checkpoint tensors -> p2t modules: the name mapping (HF-transformers ESM ->
fair-esm ESM2; Prot2Token decoder -> p2t decoder), the sizes the tensors imply, and the copy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelError
from ..model.encoder import ALPHABET, rotary_inv_freq
from ..model.model import P2TModel

ENC = "protein_encoder.model."


# Tensors the reference model holds but never uses for its output (or recomputes).
_DROPPED = re.compile(
    r"^protein_encoder\.model\.(embeddings\.position_embeddings\.weight"  # unused with rotary
    r"|embeddings\.position_ids"  # an arange buffer older transformers versions saved
    r"|pooler\..*|contact_head\..*"
    r"|encoder\.layer\.\d+\.attention\.self\.rotary_embeddings\.inv_freq)$")


_INV_FREQ = re.compile(r"^protein_encoder\.model\.encoder\.layer\.(\d+)\.attention\.self\."
                       r"rotary_embeddings\.inv_freq$")


# Attention heads of the published ESM2 widths, used only when no inv_freq tensor gives head size.
_ESM2_HEADS = {320: 20, 480: 20, 640: 20, 1280: 20, 2560: 40, 5120: 40}


_ENC_LAYER = {  # HF ESM layer part -> fair-esm ESM2 layer part
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
    "output.dense": "fc2", "LayerNorm": "final_layer_norm",
}


_DEC_LAYER = {  # nn.TransformerDecoderLayer -> p2t DecoderLayer
    "self_attn.in_proj_weight": "self_attn.in_proj.weight",
    "self_attn.in_proj_bias": "self_attn.in_proj.bias",
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn.out_proj.bias": "self_attn.out_proj.bias",
    "multihead_attn.in_proj_weight": "cross_attn.in_proj.weight",
    "multihead_attn.in_proj_bias": "cross_attn.in_proj.bias",
    "multihead_attn.out_proj.weight": "cross_attn.out_proj.weight",
    "multihead_attn.out_proj.bias": "cross_attn.out_proj.bias",
    **{f"{m}.{p}": f"{m}.{p}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3")
       for p in ("weight", "bias")},
}


Transform = Callable[[Tensor], Tensor]


def _same(t: Tensor) -> Tensor:
    return t


def _squeeze_conv(t: Tensor) -> Tensor:  # Conv1d weight [D, E, 1] -> Linear weight [D, E]
    if t.dim() != 3 or t.shape[-1] != 1:
        raise ValueError(f"expected a kernel-1 Conv1d weight [D, E, 1], got {tuple(t.shape)}")
    return t[..., 0]


def _squeeze_batch(t: Tensor) -> Tensor:  # learned table [1, N, D] -> [N, D]
    if t.dim() != 3 or t.shape[0] != 1:
        raise ValueError(f"expected a [1, N, D] table, got {tuple(t.shape)}")
    return t[0]


def _encoder_sizes(state: dict[str, Tensor], origin: Path) -> dict[str, Any]:
    """Layers, width and heads of the checkpoint's ESM2 encoder, and its rotary frequencies."""
    if any(k.startswith("molecule_encoder.") or k.startswith("decoder.molecule_encoder") for k in state):
        raise ModelError(f"{origin}: the checkpoint has a molecule encoder, which p2t does not support")
    emb = state.get(ENC + "embeddings.word_embeddings.weight")
    if emb is None:
        raise ModelError(f"{origin}: missing {ENC}embeddings.word_embeddings.weight "
                         "(not a Prot2Token checkpoint with an HF ESM2 encoder?)")
    if emb.dim() != 2 or emb.shape[0] != len(ALPHABET.all_toks):
        raise ModelError(f"{origin}: {ENC}embeddings.word_embeddings.weight has shape {tuple(emb.shape)}; "
                         f"expected [{len(ALPHABET.all_toks)}, width] (ESM2's alphabet)")
    width = int(emb.shape[1])
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(ENC) + r"encoder\.layer\.(\d+)\.", k))}
    enc_layers = max(layer_ids) + 1 if layer_ids else 0
    if enc_layers == 0:
        raise ModelError(f"{origin}: no encoder layers ({ENC}encoder.layer.N.*)")

    inv = {int(m.group(1)): v for k, v in state.items() if (m := _INV_FREQ.match(k))}
    inv_freq: tuple[float, ...] | None = None
    if inv:
        first = inv[min(inv)]
        if first.dim() != 1 or first.numel() == 0 or width % (2 * first.numel()):
            raise ModelError(f"{origin}: rotary inv_freq of shape {tuple(first.shape)} does not divide "
                             f"the encoder width {width} into heads")
        for i, v in inv.items():
            if v.shape != first.shape or not torch.equal(v.float(), first.float()):
                raise ModelError(f"{origin}: rotary inv_freq of encoder layer {i} differs from layer "
                                 f"{min(inv)}; p2t uses one table for all layers")
        head_dim = 2 * first.numel()
        heads = width // head_dim
        fresh = rotary_inv_freq(head_dim)
        if torch.equal(first.float(), fresh):
            rotary_note = "recomputed in fp32 (equal to the checkpoint's values)"
        else:  # e.g. rounded through fp16 while ESM2 trained: HF and the reference use these values
            inv_freq = tuple(float(f) for f in first.float())
            worst = ((first.float() - fresh).abs() / fresh).max().item()
            rotary_note = f"kept from the checkpoint (up to {worst:.2g} relative from the fp32 recomputation)"
    elif width in _ESM2_HEADS:
        heads = _ESM2_HEADS[width]
        rotary_note = "recomputed in fp32 (not in the checkpoint)"
    else:
        raise ModelError(f"{origin}: cannot tell the encoder's attention heads: no rotary inv_freq "
                         f"tensors and width {width} is not a published ESM2 width")
    return {"enc_layers": enc_layers, "width": width, "heads": heads, "inv_freq": inv_freq,
            "rotary_note": rotary_note}


def plan(state: dict[str, Tensor], cfg: dict[str, Any], origin: Path
         ) -> tuple[dict[str, tuple[str, str, Transform]], list[str], dict[str, Any]]:
    """checkpoint key -> (module, p2t key, transform), the dropped keys, and the sizes found."""
    sizes = _encoder_sizes(state, origin)
    mapping = _mapping(sizes["enc_layers"], cfg["layers"], cfg["memory_pos"])
    memory_positions = 0
    if cfg["memory_pos"]:
        table = state.get("decoder.protein_encoder_pos_embed")
        memory_positions = int(table.shape[1]) if table is not None and table.dim() == 3 else cfg["enc_max_len"]
    dropped = sorted(k for k in state if k not in mapping and _DROPPED.match(k))
    unknown = sorted(k for k in state if k not in mapping and not _DROPPED.match(k))
    missing = sorted(k for k in mapping if k not in state)
    if unknown or missing:
        raise ModelError(f"{origin}: tensors do not match the Prot2Token layout "
                         f"({sizes['enc_layers']} encoder layers, {cfg['layers']} decoder layers per config.yaml): "
                         f"missing {_some(missing)}, unexpected {_some(unknown)}")
    return mapping, dropped, {**sizes, "memory_positions": memory_positions}


def _mapping(enc_layers: int, dec_layers: int, memory_pos: bool) -> dict[str, tuple[str, str, Transform]]:
    """Every tensor name of a published checkpoint with these sizes -> (module, p2t name, transform)."""
    mapping: dict[str, tuple[str, str, Transform]] = {
        ENC + "embeddings.word_embeddings.weight": ("encoder", "embed_tokens.weight", _same),
        "protein_encoder.bottleneck.weight": ("decoder", "projection.weight", _squeeze_conv),
        "protein_encoder.bottleneck.bias": ("decoder", "projection.bias", _same),
        "decoder.embedding.weight": ("decoder", "embedding.weight", _same),
        "decoder.decoder_pos_embed": ("decoder", "pos_embed", _squeeze_batch),
        "decoder.output.weight": ("decoder", "output.weight", _same),
        "decoder.output.bias": ("decoder", "output.bias", _same),
    }
    for p in ("weight", "bias"):
        mapping[f"{ENC}encoder.emb_layer_norm_after.{p}"] = ("encoder", f"emb_layer_norm_after.{p}", _same)
        for i in range(enc_layers):
            for hf, fair in _ENC_LAYER.items():
                mapping[f"{ENC}encoder.layer.{i}.{hf}.{p}"] = ("encoder", f"layers.{i}.{fair}.{p}", _same)
    for i in range(dec_layers):
        for ref, ours in _DEC_LAYER.items():
            mapping[f"decoder.decoder.layers.{i}.{ref}"] = ("decoder", f"layers.{i}.{ours}", _same)
    if memory_pos:
        mapping["decoder.protein_encoder_pos_embed"] = ("decoder", "memory_pos", _squeeze_batch)
    return mapping


def _some(keys: list[str], n: int = 8) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


@torch.no_grad()
def load_weights(model: P2TModel, state: dict[str, Tensor], mapping: dict[str, tuple[str, str, Transform]],
          origin: Path) -> None:
    """Copy every mapped tensor into the model, checking shapes against the built modules."""
    own = {"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict()}
    for key, (module, target, transform) in mapping.items():
        try:
            value = transform(state[key])
        except ValueError as exc:
            raise ModelError(f"{origin}: tensor {key}: {exc}") from None
        dest = own[module][target]
        if value.shape != dest.shape:
            raise ModelError(f"{origin}: tensor {key} has shape {tuple(state[key].shape)}; the model "
                             f"built from its config and other tensors needs {tuple(dest.shape)} "
                             f"(as {module} {target})")
        if not value.is_floating_point():
            raise ModelError(f"{origin}: tensor {key} has dtype {value.dtype}, expected floating point")
        dest.copy_(value)
    # fair-esm's LM head (never used to embed): no counterpart in the HF encoder; fixed placeholders.
    head = model.encoder.lm_head
    for p in (head.dense.weight, head.dense.bias, head.bias, head.layer_norm.bias):
        p.zero_()
    head.layer_norm.weight.fill_(1.0)
    filled = {m: {t for mm, t, _ in mapping.values() if mm == m} for m in own}
    unfilled = [f"decoder {k}" for k in own["decoder"] if k not in filled["decoder"]]
    unfilled += [f"encoder {k}" for k in own["encoder"] if k not in filled["encoder"]
                 and not k.startswith(("lm_head.", "contact_head.")) and not k.endswith("inv_freq")]
    if unfilled:  # a mapping bug, not a user error
        raise AssertionError(f"importer left model tensors unset: {unfilled[:8]}")
