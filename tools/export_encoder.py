"""Save a trained model's encoder as a fair-esm checkpoint for the next training stage, with a
JSON summary beside it that carries every stage so far (what the model card's stage table reads).

    python tools/export_encoder.py models/local/p2t-default-stage1 examples/train_stage1.toml \
        data/encoder/p2t_default_encoder.pt

The summary (`<out>.json`) lists the stages: the encoder source's own summary first (a
pre-training summary written by `p2t pretrain`, or an earlier export's stages), then this
model's training (config, steps, epochs, seconds, best validation score).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from card_stages import recorded_stages, training_stage

from p2t_screen.model.esm_io import save_esm_checkpoint
from p2t_screen.model.store import CONFIG_FILE, load_model
from p2t_screen.train.config import load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a model directory written by p2t train")
    p.add_argument("config", type=Path, help="the training config that wrote it")
    p.add_argument("out", type=Path, help="the fair-esm checkpoint to write (.pt)")
    args = p.parse_args()
    cfg = load_config(args.config)
    training = json.loads((args.model / CONFIG_FILE).read_text()).get("training", {})
    stage = {**training_stage(training, str(args.config)), "model": str(args.model)}
    stages = [*recorded_stages(Path(cfg.encoder.source)), stage]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_esm_checkpoint(load_model(args.model, torch.device("cpu")).encoder, args.out)
    args.out.with_suffix(".json").write_text(json.dumps({"output": str(args.out), "stages": stages}, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({len(stages)} stages)")


if __name__ == "__main__":
    main()
