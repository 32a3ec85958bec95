"""What a task reads: one protein, a protein pair, or a protein and a ligand."""

from __future__ import annotations

# What a task reads. "protein": one sequence. "pair": two proteins, encoded as one ESM input
# `<cls> A <eos> B <eos>` (how Prot2Token's tokenizer encodes a (substrate, kinase) pair); p2t
# writes such an input as the string "A/B" (PAIR_SEP is no amino-acid letter) and site or
# per-residue outputs refer to A.
# "ligand": a protein and a molecule (SMILES), written "A SMILES" (smiles.LIGAND_SEP); the
# molecule encoder's memory follows the protein's.
INPUTS = ("protein", "pair", "ligand")


PAIR_SEP = "/"


LIGAND_SEP = " "


def protein_of(text: str) -> str:
    """The first protein of a model input ("A" of "A/B" or of "A SMILES", else the text)."""
    return encoder_input(text).split(PAIR_SEP, 1)[0]


def encoder_input(text: str) -> str:
    """What the protein encoder reads: the input without its ligand ("A/B" stays a pair)."""
    return text.split(LIGAND_SEP, 1)[0]


def ligand_of(text: str) -> str | None:
    """The SMILES of a protein-ligand input, else None."""
    parts = text.split(LIGAND_SEP, 1)
    return parts[1] if len(parts) == 2 else None


def pair_input(a: str, b: str, budget: int) -> str:
    """"A/B" with A and B cut longest-first until len(A) + len(B) <= budget (HF tokenizers'
    `longest_first` truncation of a pair, which the published pair checkpoints saw)."""
    extra = len(a) + len(b) - budget
    if extra > 0:
        first = min(abs(len(a) - len(b)), extra)  # the longer one down to the shorter...
        rest = extra - first  # ...then both, an odd one from b
        cut_a, cut_b = (first + rest // 2, rest - rest // 2) if len(a) > len(b) else (
            rest // 2, first + rest - rest // 2)
        a, b = a[: len(a) - cut_a], b[: len(b) - cut_b]
    return f"{a}{PAIR_SEP}{b}"
