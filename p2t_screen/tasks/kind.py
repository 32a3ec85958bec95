"""The task-kind interface and registry: a kind turns labels into tokens, builds the decoding
grammar and parses decoded tokens into a typed `TaskResult`. Adding a kind is adding one class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .grammar import (
    Grammar,
)
from .vocab import Vocab

if TYPE_CHECKING:
    from .spec import TaskResult, TaskSpec


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


KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make a task kind known by its name (specs name their kind); returns it."""
    if not kind.name:
        raise ValueError(f"{type(kind).__name__} has no name")
    if kind.name in KINDS and type(KINDS[kind.name]) is not type(kind):
        raise ValueError(f"task kind {kind.name!r} is already registered ({type(KINDS[kind.name]).__name__})")
    KINDS[kind.name] = kind
    return kind
