#!/usr/bin/env python3
"""Pick the example library (`examples/library.fasta`): held-out proteins that share no close
homolog with anything the default model is trained on.

Pool: data/selfsup/heldout.fasta (UniProtKB sequences that no training split contains, from
tools/data/prepare_sequences.py). Every pool sequence with an MMseqs2 hit at >= 30% identity
(coverage >= 50%) in a training split of any task under data/tasks/ or in
data/selfsup/train.fasta is left out; from the rest, `--size` sequences with lengths in
[--min-len, --max-len] are picked at evenly spaced ranks of (length, sha256), so the library
spans short to long proteins. Headers are the original UniProt ones.

Outputs: examples/library.fasta and examples/LIBRARY.md (how it was made, with counts).
Run from the repository root after the other tools/data scripts:
  python tools/data/example_library.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import (
    REPO_ROOT,
    PrepareError,
    fasta_records,
    fasta_sequences,
    homologs_of,
    run_process,
    script_main,
    sha_key,
    task_sequences,
    write_fasta,
)

LINE_WIDTH = 60


def pick(pool: list[tuple[str, str]], size: int, min_len: int, max_len: int) -> list[tuple[str, str]]:
    """`size` (header, sequence) pairs at evenly spaced ranks of (length, sha256)."""
    ranked = sorted((r for r in pool if min_len <= len(r[1]) <= max_len),
                    key=lambda r: (len(r[1]), sha_key(r[1])))
    if len(ranked) < size:
        raise PrepareError(f"only {len(ranked)} held-out sequences without training homologs in "
                           f"{min_len}..{max_len}; need {size}")
    return [ranked[round(i * (len(ranked) - 1) / max(size - 1, 1))] for i in range(size)]


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "examples" / "library.fasta")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--min-len", type=int, default=40)
    parser.add_argument("--max-len", type=int, default=1000)
    parser.add_argument("--min-seq-id", type=float, default=0.3)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def run(args: argparse.Namespace) -> str:
    """Pick the library, write it and LIBRARY.md; return a one-line summary."""
    pool = [(r.header, r.sequence) for r in fasta_records(args.data / "selfsup" / "heldout.fasta")]
    train, _, names = task_sequences(args.data / "tasks")
    train = sorted(set(train + fasta_sequences(args.data / "selfsup" / "train.fasta")))
    near = homologs_of(sorted({s for _, s in pool}), train, args.min_seq_id, args.coverage, args.threads)
    library = pick([r for r in pool if r[1] not in near], args.size, args.min_len, args.max_len)
    write_fasta(args.out, library, LINE_WIDTH)
    version = run_process(["mmseqs", "version"]).stdout.strip()
    lengths = sorted(len(s) for _, s in library)
    (args.out.parent / "LIBRARY.md").write_text(f"""# examples/library.fasta

{len(library)} real UniProtKB proteins ({lengths[0]}..{lengths[-1]} residues, median
{lengths[len(lengths) // 2]}), written by `python tools/data/example_library.py` (part of `make data`).

- Pool: the {len(pool)} sequences of `data/selfsup/heldout.fasta` (MMseqs2's example data,
  Debian `mmseqs2-examples`; UniProt data, CC BY 4.0), which no training split contains.
- Left out: {len(near)} pool sequences with an MMseqs2 {version} easy-search hit at
  >= {args.min_seq_id:.0%} identity and >= {args.coverage:.0%} coverage in any training
  sequence: the train splits of {', '.join(names)}, and `data/selfsup/train.fasta`
  ({len(train)} distinct sequences in all). The encoder's pre-training corpus leaves out
  homologs of the whole pool as well (`tools/data/pretrain_corpus.py`).
- Picked: {len(library)} of the rest with {args.min_len} <= length <= {args.max_len}, at evenly
  spaced ranks of (length, sha256(sequence)).
""")
    return f"{len(pool)} held out, {len(near)} with training homologs left out; {len(library)} written to {args.out}"


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, print))
