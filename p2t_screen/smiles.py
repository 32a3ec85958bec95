"""Ligands: SMILES tokenisation and checks, `.smi` files, and the molecule encoder.

Tokenisation is the standard atom-level regex (Schwaller et al., "Molecular Transformer", 2019):
bracket atoms, two-letter organic atoms, bonds, branches and ring closures are single tokens.
Prot2Token's own molecule encoder (BARTSmiles) comes from a model hub that these machines cannot
reach; p2t's is a small Transformer encoder trained with the decoder by `p2t train`. Its memory
is appended after the protein memory, with its own position table, as in Prot2Token.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import InputError

SMILES_TOKEN = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%\d{2}|\d)")
SPECIALS = ("<pad>", "<cls>", "<eos>", "<unk>")
PAD, CLS, EOS, UNK = range(4)


def smiles_tokens(smiles: str) -> list[str]:
    """Atom-level tokens; ValueError names the first character no token covers."""
    tokens, pos = [], 0
    for match in SMILES_TOKEN.finditer(smiles):
        if match.start() != pos:
            raise ValueError(f"unexpected character {smiles[pos]!r} at position {pos + 1}")
        tokens.append(match.group())
        pos = match.end()
    if pos != len(smiles):
        raise ValueError(f"unexpected character {smiles[pos]!r} at position {pos + 1}")
    return tokens


def check_smiles(smiles: str) -> list[str]:
    """Tokens of a SMILES string that passes structural checks (and RDKit's parser when RDKit is
    installed); ValueError says what is wrong."""
    if not smiles:
        raise ValueError("empty SMILES")
    if any(c.isspace() for c in smiles):
        raise ValueError("SMILES contains whitespace")
    tokens = smiles_tokens(smiles)
    depth, rings = 0, set()
    for tok in tokens:
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("')' without an opening '('")
        elif tok.isdigit() or tok.startswith("%"):
            rings ^= {tok}
    if depth:
        raise ValueError(f"{depth} unclosed '('")
    if rings:
        raise ValueError(f"unclosed ring bond(s) {sorted(rings)}")
    if not any(t[0].isalpha() or t.startswith("[") or t == "*" for t in tokens):
        raise ValueError("no atoms")
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        return tokens
    RDLogger.DisableLog("rdApp.*")
    if Chem.MolFromSmiles(smiles) is None:
        raise ValueError("RDKit cannot parse it")
    return tokens


@dataclass(frozen=True)
class Ligand:
    """One ligand of a `--ligands` file: a name, its SMILES, and why it is unusable (or None)."""

    id: str
    smiles: str
    error: str | None = None


def read_ligands(path: Path) -> list[Ligand]:
    """A `.smi` file: `SMILES [name]` per line; blank lines and `#` comments skipped. Unusable
    SMILES are kept with their error, so every (protein, ligand) still gets a row."""
    if not path.is_file():
        raise InputError(f"ligand file not found: {path}")
    out: list[Ligand] = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        smiles, *rest = line.split(None, 1)
        name = rest[0].strip() if rest else f"line{n}"
        try:
            check_smiles(smiles)
            out.append(Ligand(name, smiles))
        except ValueError as exc:
            out.append(Ligand(name, smiles, f"ligand {name!r} (line {n}): invalid SMILES {smiles!r}: {exc}"))
    ids = [lig.id for lig in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"{path}: ligand names must be unique; repeated: {dupes[:5]}")
    if not out:
        raise InputError(f"{path}: no ligands")
    return out


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
