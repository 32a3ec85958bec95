"""Pair and ligand rows: each record screened against its partner proteins or ligands."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..io.records import Record
from ..tasks.inputs import (
    LIGAND_SEP,
    PAIR_SEP,
)
from .outcome import Failure


@dataclass(frozen=True)
class Other:
    """The second input of one pair or ligand row: its model input ("A/B" or "A SMILES"; None
    when unusable), why it is unusable, the columns naming it, and the partner's residues."""

    key: str | None
    failure: Failure | None
    columns: dict[str, str]
    residues: int = 0


def input_kind(key: str) -> str:
    """Which of `tasks.INPUTS` a model input is."""
    return "ligand" if LIGAND_SEP in key else "pair" if PAIR_SEP in key else "protein"


@dataclass(frozen=True)
class Pairing:
    """Partner proteins of pair tasks: every partner for every record, or the one with the
    record's id (`by_id`)."""

    partners: tuple[Record, ...]
    by_id: bool = False

    @cached_property
    def _by_id(self) -> dict[str, Record]:
        return {p.seq_id: p for p in self.partners}

    def partners_of(self, record: Record) -> list[Record]:
        if not self.by_id:
            return list(self.partners)
        partner = self._by_id.get(record.seq_id)
        return [partner] if partner is not None else []
