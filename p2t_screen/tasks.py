"""Tasks are data: a task kind knows its label tokens, its grammar and how to parse its output.

A `TaskSpec` is one entry (name, kind, task token, labels, constants); a `TaskKind` turns labels
into tokens for training, builds the decoding grammar, and parses decoded tokens into a typed
`TaskResult`. Adding a task is adding a spec; adding a kind is adding one class to `KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .grammar import (
    Grammar,
    MultiLabelGrammar,
    PerResidueGrammar,
    SitesGrammar,
    class_grammar,
    flags_grammar,
    regression_grammar,
)
from .vocab import Vocab

REGRESSION_LOW, REGRESSION_HIGH = 0.0001, 0.9999  # Prot2Token's squashed label range
REGRESSION_DECIMALS = 4
# What a task reads. "protein": one sequence. "pair": two proteins, encoded as one ESM input
# `<cls> A <eos> B <eos>` (how Prot2Token's tokenizer encodes a (substrate, kinase) pair); p2t
# writes such an input as the string "A/B" (PAIR_SEP is no amino-acid letter) and site or
# per-residue outputs refer to A.
# "ligand": a protein and a molecule (SMILES), written "A SMILES" (smiles.LIGAND_SEP); the
# molecule encoder's memory follows the protein's.
INPUTS = ("protein", "pair", "ligand")
PAIR_SEP = "/"
LIGAND_SEP = " "
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


class TaskKind:
    """Behaviour shared by all tasks of one kind."""

    name: str = ""
    output_columns: tuple[str, ...] = ()
    needs_first_probs = False  # parse() wants the distribution over labels at the first step
    # Which decoder side input serves this kind, when the model enables it (Decoder.forward):
    # "pooled" (pooled_memory), "pointer" (site_pointer) or "skip" (residue_skip).
    side_input = "pooled"

    def validate(self, spec: TaskSpec) -> None:
        """Raise ValueError when the spec lacks what this kind needs."""

    def label_tokens(self, spec: TaskSpec, max_residues: int) -> list[str]:
        """Tokens the vocabulary must contain for this task."""
        raise NotImplementedError

    def encode(self, spec: TaskSpec, label: Any, sequence: str) -> list[str]:
        """Turn a label in its natural form into output tokens (without `<eos>`)."""
        raise NotImplementedError

    def prompt_tokens(self, spec: TaskSpec, sequence: str) -> list[str]:
        """Tokens given to the decoder after `<bos> <task>` (not predicted; default none)."""
        return []

    def read_label(self, spec: TaskSpec, text: str) -> Any:
        """Parse a label as written in a data file (ValueError says what is wrong)."""
        raise NotImplementedError

    def truth_of(self, result: TaskResult) -> Any:
        """The prediction in the same natural form as `read_label` returns."""
        raise NotImplementedError

    def grammar(self, spec: TaskSpec, vocab: Vocab, sequences: Sequence[str], max_steps: int,
                device: torch.device) -> Grammar:
        """The constrained-decoding grammar for a batch of (already truncated) sequences."""
        raise NotImplementedError

    def parse(self, spec: TaskSpec, tokens: list[str], probs: list[float],
              first_probs: dict[str, float]) -> TaskResult:
        """Typed result from the decoded tokens (without `<eos>`) and their probabilities."""
        raise NotImplementedError


def _sequence_probability(probs: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(max(p, 1e-30)) for p in probs)))


class RegressionKind(TaskKind):
    name = "regression"
    output_columns = ("value", "confidence")

    def validate(self, spec: TaskSpec) -> None:
        if spec.value_range is None or spec.value_range[0] >= spec.value_range[1]:
            raise ValueError(f"regression task {spec.name!r} needs value_range (min < max)")

    def label_tokens(self, spec: TaskSpec, max_residues: int) -> list[str]:
        return [*(str(d) for d in range(10)), "."]

    def encode(self, spec: TaskSpec, label: Any, sequence: str) -> list[str]:
        lo, hi = spec.value_range
        x = min(max(float(label), lo), hi)  # the format cannot express values outside the range
        y = (x - lo) / (hi - lo) * (REGRESSION_HIGH - REGRESSION_LOW) + REGRESSION_LOW
        return list(str(round(y, REGRESSION_DECIMALS)))

    def grammar(self, spec, vocab, sequences, max_steps, device):
        return regression_grammar(vocab, len(sequences), REGRESSION_DECIMALS, device)

    def read_label(self, spec, text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {text!r}")
        return value

    def truth_of(self, result):
        return result.value

    def parse(self, spec, tokens, probs, first_probs):
        lo, hi = spec.value_range
        y = float("".join(tokens))
        x = (y - REGRESSION_LOW) / (REGRESSION_HIGH - REGRESSION_LOW) * (hi - lo) + lo
        return TaskResult(value=x, confidence=_sequence_probability(probs))


class ClassKind(TaskKind):
    name = "class"
    output_columns = ("label", "confidence", "label_probs")
    needs_first_probs = True

    def validate(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            raise ValueError(f"class task {spec.name!r} needs at least two labels")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def encode(self, spec, label, sequence):
        if label not in spec.labels:
            raise ValueError(f"unknown label {label!r} for task {spec.name!r}")
        return [label]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        return class_grammar(vocab, spec.labels, len(sequences), device)

    def read_label(self, spec, text):
        label = str(text).strip()
        if label not in spec.labels:
            raise ValueError(f"unknown class {label!r} (known: {', '.join(spec.labels)})")
        return label

    def truth_of(self, result):
        return result.label

    def parse(self, spec, tokens, probs, first_probs):
        dist = [(lab, first_probs[lab]) for lab in spec.labels]
        return TaskResult(label=tokens[0], confidence=probs[0], label_probs=dist)


class MultiLabelKind(TaskKind):
    name = "multilabel"
    output_columns = ("labels", "confidence", "label_probs")

    def validate(self, spec: TaskSpec) -> None:
        if not spec.labels:
            raise ValueError(f"multi-label task {spec.name!r} needs labels")
        if spec.encoding == "flags" and ABSENT in spec.labels:
            raise ValueError(f"multi-label task {spec.name!r}: {ABSENT!r} cannot be a label")

    def label_tokens(self, spec, max_residues):
        return [*spec.labels, ABSENT] if spec.encoding == "flags" else list(spec.labels)

    def encode(self, spec, label, sequence):
        chosen = set(label)
        unknown = chosen - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        if spec.encoding == "flags":
            return [lab if lab in chosen else ABSENT for lab in spec.labels]
        return [lab for lab in spec.labels if lab in chosen]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        if spec.encoding == "flags":
            return flags_grammar(vocab, spec.labels, ABSENT, len(sequences), device, spec.decision_threshold)
        return MultiLabelGrammar(vocab, spec.labels, len(sequences), device, max_steps)

    def read_label(self, spec, text):
        labels = [t.strip() for t in str(text or "").split(";") if t.strip()]
        unknown = sorted(set(labels) - set(spec.labels))
        if unknown:
            raise ValueError(f"unknown labels {unknown} (known: {', '.join(spec.labels)})")
        return [lab for lab in spec.labels if lab in labels]

    def truth_of(self, result):
        return result.labels

    def parse(self, spec, tokens, probs, first_probs):
        """With encoding "flags", `label_probs` holds every label's probability of being present;
        otherwise the emitted labels with the probability of each emission."""
        confidence = _sequence_probability(probs)
        if spec.encoding == "flags":
            present = [p if tok == lab else 1.0 - p for lab, tok, p in zip(spec.labels, tokens, probs)]
            return TaskResult(labels=[tok for tok in tokens if tok != ABSENT], confidence=confidence,
                              label_probs=list(zip(spec.labels, present)))
        return TaskResult(labels=list(tokens), confidence=confidence, label_probs=list(zip(tokens, probs)))


class SitesKind(TaskKind):
    name = "sites"
    output_columns = ("sites", "confidence", "site_probs")
    side_input = "pointer"

    def label_tokens(self, spec, max_residues):
        return [str(p) for p in range(1, max_residues + 1)] + ([SEP] if spec.prompt else [])

    def candidates(self, spec: TaskSpec, sequence: str) -> list[int]:
        """1-based positions of the (first) protein that may be sites."""
        allowed = spec.residues
        return [i + 1 for i, aa in enumerate(protein_of(sequence)) if allowed is None or aa in allowed]

    def prompt_tokens(self, spec, sequence):
        if spec.prompt == "candidates":
            return [str(p) for p in self.candidates(spec, sequence)] + [SEP]
        return []

    def encode(self, spec, label, sequence):
        sites = sorted(set(int(p) for p in label))
        legal = set(self.candidates(spec, sequence))
        bad = [p for p in sites if p not in legal]
        if bad:
            raise ValueError(f"task {spec.name!r}: positions {bad[:5]} are not valid sites")
        return [str(p) for p in sites]

    def grammar(self, spec, vocab, sequences, max_steps, device):
        width = max((len(protein_of(s)) for s in sequences), default=0) + 1
        cand = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, seq in enumerate(sequences):
            cand[row, self.candidates(spec, seq)] = True
        most = int(cand.sum(1).max().item()) if len(sequences) else 0
        # A prompted row first replays its candidates and `<sep>`, then writes at most as many.
        steps = min(max_steps, (2 * most + 2) if spec.prompt else most + 1)
        return SitesGrammar(vocab, cand.to(device), steps, vocab.id(SEP) if spec.prompt else None)

    def read_label(self, spec, text):
        try:
            return sorted({int(t) for t in str(text or "").split(";") if t.strip()})
        except ValueError:
            raise ValueError(f"positions must be integers joined by ';': {text!r}") from None

    def truth_of(self, result):
        return result.sites

    def parse(self, spec, tokens, probs, first_probs):
        return TaskResult(sites=[int(t) for t in tokens], confidence=_sequence_probability(probs),
                          site_probs=list(probs))


class PerResidueKind(TaskKind):
    name = "per_residue"
    output_columns = ("residue_labels", "confidence", "residue_probs")
    side_input = "skip"

    def validate(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            raise ValueError(f"per-residue task {spec.name!r} needs at least two labels")
        if spec.codes is not None and (len(spec.codes) != len(spec.labels)
                                       or len(set(spec.codes)) != len(spec.codes)):
            raise ValueError(f"per-residue task {spec.name!r}: codes must give one distinct "
                             f"character per label")

    def label_tokens(self, spec, max_residues):
        return list(spec.labels)

    def encode(self, spec, label, sequence):
        labels, sequence = list(label), protein_of(sequence)
        if len(labels) != len(sequence):
            raise ValueError(f"task {spec.name!r}: {len(labels)} labels for {len(sequence)} residues")
        unknown = set(labels) - set(spec.labels)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)} for task {spec.name!r}")
        return labels

    def grammar(self, spec, vocab, sequences, max_steps, device):
        lengths = [len(protein_of(s)) for s in sequences]
        return PerResidueGrammar(vocab, spec.labels, torch.tensor(lengths, device=device),
                                 max(lengths, default=0) + 1)

    def read_label(self, spec, text):
        text = str(text or "").strip()
        if spec.codes:
            table = dict(zip(spec.codes, spec.labels))
            bad = sorted(set(text) - set(table))
            if bad:
                raise ValueError(f"unknown residue label codes {bad} (known: {spec.codes})")
            return [table[c] for c in text]
        return list(text)

    def truth_of(self, result):
        return result.residue_labels

    def parse(self, spec, tokens, probs, first_probs):
        mean = float(sum(probs) / len(probs)) if probs else None
        return TaskResult(residue_labels=list(tokens), confidence=mean, residue_probs=list(probs))


KINDS: dict[str, TaskKind] = {k.name: k for k in (
    RegressionKind(), ClassKind(), MultiLabelKind(), SitesKind(), PerResidueKind())}
