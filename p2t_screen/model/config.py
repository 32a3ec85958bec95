"""`ModelConfig`: everything needed to rebuild a model's modules and interpret its tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..tasks.inputs import LIGAND
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab
from .decoder import DecoderConfig
from .encoder import EncoderConfig
from .molecule import MoleculeConfig

PROMPT_LEN = 2  # <bos> <task_X>


# How the decoder memory is laid out (`MemoryLayout`). MASKED: the encoder sees each batch padded
# to its longest sequence and the decoder ignores padding (p2t's own models). PADDED: the encoder
# input is padded to max_residues + 2 tokens and the decoder attends to every position, padding
# included, with no memory mask: what the published Prot2Token checkpoints were trained and run with.
MASKED, PADDED = "masked", "padded"
MEMORY_LAYOUTS = (MASKED, PADDED)


def check_memory_layout(layout: str) -> str:
    """`layout` when it is one of MEMORY_LAYOUTS, else a ValueError."""
    if layout not in MEMORY_LAYOUTS:
        raise ValueError(f"memory layout must be one of {MEMORY_LAYOUTS}, got {layout!r}")
    return layout


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's modules and interpret its tokens."""

    name: str
    encoder: EncoderConfig
    decoder: DecoderConfig
    vocab: Vocab
    tasks: tuple[TaskSpec, ...]
    memory_layout: str = MASKED  # one of MEMORY_LAYOUTS (stored as "memory" in config.json)
    molecule: MoleculeConfig | None = None  # SMILES encoder of protein-ligand tasks

    def __post_init__(self) -> None:
        check_memory_layout(self.memory_layout)
        ligand_tasks = [t.name for t in self.tasks if t.inputs == LIGAND]
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
            self._check_task(spec)

    def _check_task(self, spec: TaskSpec) -> None:
        kind, residues = spec.task_kind, self.encoder.max_residues
        needed = [spec.token, *kind.label_tokens(spec, residues)]
        missing = [t for t in needed if t not in self.vocab]
        if missing:
            raise ValueError(f"task {spec.name!r} needs tokens missing from the vocabulary: {missing[:10]}")
        steps = kind.min_output_steps(spec, residues)
        if self.max_output_steps < steps:
            raise ValueError(f"task {spec.name!r} needs {steps} decoder positions after the prompt "
                             f"(decoder max_len >= {steps + PROMPT_LEN}); the decoder has "
                             f"{self.max_output_steps}")

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
