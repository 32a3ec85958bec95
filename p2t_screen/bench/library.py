"""The benches' generated libraries: random proteins of natural amino-acid composition."""

from __future__ import annotations

import random
from pathlib import Path

# Amino-acid background frequencies (UniProtKB/Swiss-Prot release statistics, percent).
AA_FREQ = {"A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07,
           "H": 2.27, "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56,
           "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87}


def generate_library(path: Path, n: int, lo: int, hi: int, seed: int) -> list[str]:
    """Write `n` random sequences (lengths uniform in [lo, hi], natural composition)."""
    rng = random.Random(seed)
    letters, weights = zip(*AA_FREQ.items())
    seqs = ["".join(rng.choices(letters, weights, k=rng.randint(lo, hi))) for _ in range(n)]
    path.write_text("".join(f">bench{i}\n{s}\n" for i, s in enumerate(seqs)))
    return seqs
