"""The model card's training-stage part: every stage the model's weights went through (from the
summary beside the encoder source, written by `p2t pretrain` or tools/export_encoder.py, plus
the model's own training), with its time on this project's 2-core CPU machines, and the held-out
masked-LM perplexity of the encoder as shipped."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from p2t_screen.io.fasta import read_fasta
from p2t_screen.io.records import ReadPolicy
from p2t_screen.model.store import CONFIG_FILE
from p2t_screen.train.config import load_config
from p2t_screen.train.pretrain import PretrainConfig, evaluate_mlm

HELD_OUT = Path("data/pretrain/valid.fasta")  # the pre-training corpus's held-out sequences (make encoder)


def recorded_stages(source: Path) -> list[dict]:
    """The stages recorded beside an encoder checkpoint `source` (`<source>.json`): an export's
    list (tools/export_encoder.py), or the one pre-training stage of a `p2t pretrain` summary."""
    summary = source.with_suffix(".json")
    if not summary.is_file():
        return [{"stage": "encoder source", "source": str(source), "note": f"no summary beside it ({summary})"}]
    info = json.loads(summary.read_text())
    if "stages" in info:
        return info["stages"]
    return [{"stage": "masked-LM pre-training", "command": "p2t pretrain (make encoder)", "steps": info.get("steps"),
             "seconds": info.get("seconds"), "valid": info.get("valid"), "config": info.get("config"),
             "train_sequences": info.get("train_sequences")}]


def source_stages(cfg) -> list[dict]:
    """The stages before this training: those of the model it starts from (`[encoder] init`: that
    model's own stages, read through its training config, then its training), or those recorded
    beside its encoder source (none for an encoder trained from scratch)."""
    if cfg.encoder.init:
        training = json.loads((Path(cfg.encoder.init) / CONFIG_FILE).read_text()).get("training", {})
        config = Path(training.get("config", ""))
        earlier = source_stages(load_config(config)) if config.is_file() else [
            {"stage": "model", "source": cfg.encoder.init, "note": f"its training config {config} is not here"}]
        return [*earlier, {**training_stage(training, str(config)), "model": cfg.encoder.init}]
    return [] if cfg.encoder.source == "new" else recorded_stages(Path(cfg.encoder.source))


def training_stage(training: dict, config: str) -> dict:
    """A `p2t train` run as a stage, from the training record in a model's config.json."""
    history = training.get("history", [])
    return {"stage": "p2t train", "config": str(config), "steps": training.get("steps"), "epochs": len(history),
            "seconds": sum(h.get("seconds", 0.0) for h in history),
            "best_validation_score": max((h["score"] for h in history), default=None)}


def shipped_perplexity(model) -> dict | None:
    """Masked-LM loss, perplexity and accuracy of the model's encoder (its LM head tied to the
    token embedding) on the held-out pre-training sequences, with pre-training's fixed masks."""
    if not HELD_OUT.is_file():
        return None
    policy = ReadPolicy(on_invalid="skip", max_residues=100_000)
    held_out = [r.sequence for r in read_fasta(HELD_OUT, policy) if r.residues_used]
    return evaluate_mlm(model.encoder, held_out, PretrainConfig(steps=0), torch.device("cpu"))


def _hours(seconds) -> str:
    return "not recorded" if seconds is None else f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def _held_out(stage: dict) -> str:
    if stage.get("valid"):
        v = stage["valid"]
        nan = float("nan")
        return f"masked-LM perplexity {v.get('perplexity', nan):.2f}, accuracy {v.get('accuracy', nan):.3f}"
    if stage.get("best_validation_score") is not None:
        return f"best mean validation score {stage['best_validation_score']:.3f}"
    return "-"


def stages_section(cfg, training: dict, shipped: dict | None) -> str:
    """Markdown: one row per stage (the last one this model's training), total CPU time, and the
    shipped encoder's held-out perplexity."""
    stages = [*source_stages(cfg), training_stage(training, cfg.origin)]
    rows = []
    for i, s in enumerate(stages):
        recipe = s.get("config") if isinstance(s.get("config"), str) else None  # pre-training's is a dict
        what = recipe or s.get("command") or s.get("source", "?")
        steps = f"{s['steps']} steps" if s.get("steps") else "-"
        steps += f", {s['epochs']} epochs" if s.get("epochs") else ""
        note = f" ({s['note']})" if s.get("note") else ""
        rows.append(f"| {i} | {s['stage']}: `{what}`{note} | {steps} | {_hours(s.get('seconds'))} | {_held_out(s)} |")
    known = [s["seconds"] for s in stages if s.get("seconds") is not None]
    total = (f"{sum(known) / 3600:.2f} CPU-hours (2 cores) over the stages whose time was recorded"
             + ("" if len(known) == len(stages) else f"; {len(stages) - len(known)} not recorded"))
    ppl = "" if shipped is None else (
        f"\nThe encoder as shipped, on the {shipped['residues']:,} masked residues of the held-out "
        f"pre-training sequences (`{HELD_OUT}`, the same fixed masks as stage 0's figure): masked-LM "
        f"perplexity {shipped['perplexity']:.2f}, accuracy {shipped['accuracy']:.3f} (20 equally likely "
        "amino acids: 20 and 0.05). Its LM head (tied to the token embedding) is not trained after "
        "stage 0, so once fine-tuning has moved the representations this measures how far they moved "
        "from what the head reads, not what they hold for the tasks; stage 0's figure is the "
        "encoder's as a language model.\n")
    return f"""
## Training stages
Each stage starts from the weights the one before it wrote; `make default-model` runs them all.

| stage | what | length | training time on 2 CPU cores (to the epoch kept) | held-out |
|---|---|---|---|---|
{chr(10).join(rows)}

In all: {total}.
{ppl}"""
