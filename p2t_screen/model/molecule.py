"""The molecule encoder of protein-ligand tasks.

Prot2Token's own molecule encoder (BARTSmiles) comes from a model hub that these machines cannot
reach; p2t's is a small Transformer encoder trained with the decoder by `p2t train`. Its memory
is appended after the protein memory, with its own position table, as in Prot2Token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..errors import check_fields
from ..io.ligands import smiles_tokens

SPECIALS = ("<pad>", "<cls>", "<eos>", "<unk>")


PAD, CLS, EOS, UNK = range(4)


@dataclass(frozen=True)
class MoleculeConfig:
    """Shape and token vocabulary of a molecule encoder."""

    tokens: tuple[str, ...]  # SPECIALS, then the SMILES tokens seen in training
    dim: int = 128  # = the decoder width (its output is decoder memory)
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    max_len: int = 128  # tokens, <cls> and <eos> included; longer SMILES are cut
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_fields(self, positive=("dim", "num_layers", "num_heads", "ffn_dim", "max_len"),
                     at_least_zero=("dropout",), ceilings={"dim": 1 << 15, "num_layers": 256, "num_heads": 1024,
                                                           "ffn_dim": 1 << 17, "max_len": 1 << 14, "dropout": 1.0})
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"molecule vocabulary must start with {SPECIALS}")
        if self.dim % self.num_heads:
            raise ValueError(f"molecule encoder dim {self.dim} is not divisible by {self.num_heads} heads")

    def to_dict(self) -> dict:
        return asdict(self)

    def encode(self, smiles: list[str], device: torch.device | None = None) -> Tensor:
        """`<cls> tokens <eos>` ids, right-padded: (B, T). Unknown tokens become `<unk>`."""
        index = {t: i for i, t in enumerate(self.tokens)}
        rows = [[CLS, *(index.get(t, UNK) for t in smiles_tokens(s))][: self.max_len - 1] + [EOS]
                for s in smiles]
        width = max(map(len, rows), default=2)
        out = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out.to(device) if device is not None else out


def molecule_vocab(smiles: list[str]) -> tuple[str, ...]:
    """SPECIALS then every token of the training SMILES, in first-seen order."""
    seen = dict.fromkeys(SPECIALS)
    for s in smiles:
        seen.update(dict.fromkeys(smiles_tokens(s)))
    return tuple(seen)


class MoleculeEncoder(nn.Module):
    """SMILES token ids (B, T) -> decoder memory (B, T, D) and its keep-mask (B, T)."""

    def __init__(self, cfg: MoleculeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(len(cfg.tokens), cfg.dim, padding_idx=PAD)
        self.pos_embed = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        # Memory positions of the molecule part (the protein memory has its own table).
        self.memory_pos = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        keep = ids.ne(PAD)
        t = ids.shape[1]
        x = self.embedding(ids) + self.pos_embed[:t]
        x = self.layers(x, src_key_padding_mask=~keep)
        return self.norm(x) + self.memory_pos[:t], keep
