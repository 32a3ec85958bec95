"""`ModelConfig`: everything needed to rebuild a model's modules and interpret its tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..tasks.kind import KINDS
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab
from .decoder import DecoderConfig
from .encoder import EncoderConfig
from .molecule import MoleculeConfig

PROMPT_LEN = 2  # <bos> <task_X>


# How the decoder memory is built. "masked": the encoder sees each batch padded to its longest
# sequence and the decoder ignores padding (p2t's own models). "padded": the encoder input is
# padded to max_residues + 2 tokens and the decoder attends to every position, padding included,
# with no memory mask: what the published Prot2Token checkpoints were trained and run with.
MEMORY_MODES = ("masked", "padded")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's modules and interpret its tokens."""

    name: str
    encoder: EncoderConfig
    decoder: DecoderConfig
    vocab: Vocab
    tasks: tuple[TaskSpec, ...]
    memory: str = "masked"  # one of MEMORY_MODES
    molecule: MoleculeConfig | None = None  # SMILES encoder of protein-ligand tasks

    def __post_init__(self) -> None:
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, got {self.memory!r}")
        ligand_tasks = [t.name for t in self.tasks if t.inputs == "ligand"]
        if ligand_tasks and self.molecule is None:
            raise ValueError(f"task(s) {ligand_tasks} read ligands but the model has no molecule encoder")
        if self.molecule is not None and self.molecule.dim != self.decoder.dim:
            raise ValueError(f"molecule encoder width {self.molecule.dim} != decoder width {self.decoder.dim}")
        if self.decoder.vocab_size != len(self.vocab):
            raise ValueError(f"decoder vocab_size {self.decoder.vocab_size} != vocabulary size "
                             f"{len(self.vocab)}")
        if self.decoder.memory_dim != self.encoder.embed_dim:
            raise ValueError(f"decoder memory_dim {self.decoder.memory_dim} != encoder width "
                             f"{self.encoder.embed_dim}")
        if 0 < self.decoder.memory_positions < self.encoder.max_residues + 2:
            raise ValueError(f"decoder memory_positions {self.decoder.memory_positions} must cover "
                             f"max_residues + 2 = {self.encoder.max_residues + 2} encoder positions")
        for spec in self.tasks:
            needed = [spec.token, *KINDS[spec.kind].label_tokens(spec, self.encoder.max_residues)]
            missing = [t for t in needed if t not in self.vocab]
            if missing:
                raise ValueError(f"task {spec.name!r} needs tokens missing from the vocabulary: "
                                 f"{missing[:10]}")
            if spec.encoding == "flags" and self.max_output_steps < len(spec.labels) + 1:
                raise ValueError(f"task {spec.name!r} writes {len(spec.labels) + 1} tokens; the decoder "
                                 f"allows {self.max_output_steps}")
            if spec.kind == "per_residue" and self.max_output_steps < self.encoder.max_residues + 1:
                raise ValueError(f"per-residue task {spec.name!r} needs decoder max_len >= "
                                 f"{self.encoder.max_residues + 1 + PROMPT_LEN}")

    @property
    def max_output_steps(self) -> int:
        """Tokens the decoder can write after the prompt, `<eos>` included."""
        return self.decoder.max_len - PROMPT_LEN

    def task(self, name: str) -> TaskSpec:
        """The spec of one of this model's tasks, or a UsageError listing the ones it has."""
        for spec in self.tasks:
            if spec.name == name:
                return spec
        have = ", ".join(s.name for s in self.tasks)
        raise UsageError(f"model '{self.name}' has no task '{name}'; it has: {have}")

    def select_tasks(self, names: list[str] | None) -> list[TaskSpec]:
        """Resolve a user's task list (None or ['all'] meaning every task)."""
        if not names or names == ["all"]:
            return list(self.tasks)
        seen: list[TaskSpec] = []
        for name in names:
            spec = self.task(name)
            if spec not in seen:
                seen.append(spec)
        return seen
