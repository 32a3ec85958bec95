#!/usr/bin/env python3
"""Build the masked-LM pre-training corpus of the default model's encoder.

Corpus = the training splits of every task under data/tasks/ plus data/selfsup/train.fasta,
exact duplicates removed, then every sequence with a hit at >= 30% identity (MMseqs2
easy-search, coverage >= 50%) in ANY held-out set (valid/test rows of every task,
data/selfsup/{valid,heldout}.fasta, which the example library comes from) removed, so the
encoder never sees a close homolog of a protein it is later scored on.

Outputs:
  data/pretrain/train.fasta      the corpus
  data/pretrain/valid.fasta      held-out sequences for masked-LM loss (data/selfsup/valid.fasta)
  data/pretrain/PROVENANCE.json  counts, command, MMseqs2 version

Run from the repository root after the other tools/data scripts:
  python tools/data/pretrain_corpus.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import REPO_ROOT, fasta_sequences, homologs_of, run_process, script_main, task_sequences, write_sequences


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--min-seq-id", type=float, default=0.3)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build and write the corpus and its held-out set; return the provenance."""
    selfsup = args.data / "selfsup"
    train, held, names = task_sequences(args.data / "tasks")
    train += fasta_sequences(selfsup / "train.fasta")
    valid = fasta_sequences(selfsup / "valid.fasta")
    held += valid + fasta_sequences(selfsup / "heldout.fasta")
    unique = sorted(set(train) - set(held))
    removed = homologs_of(unique, sorted(set(held)), args.min_seq_id, args.coverage, args.threads)
    corpus = [s for s in unique if s not in removed]
    out = args.data / "pretrain"
    write_sequences(out / "train.fasta", corpus)
    write_sequences(out / "valid.fasta", valid)
    version = run_process(["mmseqs", "version"]).stdout.strip()
    provenance = {
        "sources": [f"data/tasks/{n}/data.parquet (split == train)" for n in names]
        + ["data/selfsup/train.fasta"],
        "held_out": [f"data/tasks/{n}/data.parquet (split != train)" for n in names]
        + ["data/selfsup/valid.fasta", "data/selfsup/heldout.fasta"],
        "train_rows": len(train), "unique": len(unique), "removed_homologs_of_held_out": len(removed),
        "corpus": len(corpus), "corpus_residues": sum(map(len, corpus)), "valid": len(valid),
        "filter": f"MMseqs2 {version} easy-search --min-seq-id {args.min_seq_id} -c {args.coverage}",
    }
    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, lambda provenance: print(json.dumps(provenance, indent=2))))
