"""Screening records with a loaded model: encoder once per unique sequence, then every task.

`Screener.screen(records)` turns an iterable of `Record`s into typed Arrow record batches, one
per window of input; rows come out in input order, one per (record, task).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import pyarrow as pa
import torch

from ..errors import UsageError
from ..io.ligands import Ligand
from ..io.records import Record, Status
from ..io.schema import SCHEMA, rows_to_batch
from ..model.config import MEMORY_MODES
from ..model.encoder import tokenize
from ..model.model import P2TModel
from ..tasks.inputs import (
    INPUTS,
    LIGAND_SEP,
    PAIR_SEP,
    encoder_input,
    ligand_of,
    pair_input,
    protein_of,
)
from ..tasks.kind import KINDS
from ..tasks.spec import TaskSpec
from .batching import token_budget_batches
from .decode import Decoded, greedy_decode
from .expansion import Other, Pairing, input_kind
from .outcome import Failure, Outcome

DEFAULT_MAX_TOKENS = 16384




ProgressFn = Callable[[int, int], None]  # (records done, residues done) increments


StopFn = Callable[[], bool]


MemoryGuard = Callable[[list[str]], None]  # raises MemoryError for a batch that must not run


class Stopped(Exception):
    """Screening stopped on request (a signal) between two batches."""


@dataclass(frozen=True)
class ScreenConfig:
    """How records are grouped for the model."""

    max_tokens: int = DEFAULT_MAX_TOKENS  # padded encoder tokens per batch
    window_records: int = 20_000  # records sorted together; bounds memory
    window_residues: int = 2_000_000
    # Decoder memory mode, overriding the model's own (`ModelConfig.memory`); None keeps it.
    # "masked" runs a "padded" model (imported Prot2Token checkpoints) on length-bucketed memory:
    # much faster on short sequences, but not what the model was trained with (outputs drift).
    memory: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "window_records", "window_residues"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.memory is not None and self.memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES} or None, got {self.memory!r}")


class Screener:
    """Runs one model's tasks over batches of sequences."""

    def __init__(self, model: P2TModel, tasks: list[TaskSpec], config: ScreenConfig = ScreenConfig(),
                 schema: pa.Schema = SCHEMA, memory_guard: MemoryGuard | None = None,
                 pairs: Pairing | None = None, ligands: Sequence[Ligand] | None = None) -> None:
        self.model = model
        self.memory_guard = memory_guard  # tests inject a host-memory limit through it
        self.tasks = tasks
        self.by_input = {kind: [t for t in tasks if t.inputs == kind] for kind in INPUTS}
        self.single_tasks = self.by_input["protein"]
        # screen() needs these for pair / ligand tasks; predict() takes "A/B" / "A SMILES" inputs.
        self.pairs = pairs
        self.ligands = list(ligands) if ligands is not None else None
        self.config = config
        self.schema = schema
        self.device = next(model.parameters()).device
        self.memory = config.memory or model.config.memory  # the mode this screener runs

    @torch.inference_mode()
    def predict(self, sequences: list[str], tasks: list[TaskSpec] | None = None) -> dict[str, list[Outcome]]:
        """Outcomes per task for one batch of valid model inputs (the encoder runs once).

        An input is a protein sequence, "A/B" for a pair (`tasks.PAIR_SEP`) or "A SMILES" for a
        protein and a ligand (`tasks.LIGAND_SEP`); `tasks` (default: all of this screener's)
        must all read that kind of input.
        """
        model, vocab = self.model, self.model.vocab
        smiles = [ligand_of(s) for s in sequences]
        molecules = None
        if smiles[0] is not None:
            molecules = model.config.molecule.encode(smiles, self.device)
        proteins = [encoder_input(s) for s in sequences]
        unique = {p: i for i, p in enumerate(dict.fromkeys(proteins))}  # each protein encoded once
        rows = None if len(unique) == len(proteins) else torch.tensor(
            [unique[p] for p in proteins], device=self.device)
        memory, keep = model.encode(tokenize(list(unique), self.device), self.memory, molecules, rows)
        memory_kv = model.decoder.memory_kv(memory)
        out: dict[str, list[Outcome]] = {}
        for spec in self.tasks if tasks is None else tasks:
            kind = KINDS[spec.kind]
            grammar = kind.grammar(spec, vocab, sequences, model.config.max_output_steps, self.device)
            prompts = [vocab.ids(kind.prompt_tokens(spec, s)) for s in sequences]
            forced = forced_len = None
            if any(prompts):
                lengths = [len(p) for p in prompts]
                table = torch.full((len(prompts), max(lengths)), vocab.pad_id, dtype=torch.long)
                for row, ids in enumerate(prompts):
                    table[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                forced, forced_len = table.to(self.device), torch.tensor(lengths, device=self.device)
            prompt = model.prompt(spec, len(sequences), self.device)
            decoded = greedy_decode(model.decoder, memory_kv, keep, prompt, grammar, vocab.eos_id,
                                    forced=forced, forced_len=forced_len, feedback=model.feeds_back(spec),
                                    **model.side_inputs(memory, prompt[:, 1], keep))
            out[spec.name] = self._parse(spec, decoded, [len(p) for p in prompts])
        return out

    def _parse(self, spec: TaskSpec, decoded: Decoded, given: list[int]) -> list[Outcome]:
        """Typed outcomes; the first `given[row]` tokens of a row are its prompt, not output."""
        kind, vocab = KINDS[spec.kind], self.model.vocab
        ids, probs = decoded.tokens.cpu().tolist(), decoded.probs.cpu().tolist()
        ids = [row[n:] for row, n in zip(ids, given)]
        probs = [row[n:] for row, n in zip(probs, given)]
        first: list[dict[str, float]] = [{}] * len(ids)
        if kind.needs_first_probs:
            label_ids = torch.tensor(vocab.ids(spec.labels), device=decoded.first_probs.device)
            table = decoded.first_probs[:, label_ids].cpu().tolist()
            first = [dict(zip(spec.labels, row)) for row in table]
        outcomes: list[Outcome] = []
        for row_ids, row_probs, row_first in zip(ids, probs, first):
            if vocab.eos_id not in row_ids:
                outcomes.append(Failure(Status.ERROR, "decoder output did not terminate"))
                continue
            end = row_ids.index(vocab.eos_id)
            tokens = [vocab.tokens[i] for i in row_ids[:end]]
            try:
                outcomes.append(kind.parse(spec, tokens, row_probs[:end], row_first))
            except ValueError as exc:  # unreachable under the grammar; kept as a per-row status
                outcomes.append(Failure(Status.ERROR, f"unparseable output {tokens}: {exc}"))
        return outcomes

    def work(self, record: Record) -> int:
        """Residues the screen of one record costs (pairs: both proteins, once per partner; a
        ligand: the protein once per ligand, whose decoding it is, though a batch encodes each
        protein once); the unit of `progress`."""
        if record.status is not Status.OK:
            return 0
        total = record.residues_used if self.single_tasks else 0
        for kind in ("pair", "ligand"):
            if self.by_input[kind]:
                total += sum(len(encoder_input(o.key)) - (kind == "pair")
                             for o in self._others(record, kind) if o.key)
        return total

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               skip_windows: int = 0, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """Typed rows for every (record, task), one record batch per input window.

        Pair tasks give one row per (record, partner), ligand tasks one per (record, ligand).
        Windows depend only on the input and the window sizes, so a resumed run can skip the
        first `skip_windows` (already written). `should_stop` is polled between batches; when
        it returns True the current window is abandoned and `Stopped` is raised.
        """
        for kind, given, option in (("pair", self.pairs, "--partner"), ("ligand", self.ligands, "--ligand(s)")):
            if self.by_input[kind] and given is None:
                names = ", ".join(t.name for t in self.by_input[kind])
                raise UsageError(f"task(s) {names} read a {'partner protein' if kind == 'pair' else 'ligand'}"
                                 f" besides each protein: give {option}")
        it = iter(records)
        index = 0
        while window := self._next_window(it):
            if index < skip_windows:
                if progress:
                    progress(len(window), sum(self.work(r) for r in window))
            else:
                yield self._screen_window(window, progress, should_stop)
            index += 1

    def _next_window(self, it: Iterator[Record]) -> list[Record]:
        window: list[Record] = []
        residues = 0
        for record in islice(it, self.config.window_records):
            window.append(record)
            residues += record.residues_used
            if residues >= self.config.window_residues:
                break
        return window

    def _others(self, record: Record, kind: str) -> list[Other]:
        """The partners ("pair") or ligands ("ligand") a record is screened against."""
        if kind == "pair":
            budget = self.model.config.encoder.max_residues - 1  # <cls> A <eos> B <eos>
            return [Other(pair_input(record.used_sequence, p.used_sequence, budget), None,
                          {"partner_id": p.seq_id}, p.residues_used)
                    for p in (self.pairs.partners_of(record) if self.pairs else [])]
        return [Other(None if lig.error else f"{record.used_sequence}{LIGAND_SEP}{lig.smiles}",
                      Failure(Status.INVALID, lig.error) if lig.error else None,
                      {"ligand": lig.smiles, "ligand_id": lig.id})
                for lig in self.ligands or []]

    def _screen_window(self, window: list[Record], progress: ProgressFn | None,
                       should_stop: StopFn | None = None) -> pa.RecordBatch:
        ok = [r for r in window if r.status is Status.OK]
        copies: Counter = Counter()
        if self.single_tasks:
            copies.update(r.used_sequence for r in ok)
        others = {kind: {r.input_index: self._others(r, kind) for r in ok}
                  for kind in ("pair", "ligand") if self.by_input[kind]}
        for per_record in others.values():
            for items in per_record.values():
                copies.update(o.key for o in items if o.key)
        results: dict[str, dict[str, Outcome]] = {}
        # A padded memory costs the full encoder width whatever the length.
        full = self.model.config.encoder.max_residues
        length = (lambda key: len(encoder_input(key))) if self.memory == "masked" else (lambda key: full)
        reported = 0
        for kind in INPUTS:
            keys = [k for k in copies if input_kind(k) == kind]
            for batch in token_budget_batches(keys, length, self.config.max_tokens):
                if should_stop and should_stop():
                    raise Stopped("stopped on request")
                for key, outcomes in self._predict_splitting(batch, self.by_input[kind]):
                    results[key] = outcomes
                if progress:
                    done = sum(copies[k] for k in batch) if kind == "protein" else 0
                    reported += done
                    progress(done, sum((len(encoder_input(k)) - (kind == "pair")) * copies[k]
                                       for k in batch))
        if progress:
            progress(len(window) - reported, 0)
        rows = []
        for record in window:
            for spec in self.tasks:
                if spec.inputs == "protein":
                    rows.append(self._row(record, spec, results.get(record.used_sequence)))
                    continue
                items = others[spec.inputs].get(record.input_index, []) if record.status is Status.OK \
                    else self._others(record, spec.inputs)
                if not items:  # pairing by id found no partner: the record still gets a row
                    rows.append(self._row(record, spec, None, failure=Failure(
                        Status.ERROR, f"no partner for {record.seq_id!r} (pairing by id)")))
                for other in items:
                    rows.append(self._row(record, spec, results.get(other.key) if other.key else None,
                                          other, other.failure))
        return rows_to_batch(rows, self.schema)

    def _predict_splitting(self, batch: list[str], tasks: list[TaskSpec]
                           ) -> Iterator[tuple[str, dict[str, Outcome]]]:
        """Predict a batch; out of memory, split it in halves down to single inputs, and give
        an input that still does not fit `status=oom` instead of stopping the run."""
        try:
            if self.memory_guard:
                self.memory_guard(batch)
            per_task = self.predict(batch, tasks)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                message = f"out of memory for {len(batch[0])} residues: {str(exc).splitlines()[0][:200]}"
                yield batch[0], {t.name: Failure(Status.OOM, message) for t in tasks}
                return
            half = len(batch) // 2
            yield from self._predict_splitting(batch[:half], tasks)
            yield from self._predict_splitting(batch[half:], tasks)
            return
        for i, seq in enumerate(batch):
            yield seq, {name: outcomes[i] for name, outcomes in per_task.items()}

    def _row(self, record: Record, spec: TaskSpec, outcomes: dict[str, Outcome] | None,
             other: Other | None = None, failure: Failure | None = None) -> dict:
        row = {
            "seq_id": record.seq_id, "header": record.header, "input_index": record.input_index,
            "seq_hash": record.seq_hash, "length": len(record.sequence),
            "residues_used": record.residues_used, "truncated": record.truncated, "task": spec.name,
        }
        if other is not None:
            row.update(other.columns)
            if other.key and PAIR_SEP in encoder_input(other.key):  # a pair may be cut to fit
                used = len(protein_of(other.key))
                row.update(residues_used=used, truncated=record.truncated or used < record.residues_used
                           or len(other.key) - used - 1 < other.residues)
        outcome: Outcome = (Failure(record.status, record.error or record.status.value)
                            if record.status is not Status.OK else failure or outcomes[spec.name])
        if isinstance(outcome, Failure):
            row.update(status=outcome.status.value, error=outcome.error)
            return row
        row.update(status=Status.OK.value, value=outcome.value, label=outcome.label,
                   labels=outcome.labels, sites=outcome.sites, residue_labels=outcome.residue_labels,
                   confidence=outcome.confidence, site_probs=outcome.site_probs,
                   residue_probs=outcome.residue_probs)
        if outcome.label_probs is not None:
            row["label_probs"] = [{"label": k, "prob": p} for k, p in outcome.label_probs]
        return row
