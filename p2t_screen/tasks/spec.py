"""A `TaskSpec` is one task a model can run (name, kind, task token, labels, constants); a
`TaskResult` is one parsed, typed prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .inputs import INPUTS
from .kind import KINDS, TaskKind

SEP = "<sep>"
ABSENT = "<absent>"


@dataclass(frozen=True)
class TaskSpec:
    """One task a model can run: its name, kind, task token and kind-specific constants."""

    name: str
    kind: str
    labels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    residues: str | None = None  # sites: residue types that may be sites (None: any)
    codes: str | None = None  # per-residue: one character per label, for label strings like "HHEC"
    description: str = ""
    token: str = ""
    inputs: str = "protein"  # one of tasks.inputs.INPUTS
    # Decoder prompt beyond `<bos> <task>`, one of the kind's `prompts`. Sites: "candidates" gives
    # every candidate position of the protein, ascending, then `<sep>`; the model then writes the
    # positive ones (Prot2Token's kinase phosphorylation-site format).
    prompt: str = ""
    # How the answer is written, one of the kind's `encodings` (multi-label: "" or "flags").
    encoding: str = ""
    threshold: float | None = None  # a kind with decision thresholds: emit at this probability
    # Calibration: reported probabilities come from logits / temperature (fitted on validation);
    # choices never change. None: as the model computes them.
    temperature: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"task name must be letters, digits and '_': {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r} (known: {sorted(KINDS)})")
        if not self.token:
            object.__setattr__(self, "token", f"<task_{self.name}>")
        if self.inputs not in INPUTS:
            raise ValueError(f"task {self.name!r}: inputs must be one of {INPUTS}, got {self.inputs!r}")
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.value_range is not None:
            object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))
        if self.temperature is not None:
            object.__setattr__(self, "temperature", float(self.temperature))
            if not 0.0 < self.temperature < float("inf"):
                raise ValueError(f"task {self.name!r}: temperature must be a positive number, got {self.temperature}")
        self.task_kind.validate(self)

    @property
    def task_kind(self) -> TaskKind:
        """The kind that owns this task's tokens, grammar, parsing and metrics."""
        return KINDS[self.kind]

    @property
    def has_threshold(self) -> bool:
        """Whether a decision threshold applies to this task (multi-label "flags")."""
        return self.task_kind.has_threshold(self)

    @property
    def decision_threshold(self) -> float:
        """The probability at which a label is emitted (0.5 unless set)."""
        return 0.5 if self.threshold is None else self.threshold

    @property
    def reported_temperature(self) -> float:
        """What the logits of reported probabilities are divided by (1.0 unless set)."""
        return 1.0 if self.temperature is None else self.temperature

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in a model's config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        """Inverse of `to_dict`; unknown fields are an error, not silently dropped."""
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise ValueError(f"task spec has unknown fields: {sorted(extra)}")
        return cls(**data)


@dataclass
class TaskResult:
    """A parsed, typed prediction for one (record, task); fields left None do not apply.
    Every field but `label_dists` is an output column of the same name."""

    value: float | None = None
    label: str | None = None
    labels: list[str] | None = None
    sites: list[int] | None = None
    residue_labels: list[str] | None = None
    confidence: float | None = None
    label_probs: list[tuple[str, float]] | None = None
    site_probs: list[float] | None = None
    residue_probs: list[float] | None = None
    # Conformal answers at the run's coverage (`TaskKind.conformal_answer`; None: no calibration).
    value_lo: float | None = None
    value_hi: float | None = None
    label_set: list[str] | None = None
    site_set: list[int] | None = None
    residue_sets: list[str] | None = None
    set_size: float | None = None
    # How like the model's training proteins the protein is (`trust.domain`; None: no index).
    domain_score: float | None = None
    in_domain: bool | None = None
    # Not a column: each output step's reported distribution over the task's labels (steps, K),
    # kept only while conformal sets are made from it.
    label_dists: Any = None

    def columns(self) -> dict[str, Any]:
        """The output columns this result fills (label probabilities as {label, prob} rows)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "label_dists"}
        if self.label_probs is not None:
            out["label_probs"] = [{"label": k, "prob": p} for k, p in self.label_probs]
        return out
