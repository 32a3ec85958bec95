"""Ligands: SMILES tokenisation and checks, and `.smi` files.

Tokenisation is the standard atom-level regex (Schwaller et al., "Molecular Transformer", 2019):
bracket atoms, two-letter organic atoms, bonds, branches and ring closures are single tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

SMILES_TOKEN = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%\d{2}|\d)")


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
