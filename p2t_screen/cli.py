"""The `p2t` command: a thin layer that parses options and calls the library.

Exit codes: 0 every row ok; 3 finished but some rows are not ok (invalid, empty, too_long, oom,
error); 2 usage, input or model error (nothing written); 1 unexpected internal error.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .catalog import CATALOG
from .errors import P2TError
from .fasta import OnInvalid, OnLong
from .modelio import DEFAULT_MODEL, bundled_models, load_model, read_model_config
from .pipeline import THRESHOLD_HELP, RunSummary, ScreenRequest, parse_shard, parse_thresholds, screen_file
from .predict import DEFAULT_MAX_TOKENS, ScreenConfig, Stopped
from .progress import LogProgress, RichProgress
from .schema import COLUMN_DOCS
from .tasks import KINDS
from .writer import existing_parts

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_ROWS_NOT_OK = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
EXIT_CODES_HELP = ("Exit codes: 0 all rows ok; 3 finished, some rows not ok; "
                   "2 usage, input or model error (nothing written); 1 internal error; "
                   "130/143 stopped by SIGINT/SIGTERM (rerun to resume).")

app = typer.Typer(help=f"p2t: protein screening with ESM2 + Prot2Token decoders. {EXIT_CODES_HELP}",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole when stderr is a file


def _fail(exc: P2TError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _split_tasks(value: str) -> list[str]:
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("give at least one task name, or 'all'")
    return names


@app.command(epilog=EXIT_CODES_HELP)
def screen(
    input: Annotated[Path, typer.Argument(help="FASTA library (.fasta or .fasta.gz)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="output folder (Parquet dataset)")] = Path("results"),
    model: Annotated[Optional[str], typer.Option(help=f"model directory or bundled name [default: {DEFAULT_MODEL}]")] = None,
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or 'all'")] = "all",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16 (CPU: fp32)")] = "auto",
    max_tokens: Annotated[int, typer.Option(min=1, help="padded encoder tokens per batch")] = DEFAULT_MAX_TOKENS,
    on_invalid: Annotated[OnInvalid, typer.Option(help="error: stop before running; skip: row status 'invalid'; x: unknown letters -> X")] = OnInvalid.ERROR,
    long: Annotated[OnLong, typer.Option("--long", help="sequences over the encoder limit: truncate | skip | error")] = OnLong.TRUNCATE,
    overwrite: Annotated[bool, typer.Option(help="discard results already in the output folder and start fresh")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/N: screen only shard i of N (by sequence hash); default from SLURM_ARRAY_TASK_ID/COUNT")] = None,
    window_records: Annotated[int, typer.Option(min=1, help="records per output part (memory bound)")] = ScreenConfig.window_records,
    partner: Annotated[Optional[Path], typer.Option(help="FASTA of partner proteins for pair tasks (e.g. kinases): each record is paired with every partner")] = None,
    pair_by_id: Annotated[bool, typer.Option("--pair-by-id", help="pair each record only with the partner of the same id")] = False,
    ligand: Annotated[Optional[list[str]], typer.Option(help="SMILES for protein-ligand tasks (repeatable)")] = None,
    ligands: Annotated[Optional[Path], typer.Option(help=".smi file (SMILES [name] per line) for protein-ligand tasks")] = None,
    threshold: Annotated[Optional[list[str]], typer.Option(help=THRESHOLD_HELP)] = None,
    fast_memory: Annotated[bool, typer.Option("--fast-memory", help="run models made for a padded memory (imported Prot2Token checkpoints) on length-bucketed memory: faster, but outputs drift from the published model")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or summary")] = False,
) -> None:
    """Screen a FASTA library: one typed Parquet row per (record, task).

    Rerun the same command after an interruption to resume; SIGINT/SIGTERM stop after the
    current batch (a second signal exits at once).
    """
    stop = StopOnSignal()
    try:
        request = ScreenRequest(
            input=input, output=output, model=model, tasks=tuple(_split_tasks(tasks)), device=device,
            dtype=dtype, on_invalid=on_invalid, on_long=long,
            screen=ScreenConfig(max_tokens=max_tokens, window_records=window_records,
                                memory="masked" if fast_memory else None),
            overwrite=overwrite, command=shlex.join(["p2t", *sys.argv[1:]]), shard=parse_shard(shard),
            partner=partner, pair_by_id=pair_by_id, ligand=tuple(ligand or ()), ligands=ligands,
            thresholds=parse_thresholds(threshold))
        progress = None if quiet else (RichProgress(err) if err.is_terminal else LogProgress())
        with stop:
            summary = screen_file(request, progress, should_stop=stop)
    except P2TError as exc:
        raise _fail(exc) from None
    except Stopped:
        parts = len(existing_parts(output))
        err.print(f"stopped by {stop.signal_name}: {parts} complete part(s) kept in {output}; "
                  "rerun the same command to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED if stop.signal_name == "SIGINT" else EXIT_TERMINATED) from None
    if not quiet:
        if summary.already_complete:
            err.print(f"{output} already holds this finished run; nothing to do (--overwrite reruns it)")
        _print_summary(summary)
    raise typer.Exit(EXIT_OK if summary.all_ok else EXIT_ROWS_NOT_OK)


class StopOnSignal:
    """SIGINT/SIGTERM ask the run to stop after the current batch; a second one exits at once."""

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return bool(self.signal_name)

    def _handle(self, signum, frame) -> None:
        if self.signal_name:
            os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED)
        self.signal_name = signal.Signals(signum).name
        err.print(f"{self.signal_name}: stopping after the current batch (again to exit now)")

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _print_summary(summary: RunSummary) -> None:
    table = Table(title=f"p2t screen: {summary.records} records", caption=f"-> {summary.output}")
    statuses = sorted({s for c in summary.status_counts.values() for s in c} - {"ok"})
    for col in ("task", "ok", *statuses):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, counts in summary.status_counts.items():
        table.add_row(task, str(counts.get("ok", 0)), *(str(counts.get(s, 0)) for s in statuses))
    err.print(table)
    rate = summary.residues / summary.seconds if summary.seconds else 0.0
    err.print(f"{summary.rows} rows in {summary.parts} part(s); {summary.residues} residues in "
              f"{summary.seconds:.1f}s ({rate:,.0f} residues/s, "
              f"{summary.records / max(summary.seconds, 1e-9):,.1f} records/s)", highlight=False)


@app.command("tasks")
def tasks_cmd(
    model: Annotated[Optional[str], typer.Option(help="list this model's tasks instead of the catalog")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The task catalog (or a model's tasks): name, kind, input, output columns."""
    try:
        specs = list(read_model_config(model).tasks) if model else list(CATALOG.values())
    except P2TError as exc:
        raise _fail(exc) from None
    inputs = {"protein": "protein", "pair": "protein + partner (--partner)",
              "ligand": "protein + ligand (--ligand/--ligands)"}
    rows = [{"name": s.name, "kind": s.kind, "input": inputs[s.inputs], "token": s.token,
             "columns": list(KINDS[s.kind].output_columns), "description": s.description,
             **({"encoding": s.encoding, "threshold": s.decision_threshold} if s.encoding else {})}
            for s in specs]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="tasks" if not model else f"tasks of {model}")
    for col in ("name", "kind", "input", "output columns", "description"):
        table.add_column(col)
    for r in rows:
        kind = r["kind"] + (f" ({r['encoding']}, threshold {r['threshold']:.2f})" if "encoding" in r else "")
        table.add_row(r["name"], kind, r["input"], ", ".join(r["columns"]), r["description"])
    Console().print(table)


@app.command("models")
def models_cmd(
    paths: Annotated[Optional[list[str]], typer.Argument(help="model directories to describe as well")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Bundled models (and any given paths): encoder, size, tasks."""
    refs = [str(p) for p in bundled_models()] + list(paths or [])
    rows = []
    try:
        for ref in refs:
            model = load_model(ref)
            cfg = model.config
            rows.append({
                "name": cfg.name, "path": model.source, "sha256": model.checksum[:12],
                "encoder": f"ESM2 {cfg.encoder.num_layers}L/{cfg.encoder.embed_dim} ({cfg.encoder.source})",
                "parameters": sum(p.numel() for p in model.parameters()),
                "tasks": [t.name for t in cfg.tasks], "default": Path(model.source).name == DEFAULT_MODEL,
            })
    except P2TError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="models")
    for col in ("name", "encoder", "parameters", "tasks", "path"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        table.add_row(name, r["encoder"], f"{r['parameters'] / 1e6:.1f}M", ", ".join(r["tasks"]), r["path"])
    Console().print(table)


@app.command("bench")
def bench_cmd(
    model: Annotated[Optional[str], typer.Option(help="model directory or bundled name")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated tasks [default: the model's first two]")] = None,
    n: Annotated[int, typer.Option(min=1, help="sequences in the generated library")] = 500,
    min_len: Annotated[int, typer.Option(min=1)] = 50,
    max_len: Annotated[int, typer.Option(min=1)] = 800,
    naive_n: Annotated[int, typer.Option(min=1, help="sequences for the (slow) naive path")] = 40,
    max_tokens: Annotated[int, typer.Option(min=1)] = DEFAULT_MAX_TOKENS,
    device: Annotated[str, typer.Option()] = "auto",
    dtype: Annotated[str, typer.Option()] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    soak: Annotated[int, typer.Option(min=0, help="instead: screen N short sequences and report resident memory at N/10 and N")] = 0,
) -> None:
    """Measure screen throughput beside the encoder alone and a naive reference-style path."""
    from .bench import run_bench, run_soak

    if soak:
        try:
            samples, seconds, rows = run_soak(model, soak, _split_tasks(tasks)[0] if tasks else None,
                                              device, window_records=ScreenConfig.window_records)
        except P2TError as exc:
            raise _fail(exc) from None
        tenth = samples.get(soak // 10, float("nan"))
        Console().print(f"soak: {rows} rows in {seconds:.1f}s ({soak / seconds:,.0f} records/s); resident "
                        f"memory {samples['start']:.0f} MiB at start, {tenth:.0f} MiB at {soak // 10} records, "
                        f"{samples[soak]:.0f} MiB at {soak} records (growth x{samples[soak] / tenth:.2f})",
                        highlight=False)
        Console().print("resident MiB by records: " + ", ".join(
            f"{k}: {v:.0f}" for k, v in samples.items() if isinstance(k, int)), highlight=False)
        return
    try:
        report = run_bench(model, _split_tasks(tasks) if tasks else None, n, min_len, max_len,
                           naive_n, max_tokens, device, dtype, seed, log=lambda m: err.print(m, style="dim"))
    except P2TError as exc:
        raise _fail(exc) from None
    out = Console()
    for title, timings, equal, notes in report.scenarios:
        screen, floor, naive = timings[:3]
        table = Table(title=title)
        for col in ("path", "sequences", "residues", "seconds", "seq/s", "residues/s", "vs screen"):
            table.add_column(col, justify="left" if col == "path" else "right")
        for t in timings:
            table.add_row(t.name, str(t.sequences), str(t.residues), f"{t.seconds:.2f}",
                          f"{t.seq_per_s:.1f}", f"{t.res_per_s:,.0f}", f"{screen.res_per_s / t.res_per_s:.2f}x")
        out.print(table)
        out.print(f"screen / encoder-alone time per residue: {floor.res_per_s / screen.res_per_s:.2f}x; "
                  f"screen is {screen.res_per_s / naive.res_per_s:.1f}x faster than naive; "
                  f"naive and screen outputs identical on the naive sample: {equal}")
        for note in notes:
            out.print(note)
    out.print(f"peak RSS {report.peak_rss_mib:.0f} MiB; device {report.device}; torch threads {report.threads}")


@app.command("train", epilog=EXIT_CODES_HELP)
def train_cmd(
    config: Annotated[Path, typer.Argument(help="training config (.toml or .yaml); see examples/train.toml")],
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    fresh: Annotated[bool, typer.Option(help="ignore (and delete) a saved training state")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a model on labelled data; rerun the same command to resume after an interruption."""
    from .fit import fit, state_dir
    from .runtime import resolve_device
    from .trainconfig import load_config
    from .trainui import TrainProgress

    try:
        cfg = load_config(config)
        ui = TrainProgress(err, quiet)
        with ui:
            summary = fit(cfg, resolve_device(device), fresh, ui.event)
    except P2TError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print(f"interrupted: rerun the same command to resume from {state_dir(cfg)}")
        raise typer.Exit(130) from None
    if not quiet:
        err.print(f"best validation score {summary['best']:.4f}; model written to {summary['output']}")


@app.command("pretrain", epilog=EXIT_CODES_HELP)
def pretrain_cmd(
    fasta: Annotated[list[Path], typer.Argument(help="unlabelled training sequences (FASTA, .gz ok)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="encoder checkpoint to write (.pt)")],
    steps: Annotated[int, typer.Option(help="optimiser steps")] = 2000,
    valid: Annotated[Optional[Path], typer.Option(help="held-out FASTA: masked-LM loss, perplexity, accuracy")] = None,
    layers: Annotated[int, typer.Option(help="encoder layers")] = 4,
    dim: Annotated[int, typer.Option(help="encoder width")] = 128,
    heads: Annotated[int, typer.Option(help="attention heads")] = 8,
    crop: Annotated[int, typer.Option(help="longest window of a sequence per example")] = 512,
    max_tokens: Annotated[int, typer.Option(help="padded tokens per batch")] = 16384,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 1e-3,
    warmup: Annotated[int, typer.Option(help="warmup steps")] = 500,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    fresh: Annotated[bool, typer.Option(help="ignore (and delete) a saved pre-training state")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Masked-language pre-training of an ESM2-architecture encoder (for `encoder.source`)."""
    import time

    from .fasta import ReadPolicy, read_fasta
    from .pretrain import PretrainConfig, pretrain
    from .runtime import resolve_device

    def sequences(paths: list[Path]) -> list[str]:
        policy = ReadPolicy(on_invalid="skip", max_residues=100_000)
        return [r.sequence for p in paths for r in read_fasta(p, policy) if r.residues_used]

    last = [0.0]

    def event(kind: str, data: dict) -> None:
        if quiet:
            return
        now = time.monotonic()
        if kind == "step" and (now - last[0] >= 30 or data["step"] == data["total"]):
            last[0] = now
            err.print(f"p2t pretrain step={data['step']}/{data['total']} epoch={data['epoch']} "
                      f"loss={data['loss']:.4f} lr={data['lr']:.2e} "
                      f"residues/s={data['residues_per_s']:,.0f}", highlight=False)
        elif kind == "start" and data["resumed_at"]:
            err.print(f"resuming at step {data['resumed_at']}")

    try:
        train_seqs = sequences(fasta)
        valid_seqs = sequences([valid]) if valid else []
        cfg = PretrainConfig(steps=steps, num_layers=layers, embed_dim=dim, attention_heads=heads,
                             crop=crop, max_tokens=max_tokens, lr=lr, warmup=warmup, seed=seed)
        summary = pretrain(train_seqs, valid_seqs, cfg, output, resolve_device(device), fresh, event)
    except P2TError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: rerun the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        v = summary["valid"]
        extra = (f"; held-out loss {v['loss']:.3f}, perplexity {v['perplexity']:.2f}, "
                 f"accuracy {v['accuracy']:.3f}") if v else ""
        err.print(f"wrote {output} after {summary['steps']} steps{extra}")


@app.command("import-prot2token", epilog=EXIT_CODES_HELP)
def import_prot2token_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="published Prot2Token checkpoint (.pth)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="new model directory to write")],
    config: Annotated[Optional[Path], typer.Option(help="the checkpoint's config.yaml [default: beside it, or one folder up]")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="the checkpoint's decoder_tokenizer.yaml [default: beside it, or one folder up]")] = None,
    name: Annotated[Optional[str], typer.Option(help="model name [default: prot2token-<tasks>]")] = None,
    skip_unknown_tasks: Annotated[bool, typer.Option("--skip-unknown-tasks", help="import the tasks p2t can run and leave the others out")] = False,
) -> None:
    """Convert a published Prot2Token checkpoint into a p2t model directory.

    The checkpoint is read as tensors only (no pickled code runs). The model keeps the published
    memory layout (encoder input padded to its full length, no memory mask), so it predicts what
    the reference does; `p2t screen --fast-memory` trades that fidelity for speed.
    """
    from .importer import import_prot2token, sidecar

    try:
        out = import_prot2token(checkpoint, config or sidecar(checkpoint, "config.yaml"),
                                tokenizer or sidecar(checkpoint, "decoder_tokenizer.yaml"), output, name,
                                skip_unknown_tasks=skip_unknown_tasks)
        cfg = read_model_config(out)
    except P2TError as exc:
        raise _fail(exc) from None
    err.print(f"wrote {out}: model '{cfg.name}', tasks {', '.join(t.name for t in cfg.tasks)}; "
              f"ESM2 {cfg.encoder.num_layers} layers x {cfg.encoder.embed_dim}, memory padded to "
              f"{cfg.encoder.max_residues + 2} tokens as published", highlight=False)


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="model directory or bundled name")],
    data: Annotated[list[str], typer.Argument(help="TASK=FILE, a file in a folder named after a task, or a training config")],
    split: Annotated[str, typer.Option(help="which split to score (train | valid | test | all)")] = "test",
    baseline: Annotated[bool, typer.Option(help="also score a trivial baseline fitted on the train split")] = True,
    device: Annotated[str, typer.Option()] = "auto",
    max_tokens: Annotated[int, typer.Option(min=1)] = 8192,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    threshold: Annotated[Optional[list[str]], typer.Option(help="TASK=P: decision threshold of a multi-label 'flags' task (as in p2t screen)")] = None,
) -> None:
    """Score a model on labelled data through the real screening path (constrained decoding)."""
    from .evaluate_cli import run_eval

    try:
        report = run_eval(model, data, split, baseline, device, max_tokens, parse_thresholds(threshold))
    except P2TError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(report, indent=2, default=float))
        return
    for task, entry in report["tasks"].items():
        at = f", threshold {entry['threshold']:.2f}" if "threshold" in entry else ""
        table = Table(title=f"{task} ({entry['kind']}{at}): {entry['examples']} {split} examples from {entry['data']}")
        table.add_column("metric")
        table.add_column("model", justify="right")
        if "baseline" in entry:
            table.add_column(f"baseline: {entry['baseline']['name']}", justify="right")
        for key, value in entry["metrics"].items():
            if key.startswith("f1["):
                continue
            cells = [_fmt(value)]
            if "baseline" in entry:
                cells.append(_fmt(entry["baseline"]["metrics"].get(key)))
            table.add_row(key, *cells)
        Console().print(table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@app.command("columns")
def columns_cmd() -> None:
    """The output columns and what they hold."""
    table = Table(title="output columns")
    table.add_column("column")
    table.add_column("meaning")
    for name, doc in COLUMN_DOCS.items():
        table.add_row(name, doc)
    Console().print(table)


def _register_ray() -> None:
    from .cli_ray import screen_ray  # Ray itself is imported only when the command runs

    app.command("screen-ray", epilog=EXIT_CODES_HELP)(screen_ray)


_register_ray()


def main() -> None:
    """Console-script entry point; turns unexpected crashes into exit code 1."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
