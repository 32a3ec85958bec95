"""Training speed, side by side: a fully trained encoder, a frozen one, and a frozen one whose
outputs are cached per sequence (`encoder.cache`), on the same examples.

Each setting trains `--epochs` epochs over the same `--n` training proteins per task (taken from
the default recipe's data, so `make data` first) and prints sequences/s per epoch. The cache
fills during the first epoch, so its effect shows from the second one on.

    python tools/train_speed.py [--n 200] [--epochs 3] [--encoder data/encoder/esm2_t4_128_p2t.pt]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from p2t_screen.train.config import load_config
from p2t_screen.train.run import run_training

TASKS = {  # name -> (data, TOML lines describing the task)
    "secondary_structure": ("data/tasks/secondary_structure/data.parquet", ""),
    "localization": ("data/tasks/localization/data.parquet",
                     'kind = "class"\nlabels = {labels}\n'),
}
SETTINGS = (("full fine-tuning", "full", False), ("frozen, no cache", "frozen", False),
            ("frozen, cached", "frozen", True))


def subset(source: str, out: Path, n: int) -> list[str]:
    """The first n train and n // 10 valid rows of a task table; returns its labels."""
    table = pq.read_table(source).to_pylist()
    train = [r for r in table if r["split"] == "train"][:n]
    valid = [r for r in table if r["split"] == "valid"][: max(n // 10, 2)]
    pq.write_table(pa.Table.from_pylist(train + valid), out)
    return sorted({r["label"] for r in train + valid})


def config_text(work: Path, encoder: str, train: str, cache: bool, epochs: int, n: int) -> str:
    lines = [f'name = "speed"\noutput = "{work / "model"}"\nseed = 0\n',
             f'[encoder]\nsource = "{encoder}"\ntrain = "{train}"\ncache = {str(cache).lower()}\n',
             "[decoder]\nresidue_skip = true\n",
             f"[train]\nepochs = {epochs}\nmask_prob = 0.0\nvalid_max = 4\nwarmup = 10\n"
             f"checkpoint_every = 100000\n"]
    for name, (source, extra) in TASKS.items():
        data = work / f"{name}.parquet"
        labels = subset(source, data, n)
        lines.append(f'[[tasks]]\nname = "{name}"\ndata = "{data}"\n'
                     + extra.format(labels="[" + ", ".join(f'"{x}"' for x in labels) + "]"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="training proteins per task")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--encoder", default="data/encoder/esm2_t4_128_p2t.pt")
    args = parser.parse_args()
    rows = []
    for label, train, cache in SETTINGS:
        with tempfile.TemporaryDirectory(prefix="p2t_speed_") as tmp:
            path = Path(tmp) / "speed.toml"
            path.write_text(config_text(Path(tmp), args.encoder, train, cache, args.epochs, args.n))
            summary = run_training(load_config(path), torch.device("cpu"), fresh=True)
        rates = [h["seq_per_s"] for h in summary["history"]]
        rows.append((label, rates))
        print(f"{label:<18} " + "  ".join(f"epoch {i}: {r:6.1f} seq/s" for i, r in enumerate(rates)), flush=True)
    base = rows[0][1]
    print(f"\n{torch.get_num_threads()} threads; {args.n} proteins per task x {len(TASKS)} tasks; "
          "ratio = sequences/s against full fine-tuning, same epoch")
    for label, rates in rows:
        print(f"{label:<18} " + "  ".join(f"{r / b:5.2f}x" for r, b in zip(rates, base)))


if __name__ == "__main__":
    main()
