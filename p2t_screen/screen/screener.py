"""Screening records with a loaded model: encoder once per unique input, then every task.

`Screener.screen(records)` turns an iterable of `Record`s into typed Arrow record batches, one
per window of input; rows come out in input order, one per (record, task).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from ..errors import UsageError
from ..io.ligands import Ligand
from ..io.records import Record, Status
from ..io.schema import SCHEMA, rows_to_batch
from ..model.config import MASKED
from ..model.encoder import encoder_tokens
from ..model.model import P2TModel
from ..model.trunk import SharedTrunk
from ..tasks.inputs import INPUTS, LIGAND, PAIR, PROTEIN, ModelInput, as_input
from ..tasks.spec import TaskSpec
from .batching import token_budget_batches
from .config import ScreenConfig
from .decode import Decoded, compiled_step, decode_stack, task_rows
from .expansion import Companion, Expansion, Pairing
from .outcome import Failure, Outcome
from .rows import output_row
from .windows import Windows

ProgressFn = Callable[[int, int], None]  # (records done, residues done) increments
StopFn = Callable[[], bool]
HostMemoryGuard = Callable[[list[ModelInput]], None]  # raises MemoryError for a batch that must not run
_NEEDS = {PAIR: ("a partner protein", "--partner"), LIGAND: ("a ligand", "--ligand(s)")}


@dataclass(frozen=True)
class WindowPlan:
    """A window's distinct inputs (each with the number of rows it serves) and, per pair or ligand
    form, each ok record's companions."""

    copies: Counter[ModelInput]
    companions: dict[str, dict[int, list[Companion]]]


class Stopped(Exception):
    """Screening stopped on request (a signal) between two batches."""


class Screener:
    """Runs one model's tasks over batches of inputs."""

    def __init__(self, model: P2TModel, tasks: list[TaskSpec], config: ScreenConfig = ScreenConfig(),
                 schema: pa.Schema = SCHEMA, memory_guard: HostMemoryGuard | None = None,
                 pairs: Pairing | None = None, ligands: Sequence[Ligand] | None = None) -> None:
        self.model = model
        self.memory_guard = memory_guard  # tests inject a host-memory limit through it
        self.tasks = tasks
        self.by_input = {form: [t for t in tasks if t.inputs == form] for form in INPUTS}
        # screen() needs these for pair / ligand tasks; predict() takes ModelInputs that carry them.
        self.pairs = pairs
        self.ligands = list(ligands) if ligands is not None else None
        self.expansion = Expansion(pairs, self.ligands, model.config.encoder.max_residues)
        self.config = config
        self.schema = schema
        self.device = next(model.parameters()).device
        self.memory_layout = config.memory_layout or model.config.memory_layout  # the layout it runs
        # The `model` column: the model directory's name (what --model and routing name), else its config name.
        self.model_name = Path(model.source).name if model.source else model.config.name
        self.trunk: SharedTrunk | None = None  # set by MultiScreener when encoders share layers
        self.step = compiled_step(model.decoder) if config.compile else None  # None: the eager decoder

    @torch.inference_mode()
    def predict(self, inputs: Sequence[ModelInput | str],
                tasks: list[TaskSpec] | None = None) -> dict[str, list[Outcome]]:
        """Outcomes per task for one batch of valid model inputs (the encoder runs once).

        An input is a `ModelInput` (a plain string is one protein); `tasks` (default: all of
        this screener's) must all read that kind of input.
        """
        items = [as_input(x) for x in inputs]
        model = self.model
        molecules = None
        if items[0].ligand is not None:
            molecules = model.config.molecule.encode([i.ligand for i in items], self.device)
        encoded = [i.encoder_input for i in items]
        unique = {p: i for i, p in enumerate(dict.fromkeys(encoded))}  # each protein encoded once
        rows = None if len(unique) == len(encoded) else torch.tensor(
            [unique[p] for p in encoded], device=self.device)
        hidden = None
        if self.trunk is not None:  # the bottom encoder layers are shared with other models
            key = (self.memory_layout, tuple(unique))
            hidden = lambda tokens: self.trunk.hidden(model, tokens, key)  # noqa: E731
        memory, keep = model.encode(encoder_tokens(list(unique), self.device), self.memory_layout,
                                    molecules, rows, hidden, self.config.packed_encoder)
        memory_kv = model.decoder.memory_kv(memory)
        proteins = [i.protein for i in items]
        specs = self.tasks if tasks is None else tasks
        # Tasks that read back their outputs: one stack, step by step. The others (per-residue, no feedback):
        # one pass each (stacked, their logits, rows x residues x vocabulary, would all be held at once).
        stepped = [s for s in specs if model.feeds_back(s)]
        stacks = [stepped] if stepped and self.config.stack_tasks else [[s] for s in stepped]
        stacks += [[s] for s in specs if not model.feeds_back(s)]
        outcomes = {name: out for stack in stacks
                    for name, out in self._decode_stack(stack, proteins, memory, memory_kv, keep).items()}
        return {spec.name: outcomes[spec.name] for spec in specs}

    def _decode_stack(self, specs: list[TaskSpec], proteins: list[str], memory: torch.Tensor,
                      memory_kv: list[tuple[torch.Tensor, torch.Tensor]], keep: torch.Tensor | None
                      ) -> dict[str, list[Outcome]]:
        model, vocab = self.model, self.model.vocab
        blocks = [task_rows(spec, vocab, proteins, model.config.max_output_steps, self.device) for spec in specs]
        decoded = decode_stack(model.decoder, memory_kv, keep, vocab.bos_id, blocks, vocab.eos_id, vocab.pad_id,
                               side_for=lambda ids: model.side_inputs(memory, ids, keep), feedback=model.feeds_back(specs[0]),
                               step=self.step)
        return {spec.name: self._parse(spec, out, [len(p) for p in block.prompts])
                for spec, out, block in zip(specs, decoded, blocks)}

    def _parse(self, spec: TaskSpec, decoded: Decoded, given: list[int]) -> list[Outcome]:
        """Typed outcomes; the first `given[row]` tokens of a row are its prompt, not output."""
        kind, vocab = spec.task_kind, self.model.vocab
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
        total = record.residues_used if self.by_input[PROTEIN] else 0
        for form in (PAIR, LIGAND):
            if self.by_input[form]:
                total += sum(c.input.residues for c in self.expansion.companions(record, form) if c.input)
        return total

    def screen(self, records: Iterable[Record], progress: ProgressFn | None = None,
               resume_after: int = -1, should_stop: StopFn | None = None) -> Iterator[pa.RecordBatch]:
        """Typed rows for every (record, task), one record batch per window (`screen.windows`).

        Pair tasks give one row per (record, partner), ligand tasks one per (record, ligand).
        Records up to input index `resume_after` are passed over (a resumed run has them).
        `should_stop` is polled between batches; when it returns True the current window is
        abandoned and `Stopped` is raised.
        """
        for form, given in ((PAIR, self.pairs), (LIGAND, self.ligands)):
            if self.by_input[form] and given is None:
                names = ", ".join(t.name for t in self.by_input[form])
                what, option = _NEEDS[form]
                raise UsageError(f"task(s) {names} read {what} besides each protein: give {option}")
        windows = self.windows(records, resume_after, progress, self.work)
        while window := windows.next():
            started = time.perf_counter()
            batch = self._screen_window(window, progress, should_stop)
            windows.took(time.perf_counter() - started, sum(r.residues_used for r in window))
            yield batch

    def windows(self, records: Iterable[Record], resume_after: int, progress: ProgressFn | None,
                work: Callable[[Record], int]) -> Windows:
        """This screener's windowing of `records` (passed-over records still count as progress)."""
        skipped = (lambda r: progress(1, work(r))) if progress else None
        cfg = self.config
        return Windows(iter(records), cfg.window_records, cfg.window_residues, cfg.window_seconds,
                       resume_after, skipped)

    def _screen_window(self, window: list[Record], progress: ProgressFn | None,
                       should_stop: StopFn | None = None) -> pa.RecordBatch:
        plan = self._window_plan(window)
        results = self._run_batches(plan.copies, progress, should_stop)
        if progress:
            progress(len(window) - sum(plan.copies[k] for k in plan.copies if k.inputs == PROTEIN), 0)
        return self._window_rows(window, plan, results)

    def _window_plan(self, window: list[Record]) -> WindowPlan:
        """The distinct inputs of a window (with how many rows each serves) and its companions."""
        ok = [r for r in window if r.status is Status.OK]
        copies: Counter[ModelInput] = Counter()
        if self.by_input[PROTEIN]:
            copies.update(ModelInput(r.used_sequence) for r in ok)
        companions = {form: {r.input_index: self.expansion.companions(r, form) for r in ok}
                      for form in (PAIR, LIGAND) if self.by_input[form]}
        for per_record in companions.values():
            for items in per_record.values():
                copies.update(c.input for c in items if c.input)
        return WindowPlan(copies, companions)

    def _window_rows(self, window: list[Record], plan: WindowPlan,
                     results: dict[ModelInput, dict[str, Outcome]]) -> pa.RecordBatch:
        rows = []
        for record in window:
            for spec in self.tasks:
                if spec.inputs == PROTEIN:
                    outcome = (results[ModelInput(record.used_sequence)][spec.name]
                               if record.status is Status.OK else None)
                    rows.append(output_row(record, spec, outcome, model=self.model_name))
                    continue
                items = plan.companions[spec.inputs].get(record.input_index, []) if record.status is Status.OK \
                    else self.expansion.companions(record, spec.inputs)
                if not items:  # pairing by id found no partner: the record still gets a row
                    rows.append(output_row(record, spec, Failure(
                        Status.ERROR, f"no partner for {record.seq_id!r} (pairing by id)"), model=self.model_name))
                for item in items:  # a record that is not ok was not run: its row gives its own status
                    outcome = None if record.status is not Status.OK else \
                        item.failure or results[item.input][spec.name]
                    rows.append(output_row(record, spec, outcome, item, self.model_name))
        return rows_to_batch(rows, self.schema)

    def batch_length(self) -> Callable[[ModelInput], int]:
        """What a batch's token budget counts per input: a padded memory costs the full width."""
        full = self.model.config.encoder.max_residues
        return (lambda k: k.encoder_length) if self.memory_layout == MASKED else (lambda k: full)

    def _run_batches(self, copies: Counter[ModelInput], progress: ProgressFn | None,
                     should_stop: StopFn | None) -> dict[ModelInput, dict[str, Outcome]]:
        """Outcomes of every distinct input, in length-sorted batches within the token budget."""
        results: dict[ModelInput, dict[str, Outcome]] = {}
        length = self.batch_length()
        for form in INPUTS:
            keys = [k for k in copies if k.inputs == form]
            for batch in token_budget_batches(keys, length, self.config.max_tokens):
                if should_stop and should_stop():
                    raise Stopped("stopped on request")
                results.update(self._predict_splitting(batch, self.by_input[form]))
                if progress:
                    done = sum(copies[k] for k in batch) if form == PROTEIN else 0
                    progress(done, sum(k.residues * copies[k] for k in batch))
        return results

    def _predict_splitting(self, batch: list[ModelInput], tasks: list[TaskSpec]
                           ) -> Iterator[tuple[ModelInput, dict[str, Outcome]]]:
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
                message = f"out of memory for {batch[0].residues} residues: {str(exc).splitlines()[0][:200]}"
                yield batch[0], {t.name: Failure(Status.OOM, message) for t in tasks}
                return
            half = len(batch) // 2
            yield from self._predict_splitting(batch[:half], tasks)
            yield from self._predict_splitting(batch[half:], tasks)
            return
        for i, item in enumerate(batch):
            yield item, {name: outcomes[i] for name, outcomes in per_task.items()}

