"""The task-kind interface and registry.

A kind owns everything kind-specific: the tokens its labels need, turning a label into tokens
and back, the decoding grammar, reading labels from data files, cutting them to the residues
used, the decoder length it needs, its metrics and primary metric, its trivial baseline, what a
failed row counts as, and which decoder side input serves it. Code outside `tasks/` asks the
kind; it never tests a kind by name. Adding a kind is adding one class and `register_kind(...)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch

from .grammar import Grammar
from .readout import ResidueTrack, TaskSummary, WideColumn
from .vocab import Vocab

if TYPE_CHECKING:
    from .spec import TaskResult, TaskSpec

# (protein, label) pairs: what baselines are fitted on and scored against.
ProteinLabels = Sequence[tuple[str, Any]]


class SideInput(str, Enum):
    """Decoder side inputs a model may enable (see `model.decoder.SideInputs`); each kind says
    which one serves it."""

    POOLED = "pooled"  # the memory's mean, added to every input (pooled_memory)
    POINTER = "pointer"  # memory row p scores position token p (site_pointer)
    RESIDUE = "residue"  # memory row j added to decoder input j (residue_skip)


class TaskKind:
    """Behaviour shared by all tasks of one kind; subclasses override what differs."""

    name: str = ""
    output_columns: tuple[str, ...] = ()  # output columns its rows fill
    answer_column: str = ""  # the column (and TaskResult field) holding the answer itself
    primary_metric: str = ""  # the metric that picks the best checkpoint
    report_metrics: tuple[str, ...] = ()  # the metrics a short report shows
    # The classical baseline it is compared with, a family of `train.classical` ("": none).
    classical_family: str = ""
    prompts: tuple[str, ...] = ("",)  # TaskSpec.prompt values it supports
    encodings: tuple[str, ...] = ("",)  # TaskSpec.encoding values it supports
    threshold_encodings: tuple[str, ...] = ()  # encodings whose choices a decision threshold moves
    needs_first_probs = False  # parse() wants the distribution over labels at the first step
    side_input = SideInput.POOLED
    # Without residue feedback the decoder reads <pad> instead of its previous outputs, so all
    # of a task's steps come from one decoder pass (per-residue labels).
    one_pass_without_feedback = False
    scalar = False  # a handful of output tokens per protein, whatever its length
    default_input_dropout = 0.0  # training: chance each previous label token is hidden
    residue_tracks = False  # residue_track() lays the answer along the residues (per-residue formats)
    # How its answers get a stated coverage (`trust.conformal`; "": they do not), and whether that
    # reads each output step's distribution over the labels (`TaskResult.label_dists`).
    conformal_method: str = ""
    conformal_reads_dists = False

    def validate(self, spec: TaskSpec) -> None:
        """Raise ValueError when the spec lacks what this kind needs."""
        self._check_choice(spec, "prompt", spec.prompt, self.prompts, lambda k: k.prompts)
        self._check_choice(spec, "encoding", spec.encoding, self.encodings, lambda k: k.encodings)
        if spec.threshold is not None:
            if not self.has_threshold(spec):
                needs = " or ".join(f"encoding {e!r}" for k in KINDS.values() for e in k.threshold_encodings)
                raise ValueError(f"task {spec.name!r}: a threshold needs {needs or 'a kind with thresholds'}")
            if not 0.0 < spec.threshold < 1.0:
                raise ValueError(f"task {spec.name!r}: threshold must lie in (0, 1), got {spec.threshold}")

    def _check_choice(self, spec: TaskSpec, field: str, value: str, own: tuple[str, ...],
                      of: Callable[[TaskKind], tuple[str, ...]]) -> None:
        if value in own:
            return
        others = [k.name for k in KINDS.values() if value in of(k)]
        if others:
            raise ValueError(f"task {spec.name!r}: {field} {value!r} needs kind "
                             f"{' or '.join(repr(n) for n in others)}")
        known = sorted({v for k in KINDS.values() for v in of(k)})
        raise ValueError(f"task {spec.name!r}: {field} must be one of {tuple(known)}, got {value!r}")

    def has_threshold(self, spec: TaskSpec) -> bool:
        """Whether a decision threshold moves this task's choices."""
        return spec.encoding in self.threshold_encodings

    # ---------------------------------------------------------------- tokens

    def label_tokens(self, spec: TaskSpec, max_residues: int) -> list[str]:
        """Tokens the vocabulary must contain for this task."""
        raise NotImplementedError

    def encode(self, spec: TaskSpec, label: Any, protein: str) -> list[str]:
        """Turn a label in its natural form into output tokens (without `<eos>`)."""
        raise NotImplementedError

    def prompt_tokens(self, spec: TaskSpec, protein: str) -> list[str]:
        """Tokens given to the decoder after `<bos> <task>` (not predicted; default none)."""
        return []

    def output_steps(self, spec: TaskSpec, max_residues: int) -> int:
        """Decoder steps after `<bos> <task>` a new model makes room for."""
        return len(spec.labels) + 8

    def min_output_steps(self, spec: TaskSpec, max_residues: int) -> int:
        """Decoder steps after `<bos> <task>` a model must allow to run this task at all."""
        return 1

    # ---------------------------------------------------------------- labels in data files

    def read_label(self, spec: TaskSpec, text: str) -> Any:
        """Parse a label as written in a data file (ValueError says what is wrong)."""
        raise NotImplementedError

    def check_label(self, spec: TaskSpec, label: Any, protein: str) -> None:
        """Raise ValueError when a parsed label does not fit its protein (before truncation)."""

    def fit_label(self, spec: TaskSpec, label: Any, residues: int) -> Any:
        """The label restricted to the first `residues` residues (what a truncated input sees)."""
        return label

    def label_counts(self, spec: TaskSpec, label: Any) -> list[str]:
        """The label tokens a label counts (class weights, data summaries; none by default)."""
        return []

    # ---------------------------------------------------------------- decoding

    def grammar(self, spec: TaskSpec, vocab: Vocab, proteins: Sequence[str], max_steps: int,
                device: torch.device) -> Grammar:
        """The constrained-decoding grammar for a batch of (already truncated) proteins."""
        raise NotImplementedError

    def parse(self, spec: TaskSpec, tokens: list[str], probs: list[float],
              first_probs: dict[str, float]) -> TaskResult:
        """Typed result from the decoded tokens (without `<eos>`) and their probabilities."""
        raise NotImplementedError

    # ---------------------------------------------------------------- evaluation

    def answer(self, columns: dict[str, Any]) -> Any:
        """The answer in the natural form of `read_label`, from a result's columns (an output row)."""
        return columns[self.answer_column]

    def empty_answer(self, spec: TaskSpec, protein: str) -> Any:
        """What a failed row counts as: nothing predicted (it still counts against the model)."""
        raise NotImplementedError

    def score(self, spec: TaskSpec, proteins: Sequence[str], truth: Sequence[Any],
              preds: Sequence[Any]) -> dict[str, float]:
        """This kind's metrics for predictions against true labels (both in natural form)."""
        raise NotImplementedError

    def baseline(self, spec: TaskSpec, train: ProteinLabels, test: ProteinLabels) -> tuple[str, dict[str, float]]:
        """A trivial baseline fitted on `train`, scored on `test`: (description, metrics)."""
        raise NotImplementedError

    def reported_events(self, spec: TaskSpec, columns: dict[str, Any], truth: Any) -> list[tuple[float, bool]]:
        """(probability, whether it came true) for each probability a result's columns report
        (calibration); none by default."""
        return []

    # ---------------------------------------------------------------- trust (trust/conformal.py)

    def has_conformal(self, spec: TaskSpec) -> bool:
        """Whether this task's answers can carry conformal sets or intervals."""
        return bool(self.conformal_method)

    def conformal_scores(self, spec: TaskSpec, result: TaskResult, truth: Any) -> Any:
        """What one calibration protein contributes to `fit_conformal` (its nonconformity scores,
        or its items' probabilities and truth), from its result and true label."""
        raise NotImplementedError

    def fit_conformal(self, spec: TaskSpec, scores: list[Any], level: float) -> dict[str, Any]:
        """The constants (JSON-ready) that give answers with coverage `level`, from every
        calibration protein's `conformal_scores`."""
        raise NotImplementedError

    def conformal_answer(self, spec: TaskSpec, result: TaskResult, params: dict[str, Any]) -> None:
        """Fill the result's conformal columns under one level's `fit_conformal` constants."""
        raise NotImplementedError

    def conformal_check(self, spec: TaskSpec, result: TaskResult, truth: Any) -> tuple[float, int, float]:
        """How a conformal answer fared against the truth: (units covered, units, set size or
        interval width); a unit is a protein, or a residue for per-residue tasks. For the calls of
        risk control, "covered" is one minus the protein's loss."""
        raise NotImplementedError

    # ---------------------------------------------------------------- read by people (results/)

    def wide_columns(self, spec: TaskSpec) -> tuple[WideColumn, ...]:
        """The columns this task adds to the one-row-per-protein table (`<task><suffix>`)."""
        raise NotImplementedError

    def wide_values(self, spec: TaskSpec, row: dict[str, Any]) -> tuple[Any, ...]:
        """Those columns' values for one ok output row, in human form."""
        raise NotImplementedError

    def residue_track(self, spec: TaskSpec, row: dict[str, Any]) -> ResidueTrack | None:
        """The answer laid along the residues used, where the kind has one (default: none)."""
        return None

    def summary(self, spec: TaskSpec) -> TaskSummary:
        """An empty summary of what this task finds, to be fed its ok rows."""
        raise NotImplementedError


def sequence_probability(probs: Sequence[float]) -> float:
    """Probability of a whole output: the product of its tokens' probabilities."""
    return float(math.exp(sum(math.log(max(p, 1e-30)) for p in probs)))


KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make a task kind known by its name (specs name their kind); returns it."""
    if not kind.name:
        raise ValueError(f"{type(kind).__name__} has no name")
    if kind.name in KINDS and type(KINDS[kind.name]) is not type(kind):
        raise ValueError(f"task kind {kind.name!r} is already registered ({type(KINDS[kind.name]).__name__})")
    KINDS[kind.name] = kind
    return kind
