"""Build the bundled self-supervised model `models/p2t-selfsup-tiny` from real UniProt sequences.

The tasks are Prot2Token's self-supervised residue-position tasks (every position of S, T, Y, K,
R, N): labels come from the sequence itself, so every output can be checked. The ESM2-shaped
encoder is trained from scratch here (ESM2 weights cannot be downloaded on these machines).

    python tools/data/prepare_sequences.py              # real sequences -> data/selfsup/
    python tools/build_selfsup_model.py --minutes 25
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from p2t_screen.io.fasta import read_fasta
from p2t_screen.io.records import ReadPolicy
from p2t_screen.model.encoder import EncoderConfig
from p2t_screen.model.model import create_model
from p2t_screen.model.store import BUNDLED, load_model, save_model
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.catalog import CATALOG, SELF_SUPERVISED_RESIDUES
from p2t_screen.tasks.metrics import random_site_baseline, site_metrics
from p2t_screen.train.examples import make_example
from p2t_screen.train.steps import LRSchedule, train_steps

TASKS = [CATALOG[f"positions_{r.lower()}"] for r in SELF_SUPERVISED_RESIDUES]


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/selfsup"))
    p.add_argument("--out", type=Path, default=Path("models/p2t-selfsup-tiny"))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--examples-per-sequence", type=int, default=3)
    p.add_argument("--eval-sequences", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from metrics.json")
    return p


CARD = """# p2t-selfsup-tiny

A small p2t model trained on Prot2Token's **self-supervised residue-position tasks**: for each
task `positions_X` (X in S, T, Y, K, R, N) the decoder writes every 1-based position of residue X
in the sequence. The labels come from the sequence itself, so every output can be checked
(`make demo` does). It is p2t's working placeholder until a model trained on labelled tasks
(localisation, secondary structure, binding, ...) is bundled; it predicts nothing biological.

**How good it is, plainly:** barely better than chance. Its F1 is 0.01-0.03 above guessing
random positions (table below): it has learned roughly where residues of a type lie, not where
exactly. It exists so that p2t runs offline out of the box with trained (not random) weights
whose every answer can be checked; do not use its outputs for anything else.

## Architecture
- Encoder: fair-esm `ESM2` architecture, {layers} layers, width {width}, {heads} heads, trained
  from scratch here (ESM2 weights cannot be downloaded on these machines); max {max_res} residues.
- Decoder: Prot2Token decoder, width {dim}, {dlayers} pre-norm layers, {dheads} heads, learned
  memory positions ({mem}); {params:.2f}M parameters in all.

## Data
- {n_train} training sequences, held-out validation sequences from the same source: real
  UniProtKB sequences from Debian's `mmseqs2-examples` package ({version}; packaging licence
  GPL-3; UniProt data is distributed by UniProt under CC BY 4.0). Built by
  `python tools/data/prepare_sequences.py` (standard amino acids only, 30-1022 residues, exact and
  near-duplicates removed by shared 20-mers, split by sequence hash).
- Training examples: random windows (log-uniform length 30-1022) of each training sequence,
  {per_seq} tasks per sequence drawn at random; {examples} examples in all.

## Training
`python tools/build_selfsup_model.py --steps {steps}`: {steps} AdamW steps (peak lr 1e-3, warmup 100, cosine decay), batches of
<= 8192 padded tokens, {minutes} min on 2 CPU cores; final training loss {loss:.3f}.

## Results on {n_eval} held-out validation sequences (full length, through the screening path)
Micro precision / recall / F1 over (sequence, position) pairs, and the share of sequences whose
positions are all exactly right. Baseline: guessing as many positions as there are, uniformly
at random (expected F1 = the residue's frequency).

| task | precision | recall | F1 | exact | random-guess F1 |
|---|---|---|---|---|---|
{rows}

Reproduce: `python tools/build_selfsup_model.py --out models/p2t-selfsup-tiny` (metrics are
written to `metrics.json` beside the model).

## Limits
Trained for 27 minutes on 2 CPU cores from a random encoder: pointing at exact positions among
~1000 is not learned at this budget (precision stays near the residue's frequency, recall near
0.18). Longer training, the shared sinusoidal position initialisation now used by `p2t train`
(`p2t_screen.model.init_position_tokens`), or a pretrained ESM2 encoder are the ways up.
"""


def write_card(out: Path, metrics: dict, seq_path: Path) -> None:
    """MODEL_CARD.md from the saved config and the measured metrics."""
    doc = json.loads((out / "config.json").read_text())
    train = doc.get("training", {})
    model = load_model(out)
    rows = "\n".join(
        f"| {name} | {m['model']['precision']:.3f} | {m['model']['recall']:.3f} | {m['model']['f1']:.3f} "
        f"| {m['model']['exact']:.3f} | {m['random_baseline']['f1']:.3f} |" for name, m in metrics.items())
    prov = (seq_path / "PROVENANCE.md").read_text() if (seq_path / "PROVENANCE.md").exists() else ""
    version = next((ln.split("`")[3] for ln in prov.splitlines() if "version `" in ln), "see PROVENANCE")
    enc, dec = doc["encoder"], doc["decoder"]
    card = CARD.format(layers=enc["num_layers"], width=enc["embed_dim"], heads=enc["attention_heads"],
                       max_res=enc["max_residues"], dim=dec["dim"], dlayers=dec["num_layers"],
                       dheads=dec["num_heads"], mem=dec["memory_positions"],
                       params=sum(p.numel() for p in model.parameters()) / 1e6,
                       n_train=train.get("train_sequences"), version=version, per_seq=3,
                       examples=train.get("examples"), command=train.get("command"),
                       steps=train.get("steps"), minutes=train.get("minutes"),
                       loss=train.get("final_loss", float("nan")),
                       n_eval=next(iter(metrics.values()))["model"]["n"], rows=rows)
    (out / "MODEL_CARD.md").write_text(card)


def crop(seq: str, rng: random.Random, max_len: int) -> str:
    """A random window with log-uniform length, so short and long inputs are both seen."""
    length = min(len(seq), int(round(math.exp(rng.uniform(math.log(30), math.log(max_len))))))
    start = rng.randrange(0, len(seq) - length + 1)
    return seq[start:start + length]


def sites(seq: str, residue: str) -> list[int]:
    """1-based positions of `residue` in `seq` (the self-supervised label)."""
    return [i + 1 for i, aa in enumerate(seq) if aa == residue]


def evaluate(model, sequences: list[str]) -> dict[str, dict]:
    """Screen held-out sequences through the real screening path and score every task."""
    screener = Screener(model, TASKS)
    results: dict[str, dict] = {}
    outcomes = {t.name: [] for t in TASKS}
    for start in range(0, len(sequences), 32):
        chunk = sequences[start:start + 32]
        for name, rows in screener.predict(chunk).items():
            outcomes[name].extend(rows)
    for spec in TASKS:
        residue = spec.name[-1].upper()
        truth = [sites(s, residue) for s in sequences]
        pred = [o.sites for o in outcomes[spec.name]]
        results[spec.name] = {"model": site_metrics(truth, pred),
                              "random_baseline": random_site_baseline(sequences, truth)}
    return results


def run(args: argparse.Namespace) -> None:
    if args.card_only:
        write_card(args.out, json.loads((args.out / "metrics.json").read_text()), args.data)
        return
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    policy = ReadPolicy(on_invalid="skip", max_residues=1022)
    train_seqs = [r.used_sequence for r in read_fasta(args.data / "train.fasta", policy) if r.residues_used]
    valid_seqs = [r.used_sequence for r in read_fasta(args.data / "valid.fasta", policy) if r.residues_used]
    enc = EncoderConfig(source=BUNDLED, num_layers=4, embed_dim=128, attention_heads=8, max_residues=1022)
    model = create_model("p2t-selfsup-tiny", enc, TASKS, dim=128, num_layers=3, num_heads=4,
                         ffn_dim=512, memory_positions=1024)
    examples = []
    for seq in train_seqs:
        for spec in rng.sample(TASKS, args.examples_per_sequence):
            piece = crop(seq, rng, 1022)
            examples.append(make_example(model, spec.name, piece, sites(piece, spec.name[-1].upper())))
    schedule = LRSchedule(steps=args.steps, lr=1e-3, warmup=100)
    started = time.time()

    def log(step: int, loss: float, lr: float) -> None:
        if step % 50 == 0 or step == schedule.steps - 1:
            print(f"step {step} loss {loss:.3f} lr {lr:.2e} {time.time() - started:.0f}s", flush=True)

    losses = train_steps(model, examples, schedule, max_tokens=8192, seed=args.seed, on_step=log)
    minutes = (time.time() - started) / 60
    extra = {"provenance": json.loads((args.data / "provenance.json").read_text())
             if (args.data / "provenance.json").exists() else {},
             "training": {"steps": schedule.steps, "examples": len(examples), "train_sequences": len(train_seqs),
                          "final_loss": sum(losses[-50:]) / min(50, len(losses)), "minutes": round(minutes, 1),
                          "command": " ".join(["python", *sys.argv])}}
    save_model(model, args.out, extra)
    metrics = evaluate(load_model(args.out), valid_seqs[: args.eval_sequences])
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(args.out, metrics, args.data)
    print(json.dumps(metrics, indent=2))


def main() -> None:
    run(create_parser().parse_args())


if __name__ == "__main__":
    main()
