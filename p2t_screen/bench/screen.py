"""`p2t bench`: screen throughput beside its floor (the encoder alone) and a naive path.

The naive path is how the reference runs: batch size 1, encoder input padded to the full
encoder length, a fresh encoder pass per task, and every decoding step re-running the whole
prefix and recomputing the cross-attention keys/values of the memory. All three run the same
model on the same machine in one process; the figures are measured, never assumed.
"""

from __future__ import annotations

import platform
import random
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from ..model.config import MASKED, PADDED
from ..model.encoder import tokenize
from ..model.model import P2TModel
from ..model.runtime import resolve_device, resolve_dtype
from ..model.store import load_model, resolve_model_path
from ..screen.batching import token_budget_batches
from ..screen.config import DEFAULT_MAX_TOKENS, ScreenConfig
from ..screen.pipeline import ScreenRequest, screen_file
from ..screen.screener import Screener, compiled_shapes
from ..screen.tuning import CudaMemory, fit_budget
from ..tasks.spec import TaskSpec
from .checks import decoder_calls, memory_agreement, same_outputs
from .library import generate_library
from .measure import Timing, peak_rss_mib, sync
from .multi import together_scenario
from .shapes import feedback_twin, scalar_twin, shaped_model, utilisation_note


@torch.inference_mode()
def time_encoder(model: P2TModel, seqs: list[str], max_tokens: int) -> Timing:
    """The floor: the same token-budget batches through the encoder and projection only."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    for batch in token_budget_batches(seqs, len, max_tokens):
        memory, _ = model.encode(tokenize(batch, device))
        model.decoder.memory_kv(memory)
    sync(device)
    return Timing("encoder only", len(seqs), sum(map(len, seqs)), time.perf_counter() - start)


@torch.inference_mode()
def naive_predict(model: P2TModel, seq: str, spec: TaskSpec) -> list[int]:
    """One sequence, one task, the reference's way (grammar kept so outputs are comparable)."""
    device = next(model.parameters()).device
    full = model.config.encoder.max_residues + 2
    tokens = torch.full((1, full), model.encoder.padding_idx, dtype=torch.long, device=device)
    tokens[0, : len(seq) + 2] = tokenize([seq], device)[0]
    memory, keep = model.encode(tokens)
    grammar = spec.task_kind.grammar(spec, model.vocab, [seq], model.config.max_output_steps, device)
    prefix = model.prompt(spec, 1, device)
    side = model.side_inputs(memory, prefix[:, 1], keep)  # the model's decoder options
    feeds_back = model.feeds_back(spec)
    out: list[int] = []
    for step in range(grammar.max_steps):
        logits = model.decoder(prefix, model.decoder.memory_kv(memory), keep, side=side)[:, -1]
        scores = torch.log_softmax(logits.float().masked_fill(~grammar.allowed(step), float("-inf")), dim=-1)
        bias = grammar.bias(step)
        token = (scores if bias is None else scores + bias).argmax(-1)
        grammar.advance(token)
        out.append(int(token.item()))
        if out[-1] == model.vocab.eos_id:
            break
        fed = token if feeds_back else torch.full_like(token, model.vocab.pad_id)
        prefix = torch.cat([prefix, fed[:, None]], dim=1)
    return out[:-1]


NAIVE_SECONDS = 60.0  # the naive path stops after the sequence that passes this (0: no cap)
PROGRESS_EVERY = 10.0  # seconds between its progress lines


def time_naive(model: P2TModel, seqs: list[str], tasks: list[TaskSpec], cap: float = NAIVE_SECONDS,
               log: Callable[[str], None] | None = None) -> tuple[Timing, list]:
    """The naive path over `seqs`, one at a time, until `cap` seconds have passed (the timing
    counts the sequences done; the outputs are theirs), a progress line every PROGRESS_EVERY s."""
    start = last = time.perf_counter()
    outputs, residues = [], 0
    for i, s in enumerate(seqs):
        outputs.append([naive_predict(model, s, spec) for spec in tasks])
        residues += len(s)
        now = time.perf_counter()
        if log is not None and now - last >= PROGRESS_EVERY:
            log(f"  naive path: {i + 1} of {len(seqs)} sequences, {now - start:.0f} s")
            last = now
        if cap and now - start >= cap and i + 1 < len(seqs):
            if log is not None:
                log(f"  naive path capped at {cap:.0f} s: {i + 1} of {len(seqs)} sequences timed")
            break
    sync(next(model.parameters()).device)
    return Timing("naive", len(outputs), residues, time.perf_counter() - start), outputs


def time_screen(model_ref: str, fasta: Path, tasks: list[TaskSpec], device: str, dtype: str,
                max_tokens: int, label: str, **screen_options) -> Timing:
    """Through `screen_file`: FASTA parsing, batching, decoding, Parquet writing (model loading
    excluded, as it is paid once per run); `screen_options`: `ScreenConfig` fields."""
    with tempfile.TemporaryDirectory() as tmp:
        req = ScreenRequest(input=fasta, output=Path(tmp) / "out", model=model_ref,
                            tasks=tuple(t.name for t in tasks), device=device, dtype=dtype,
                            screen=ScreenConfig(max_tokens=max_tokens, **screen_options),
                            command="p2t bench")
        summary = screen_file(req)
    if not summary.all_ok:
        raise RuntimeError(f"bench screen had rows not ok: {summary.status_counts}")
    return Timing(label, summary.records, summary.residues, summary.seconds)


def token_budget(model: P2TModel, specs: list[TaskSpec], longest: int, max_tokens: int | None,
                 device: torch.device) -> tuple[int, str | None]:
    """The bench's token budget: `max_tokens`, or for auto (None) what a screen would measure
    (`screen.tuning`), and a line saying so."""
    if max_tokens is not None:
        return max_tokens, None
    if device.type != "cuda":
        return DEFAULT_MAX_TOKENS, f"--max-tokens auto: {DEFAULT_MAX_TOKENS:,} (the fixed default off CUDA)"
    search = fit_budget([Screener(model, specs)], longest, CudaMemory(device))
    return search.max_tokens, search.describe()


def screen_syncs(model_ref: str, fasta: Path, tasks: list[TaskSpec], device: str, dtype: str,
                 max_tokens: int) -> tuple[Timing, Counter]:
    """A screen with CUDA's sync debug mode on ("warn"): each synchronizing call (a device-to-host
    copy, `.item()`, `nonzero`...) is a warning, counted here by the line that made it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            timing = time_screen(model_ref, fasta, tasks, device, dtype, max_tokens, "screen, sync debug")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return timing, found


@dataclass
class BenchReport:
    """Everything one bench run measured."""

    # (title, [screen, encoder only, naive, extra rows...], naive outputs equal, notes)
    scenarios: list[tuple[str, list[Timing], bool | None, list[str]]]
    peak_rss_mib: float
    device: str
    threads: int
    device_name: str = ""
    max_tokens: int = 0  # the token budget every path ran with
    syncs: dict[str, int] = field(default_factory=dict)  # synchronizing CUDA calls by line (sync debug)

    def to_json(self) -> dict:
        """The report as JSON-ready data (timings with their rates)."""
        return {"device": self.device, "device_name": self.device_name, "threads": self.threads,
                "max_tokens": self.max_tokens, "syncs": self.syncs,
                "peak_rss_mib": self.peak_rss_mib, "scenarios": [
                    {"title": title, "outputs_identical": equal, "notes": notes, "timings": [
                        {**asdict(t), "residues_per_s": t.res_per_s, "sequences_per_s": t.seq_per_s}
                        for t in timings]} for title, timings, equal, notes in self.scenarios]}


def run_bench(model_ref: str | None, tasks: list[str] | None, n: int, lo: int, hi: int,
              naive_n: int, max_tokens: int | None, device: str, dtype: str, seed: int,
              log=print, encoder_shape: str | None = None, compile: bool = False,
              sync_debug: bool = False, compile_backend: str = "inductor",
              naive_seconds: float = NAIVE_SECONDS) -> BenchReport:
    """Measure every path on one generated library; `log` reports what is running.
    `encoder_shape`: the model's tasks and decoders over a random-weight ESM2 encoder of that
    shape (`bench.shapes`), timed alone (no twins, no several-models scenario). `compile`: also
    time the screen with the decoder step compiled (`--compile`), twice (compiles included, then
    again), in every scenario whose tasks decode step by step. `max_tokens`
    None: `--max-tokens auto`, measured once for the first model and used by every path.
    `sync_debug`: on CUDA, one more screen of the first scenario counts its synchronizing calls.
    `naive_seconds`: the naive path's time cap per scenario (0: none; `time_naive`)."""
    dev = resolve_device(device)
    path = resolve_model_path(model_ref)
    model = load_model(path, dev, resolve_dtype(dtype, dev))
    scalar = [t.name for t in model.config.tasks if t.task_kind.scalar]
    specs = model.config.select_tasks(tasks or (scalar or [t.name for t in model.config.tasks])[:2])
    scenarios = []
    with tempfile.TemporaryDirectory() as tmp:
        if encoder_shape:
            log(f"building a random-weight {encoder_shape} encoder under {model.config.name}'s decoders")
            path = shaped_model(model.float().cpu(), encoder_shape, Path(tmp) / "shaped", seed)
            model = load_model(path, dev, resolve_dtype(dtype, dev))
            specs = model.config.select_tasks([s.name for s in specs])
        fasta = Path(tmp) / "bench.fasta"
        seqs = generate_library(fasta, n, lo, min(hi, model.config.encoder.max_residues), seed)
        models = [(f"{model.config.name}: {', '.join(s.name for s in specs)}", str(path), model, specs)]
        feedback_path = None
        if not encoder_shape and not model.config.decoder.residue_feedback and any(
                s.task_kind.one_pass_without_feedback for s in specs):
            feedback_path = feedback_twin(model.float().cpu(), Path(tmp) / "feedback")
        if not encoder_shape and any(not s.task_kind.scalar for s in specs):
            twin_path = scalar_twin(model.float().cpu(), Path(tmp) / "twin")
            twin = load_model(twin_path, dev, resolve_dtype(dtype, dev))
            models.append(("scalar tasks (timing twin: regression + class heads, same sizes)",
                           str(twin_path), twin, list(twin.config.tasks)))
        if len(models) > 1 or feedback_path:  # the twins were made from a CPU fp32 copy
            model = load_model(path, dev, resolve_dtype(dtype, dev))
            models[0] = (models[0][0], str(path), model, specs)
        sample = random.Random(seed).sample(seqs, min(naive_n, len(seqs)))
        max_tokens, budget_note = token_budget(model, specs, max(map(len, seqs)), max_tokens, dev)
        if budget_note:
            log(budget_note)
        run = _Run(fasta, seqs, sample, device, dtype, max_tokens, log, compile, sync_debug, compile_backend,
                   naive_seconds)
        for title, ref, m, task_specs in models:
            scenarios.append(run.scenario(title, ref, m, task_specs,
                                          feedback_path if m is model else None))
        screen, floor = scenarios[0][1][:2]
        if budget_note:
            scenarios[0][3].append(budget_note)
        scenarios[0][3].extend(utilisation_note(model, t.residues, t.sequences, t.seconds, t.name, dev)
                               for t in (screen, floor))
        if not encoder_shape:
            scenarios.append(together_scenario(model, specs, Path(tmp), seqs, max_tokens, dev, dtype, log))
    return BenchReport(scenarios, run.rss, str(dev), torch.get_num_threads(),
                       torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
                       max_tokens, dict(run.syncs))


@dataclass
class _Run:
    """One bench run's library and settings, shared by its scenarios."""

    fasta: Path
    seqs: list[str]
    sample: list[str]
    device: str
    dtype: str
    max_tokens: int
    log: Callable[[str], None]
    compile: bool = False  # time screens with --compile in every scenario whose decoder steps
    sync_debug: bool = False  # on CUDA, a screen of the first scenario reports its synchronizing calls
    compile_backend: str = "inductor"
    naive_seconds: float = NAIVE_SECONDS
    syncs: Counter = field(default_factory=Counter)
    rss: float = 0.0  # peak resident MiB right after the last scenario's screen

    def scenario(self, title: str, ref: str, model: P2TModel, tasks: list[TaskSpec],
                 feedback_path: Path | None) -> tuple[str, list[Timing], bool, list[str]]:
        """Screen, encoder alone and naive path of one model and task set, plus its extra rows."""
        self.log(f"[{title}] screen of {len(self.seqs)} sequences")
        screen = time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens, "screen")
        self.rss = peak_rss_mib()  # after the screen, before the other paths run
        self.log(f"[{title}] encoder alone")
        floor = time_encoder(model, self.seqs, self.max_tokens)
        self.log(f"[{title}] naive path on up to {len(self.sample)} sequences (at most about "
                 f"{self.naive_seconds:.0f} s)")
        naive, outputs = time_naive(model, self.sample, tasks, self.naive_seconds, self.log)
        equal = same_outputs(model, self.sample[: len(outputs)], tasks, outputs)
        timings = [screen, floor, naive]
        notes = [f"screen / encoder-alone time per residue: {floor.res_per_s / screen.res_per_s:.2f}x; "
                 f"screen is {screen.res_per_s / naive.res_per_s:.1f}x faster than naive; "
                 f"naive and screen outputs identical on the naive sample: {equal}"]
        if len(tasks) > 1:
            self.log(f"[{title}] screen decoding task by task")
            timings.append(time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens,
                                       "screen, task by task", stack_tasks=False))
            stacked, apart = decoder_calls(model, self.seqs, tasks, self.max_tokens)
            notes.append(f"decoder calls per batch: {stacked:.0f} with the tasks in one decode loop, "
                         f"{apart:.0f} task by task ('screen, task by task': one loop per task)")
        if next(model.parameters()).is_cuda and model.config.memory_layout == MASKED:
            self.log(f"[{title}] screen, packed encoder")
            timings.append(time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens,
                                       "screen, packed encoder", packed_encoder=True))
            notes.append("'packed encoder': the encoder on real tokens only (varlen attention) instead of "
                         "length-sorted padded batches (the default, 'screen')")
        if self.sync_debug and next(model.parameters()).is_cuda:
            self.sync_debug = False  # the first scenario only
            self.log(f"[{title}] screen under torch.cuda.set_sync_debug_mode('warn')")
            timing, syncs = screen_syncs(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens)
            timings.append(timing)
            self.syncs = syncs
            notes.append(f"'sync debug': {sum(syncs.values())} synchronizing CUDA calls reported, at "
                         f"{len(syncs)} places: " + "; ".join(f"{n}x {where}" for where, n in syncs.most_common(8)))
        if self.compile and any(model.feeds_back(t) for t in tasks):
            self.log(f"[{title}] screen --compile, twice")
            torch._dynamo.reset()
            counters.clear()
            timings.append(time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens,
                                       "screen --compile", compile=True,
                                       compile_backend=self.compile_backend))
            graphs = counters["stats"]["unique_graphs"]
            timings.append(time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens,
                                       "screen --compile, again", compile=True,
                                       compile_backend=self.compile_backend))
            ladder = compiled_shapes(model.config, ScreenConfig(max_tokens=self.max_tokens))
            notes.append(f"'--compile': the decoder step through torch.compile ({self.compile_backend}), its time "
                         f"including the compiles: "
                         f"{graphs} graphs compiled, of a ladder of {ladder.size} shapes "
                         f"(inputs per batch {list(ladder.batch)}, memory {list(ladder.memory)}, KV cache "
                         f"{list(ladder.cache)}); 'again': the same screen in the same process, "
                         f"{counters['stats']['unique_graphs'] - graphs} more graphs compiled")
        elif self.compile:
            notes.append("'--compile': not timed here: every task decodes in one pass (no decoder steps to compile)")
        if model.config.memory_layout == PADDED:  # imported checkpoints: what --fast-memory buys and costs
            self.log(f"[{title}] screen --fast-memory")
            timings.append(time_screen(ref, self.fasta, tasks, self.device, self.dtype, self.max_tokens,
                                       "screen --fast-memory", fast_memory=True))
            agree = memory_agreement(model, self.sample, tasks)
            notes.append(f"--fast-memory outputs identical to the faithful padded memory on "
                         f"{agree:.0%} of the naive sample")
        if feedback_path:
            self.log(f"[{title}] screen with per-residue feedback (timing only)")
            timings.append(time_screen(str(feedback_path), self.fasta, tasks, self.device, self.dtype,
                                       self.max_tokens, "screen, residue feedback on"))
            notes.append("'residue feedback on': the same weights decoding each per-residue task "
                         "one step per residue, reading its previous labels (models trained with "
                         "residue_feedback = true decode so); timed only, its outputs mean nothing here")
        return title, timings, equal, notes
