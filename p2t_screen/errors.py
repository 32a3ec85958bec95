"""Exceptions that p2t reports to users as clear messages, never as tracebacks."""

from __future__ import annotations


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
