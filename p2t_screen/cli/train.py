"""`p2t train`, `p2t pretrain`, `p2t eval`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import P2TError
from .app import app
from .common import (EXIT_INTERRUPTED, PRETRAIN_EXIT_CODES, READ_EXIT_CODES, TRAIN_EXIT_CODES, WRITE_EXIT_CODES, err, fail,
                     out)


@app.command("train", epilog=TRAIN_EXIT_CODES)
def train_cmd(
    config: Annotated[Path, typer.Argument(help="training config (.toml or .yaml); see examples/train.toml")],
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    fresh: Annotated[bool, typer.Option(help="ignore (and delete) a saved training state")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines or summary")] = False,
) -> None:
    """Train a model on labelled data; rerun the same command to resume after an interruption."""
    from ..model.runtime import resolve_device
    from ..train.config import load_config
    from ..train.run import run_training, state_dir
    from .progress import TrainProgress

    try:
        cfg = load_config(config)
        ui = TrainProgress(err, quiet)
        with ui:
            summary = run_training(cfg, resolve_device(device), fresh, ui.event)
    except P2TError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print(f"interrupted: rerun the same command to resume from {state_dir(cfg)}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        err.print(f"best validation score {summary['best']:.4f}; model written to {summary['output']}")


@app.command("pretrain", epilog=PRETRAIN_EXIT_CODES)
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
    seed: Annotated[int, typer.Option(help="seed of the initial weights, masking and batch order")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    fresh: Annotated[bool, typer.Option(help="ignore (and delete) a saved pre-training state")] = False,
    stage_hours: Annotated[Optional[float], typer.Option(min=0.0, help="end this stage after about this many hours, its state saved; the same command again continues, ending where one uninterrupted run would")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines or summary")] = False,
) -> None:
    """Masked-language pre-training of an ESM2-architecture encoder (for `encoder.source`)."""
    from ..model.runtime import resolve_device
    from ..train.pretrain import PretrainConfig, pretrain
    from .progress import PretrainLog

    try:
        train_seqs = _sequences(fasta)
        valid_seqs = _sequences([valid]) if valid else []
        cfg = PretrainConfig(steps=steps, num_layers=layers, embed_dim=dim, attention_heads=heads,
                             crop=crop, max_tokens=max_tokens, lr=lr, warmup=warmup, seed=seed)
        deadline = None if stage_hours is None else time.monotonic() + stage_hours * 3600
        summary = pretrain(train_seqs, valid_seqs, cfg, output, resolve_device(device), fresh,
                           PretrainLog(err, quiet).event,
                           None if deadline is None else lambda _: time.monotonic() >= deadline)
    except P2TError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: rerun the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if "paused_at" in summary:
        if not quiet:
            err.print(f"stage over at step {summary['paused_at']:,} of {summary['steps']:,} (state in "
                      f"{summary['state']}): run the same command again to continue")
        return
    if not quiet:
        v = summary["valid"]
        extra = (f"; held-out loss {v['loss']:.3f}, perplexity {v['perplexity']:.2f}, "
                 f"accuracy {v['accuracy']:.3f}") if v else ""
        err.print(f"wrote {output} after {summary['steps']} steps{extra}")


def _sequences(paths: list[Path]) -> list[str]:
    """Every usable sequence of FASTA files, whole (pre-training crops windows itself)."""
    from ..io.fasta import read_fasta
    from ..io.records import ReadPolicy

    policy = ReadPolicy(on_invalid="skip", max_residues=100_000)
    return [r.sequence for p in paths for r in read_fasta(p, policy) if r.residues_used]


@app.command("eval", epilog=READ_EXIT_CODES)
def eval_cmd(
    model: Annotated[str, typer.Argument(help="model directory or bundled name")],
    data: Annotated[list[str], typer.Argument(help="TASK=FILE, a file in a folder named after a task, or a training config")],
    split: Annotated[str, typer.Option(help="which split to score (train | valid | test | all)")] = "test",
    baseline: Annotated[bool, typer.Option(help="also score a trivial baseline fitted on the train split")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    max_tokens: Annotated[int, typer.Option(min=1, help="padded encoder tokens per batch")] = 8192,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    threshold: Annotated[Optional[list[str]], typer.Option(help="TASK=P: decision threshold of a multi-label 'flags' task (as in p2t screen)")] = None,
    classical: Annotated[bool, typer.Option("--classical", help="also score a classical baseline (logistic regression on composition or a residue window) fitted on the train split; needs scikit-learn")] = False,
) -> None:
    """Score a model on labelled data through the real screening path (constrained decoding)."""
    from ..screen.run_record import parse_thresholds
    from ..train.evaluate import run_eval

    try:
        report = run_eval(model, data, split, baseline, device, max_tokens, parse_thresholds(threshold), classical)
    except P2TError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps(report, indent=2, default=float))
        return
    for task, entry in report["tasks"].items():
        at = f", threshold {entry['threshold']:.2f}" if "threshold" in entry else ""
        table = Table(title=f"{task} ({entry['kind']}{at}): {entry['examples']} {split} examples from {entry['data']}")
        table.add_column("metric")
        table.add_column("model", justify="right")
        others = [(name, entry[name]) for name in ("baseline", "classical") if name in entry]
        for name, other in others:
            table.add_column(f"{name}: {other['name']}", justify="right")
        for key, value in entry["metrics"].items():
            if key.startswith("f1["):
                continue
            table.add_row(key, _fmt(value), *(_fmt(other["metrics"].get(key)) for _, other in others))
        out.print(table)
        if "coverage" in entry:
            out.print(coverage_table(task, entry["coverage"]))


def coverage_table(task: str, coverage: dict) -> Table:
    """Coverage and size of the conformal answers at each level, overall and by domain."""
    table = Table(title=f"{task}: conformal coverage (residues for per-residue tasks)")
    for name in ("level", "coverage", "mean set size / width", "in domain: coverage", "out of domain: coverage",
                 "out of domain: proteins"):
        table.add_column(name, justify="right")
    for level, found in coverage.items():
        inside, outside = found.get("in_domain", {}), found.get("out_of_domain", {})
        table.add_row(level, _fmt(found["all"]["coverage"]), _fmt(found["all"]["mean_size"]),
                      _fmt(inside.get("coverage")), _fmt(outside.get("coverage")), str(outside.get("proteins", 0)))
    return table


@app.command("calibrate", epilog=WRITE_EXIT_CODES)
def calibrate_cmd(
    model: Annotated[str, typer.Argument(help="model directory or installed name (it gains calibration.json and domain.safetensors)")],
    data: Annotated[list[str], typer.Argument(help="TASK=FILE (CSV, TSV or Parquet with sequence, label and split columns), a file in a folder named after a task, or a training config")],
    split: Annotated[str, typer.Option(help="rows to calibrate on: auto (the 'calibration' rows, else 'valid', else every row of a file without a split column) | calibration | valid | test | all")] = "auto",
    domain: Annotated[bool, typer.Option(help="also index the files' 'train' rows as the model's applicability domain (its threshold fixed on the held-out rows)")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    max_tokens: Annotated[int, typer.Option(min=1, help="padded encoder tokens per batch")] = 8192,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Conformal calibration from labelled proteins held out from training: every answer of the
    model's screens then carries an interval or set with a stated coverage (--coverage)."""
    from ..train.conformal import run_calibrate

    if split not in ("auto", "calibration", "valid", "test", "all"):
        raise typer.BadParameter(f"split must be auto, calibration, valid, test or all, got {split!r}")
    try:
        found = run_calibrate(model, data, split, max_tokens, device, domain)
    except P2TError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps(found, indent=2, default=float))
        return
    if "domain" in found:
        d = found["domain"]
        err.print(f"domain index: {d['proteins']:,} training proteins, threshold {d['threshold']:.4f} "
                  f"(95% of {d['held_out']:,} held-out proteins pass)", highlight=False)
    for task, entry in found["tasks"].items():
        c = entry["calibration"]
        err.print(f"{task}: calibrated on {c['examples']:,} proteins ({c['source'].get('split', '?')} rows of "
                  f"{c['source'].get('file', '?')}); {c['method']}", highlight=False)
        out.print(coverage_table(task, entry["coverage_on_calibration"]))


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
