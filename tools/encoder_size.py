#!/usr/bin/env python3
"""Encoder size by measured gain per CPU-hour: masked-LM pre-training of each encoder shape for the
same training time on this machine, with the held-out loss measured along the way.

Each shape trains `--minutes` minutes of training time (the time `p2t pretrain` records; the
held-out measurements are not counted) on data/pretrain/train.fasta, with a schedule sized from a
short speed probe so that warm-up and decay fit the budget; every `--every` minutes the run pauses
(p2t pretrain's resumable stages), the saved weights are scored on the held-out sequences
(data/pretrain/valid.fasta, fixed masks, the figure the model card reports) and the run goes on.
Also measured: training residues/s and screening residues/s (encoder forward alone, no gradient).
The gain per CPU-hour is the drop in held-out loss (nats per masked residue) from the first
measurement to the last, divided by the CPU-hours between them.

    python tools/encoder_size.py [--minutes 10] [--every 2.5] [--shapes 4x128 6x320] [--out docs/bench/encoder_size]

Writes RESULT.md and result.json under --out. Build the corpus first: make data, then
python tools/data/pretrain_corpus.py.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from p2t_screen.io.fasta import read_fasta
from p2t_screen.io.records import ReadPolicy
from p2t_screen.model.encoder import EncoderConfig, esm2_forward, tokenize
from p2t_screen.screen.batching import token_budget_batches
from p2t_screen.train.pretrain import PretrainConfig, evaluate_mlm, pretrain
from p2t_screen.train.state import load_state

# name -> (layers, width, heads, peak learning rate): the default model's shape and ESM2-8M's.
SHAPES = {"4x128": (4, 128, 8, 1e-3), "6x320": (6, 320, 20, 5e-4)}
LABELS = {"4x128": "4x128 (p2t-default)", "6x320": "6x320 (ESM2-8M)"}
MAX_TOKENS = 8192
PROBE_STEPS = 6


def sequences(path: Path) -> list[str]:
    """Every usable sequence of a FASTA file, whole, as `p2t pretrain` reads it."""
    policy = ReadPolicy(on_invalid="skip", max_residues=100_000)
    return [r.sequence for r in read_fasta(path, policy) if r.residues_used]


def config(shape: tuple[int, int, int, float], steps: int) -> PretrainConfig:
    layers, width, heads, lr = shape
    return PretrainConfig(steps=steps, num_layers=layers, embed_dim=width, attention_heads=heads,
                          max_tokens=MAX_TOKENS, lr=lr, warmup=max(1, steps // 10), checkpoint_every=10**9)


def probe_seconds_per_step(shape: tuple[int, int, int, float], train: list[str], work: Path) -> float:
    """Training seconds per step over PROBE_STEPS steps (the first one, which warms up, left out)."""
    marks: list[float] = []
    pretrain(train, [], config(shape, PROBE_STEPS), work / "probe.pt", torch.device("cpu"), fresh=True,
             on_event=lambda event, data: marks.append(time.perf_counter()) if event == "step" else None)
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def held_out(shape: tuple[int, int, int, float], cfg: PretrainConfig, state: Path, train: list[str],
             valid: list[str]) -> dict[str, float]:
    """Masked-LM metrics of the weights a paused run saved."""
    layers, width, heads, _ = shape
    encoder = EncoderConfig("new", layers, width, heads).build()
    encoder.load_state_dict(load_state(state, cfg.fingerprint(train), "is not this run's")["model"])
    return evaluate_mlm(encoder, valid, cfg, torch.device("cpu"))


@torch.no_grad()
def screening_speed(shape: tuple[int, int, int, float], valid: list[str]) -> float:
    """Encoder-forward residues/s over the held-out sequences in length-sorted batches."""
    layers, width, heads, _ = shape
    encoder = EncoderConfig("new", layers, width, heads).build().eval()
    batches = list(token_budget_batches([s[:1022] for s in valid], len, MAX_TOKENS))
    tokens = 0
    started = time.perf_counter()
    for batch in batches:
        esm2_forward(encoder, tokenize(batch))
        tokens += sum(map(len, batch))
    return tokens / (time.perf_counter() - started)


def study(name: str, train: list[str], valid: list[str], minutes: float, every: float, work: Path) -> dict:
    """One shape: probe, then train in stages of `every` minutes, scoring the held-out set after each."""
    shape = SHAPES[name]
    per_step = probe_seconds_per_step(shape, train, work)
    cfg = config(shape, max(10, int(minutes * 60 / per_step)))
    output, points, speed = work / f"{name}.pt", [], {}
    while True:
        deadline = time.perf_counter() + every * 60
        summary = pretrain(train, valid, cfg, output, torch.device("cpu"),
                           on_event=lambda event, data: speed.update(data) if event == "step" else None,
                           stage_over=lambda step, deadline=deadline: time.perf_counter() > deadline)
        if "paused_at" not in summary:
            points.append({"step": summary["steps"], "seconds": summary["seconds"], **summary["valid"]})
            break
        metrics = held_out(shape, cfg, Path(summary["state"]), train, valid)
        points.append({"step": summary["paused_at"], "seconds": summary["seconds"], **metrics})
        print(f"{LABELS.get(name, name)}: step {points[-1]['step']}/{cfg.steps}, {points[-1]['seconds'] / 60:.1f} min, "
              f"held-out loss {metrics['loss']:.3f}", flush=True)
    layers, width, heads, lr = shape
    params = sum(p.numel() for p in EncoderConfig("new", layers, width, heads).build().parameters())
    first, last = points[0], points[-1]
    hours = (last["seconds"] - first["seconds"]) / 3600
    return {"shape": LABELS.get(name, name), "layers": layers, "width": width, "heads": heads, "lr": lr, "parameters": params,
            "steps": cfg.steps, "train_seconds_per_step": per_step,
            "train_residues_per_s": speed["residues_per_s"], "screen_residues_per_s": screening_speed(shape, valid),
            "points": points,
            "loss_drop_per_cpu_hour": (first["loss"] - last["loss"]) / hours if hours > 0 else math.nan}


def report(results: list[dict], minutes: float) -> str:
    """RESULT.md: the shapes side by side, then each one's held-out loss along its run."""
    lines = [f"# Encoder size: held-out masked-LM loss per training time ({minutes:g} min each, 2 CPU cores)", "",
             ("`python tools/encoder_size.py` (see its docstring). Loss in nats per masked residue on "
              "data/pretrain/valid.fasta with fixed masks; perplexity = exp(loss)."), "",
             ("| shape | parameters | peak lr | steps | train residues/s | screen residues/s | held-out loss "
              "(perplexity) at the end | loss drop per hour |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        end = r["points"][-1]
        lines.append(f"| {r['shape']} | {r['parameters'] / 1e6:.2f}M | {r['lr']:g} | {r['steps']} | "
                     f"{r['train_residues_per_s']:,.0f} | {r['screen_residues_per_s']:,.0f} | "
                     f"{end['loss']:.3f} ({end['perplexity']:.2f}) | {r['loss_drop_per_cpu_hour']:.3f} |")
    best = min(results, key=lambda r: r["points"][-1]["loss"])
    fast = max(results, key=lambda r: r["screen_residues_per_s"])
    slowest = min(r["screen_residues_per_s"] for r in results)
    lines += ["", (f"Lowest held-out loss after {minutes:g} min: **{best['shape']}**. Fastest to screen with: "
                   f"**{fast['shape']}** ({fast['screen_residues_per_s'] / slowest:.1f}x the slowest)."),
              "", "## Along each run", "", "| shape | step | training minutes | held-out loss | perplexity | accuracy |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for p in r["points"]:
            lines.append(f"| {r['shape']} | {p['step']} | {p['seconds'] / 60:.1f} | {p['loss']:.3f} | "
                         f"{p['perplexity']:.2f} | {p['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per shape")
    parser.add_argument("--every", type=float, default=2.5, help="minutes between held-out measurements")
    parser.add_argument("--train", type=Path, default=Path("data/pretrain/train.fasta"))
    parser.add_argument("--valid", type=Path, default=Path("data/pretrain/valid.fasta"))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", type=Path, default=Path("docs/bench/encoder_size"))
    args = parser.parse_args()
    train, valid = sequences(args.train), sequences(args.valid)
    with tempfile.TemporaryDirectory() as tmp:
        results = [study(name, train, valid, args.minutes, args.every, Path(tmp)) for name in args.shapes]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULT.md").write_text(report(results, args.minutes))
    print(report(results, args.minutes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
