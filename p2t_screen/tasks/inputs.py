"""What a task reads: one protein, a protein pair, or a protein and a ligand.

A `ModelInput` is one such input, typed: the protein, and a partner protein (pair tasks, e.g.
substrate and kinase) or a ligand SMILES (protein-ligand tasks). A pair is encoded the way
Prot2Token's tokenizer encodes one, `<cls> A <eos> B <eos>` in one ESM2 pass; site and
per-residue outputs refer to A. A ligand is encoded by the molecule encoder, whose memory
follows the protein's.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTEIN, PAIR, LIGAND = "protein", "pair", "ligand"
INPUTS = (PROTEIN, PAIR, LIGAND)  # what a task reads (`TaskSpec.inputs`)


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One model input: a protein, with a partner protein or a ligand (SMILES), or neither."""

    protein: str
    partner: str | None = None
    ligand: str | None = None

    def __post_init__(self) -> None:
        if self.partner is not None and self.ligand is not None:
            raise ValueError("a model input has a partner protein or a ligand, not both")

    @property
    def inputs(self) -> str:
        """Which of INPUTS this is (what a task that reads it names in `TaskSpec.inputs`)."""
        return LIGAND if self.ligand is not None else PAIR if self.partner is not None else PROTEIN

    @property
    def residues(self) -> int:
        """Residues the protein encoder reads (both proteins of a pair)."""
        return len(self.protein) + len(self.partner or "")

    @property
    def encoder_length(self) -> int:
        """Encoder positions between `<cls>` and the last `<eos>` (a pair's middle `<eos>` counts)."""
        return self.residues + (1 if self.partner is not None else 0)

    @property
    def encoder_input(self) -> ModelInput:
        """What the protein encoder reads: this input without its ligand. Inputs that share it
        (one protein, many ligands) share one encoder pass."""
        return self if self.ligand is None else ModelInput(self.protein)


def pair_input(a: str, b: str, budget: int) -> ModelInput:
    """The pair (A, B) with A and B cut longest-first until len(A) + len(B) <= budget (HF
    tokenizers' `longest_first` truncation of a pair, which the published pair checkpoints saw)."""
    extra = len(a) + len(b) - budget
    if extra > 0:
        first = min(abs(len(a) - len(b)), extra)  # the longer one down to the shorter...
        rest = extra - first  # ...then both, an odd one from b
        cut_a, cut_b = (first + rest // 2, rest - rest // 2) if len(a) > len(b) else (
            rest // 2, first + rest - rest // 2)
        a, b = a[: len(a) - cut_a], b[: len(b) - cut_b]
    return ModelInput(a, partner=b)


def as_input(item: ModelInput | str) -> ModelInput:
    """A `ModelInput`; a plain string is one protein."""
    return item if isinstance(item, ModelInput) else ModelInput(item)
