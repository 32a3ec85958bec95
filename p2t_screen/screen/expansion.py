"""Pair and ligand rows: each record screened against its partner proteins or its ligands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..io.ligands import Ligand
from ..io.records import Record, Status
from ..tasks.inputs import PAIR, ModelInput, pair_input
from .outcome import Failure


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


@dataclass(frozen=True)
class Companion:
    """What a record is screened against in one pair or ligand row: the model input (None when
    unusable, with `failure` saying why), the columns naming the partner or ligand, and the
    partner's own residues (to tell whether the pair was cut to fit the encoder)."""

    input: ModelInput | None
    failure: Failure | None = None
    columns: dict[str, str] = field(default_factory=dict)
    partner_residues: int = 0


@dataclass(frozen=True)
class Expansion:
    """The partners and ligands records are screened against, and the encoder's residue limit."""

    pairing: Pairing | None
    ligands: Sequence[Ligand] | None
    max_residues: int

    def companions(self, record: Record, inputs: str) -> list[Companion]:
        """The partners (`inputs` "pair") or ligands ("ligand") of one record."""
        if inputs == PAIR:
            budget = self.max_residues - 1  # <cls> A <eos> B <eos>
            return [Companion(pair_input(record.used_sequence, p.used_sequence, budget), None,
                              {"partner_id": p.seq_id}, p.residues_used)
                    for p in (self.pairing.partners_of(record) if self.pairing else [])]
        return [Companion(None if lig.error else ModelInput(record.used_sequence, ligand=lig.smiles),
                          Failure(Status.INVALID, lig.error) if lig.error else None,
                          {"ligand": lig.smiles, "ligand_id": lig.id})
                for lig in self.ligands or []]
