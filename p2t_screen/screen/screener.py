"""Screening records with a loaded model: the encoder once per distinct input, then every task.

`Screener.screen(records)` turns an iterable of `Record`s into typed Arrow record batches, one
per window of input (`windows`); rows come out in input order, one per (record, task). Around
the model run itself, a window's plan and batches come from `planning`, its rows from `assembly`,
and the parsing of decoded tokens from `outcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import torch

from ..decode import Decoded, ShapeLadder, compiled_step, decode_stack, task_block
from ..errors import UsageError
from ..io.ligands import Ligand
from ..io.records import Record, Status
from ..io.schema import SCHEMA
from ..model.config import MASKED, ModelConfig
from ..model.encoder import encoder_tokens
from ..model.model import P2TModel
from ..model.trunk import SharedTrunk
from ..tasks.inputs import INPUTS, LIGAND, PAIR, PROTEIN, ModelInput, as_input
from ..tasks.spec import TaskResult, TaskSpec
from ..trust.domain import pooled
from .assembly import window_rows
from .config import ScreenConfig
from .expansion import Expansion, Pairing
from .outcome import Failure, Outcome, parse_outcomes, to_host
from .planning import StopFn, Stopped, WindowPlan, plan_batches, plan_window
from .windows import Blocks, Part, parts

__all__ = ["HostMemoryGuard", "ProgressFn", "ScreenConfig", "Screener", "StopFn", "Stopped"]

ProgressFn = Callable[[int, int], None]  # (records done, residues done) increments
HostMemoryGuard = Callable[[list[ModelInput]], None]  # raises MemoryError for a batch that must not run
Results = dict[ModelInput, dict[str, Outcome]]  # each distinct input's outcome per task
_NEEDS = {PAIR: ("a partner protein", "--partner"), LIGAND: ("a ligand", "--ligand(s)")}


def compiled_shapes(model: ModelConfig, config: ScreenConfig) -> ShapeLadder:
    """The shapes of a model's compiled decoder steps under `config`: batches up to the most inputs
    the token budget lets in, memories up to the widest the model can read (a ligand's included)."""
    masked = config.fast_memory or model.memory_layout == MASKED
    shortest = 1 if masked else model.encoder.max_residues  # a padded memory costs its full width
    widest = model.encoder.max_residues + 2 + (model.molecule.max_len if model.molecule is not None else 0)
    return ShapeLadder.for_model(config.max_tokens // (shortest + 2), widest, model.decoder.max_len)


class Screener:
    """Runs one model's tasks over batches of inputs."""

    def __init__(self, model: P2TModel, tasks: list[TaskSpec], config: ScreenConfig = ScreenConfig(),
                 schema: pa.Schema = SCHEMA, memory_guard: HostMemoryGuard | None = None,
                 pairs: Pairing | None = None, ligands: Sequence[Ligand] | None = None,
                 keep_label_dists: bool = False) -> None:
        self.model = model
        self.memory_guard = memory_guard  # tests inject a host-memory limit through it
        self.tasks = tasks
        self.by_input = {form: [t for t in tasks if t.inputs == form] for form in INPUTS}
        # screen() needs these for pair / ligand tasks; predict() takes ModelInputs that carry them.
        self.pairs = pairs
        self.ligands = list(ligands) if ligands is not None else None
        self.expansion = Expansion(pairs, self.ligands, model.config.encoder.max_residues)
        if config.max_tokens is None:
            raise ValueError("a Screener needs a token budget: resolve --max-tokens auto first "
                             "(screen_file does; screen.tuning.fit_budget measures one)")
        self.config = config
        # Each task's conformal constants at the run's coverage, where the model's calibration
        # still fits the task (`trust.store`); the others' conformal columns stay null.
        self.conformal = {t.name: model.calibrations[t.name].params(config.coverage) for t in tasks
                          if t.name in model.calibrations and model.calibrations[t.name].fits(t)
                          and t.task_kind.has_conformal(t)}
        # Calibration and evaluation read each result's label distributions themselves.
        self.keep_label_dists = keep_label_dists
        self.schema = schema
        self.device = next(model.parameters()).device
        self.memory_layout = MASKED if config.fast_memory else model.config.memory_layout  # the layout it runs
        # The `model` column: the model directory's name (what --model and routing name), else its config name.
        self.model_name = Path(model.source).name if model.source else model.config.name
        self.trunk: SharedTrunk | None = None  # encoder layers shared with other models (`use_trunk`)
        # Compiled decoder steps see the shapes of a fixed ladder (`decode.compile`); eager ones follow the data.
        self.ladder = compiled_shapes(model.config, config) if config.compile else None
        self.step = compiled_step(model.decoder, config.compile_backend, self.ladder) if config.compile else None

    def use_trunk(self, trunk: SharedTrunk | None) -> None:
        """Run the bottom encoder layers through `trunk`, shared with other models' screeners
        (`MultiScreener`): computed once per batch for all of them."""
        self.trunk = trunk

    # -- the model run -------------------------------------------------------------------------

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
        protein_index = None if len(unique) == len(encoded) else torch.tensor(
            [unique[p] for p in encoded], device=self.device)
        encode_hidden = None
        if self.trunk is not None:  # the bottom encoder layers are shared with other models
            key, trunk = (self.memory_layout, tuple(unique)), self.trunk
            encode_hidden = lambda tokens: trunk.hidden(model, tokens, key)  # noqa: E731
        tokens = encoder_tokens(list(unique), self.device)  # (U, T)
        memory, keep = model.encode(tokens, self.memory_layout,
                                    molecules, protein_index, encode_hidden, self.config.packed_encoder)
        domain = None
        if model.domain is not None:  # how like the training proteins each input's protein is (B,)
            residues = tokens.ne(model.encoder.padding_idx) & tokens.ne(model.encoder.cls_idx) \
                & tokens.ne(model.encoder.eos_idx)  # (U, T)
            if protein_index is not None:
                residues = residues[protein_index]
            domain = model.domain.score(pooled(memory, residues)).tolist()
        proteins = [i.protein for i in items]
        if self.ladder is not None:  # padded up to the compiled shapes; the padding rows are dropped below
            proteins, memory, keep = self.ladder.fit(proteins, memory, keep)
        memory_kv = model.decoder.memory_kv(memory)
        specs = self.tasks if tasks is None else tasks
        # Tasks that read back their outputs: one stack, step by step. The others (per-residue, no feedback):
        # one pass each (stacked, their logits, rows x residues x vocabulary, would all be held at once).
        stepped = [s for s in specs if model.feeds_back(s)]
        stacks = [stepped] if stepped and self.config.stack_tasks else [[s] for s in stepped]
        stacks += [[s] for s in specs if not model.feeds_back(s)]
        outcomes = {name: out[: len(items)] for stack in stacks
                    for name, out in self._decode(stack, proteins, memory, memory_kv, keep).items()}
        if domain is not None:
            threshold = model.domain.threshold
            for found in outcomes.values():
                for outcome, score in zip(found, domain):
                    if isinstance(outcome, TaskResult):
                        outcome.domain_score, outcome.in_domain = score, score >= threshold
        return {spec.name: outcomes[spec.name] for spec in specs}

    def _decode(self, specs: list[TaskSpec], proteins: list[str], memory: torch.Tensor,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]], keep: torch.Tensor | None
                ) -> dict[str, list[Outcome]]:
        """One stack of tasks decoded together, its tokens copied to the host once and parsed."""
        model, vocab = self.model, self.model.vocab
        blocks = [task_block(spec, vocab, proteins, model.config.max_output_steps, self.device,
                             spec.task_kind.conformal_reads_dists
                             and (spec.name in self.conformal or self.keep_label_dists)) for spec in specs]
        decoded: list[Decoded] = decode_stack(
            model.decoder, memory_kv, keep, vocab.bos_id, blocks, vocab.eos_id, vocab.pad_id,
            side_for=lambda stack: model.side_inputs(memory, stack.task_ids, keep, stack.block_task_ids),
            feedback=model.feeds_back(specs[0]), step=self.step, ladder=self.ladder)
        on_host = to_host(specs, decoded, vocab)
        found = {spec.name: parse_outcomes(spec, out, vocab, block.prompt_lengths)
                 for spec, out, block in zip(specs, on_host, blocks)}
        for spec in specs:
            params = self.conformal.get(spec.name)
            for outcome in found[spec.name]:
                if isinstance(outcome, TaskResult):
                    if params is not None:
                        spec.task_kind.conformal_answer(spec, outcome, params)
                    if not self.keep_label_dists:
                        outcome.label_dists = None
        return found

    def run_batch(self, batch: list[ModelInput], tasks: list[TaskSpec]) -> Iterator[tuple[ModelInput, dict[str, Outcome]]]:
        """Each input's outcomes for `tasks`; out of memory, the batch is split in halves down to
        single inputs, and an input that still does not fit gets `status=oom` instead of stopping
        the run."""
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
            yield from self.run_batch(batch[:half], tasks)
            yield from self.run_batch(batch[half:], tasks)
            return
        for i, item in enumerate(batch):
            yield item, {name: outcomes[i] for name, outcomes in per_task.items()}

    # -- windows of records --------------------------------------------------------------------

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
        """Typed rows for every (record, task), one record batch per output part (`screen.windows`:
        blocks fixed by the input, batched alone; parts of whole blocks, closed by time or size).

        Pair tasks give one row per (record, partner), ligand tasks one per (record, ligand).
        Records up to input index `resume_after` are passed over (a resumed run has them).
        `should_stop` is polled between batches; when it returns True the current block is
        abandoned, the part of the blocks already finished comes out, and `Stopped` is raised.
        """
        self.check_inputs()
        blocks = self.blocks(records, resume_after, progress, self.work)
        yield from parts(blocks, lambda block: self.screen_block(block, progress, should_stop), self.part())

    def screen_block(self, block: list[Record], progress: ProgressFn | None = None,
                     should_stop: StopFn | None = None) -> pa.RecordBatch:
        """One block's rows, in input order: its distinct inputs planned, batched and run."""
        plan = self.plan(block)
        results = self.run_window(plan, progress, should_stop)
        if progress:  # records with no protein input (not ok, or pairs and ligands only) count now
            progress(len(block) - sum(plan.copies[k] for k in plan.copies if k.inputs == PROTEIN), 0)
        return self.rows(block, plan, results)

    def check_inputs(self) -> None:
        """UsageError when pair or ligand tasks have no partners or ligands to read."""
        for form, given in ((PAIR, self.pairs), (LIGAND, self.ligands)):
            if self.by_input[form] and given is None:
                names = ", ".join(t.name for t in self.by_input[form])
                what, option = _NEEDS[form]
                raise UsageError(f"task(s) {names} read {what} besides each protein: give {option}")

    def blocks(self, records: Iterable[Record], resume_after: int, progress: ProgressFn | None,
               work: Callable[[Record], int]) -> Blocks:
        """This screener's blocks of `records` (passed-over records still count as progress): at
        most `window_records` records and `block_batches` full batches' worth of residues."""
        skipped = (lambda r: progress(1, work(r))) if progress else None
        cfg = self.config
        residues = min(cfg.window_residues, cfg.block_batches * cfg.max_tokens)
        return Blocks(iter(records), cfg.window_records, residues, resume_after, skipped)

    def part(self, schema: pa.Schema | None = None) -> Part:
        """An empty output part under this screener's limits (rows of `schema`, default its own)."""
        cfg = self.config
        return Part(schema or self.schema, cfg.window_records, cfg.window_residues, cfg.window_seconds)

    def plan(self, window: list[Record]) -> WindowPlan:
        """The distinct inputs of a window for this screener's tasks, and its companions."""
        return plan_window(window, {form for form, specs in self.by_input.items() if specs}, self.expansion)

    def batch_length(self) -> Callable[[ModelInput], int]:
        """What a batch's token budget counts per input: a padded memory costs the full width."""
        full = self.model.config.encoder.max_residues
        return (lambda k: k.encoder_length) if self.memory_layout == MASKED else (lambda k: full)

    def run_window(self, plan: WindowPlan, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None) -> Results:
        """Outcomes of every distinct input of a window, batch by batch (`planning.plan_batches`)."""
        results: Results = {}
        for form, batch in plan_batches(plan, self.batch_length(), self.config.max_tokens, should_stop):
            results.update(self.run_batch(batch, self.by_input[form]))
            if progress:
                done = sum(plan.copies[k] for k in batch) if form == PROTEIN else 0
                progress(done, sum(k.residues * plan.copies[k] for k in batch))
        return results

    def rows(self, window: list[Record], plan: WindowPlan, results: Results) -> pa.RecordBatch:
        """The window's output rows, in input order (`assembly.window_rows`)."""
        return window_rows(window, self.tasks, plan, results, self.expansion, self.model_name, self.schema)
