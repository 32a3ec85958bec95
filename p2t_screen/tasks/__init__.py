"""Tasks as data: specs, kinds (tokens, grammar, parsing, metrics), catalog, vocabulary."""

from . import label, multilabel, per_residue, regression, sites  # noqa: F401  (each registers its kind)
from .kind import KINDS, TaskKind, register_kind
from .spec import TaskResult, TaskSpec

__all__ = ["KINDS", "TaskKind", "TaskResult", "TaskSpec", "register_kind"]
