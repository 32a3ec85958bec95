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
from .tasks import KINDS, TaskResult, TaskSpec

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


class Screener:
    """Runs one model's tasks over batches of sequences."""

    def __init__(self, model: P2TModel, tasks: list[TaskSpec], config: ScreenConfig = ScreenConfig(),
                 schema: pa.Schema = SCHEMA, memory_guard: MemoryGuard | None = None) -> None:
        self.model = model
        self.memory_guard = memory_guard  # tests inject a host-memory limit through it
        self.tasks = tasks
        self.config = config
        self.schema = schema
        self.device = next(model.parameters()).device
        self.memory = config.memory or model.config.memory  # the mode this screener runs

    @torch.inference_mode()
    def predict(self, sequences: list[str]) -> dict[str, list[Outcome]]:
        """Outcomes per task for one batch of valid sequences (the encoder runs once)."""
        model, vocab = self.model, self.model.vocab
        memory, keep = model.encode(tokenize(sequences, self.device), self.memory)
        memory_kv = model.decoder.memory_kv(memory)
        out: dict[str, list[Outcome]] = {}
        for spec in self.tasks:
            kind = KINDS[spec.kind]
            grammar = kind.grammar(spec, vocab, sequences, model.config.max_output_steps, self.device)
            decoded = greedy_decode(model.decoder, memory_kv, keep,
                                    model.prompt(spec, len(sequences), self.device), grammar, vocab.eos_id)
            out[spec.name] = self._parse(spec, decoded)
        return out

    def _parse(self, spec: TaskSpec, decoded: Decoded) -> list[Outcome]:
        kind, vocab = KINDS[spec.kind], self.model.vocab
        ids, probs = decoded.tokens.cpu().tolist(), decoded.probs.cpu().tolist()
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

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               skip_windows: int = 0, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """Typed rows for every (record, task), one record batch per input window.

        Windows depend only on the input and the window sizes, so a resumed run can skip the
        first `skip_windows` (already written). `should_stop` is polled between batches; when
        it returns True the current window is abandoned and `Stopped` is raised.
        """
        it = iter(records)
        index = 0
        while window := self._next_window(it):
            if index < skip_windows:
                if progress:
                    progress(len(window), sum(r.residues_used for r in window))
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

    def _screen_window(self, window: list[Record], progress: ProgressFn | None,
                       should_stop: StopFn | None = None) -> pa.RecordBatch:
        copies = Counter(r.used_sequence for r in window if r.status is Status.OK)
        results: dict[str, dict[str, Outcome]] = {}
        # A padded memory costs the full encoder width whatever the length.
        full = self.model.config.encoder.max_residues
        length = len if self.memory == "masked" else (lambda seq: full)
        for batch in token_budget_batches(list(copies), length, self.config.max_tokens):
            if should_stop and should_stop():
                raise Stopped("stopped on request")
            for seq, outcomes in self._predict_splitting(batch):
                results[seq] = outcomes
            if progress:
                progress(sum(copies[s] for s in batch), sum(len(s) * copies[s] for s in batch))
        if progress:
            progress(sum(1 for r in window if r.status is not Status.OK), 0)
        rows = [self._row(record, spec, results.get(record.used_sequence))
                for record in window for spec in self.tasks]
        return rows_to_batch(rows, self.schema)

    def _predict_splitting(self, batch: list[str]) -> Iterator[tuple[str, dict[str, Outcome]]]:
        """Predict a batch; out of memory, split it in halves down to single sequences, and
        give a sequence that still does not fit `status=oom` instead of stopping the run."""
        try:
            if self.memory_guard:
                self.memory_guard(batch)
            per_task = self.predict(batch)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                message = f"out of memory for {len(batch[0])} residues: {str(exc).splitlines()[0][:200]}"
                yield batch[0], {t.name: Failure(Status.OOM, message) for t in self.tasks}
                return
            half = len(batch) // 2
            yield from self._predict_splitting(batch[:half])
            yield from self._predict_splitting(batch[half:])
            return
        for i, seq in enumerate(batch):
            yield seq, {name: outcomes[i] for name, outcomes in per_task.items()}

    def _row(self, record: Record, spec: TaskSpec, outcomes: dict[str, Outcome] | None) -> dict:
        row = {
            "seq_id": record.seq_id, "header": record.header, "input_index": record.input_index,
            "seq_hash": record.seq_hash, "length": len(record.sequence),
            "residues_used": record.residues_used, "truncated": record.truncated, "task": spec.name,
        }
        outcome: Outcome = (Failure(record.status, record.error or record.status.value)
                            if record.status is not Status.OK else outcomes[spec.name])
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
