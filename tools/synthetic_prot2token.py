#!/usr/bin/env python3
"""Write a Prot2Token checkpoint in the published layout, with random weights, for benchmarks.

The published checkpoints cannot be downloaded here; this writes a file with their structure
(HF-ESM encoder names, Conv1d bottleneck, memory position table, post-norm decoder, a
`config.yaml` and `decoder_tokenizer.yaml`) at the sizes you choose, so `p2t import-prot2token`
and `p2t bench` can be measured on a realistically shaped model. Its predictions mean nothing.

  python tools/synthetic_prot2token.py out/stability-like           # stability decoder sizes
  p2t import-prot2token out/stability-like/checkpoint.pth --config out/stability-like/config.yaml \\
      --tokenizer out/stability-like/decoder_tokenizer.yaml -o models/synthetic-stability
  p2t bench --model models/synthetic-stability --n 60 --naive-n 10

The weights come from tests/helpers/prot2token_reference.py (a plain reimplementation of
the reference model, the tests' oracle), which knows the published tensor names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# The reference reimplementation is a test oracle, not product: it lives with the tests, not in
# the installed package, so this tool reads it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from prot2token_reference import RefProt2Token, write_published  # noqa: E402

STABILITY_VOCAB = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<task_stability>": 3,
                   **{str(d): 4 + d for d in range(10)}, ".": 14}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--esm-layers", type=int, default=6, help="ESM2 t6 8M: 6 layers, width 320")
    parser.add_argument("--esm-width", type=int, default=320)
    parser.add_argument("--esm-heads", type=int, default=20)
    parser.add_argument("--dim", type=int, default=640, help="decoder width (stability: 640)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=1280)
    parser.add_argument("--max-len", type=int, default=32, help="decoder max_len (stability: 32)")
    parser.add_argument("--encoder-max-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    ref = RefProt2Token(args.esm_layers, args.esm_width, args.esm_heads, len(STABILITY_VOCAB), args.dim,
                        args.heads, args.layers, args.ffn, args.max_len, args.encoder_max_len)
    write_published(args.output, ref, STABILITY_VOCAB, dim=args.dim, heads=args.heads, layers=args.layers,
                    ffn=args.ffn, max_len=args.max_len)
    print(f"wrote {args.output}/checkpoint.pth, config.yaml, decoder_tokenizer.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
