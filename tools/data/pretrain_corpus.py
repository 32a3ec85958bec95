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
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from Bio import SeqIO

ROOT = Path(__file__).resolve().parents[2]


def read_fasta(path: Path) -> list[str]:
    return [str(r.seq).upper() for r in SeqIO.parse(path, "fasta")]


def write_fasta(sequences: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for seq in sequences:
            out.write(f">s{hashlib.sha256(seq.encode()).hexdigest()[:16]}\n{seq}\n")


def task_sequences(tasks_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """(train, held-out, task names) over every task table."""
    train, held, names = [], [], []
    for table in sorted(tasks_dir.glob("*/data.parquet")):
        names.append(table.parent.name)
        data = pq.read_table(table, columns=["sequence", "split"]).to_pydict()
        for seq, split in zip(data["sequence"], data["split"]):
            (train if split == "train" else held).append(seq.upper())
    return train, held, names


def homologs_of(queries: list[str], targets: list[str], min_id: float, coverage: float,
                threads: int) -> set[str]:
    """Query sequences with an MMseqs2 hit in targets at >= min_id identity."""
    if shutil.which("mmseqs") is None:
        sys.exit("mmseqs not found: apt-get install -y mmseqs2")
    with tempfile.TemporaryDirectory(prefix="p2t_corpus_") as tmp:
        work = Path(tmp)
        write_fasta(queries, work / "q.fasta")
        write_fasta(targets, work / "t.fasta")
        subprocess.run(["mmseqs", "easy-search", str(work / "q.fasta"), str(work / "t.fasta"),
                        str(work / "hits.m8"), str(work / "tmp"), "--min-seq-id", str(min_id),
                        "-c", str(coverage), "--threads", str(threads), "-v", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        hit_ids = {line.split("\t")[0] for line in (work / "hits.m8").read_text().splitlines()}
    return {q for q in queries if f"s{hashlib.sha256(q.encode()).hexdigest()[:16]}" in hit_ids}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--min-seq-id", type=float, default=0.3)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    selfsup = args.data / "selfsup"
    train, held, names = task_sequences(args.data / "tasks")
    train += read_fasta(selfsup / "train.fasta")
    valid = read_fasta(selfsup / "valid.fasta")
    held += valid + read_fasta(selfsup / "heldout.fasta")
    unique = sorted(set(train) - set(held))
    removed = homologs_of(unique, sorted(set(held)), args.min_seq_id, args.coverage, args.threads)
    corpus = [s for s in unique if s not in removed]
    out = args.data / "pretrain"
    write_fasta(corpus, out / "train.fasta")
    write_fasta(valid, out / "valid.fasta")
    version = subprocess.run(["mmseqs", "version"], capture_output=True, text=True).stdout.strip()
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
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
