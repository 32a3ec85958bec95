"""Write MODEL_CARD.md for a model trained by `p2t train`: data, splits, test metrics, baselines.

Test metrics come from `p2t eval` (the screening path) on each task's held-out test split; the
baselines, fitted on the train split, are the trivial ones of `p2t_screen.train.evaluate.baseline`
and the classical ones of `p2t_screen.train.classical` (scikit-learn: `pip install -e ".[dev]"`).

    python tools/model_card.py examples/train.toml models/p2t-default
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from card_calibration import calibration_section, measure_task, number
from card_stages import shipped_perplexity, source_stages, stages_section
from card_verdicts import MARGIN, aux_section, task_rows, withdraw_failing

from p2t_screen.model.store import load_model
from p2t_screen.tasks.kind import KINDS
from p2t_screen.train.calibration import calibrate_model
from p2t_screen.train.classical import MAX_WINDOW_ROWS
from p2t_screen.train.config import load_config
from p2t_screen.train.evaluate import baseline, classical
from p2t_screen.train.run import load_labelled, spread
from p2t_screen.train.thresholds import withdrawn_specs

POOR_ECE = 0.02  # validation ECE at T = 1 above which a temperature is fitted


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--max-test", type=int, default=1000, help="test examples per task (first N)")
    p.add_argument("--calibrate", action="store_true",
                   help="first fit each offered task's temperature on validation and store it in the model")
    p.add_argument("--calibration-valid", type=int, default=100,
                   help="validation examples per task the temperature is fitted on (evenly spaced)")
    p.add_argument("--poor-ece", type=float, default=POOR_ECE,
                   help="fit a temperature only where the validation ECE at T = 1 is above this")
    p.add_argument("--no-calibrate", action="append", default=[], metavar="TASK",
                   help="leave this task's temperature as it is (repeatable)")
    p.add_argument("--withdraw", action="store_true",
                   help=f"after measuring, stop offering every task that does not beat both baselines by "
                        f"more than {MARGIN} (its spec leaves the saved model; the card lists it as not offered)")
    return p



def measure(cfg, model, max_test: int, withdrawn: dict) -> dict:
    """Test metrics and baseline metrics for every task of the config. A task the saved model does
    not offer (auxiliary in the config, or `withdrawn`: name -> its spec when it was taken out) is
    scored with its spec put back for the measurement only."""
    out = {}
    for entry in cfg.tasks:
        data = load_labelled(cfg, entry)
        test = spread(data["test"], max_test)
        offered = model.config
        absent = entry.auxiliary or entry.spec.name in withdrawn
        spec = (withdrawn.get(entry.spec.name, entry.spec) if absent else offered.task(entry.spec.name))
        if absent:
            model.config = replace(offered, tasks=(*offered.tasks, spec))
        try:
            metrics, calibrated = measure_task(model, spec, test)
        finally:
            model.config = offered
        name, base = baseline(spec, data["train"], test)
        found = classical(spec, data["train"], data["valid"], test)
        out[spec.name] = {"kind": spec.kind, "test_examples": len(test), "model": metrics,
                          "baseline": {"name": name, "metrics": base}, "auxiliary": entry.auxiliary,
                          "withdrawn": entry.spec.name in withdrawn,
                          "classical": None if found is None else {"name": found[0], "metrics": found[1]},
                          "calibration": calibrated, "counts": {k: len(v) for k, v in data.items()}}
        print(spec.name, {k: number(out[spec.name]["model"].get(k)) for k in spec.task_kind.report_metrics}, flush=True)
    return out


def provenance(cfg) -> list[str]:
    """One line per data source, from each task folder's PROVENANCE.json."""
    lines = []
    for entry in cfg.tasks:
        if entry.source is None:
            fasta, residue = entry.self_supervised
            fasta = fasta.relative_to(Path.cwd()) if fasta.is_absolute() and fasta.is_relative_to(Path.cwd()) else fasta
            lines.append(f"| {entry.spec.name} | positions of {residue} in real UniProt sequences "
                         f"(`{fasta}`, Debian mmseqs2-examples) | labels from the sequence | "
                         "split by sequence hash (90/5/5 after 20-mer near-duplicate removal) |")
            continue
        prov_file = entry.source.path.parent / "PROVENANCE.json"
        prov = json.loads(prov_file.read_text()) if prov_file.exists() else {}
        src = prov.get("source", {})
        where = (f"{src.get('package', '?')} {src.get('version', '')}".strip()
                 if isinstance(src, dict) else str(src))
        lines.append(f"| {entry.spec.name} | {where} | {prov.get('licence', '?')} | "
                     f"{prov.get('split_method', '?')} |")
    return lines


def pretrain_line(cfg) -> str:
    """How the encoder started: from earlier stages here (table below) or from scratch."""
    stages = source_stages(cfg)
    if not stages:
        return "the encoder was trained from scratch together with the decoder."
    return (f"the encoder went through {len(stages)} earlier stage{'s' if len(stages) > 1 else ''} here "
            f"(masked-LM pre-training first; see Training stages), then was fine-tuned with the decoder.")


OPTIONS = {"residue_skip": "per-residue inputs add their residue's memory row",
           "site_pointer": "site logits read each candidate residue's memory row",
           "pooled_memory": "class and multi-label inputs add the mean memory row",
           "task_every_step": "every input adds the task token's embedding",
           "memory_window": "each memory row adds a learned mix of the rows in a window around it"}


def feedback_text(dec: dict) -> str:
    return ("; per-residue tasks do not read their previous labels (`residue_feedback = false`)"
            if dec.get("residue_feedback") is False else "")


def options(dec: dict) -> str:
    on = [f"`{k}` ({text})" for k, text in OPTIONS.items() if dec.get(k)]
    return ("; ".join(on) if on else "none") + feedback_text(dec)


def thresholds_text(found: dict) -> str:
    """One line per task whose decision threshold was tuned on validation after training."""
    lines = []
    for task, info in found.items():
        scores = info["validation"]
        lines.append(f"Decision threshold of `{task}` (`encoding = \"flags\"`, `tune_threshold`): "
                     f"{info['threshold']:.2f}, the best validation {info['metric']} "
                     f"({scores[str(info['threshold'])]:.3f} on {info['examples']} examples; "
                     f"{scores.get('0.5', float('nan')):.3f} at 0.5).\n")
    return "".join(lines)


def write_card(cfg, model_dir: Path, results: dict, max_test: int, command: str, poor_ece: float = POOR_ECE) -> None:
    doc = json.loads((model_dir / "config.json").read_text())
    training = doc.get("training", {})
    history = training.get("history", [])
    enc, dec = doc["encoder"], doc["decoder"]
    model = load_model(model_dir)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rows, aux_rows, verdicts = task_rows(results)
    minutes = sum(h["seconds"] for h in history) / 60
    card = f"""# {doc['name']}

p2t's bundled default model: one ESM2-architecture encoder and one Prot2Token decoder for
{len(rows)} tasks, trained on this project's 2-core CPU machines from real public data
(`make default-model` rebuilds it from scratch).
It is small and briefly trained: it runs offline out of the box and its predictions carry
real signal on some tasks, but it is far from what a pretrained ESM2-650M Prot2Token model
reaches. Read the table before trusting a column.

## Architecture
- Encoder: fair-esm `ESM2` architecture, {enc['num_layers']} layers, width {enc['embed_dim']},
  {enc['attention_heads']} heads, max {enc['max_residues']} residues. ESM2 weights cannot be
  downloaded on the machines that built it: {pretrain_line(cfg)}
- Decoder: width {dec['dim']}, {dec['num_layers']} {'pre' if dec['norm_first'] else 'post'}-norm layers,
  {dec['num_heads']} heads, learned memory positions; {params:.2f}M parameters in all.
  Decoder options (`p2t train` config `[decoder]`): {options(dec)}.
  Loss: {'the mean over examples of each example' + "'s mean token loss" if cfg.train.loss == 'example' else 'the mean over output tokens'}.

## Data (all public; built by `make data`)
| task | source | licence | how near-identical sequences were kept apart |
|---|---|---|---|
{chr(10).join(provenance(cfg))}

Split sizes (train / valid / test): {'; '.join(f"{t} {r['counts']['train']}/{r['counts']['valid']}/{r['counts']['test']}" for t, r in results.items())}.
The binding set excludes every protein of the SCL2205 test split (accession and exact sequence).
SCL2205's official splits are used as published; its provenance notes that 255 of its 2,631
test proteins have a training protein at >= 30% identity (106 at >= 90%).

## Training
`p2t train {cfg.origin}`: {training.get('steps')} steps, {len(history)} epochs, about {minutes:.0f} min of
training on 2 CPU cores; the epoch with the best mean validation score (the primary metric, averaged
over the tasks the model offers; auxiliary tasks do not choose it) is kept.
Validation score by epoch: {', '.join(f"{h['score']:.3f}" for h in history)}.
{thresholds_text(training.get('thresholds', {}))}{stages_section(cfg, training, shipped_perplexity(model))}
## Test metrics
Reproduce: `{command}` (at most {max_test} test examples per task, evenly spaced over the split; here {'every test split is scored whole' if all(r['test_examples'] == r['counts']['test'] for r in results.values()) else 'some splits are sampled'}; `p2t eval {model_dir} {cfg.origin} --split test` prints the same metrics).
Each task is compared, on its primary metric ({', '.join(f'{k}: {v.primary_metric}' for k, v in KINDS.items())}),
with two baselines fitted on its training split and scored on the same test examples with the
same metric code: a trivial one (majority class, label frequencies, per-amino-acid rule, random
sites, train mean) and a classical one (`p2t_screen/train/classical.py`, scikit-learn): per-residue
tasks a logistic regression on a one-hot window of +-7 residues (GOR-like; at most
{MAX_WINDOW_ROWS:,} training residues, drawn at random with a fixed seed), sites the same window model
over the candidate residues with a threshold tuned on validation, class and multi-label tasks a
logistic regression on amino-acid + dipeptide composition + log length (one-vs-rest with one
threshold tuned on validation for multi-label), regression a ridge regression on the same features.
The margin is the model's primary metric minus the better baseline's; "yes" when it is more than
{MARGIN}, "**no**" otherwise (below both, or within {MARGIN}).
Summary: {'; '.join(f"{k}: {', '.join(v)}" for k, v in verdicts.items())}.

| task | kind | test n | model | trivial baseline | classical baseline | margin | beats both |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{aux_section(aux_rows, results)}{calibration_section(results, training.get('temperatures', {}), poor_ece)}
## Limits
- A small encoder trained on 2 CPU cores for a few hours in all (see Training stages): use it to
  try p2t and for rough triage, not for decisions. Where a row says **no**, the model does not
  clearly beat both baselines: a logistic regression on sequence composition or a residue window
  does as well or better, so do not use that column (a card made with `--withdraw` offers no
  such task).
- `binding` labels come from 2014 GO annotations including electronic ones (noisy); a protein
  without a label only lacks such an annotation.
- Sequences longer than 1022 residues are truncated (the first 1022 are used).
"""
    (model_dir / "MODEL_CARD.md").write_text(card)
    (model_dir / "test_metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")


def calibrate(cfg, model_dir: Path, per_task: int, skip: list[str], poor_ece: float) -> None:
    """Fit and store the temperature of every offered task but `skip` on (at most `per_task`)
    validation examples, where its validation ECE at T = 1 is above `poor_ece`."""
    valid = {e.spec.name: spread(load_labelled(cfg, e)["valid"], per_task) for e in cfg.tasks
             if not e.auxiliary and e.spec.name not in skip}
    def show(task: str, fit: dict) -> None:
        print(task, f"temperature {fit['temperature']:.3f}, validation ECE "
              f"{fit['validation_before']['ece']:.3f} -> {fit['validation_after']['ece']:.3f}", flush=True)

    calibrate_model(model_dir, valid, progress=show, poor_ece=poor_ece)


def run(args: argparse.Namespace) -> None:
    cfg = load_config(args.config)
    if args.calibrate:
        calibrate(cfg, args.model, args.calibration_valid, args.no_calibrate, args.poor_ece)
    model = load_model(args.model)
    command = shlex.join(["python", "tools/model_card.py", *sys.argv[1:]])
    results = measure(cfg, model, args.max_test, withdrawn_specs(args.model))
    if args.withdraw:
        withdraw_failing(args.model, results)
    write_card(cfg, args.model, results, args.max_test, command, args.poor_ece)


def main() -> None:
    run(create_parser().parse_args())


if __name__ == "__main__":
    main()
