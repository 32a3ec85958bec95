#!/usr/bin/env python3
"""Pick the example library (`examples/library.fasta`): held-out proteins that share no close
homolog with anything the default model is trained on.

Pool: data/selfsup/heldout.fasta (UniProtKB sequences that no training split contains, from
tools/prepare_sequences.py). Every pool sequence with an MMseqs2 hit at >= 30% identity
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

from Bio import SeqIO
from common import REPO_ROOT, homologs_of, read_fasta, run_process, sha_key, task_sequences

LINE_WIDTH = 60


def pick(pool: list[tuple[str, str]], size: int, min_len: int, max_len: int) -> list[tuple[str, str]]:
    """`size` (header, sequence) pairs at evenly spaced ranks of (length, sha256)."""
    ranked = sorted((r for r in pool if min_len <= len(r[1]) <= max_len),
                    key=lambda r: (len(r[1]), sha_key(r[1])))
    if len(ranked) < size:
        sys.exit(f"only {len(ranked)} held-out sequences without training homologs in "
                 f"{min_len}..{max_len}; need {size}")
    return [ranked[round(i * (len(ranked) - 1) / max(size - 1, 1))] for i in range(size)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "examples" / "library.fasta")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--min-len", type=int, default=40)
    parser.add_argument("--max-len", type=int, default=1000)
    parser.add_argument("--min-seq-id", type=float, default=0.3)
    parser.add_argument("--coverage", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    pool = [(r.description, str(r.seq).upper())
            for r in SeqIO.parse(args.data / "selfsup" / "heldout.fasta", "fasta")]
    train, _, names = task_sequences(args.data / "tasks")
    train = sorted(set(train + read_fasta(args.data / "selfsup" / "train.fasta")))
    near = homologs_of(sorted({s for _, s in pool}), train, args.min_seq_id, args.coverage, args.threads)
    library = pick([r for r in pool if r[1] not in near], args.size, args.min_len, args.max_len)
    with args.out.open("w") as out:
        for header, seq in library:
            out.write(f">{header}\n" + "".join(seq[i:i + LINE_WIDTH] + "\n"
                                                for i in range(0, len(seq), LINE_WIDTH)))
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
    print(f"{len(pool)} held out, {len(near)} with training homologs left out; "
          f"{len(library)} written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
