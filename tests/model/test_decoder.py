"""The decoder layer is PyTorch's TransformerDecoderLayer (post-norm, GELU) with a KV cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p2t_screen.model.decoder import Decoder, DecoderConfig


def torch_reference(dec: Decoder, norm_first: bool) -> nn.TransformerDecoder:
    """nn.TransformerDecoder carrying the same weights (the layout of the published checkpoints)."""
    cfg = dec.cfg
    layer = nn.TransformerDecoderLayer(cfg.dim, cfg.num_heads, cfg.ffn_dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=norm_first)
    ref = nn.TransformerDecoder(layer, cfg.num_layers)
    for ours, theirs in zip(dec.layers, ref.layers):
        for a, b in (("self_attn", "self_attn"), ("cross_attn", "multihead_attn")):
            src, dst = getattr(ours, a), getattr(theirs, b)
            dst.in_proj_weight.data.copy_(src.in_proj.weight)
            dst.in_proj_bias.data.copy_(src.in_proj.bias)
            dst.out_proj.load_state_dict(src.out_proj.state_dict())
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
    return ref.eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_layers_match_torch_transformer_decoder(norm_first):
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=20, memory_dim=12, dim=16, num_layers=2, num_heads=4, ffn_dim=32,
                        max_len=10, norm_first=norm_first, dropout=0.0, memory_dropout=0.0)
    dec = Decoder(cfg).eval()
    for p in dec.parameters():  # LayerNorms start at identity; randomise them too
        nn.init.normal_(p, std=0.3)
    tokens = torch.randint(3, 20, (3, 7))
    hidden = torch.randn(3, 11, 12)
    keep = torch.ones(3, 11, dtype=torch.bool)
    keep[1, 6:] = False
    memory = dec.project_memory(hidden)
    with torch.no_grad():
        ours = dec(tokens, dec.memory_kv(memory), keep)
        x = dec.embedding(tokens) + dec.pos_embed[:7]
        mask = nn.Transformer.generate_square_subsequent_mask(7)
        y = torch_reference(dec, norm_first)(x, memory, tgt_mask=mask, memory_key_padding_mask=~keep)
        if dec.final_norm is not None:
            y = dec.final_norm(y)
        theirs = dec.output(y)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_incremental_decoding_with_cache_equals_full_pass():
    torch.manual_seed(1)
    cfg = DecoderConfig(vocab_size=20, memory_dim=8, dim=16, num_layers=2, num_heads=2, ffn_dim=32,
                        max_len=12, norm_first=False, memory_positions=9)
    dec = Decoder(cfg).eval()
    tokens = torch.randint(3, 20, (2, 9))
    memory = dec.project_memory(torch.randn(2, 9, 8))
    kv = dec.memory_kv(memory)
    with torch.no_grad():
        full = dec(tokens, kv, None)
        caches = dec.new_caches(2, 9, memory)
        steps = [dec(tokens[:, :3], kv, None, caches, 0)]
        steps += [dec(tokens[:, i:i + 1], kv, None, caches, i) for i in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_too_long_input_is_refused():
    dec = Decoder(DecoderConfig(vocab_size=8, memory_dim=4, dim=8, num_layers=1, num_heads=2,
                                ffn_dim=8, max_len=4))
    kv = dec.memory_kv(torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="exceeds max_len 4"):
        dec(torch.zeros(1, 5, dtype=torch.long), kv, None)
