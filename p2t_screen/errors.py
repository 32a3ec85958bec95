"""Exceptions that p2t reports to users as clear messages, never as tracebacks."""

from __future__ import annotations

import dataclasses
import math


class P2TError(Exception):
    """Base class for errors that carry a message meant for the user."""


class InputError(P2TError):
    """The input library is unusable (or a record violates the chosen policy)."""


class ModelError(P2TError):
    """A model directory, checkpoint or encoder reference cannot be loaded."""


class UsageError(P2TError):
    """Options that contradict each other or the model (e.g. an unknown task)."""


class OutputError(P2TError):
    """The output cannot be written (disk full, read-only, permissions, a vanished folder)."""


class P2TWarning(UserWarning):
    """Something p2t went on without (e.g. a models folder it cannot read); the CLI prints it as
    one "warning:" line."""


_SIMPLE = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_fields(obj: object, positive: tuple[str, ...] = (), at_least_zero: tuple[str, ...] = (),
                 ceilings: dict[str, float] | None = None) -> None:
    """Check a dataclass's plain fields against their annotations (int, float, bool, str, each
    optionally `| None`) and bounds; ValueError names the field and the value."""
    for f in dataclasses.fields(obj):
        value, kind = getattr(obj, f.name), str(f.type).replace(" ", "")
        optional = kind.endswith("|None")
        base = kind.removesuffix("|None")
        if base not in _SIMPLE or (optional and value is None):
            continue
        wrong = not isinstance(value, _SIMPLE[base]) or (base != "bool" and isinstance(value, bool))
        if wrong or (base == "float" and not math.isfinite(value)):
            raise ValueError(f"{f.name} must be {'a whole number' if base == 'int' else 'a ' + base}, got {value!r}")
        if f.name in positive and not value > 0:
            raise ValueError(f"{f.name} must be positive, got {value!r}")
        if f.name in at_least_zero and value < 0:
            raise ValueError(f"{f.name} must not be negative, got {value!r}")
        if ceilings and f.name in ceilings and value > ceilings[f.name]:
            raise ValueError(f"{f.name} = {value!r} is beyond p2t's sanity limit of {ceilings[f.name]:g}")
