"""Screening records with a loaded model: encoder once per unique sequence, then every task.

`Screener.screen(records)` turns an iterable of `Record`s into typed Arrow record batches, one
per window of input; rows come out in input order, one per (record, task).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import pyarrow as pa
import torch

from .batching import token_budget_batches
from .encoder import tokenize
from .fasta import Record, Status
from .generate import Decoded, greedy_decode
from .model import MEMORY_MODES, P2TModel
from .schema import SCHEMA, rows_to_batch
from .errors import UsageError
from .tasks import KINDS, PAIR_SEP, TaskResult, TaskSpec, pair_input, protein_of

DEFAULT_MAX_TOKENS = 16384


@dataclass(frozen=True)
class Failure:
    """A (record, task) that produced no prediction."""

    status: Status
    error: str


Outcome = TaskResult | Failure
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


@dataclass(frozen=True)
class Pairing:
    """Partner proteins of pair tasks: every partner for every record, or the one with the
    record's id (`by_id`)."""

    partners: tuple[Record, ...]
    by_id: bool = False

    def __post_init__(self) -> None:
        if self.by_id:
            object.__setattr__(self, "_index", {p.seq_id: p for p in self.partners})

    def partners_of(self, record: Record) -> list[Record]:
        if not self.by_id:
            return list(self.partners)
        partner = self._index.get(record.seq_id)  # type: ignore[attr-defined]
        return [partner] if partner is not None else []


class Screener:
    """Runs one model's tasks over batches of sequences."""

    def __init__(self, model: P2TModel, tasks: list[TaskSpec], config: ScreenConfig = ScreenConfig(),
                 schema: pa.Schema = SCHEMA, memory_guard: MemoryGuard | None = None,
                 pairs: Pairing | None = None) -> None:
        self.model = model
        self.memory_guard = memory_guard  # tests inject a host-memory limit through it
        self.tasks = tasks
        self.single_tasks = [t for t in tasks if t.inputs == "protein"]
        self.pair_tasks = [t for t in tasks if t.inputs == "pair"]
        self.pairs = pairs  # screen() needs it for pair tasks; predict() takes "A/B" inputs
        self.config = config
        self.schema = schema
        self.device = next(model.parameters()).device
        self.memory = config.memory or model.config.memory  # the mode this screener runs

    @torch.inference_mode()
    def predict(self, sequences: list[str], tasks: list[TaskSpec] | None = None) -> dict[str, list[Outcome]]:
        """Outcomes per task for one batch of valid model inputs (the encoder runs once).

        An input is a protein sequence, or "A/B" for a pair (`tasks.PAIR_SEP`); `tasks` (default:
        all of this screener's) must all read that kind of input.
        """
        model, vocab = self.model, self.model.vocab
        memory, keep = model.encode(tokenize(sequences, self.device), self.memory)
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
            decoded = greedy_decode(model.decoder, memory_kv, keep,
                                    model.prompt(spec, len(sequences), self.device), grammar, vocab.eos_id,
                                    forced=forced, forced_len=forced_len)
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
        """Residues the screen of one record costs (pairs: both proteins, once per partner);
        the unit of `progress`."""
        if record.status is not Status.OK:
            return 0
        single = record.residues_used if self.single_tasks else 0
        paired = sum(len(k) - 1 for k in self._pair_inputs(record).values()) if self.pair_tasks else 0
        return single + paired

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               skip_windows: int = 0, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """Typed rows for every (record, task), one record batch per input window.

        Pair tasks give one row per (record, partner). Windows depend only on the input and the
        window sizes, so a resumed run can skip the first `skip_windows` (already written).
        `should_stop` is polled between batches; when it returns True the current window is
        abandoned and `Stopped` is raised.
        """
        if self.pair_tasks and self.pairs is None:
            names = ", ".join(t.name for t in self.pair_tasks)
            raise UsageError(f"task(s) {names} read protein pairs: give partner proteins (--partner)")
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

    def _pair_inputs(self, record: Record) -> dict[str, str]:
        """partner id -> model input "A/B" for this record (A and B cut longest-first to fit)."""
        if self.pairs is None:
            return {}
        budget = self.model.config.encoder.max_residues - 1  # <cls> A <eos> B <eos>
        return {p.seq_id: pair_input(record.used_sequence, p.used_sequence, budget)
                for p in self.pairs.partners_of(record)}

    def _screen_window(self, window: list[Record], progress: ProgressFn | None,
                       should_stop: StopFn | None = None) -> pa.RecordBatch:
        ok = [r for r in window if r.status is Status.OK]
        copies: Counter = Counter()
        if self.single_tasks:
            copies.update(r.used_sequence for r in ok)
        pair_inputs = {r.input_index: self._pair_inputs(r) for r in ok} if self.pair_tasks else {}
        for inputs in pair_inputs.values():
            copies.update(inputs.values())
        results: dict[str, dict[str, Outcome]] = {}
        # A padded memory costs the full encoder width whatever the length.
        full = self.model.config.encoder.max_residues
        length = len if self.memory == "masked" else (lambda seq: full)
        reported = 0
        for paired in (False, True):
            keys = [k for k in copies if (PAIR_SEP in k) == paired]
            tasks = self.pair_tasks if paired else self.single_tasks
            for batch in token_budget_batches(keys, length, self.config.max_tokens):
                if should_stop and should_stop():
                    raise Stopped("stopped on request")
                for key, outcomes in self._predict_splitting(batch, tasks):
                    results[key] = outcomes
                if progress:
                    done = 0 if paired or not self.single_tasks else sum(copies[k] for k in batch)
                    reported += done
                    progress(done, sum((len(k) - paired) * copies[k] for k in batch))
        if progress:
            progress(len(window) - reported, 0)
        rows = []
        for record in window:
            for spec in self.tasks:
                if spec.inputs == "protein":
                    rows.append(self._row(record, spec, results.get(record.used_sequence)))
                    continue
                inputs = pair_inputs.get(record.input_index, {})
                partners = self.pairs.partners_of(record) if self.pairs else []
                if record.status is Status.OK and not partners:
                    rows.append(self._row(record, spec, None, None, Failure(
                        Status.ERROR, f"no partner for {record.seq_id!r} (pairing by id)")))
                for partner in partners:
                    key = inputs.get(partner.seq_id)
                    rows.append(self._row(record, spec, results.get(key), partner, None, key))
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
             partner: Record | None = None, failure: Failure | None = None, key: str = "") -> dict:
        row = {
            "seq_id": record.seq_id, "header": record.header, "input_index": record.input_index,
            "seq_hash": record.seq_hash, "length": len(record.sequence),
            "residues_used": record.residues_used, "truncated": record.truncated, "task": spec.name,
        }
        if partner is not None:
            row["partner_id"] = partner.seq_id
            if key:  # the pair may have been cut to fit the encoder
                used = len(protein_of(key))
                row.update(residues_used=used, truncated=record.truncated or used < record.residues_used
                           or len(key) - used - 1 < partner.residues_used)
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
