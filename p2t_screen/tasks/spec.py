"""A `TaskSpec` is one task a model can run (name, kind, task token, labels, constants); a
`TaskResult` is one parsed, typed prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .inputs import (
    INPUTS,
)
from .kind import KINDS

# Decoder prompts beyond `<bos> <task>`. "candidates" (sites tasks): every candidate position of
# the protein, ascending, then `<sep>`; the model then writes the positive ones (Prot2Token's
# kinase phosphorylation-site format).
PROMPTS = ("", "candidates")


SEP = "<sep>"


# How a multi-label answer is written. "" (Prot2Token's format): the labels present, in the
# spec's order, then `<eos>`. "flags": one decision per label in the spec's order, the label's
# token when present and ABSENT when not, then `<eos>`; each decision is then a probability of
# that label (given the decisions before it), which a decision threshold can act on.
ENCODINGS = ("", "flags")


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
    inputs: str = "protein"  # one of INPUTS
    prompt: str = ""  # one of PROMPTS
    encoding: str = ""  # multi-label: one of ENCODINGS
    threshold: float | None = None  # multi-label "flags": emit a label at this probability (None: 0.5)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"task name must be letters, digits and '_': {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r} (known: {sorted(KINDS)})")
        if not self.token:
            object.__setattr__(self, "token", f"<task_{self.name}>")
        if self.inputs not in INPUTS:
            raise ValueError(f"task {self.name!r}: inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"task {self.name!r}: prompt must be one of {PROMPTS}, got {self.prompt!r}")
        if self.prompt and self.kind != "sites":
            raise ValueError(f"task {self.name!r}: a '{self.prompt}' prompt needs kind 'sites'")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"task {self.name!r}: encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding and self.kind != "multilabel":
            raise ValueError(f"task {self.name!r}: encoding '{self.encoding}' needs kind 'multilabel'")
        if self.threshold is not None:
            if self.encoding != "flags":
                raise ValueError(f"task {self.name!r}: a threshold needs encoding 'flags'")
            if not 0.0 < float(self.threshold) < 1.0:
                raise ValueError(f"task {self.name!r}: threshold must lie in (0, 1), got {self.threshold}")
            object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.value_range is not None:
            object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        KINDS[self.kind].validate(self)

    @property
    def decision_threshold(self) -> float:
        """Multi-label "flags": the probability at which a label is emitted (0.5 unless set)."""
        return 0.5 if self.threshold is None else self.threshold

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
    """A parsed, typed prediction for one (record, task); fields left None do not apply."""

    value: float | None = None
    label: str | None = None
    labels: list[str] | None = None
    sites: list[int] | None = None
    residue_labels: list[str] | None = None
    confidence: float | None = None
    label_probs: list[tuple[str, float]] | None = None
    site_probs: list[float] | None = None
    residue_probs: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
