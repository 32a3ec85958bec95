"""A plain reimplementation of the published Prot2Token forward pass and greedy loop: the yardstick
that imported checkpoints are checked against (by the tests and `tools/synthetic_prot2token.py`).
A test oracle, not product, so it lives with the tests (on pytest's path through `pythonpath` in
pyproject.toml) and is not installed with the package.

Independent of p2t's decoder and encoder code: the protein encoder is fair-esm's own `ESM2`
forward (weights renamed from the HF-transformers layout the checkpoints use, rotary `inv_freq`
taken from the checkpoint as HF loads it), the decoder is `torch.nn.TransformerDecoder` with the
published module names (loaded strictly), the bottleneck a `Conv1d`, the memory position table
added to the whole padded memory, no memory mask. Greedy decoding runs one sequence at a time and
re-runs the whole prefix every step, stopping at `<eos>` or `max_len - 2` tokens, unconstrained.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from esm.data import Alphabet
from esm.model.esm2 import ESM2
from torch import Tensor, nn

ALPHABET = Alphabet.from_architecture("ESM-1b")
HF = "protein_encoder.model."
# fair-esm ESM2 layer part -> HF-transformers EsmLayer part
LAYER_NAMES = {
    "self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.LayerNorm", "fc1": "intermediate.dense",
    "fc2": "output.dense", "final_layer_norm": "LayerNorm",
}


class RefDecoder(nn.Module):
    """Prot2Token's `Decoder` (learned positions, protein memory positions, no molecule encoder)."""

    def __init__(self, vocab_size: int, dim: int, heads: int, layers: int, ffn: int, max_len: int,
                 memory_len: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, max_len - 1, dim) * 0.02)
        layer = nn.TransformerDecoderLayer(d_model=dim, nhead=heads, dim_feedforward=ffn, activation="gelu")
        self.decoder = nn.TransformerDecoder(layer, num_layers=layers)
        self.output = nn.Linear(dim, vocab_size)
        self.protein_encoder_pos_embed = nn.Parameter(torch.randn(1, memory_len, dim) * 0.02)
        self.max_len = max_len

    def hidden(self, memory: Tensor, target: Tensor) -> Tensor:
        """Decoder states before the output layer: memory (B, S, D), target ids (B, T) -> (B, T, D)."""
        t = target.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        x = self.embedding(target) + self.decoder_pos_embed[:, :t]
        memory = memory + self.protein_encoder_pos_embed
        out = self.decoder(tgt=x.transpose(0, 1), memory=memory.transpose(0, 1), tgt_mask=causal,
                           tgt_key_padding_mask=target.eq(0))
        return out.transpose(0, 1)

    def forward(self, memory: Tensor, target: Tensor) -> Tensor:
        return self.output(self.hidden(memory, target))


class RefProt2Token(nn.Module):
    """ESM2 (fair-esm) -> Conv1d bottleneck -> RefDecoder, in eval mode."""

    def __init__(self, esm_layers: int, width: int, esm_heads: int, vocab_size: int, dim: int,
                 heads: int, layers: int, ffn: int, max_len: int, encoder_max_len: int) -> None:
        super().__init__()
        self.esm = ESM2(num_layers=esm_layers, embed_dim=width, attention_heads=esm_heads,
                        alphabet=ALPHABET, token_dropout=True)
        self.bottleneck = nn.Conv1d(width, dim, 1)
        self.decoder = RefDecoder(vocab_size, dim, heads, layers, ffn, max_len, encoder_max_len)
        self.encoder_max_len = encoder_max_len
        self.eval()

    # ---- the published checkpoint layout
    def published_state_dict(self) -> dict[str, Tensor]:
        """This model's weights under the published names, with the HF extras the files carry."""
        esm = self.esm
        out: dict[str, Tensor] = {
            HF + "embeddings.word_embeddings.weight": esm.embed_tokens.weight,
            HF + "embeddings.position_embeddings.weight": torch.randn(1026, esm.embed_dim),
            HF + "encoder.emb_layer_norm_after.weight": esm.emb_layer_norm_after.weight,
            HF + "encoder.emb_layer_norm_after.bias": esm.emb_layer_norm_after.bias,
            HF + "pooler.dense.weight": torch.randn(esm.embed_dim, esm.embed_dim),
            HF + "pooler.dense.bias": torch.randn(esm.embed_dim),
            HF + "contact_head.regression.weight": torch.randn(1, esm.num_layers * esm.attention_heads),
            HF + "contact_head.regression.bias": torch.randn(1),
            "protein_encoder.bottleneck.weight": self.bottleneck.weight,
            "protein_encoder.bottleneck.bias": self.bottleneck.bias,
        }
        for i, layer in enumerate(esm.layers):
            for fair, hf in LAYER_NAMES.items():
                module = layer.get_submodule(fair)
                out[f"{HF}encoder.layer.{i}.{hf}.weight"] = module.weight
                out[f"{HF}encoder.layer.{i}.{hf}.bias"] = module.bias
            out[f"{HF}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = \
                layer.self_attn.rot_emb.inv_freq
        out.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return {k: v.detach().clone() for k, v in out.items()}

    @classmethod
    def from_published(cls, state: dict[str, Tensor], esm_heads: int, heads: int, ffn: int,
                       max_len: int, encoder_max_len: int) -> RefProt2Token:
        """Load published-layout weights (strictly: every used tensor, no extra decoder tensor)."""
        state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
        width = state[HF + "embeddings.word_embeddings.weight"].shape[1]
        esm_layers = len({k.split(".")[4] for k in state if k.startswith(HF + "encoder.layer.")})
        vocab, dim = state["decoder.embedding.weight"].shape
        layers = len({k.split(".")[3] for k in state if k.startswith("decoder.decoder.layers.")})
        model = cls(esm_layers, width, esm_heads, vocab, dim, heads, layers, ffn, max_len, encoder_max_len)
        esm_state = {"embed_tokens.weight": state[HF + "embeddings.word_embeddings.weight"],
                     "emb_layer_norm_after.weight": state[HF + "encoder.emb_layer_norm_after.weight"],
                     "emb_layer_norm_after.bias": state[HF + "encoder.emb_layer_norm_after.bias"]}
        for i in range(esm_layers):
            for fair, hf in LAYER_NAMES.items():
                for p in ("weight", "bias"):
                    esm_state[f"layers.{i}.{fair}.{p}"] = state[f"{HF}encoder.layer.{i}.{hf}.{p}"]
            esm_state[f"layers.{i}.self_attn.rot_emb.inv_freq"] = \
                state[f"{HF}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"]
        missing, _ = model.esm.load_state_dict(esm_state, strict=False)
        assert all(k.startswith(("contact_head.", "lm_head.")) for k in missing), missing
        model.bottleneck.load_state_dict({"weight": state["protein_encoder.bottleneck.weight"],
                                          "bias": state["protein_encoder.bottleneck.bias"]})
        model.decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.items()
                                       if k.startswith("decoder.")}, strict=True)
        return model.eval()

    # ---- forward
    def tokenize(self, sequence: str | tuple[str, str]) -> Tensor:
        """HF-tokenizer equivalent: `<cls> seq <eos>`, or for a pair `<cls> a <eos> b <eos>` with
        HF's longest-first truncation (one token at a time from the longer, from b on ties),
        padded to encoder_max_len: (1, L)."""
        if isinstance(sequence, tuple):
            a, b = (ALPHABET.encode(s) for s in sequence)
            while len(a) + len(b) > self.encoder_max_len - 3:
                if len(a) > len(b):
                    a = a[:-1]
                else:
                    b = b[:-1]
            ids = [ALPHABET.cls_idx, *a, ALPHABET.eos_idx, *b, ALPHABET.eos_idx]
        else:
            ids = [ALPHABET.cls_idx, *ALPHABET.encode(sequence)[: self.encoder_max_len - 2], ALPHABET.eos_idx]
        ids += [ALPHABET.padding_idx] * (self.encoder_max_len - len(ids))
        return torch.tensor([ids])

    @torch.no_grad()
    def encoder_states(self, sequence: str | tuple[str, str]) -> Tensor:
        """ESM2 last hidden state (1, L, E), fair-esm's own forward."""
        esm = self.esm
        return esm(self.tokenize(sequence), repr_layers=[esm.num_layers])["representations"][esm.num_layers]

    @torch.no_grad()
    def memory(self, sequence: str | tuple[str, str]) -> Tensor:
        """Bottleneck output (1, L, D), before the memory position table."""
        hidden = self.encoder_states(sequence)
        return self.bottleneck(hidden.permute(0, 2, 1)).permute(0, 2, 1)

    @torch.no_grad()
    def greedy(self, sequence: str | tuple[str, str], bos: int, task: int, eos: int,
               prompt: list[int] = ()) -> list[int]:
        """Tokens after `<bos> <task>`, the given prompt included, `<eos>` included when reached
        (the reference's inference_greedy, whose loop starts from the whole prompt)."""
        memory = self.memory(sequence)
        generated = torch.tensor([[bos, task, *prompt]])
        for _ in range(self.decoder.max_len - 2):
            if generated.shape[1] >= self.decoder.max_len - 1:  # no position left (the reference
                break  # would fail here: its position table has max_len - 1 rows)
            logits = self.decoder(memory, generated)
            next_id = logits.argmax(dim=-1)[..., -1:]
            generated = torch.cat([generated, next_id], dim=-1)
            if next_id.item() == eos:
                break
        return generated[0, 2:].tolist()


def write_published(folder: Path, ref: RefProt2Token, vocab: dict[str, int], *, dim: int, heads: int,
                    layers: int, ffn: int, max_len: int, checkpoint: str = "checkpoint.pth") -> tuple[Path, Path, Path]:
    """Write `ref` as the published files are laid out: a `torch.save` dict with `model_state_dict`,
    `config.yaml` and `decoder_tokenizer.yaml`; returns their paths (checkpoint, config, tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": ref.published_state_dict(), "epoch": 0}, path)
    config = {"prot2token_model": {
        "positional_encoding_type": "learned",
        "protein_encoder": {"model_name": f"synthetic_esm2_t{len(ref.esm.layers)}_{ref.esm.embed_dim}",
                            "max_len": ref.encoder_max_len, "drop_positional_encoding": True},
        "decoder": {"dimension": dim, "dim_feedforward": ffn, "num_heads": heads, "num_layers": layers,
                    "max_len": max_len, "activation_function": "gelu"}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "decoder_tokenizer.yaml").write_text(yaml.safe_dump(vocab))
    return path, folder / "config.yaml", folder / "decoder_tokenizer.yaml"
