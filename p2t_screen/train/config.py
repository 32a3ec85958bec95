"""`p2t train` configuration: a TOML or YAML file, checked into frozen dataclasses.

See `examples/train.toml` for an annotated example. Unknown keys are errors (a typo must not
silently fall back to a default), and every message names the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError, check_fields
from ..tasks.catalog import CATALOG
from ..tasks.spec import TaskSpec
from .data import TaskSource

ENCODER_NEW = "new"


@dataclass(frozen=True)
class EncoderSection:
    """Which encoder, and how much of it trains."""

    source: str = ENCODER_NEW  # "new" (ESM2-shaped, from scratch), fair-esm name or .pt path
    init: str | None = None  # start from an existing p2t model directory (encoder and decoder)
    num_layers: int = 4
    embed_dim: int = 128
    attention_heads: int = 8
    max_residues: int = 1022
    train: str = "full"  # "frozen" | "full" | "last:N"
    cache: bool = True  # frozen encoder: compute its outputs once per sequence

    def __post_init__(self) -> None:
        check_fields(self, positive=("num_layers", "embed_dim", "attention_heads", "max_residues"))

    def trainable_layers(self) -> int | None:
        """None: all; 0: frozen; N: the last N layers."""
        if self.train == "full":
            return None
        if self.train == "frozen":
            return 0
        if self.train.startswith("last:") and self.train[5:].isdigit():
            return int(self.train[5:])
        raise ValueError(f"encoder.train must be 'frozen', 'full' or 'last:N', got {self.train!r}")


@dataclass(frozen=True)
class DecoderSection:
    dim: int = 128
    num_layers: int = 3
    num_heads: int = 4
    ffn_dim: int = 512
    memory_positions: int = 1024
    norm_first: bool = True
    dropout: float = 0.1
    # Start cross-attention aligned (decoder step j reads residue j): see model.init_alignment.
    align_init: bool = True
    residue_skip: bool = False  # per-residue tasks: decoder input j adds memory row j
    site_pointer: bool = False  # site tasks: position p's logit also reads memory row p
    pooled_memory: bool = False  # class/multi-label/regression: inputs add the memory's mean
    task_every_step: bool = False  # every decoder input adds the task token's embedding
    residue_feedback: bool = True  # per-residue tasks read their previous labels (Prot2Token)
    memory_window: int = 0  # memory rows add a learned mix of the rows around them (odd width)

    def __post_init__(self) -> None:
        check_fields(self, positive=("dim", "num_layers", "num_heads", "ffn_dim"),
                     at_least_zero=("memory_positions", "dropout"), ceilings={"dropout": 1.0})


@dataclass(frozen=True)
class MoleculeSection:
    """The SMILES encoder of protein-ligand tasks (its width is the decoder's)."""

    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    max_len: int = 128
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 3
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 200
    max_tokens: int = 8192
    grad_clip: float = 1.0
    mask_prob: float = 0.05  # ESM input residues masked as augmentation (the reference: 5-15%)
    valid_max: int = 300  # validation examples per task and epoch
    checkpoint_every: int = 200  # steps between resumable checkpoints
    max_steps: int | None = None  # stop early (smoke tests, time-boxed runs)
    loss: str = "token"  # "token": every output token weighs the same; "example": every example

    def __post_init__(self) -> None:
        check_fields(self, positive=("epochs", "lr", "max_tokens", "grad_clip", "valid_max", "checkpoint_every",
                                     "max_steps"), at_least_zero=("weight_decay", "warmup", "mask_prob"),
                     ceilings={"mask_prob": 1.0})
        if self.loss not in ("token", "example"):
            raise ValueError(f"train.loss must be 'token' or 'example', got {self.loss!r}")


@dataclass(frozen=True)
class TaskEntry:
    """One task: its spec, its data, and how it is mixed into training."""

    spec: TaskSpec
    source: TaskSource | None  # None for self-supervised tasks
    self_supervised: tuple[Path, str] | None = None  # (FASTA, residue letter)
    weight: float = 1.0  # sampling weight: examples per epoch scale with it
    max_per_epoch: int | None = None
    class_weights: bool = False  # inverse-frequency token weights for imbalanced labels
    input_dropout: float | None = None  # None: the kind's default (per-residue 0.5, others 0)
    tune_threshold: bool = False  # multi-label "flags": pick the decision threshold on validation
    auxiliary: bool = False  # trained and validated like the others, but not offered by the saved model


@dataclass(frozen=True)
class TrainingConfig:
    name: str
    output: Path
    encoder: EncoderSection
    decoder: DecoderSection
    train: TrainSection
    tasks: tuple[TaskEntry, ...]
    seed: int = 0
    origin: str = ""
    molecule: MoleculeSection = MoleculeSection()


def _section(cls, data: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from exc


# A task entry: TaskSpec fields, TaskSource columns, and how the task is mixed into training.
_SPEC_KEYS = {f.name for f in fields(TaskSpec)}


_COLUMN_KEYS = {f.name for f in fields(TaskSource) if f.name.endswith("_column")}


_TASK_KEYS = _SPEC_KEYS | _COLUMN_KEYS | {"data", "fasta", "weight", "max_per_epoch", "class_weights",
                                          "self_supervised", "residue", "input_dropout",
                                          "tune_threshold", "auxiliary"}


def _task(entry: dict[str, Any], base: Path, where: str) -> TaskEntry:
    unknown = sorted(set(entry) - _TASK_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; known: {sorted(_TASK_KEYS)}")
    if "name" not in entry:
        raise UsageError(f"{where}: every task needs a name")
    given = {k: v for k, v in entry.items() if k in _SPEC_KEYS}
    catalog = CATALOG.get(entry["name"])
    spec_data = {**(catalog.to_dict() if catalog else {}), **given}
    if "labels" in spec_data:
        spec_data["labels"] = tuple(spec_data["labels"])
    if "self_supervised" in entry:
        spec_data.setdefault("kind", "sites")
    try:
        spec = TaskSpec.from_dict(spec_data)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from exc
    path = lambda p: (base / p) if p and not Path(p).is_absolute() else (Path(p) if p else None)  # noqa: E731
    selfsup = None
    if "self_supervised" in entry:
        residue = str(entry.get("residue", "")).upper()
        if len(residue) != 1:
            raise UsageError(f"{where}: a self-supervised task needs residue = one letter")
        selfsup, source = (path(entry["self_supervised"]), residue), None
    elif "data" in entry:
        source = TaskSource(path=path(entry["data"]), fasta=path(entry.get("fasta")),
                            **{k: entry[k] for k in _COLUMN_KEYS if k in entry})
    else:
        raise UsageError(f"{where}: give `data` (a table) or `self_supervised` (a FASTA)")
    tune = bool(entry.get("tune_threshold", False))
    if tune and not spec.has_threshold:
        raise UsageError(f"{where}: tune_threshold needs a multi-label task with encoding = \"flags\"")
    if tune and entry.get("auxiliary"):
        raise UsageError(f"{where}: an auxiliary task is not offered, so it has no threshold to tune")
    return TaskEntry(spec, source, selfsup, float(entry.get("weight", 1.0)),
                     entry.get("max_per_epoch"), bool(entry.get("class_weights", False)),
                     entry.get("input_dropout"), tune, bool(entry.get("auxiliary", False)))


def parse_config(doc: dict[str, Any], origin: str, base: Path) -> TrainingConfig:
    """Validate a loaded config document; relative paths are relative to `base`."""
    top = {"name", "output", "seed", "encoder", "decoder", "train", "tasks", "molecule"}
    unknown = sorted(set(doc) - top)
    if unknown:
        raise UsageError(f"{origin}: unknown top-level key(s) {unknown}; known: {sorted(top)}")
    for key in ("name", "output", "tasks"):
        if key not in doc:
            raise UsageError(f"{origin}: missing required key {key!r}")
    tasks = tuple(_task(t, base, f"{origin}: tasks[{i}] ({t.get('name', '?')})")
                  for i, t in enumerate(doc["tasks"]))
    names = [t.spec.name for t in tasks]
    if len(set(names)) != len(names):
        raise UsageError(f"{origin}: duplicate task names in {names}")
    if all(t.auxiliary for t in tasks):
        raise UsageError(f"{origin}: every task is auxiliary; the model would offer none")
    encoder = _section(EncoderSection, doc.get("encoder", {}), f"{origin}: [encoder]")
    try:
        encoder.trainable_layers()
    except ValueError as exc:
        raise UsageError(f"{origin}: {exc}") from exc
    output = Path(doc["output"])
    return TrainingConfig(
        name=str(doc["name"]), output=output if output.is_absolute() else base / output,
        encoder=encoder, decoder=_section(DecoderSection, doc.get("decoder", {}), f"{origin}: [decoder]"),
        train=_section(TrainSection, doc.get("train", {}), f"{origin}: [train]"),
        tasks=tasks, seed=int(doc.get("seed", 0)), origin=origin,
        molecule=_section(MoleculeSection, doc.get("molecule", {}), f"{origin}: [molecule]"))


def load_config(path: Path, base: Path | None = None) -> TrainingConfig:
    """Read a TOML (.toml) or YAML (.yaml/.yml) training config."""
    if not path.is_file():
        raise UsageError(f"training config not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text) or {}
        else:
            doc = tomllib.loads(text)
    except Exception as exc:  # tomllib and yaml raise their own error types
        raise UsageError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    return parse_config(doc, str(path), base or Path.cwd())
