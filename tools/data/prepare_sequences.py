#!/usr/bin/env python3
"""Prepare real protein sequences for self-supervised training (and the pool of the example library).

Source: the Debian package ``mmseqs2-examples`` (UniProtKB sequences shipped as
``usr/share/doc/mmseqs2/example-data/{DB,QUERY}.fasta.gz``). The package is
fetched with ``apt-get download`` (never installed) and unpacked with ``dpkg -x``.

Outputs (paths relative to the repository root by default):
  data/raw/                      cached .deb and its extracted tree
  data/selfsup/{train,valid,heldout}.fasta
  data/selfsup/PROVENANCE.md

The example library is picked from data/selfsup/heldout.fasta later, once every task table
exists, by tools/data/example_library.py (it leaves out homologs of all training data).

Run from the repository root:
  python tools/data/prepare_sequences.py
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, STANDARD_AA, PrepareError, deb_version, fasta_records, fetch_deb, script_main, write_fasta

PACKAGE = "mmseqs2-examples"
EXAMPLE_DATA = Path("usr/share/doc/mmseqs2/example-data")
COPYRIGHT_FILE = Path(f"usr/share/doc/{PACKAGE}/copyright")
SOURCE_FILES = ("DB.fasta.gz", "QUERY.fasta.gz")
STANDARD = frozenset(STANDARD_AA)
SPLITS = ("train", "valid", "heldout")
LINE_WIDTH = 60


@dataclass(frozen=True)
class Record:
    """One protein: its original FASTA header (without '>') and its sequence."""

    header: str
    seq: str


@dataclass(frozen=True)
class Source:
    """The fetched Debian package: .deb path, extraction root and version."""

    deb: Path
    root: Path
    version: str


@dataclass
class FilterStats:
    """Counts collected while filtering and de-duplicating."""

    read: int = 0
    bad_alphabet: int = 0
    bad_length: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    kept: int = 0


# --------------------------------------------------------------------------- fetch


def fetch_source(cache_dir: Path) -> Source:
    """Fetch (or reuse) the package, unpacked into cache_dir/extracted; return where it lives."""
    deb, root = fetch_deb(PACKAGE, cache_dir, "extracted", EXAMPLE_DATA / SOURCE_FILES[0])
    missing = [n for n in SOURCE_FILES if not (root / EXAMPLE_DATA / n).is_file()]
    if missing:
        raise PrepareError(f"{deb.name} does not contain {', '.join(missing)} under {EXAMPLE_DATA}")
    return Source(deb=deb, root=root, version=deb_version(deb))


def licence_line(root: Path) -> str | None:
    """Return the License line of the 'Files: *' stanza of the package copyright file."""
    path = root / COPYRIGHT_FILE
    if not path.is_file():
        return None
    first_licence = None
    for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        lines = stanza.strip().splitlines()
        licence = next((ln.strip() for ln in lines if ln.startswith("License:")), None)
        if licence is None:
            continue
        first_licence = first_licence or licence
        if any(ln.strip() == "Files: *" for ln in lines):
            return licence
    return first_licence


# --------------------------------------------------------------------------- filter


def read_records(paths: Iterable[Path]) -> Iterable[Record]:
    """Yield records from (gzipped) FASTA files with upper-cased sequences."""
    for path in paths:
        for rec in fasta_records(path):
            yield Record(header=rec.header, seq=rec.sequence)


def is_valid(seq: str, min_len: int, max_len: int, stats: FilterStats) -> bool:
    """Check alphabet and length, counting the reason for any rejection."""
    if not seq or not set(seq) <= STANDARD:
        stats.bad_alphabet += 1
        return False
    if not min_len <= len(seq) <= max_len:
        stats.bad_length += 1
        return False
    return True


def filter_records(
    records: Iterable[Record], min_len: int, max_len: int, stats: FilterStats
) -> list[Record]:
    """Keep valid sequences and drop exact duplicates (first occurrence wins)."""
    seen: set[str] = set()
    kept: list[Record] = []
    for rec in records:
        stats.read += 1
        if not is_valid(rec.seq, min_len, max_len, stats):
            continue
        if rec.seq in seen:
            stats.exact_duplicates += 1
            continue
        seen.add(rec.seq)
        kept.append(rec)
    return kept


def sample_kmers(seq: str, k: int, n: int) -> list[str]:
    """Return n evenly spaced k-mers of seq (first and last included)."""
    span = len(seq) - k
    if n == 1:
        return [seq[span // 2 : span // 2 + k]]
    return [seq[i * span // (n - 1) : i * span // (n - 1) + k] for i in range(n)]


def drop_near_duplicates(records: list[Record], k: int, n: int) -> tuple[list[Record], int]:
    """Greedy longest-first: drop a sequence if a sampled k-mer occurs in a kept one."""
    order = sorted(records, key=lambda r: (-len(r.seq), r.seq))
    probes: dict[str, list[int]] = {}
    for idx, rec in enumerate(order):
        for kmer in set(sample_kmers(rec.seq, k, n)):
            probes.setdefault(kmer, []).append(idx)
    hit = [False] * len(order)
    kept: list[Record] = []
    for idx, rec in enumerate(order):
        if hit[idx]:
            continue
        kept.append(rec)
        seq = rec.seq
        for start in range(len(seq) - k + 1):
            for other in probes.get(seq[start : start + k], ()):
                if other > idx:
                    hit[other] = True
    return kept, len(order) - len(kept)


# --------------------------------------------------------------------------- split


def split_of(seq: str, valid_pct: int, heldout_pct: int) -> str:
    """Assign a split from the sha256 of the sequence (bucket 0..99)."""
    bucket = int.from_bytes(hashlib.sha256(seq.encode("ascii")).digest()[:8], "big") % 100
    if bucket < 100 - valid_pct - heldout_pct:
        return "train"
    return "valid" if bucket < 100 - heldout_pct else "heldout"


def split_records(
    records: list[Record], valid_pct: int, heldout_pct: int
) -> dict[str, list[Record]]:
    """Partition records into train/valid/heldout, each sorted by sha256."""
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for rec in records:
        splits[split_of(rec.seq, valid_pct, heldout_pct)].append(rec)
    for recs in splits.values():
        recs.sort(key=lambda r: hashlib.sha256(r.seq.encode("ascii")).hexdigest())
    return splits


# --------------------------------------------------------------------------- output


def length_stats(records: Sequence[Record]) -> tuple[int, float, int]:
    """Return (min, median, max) sequence length."""
    lengths = [len(r.seq) for r in records]
    return min(lengths), statistics.median(lengths), max(lengths)


def format_stats(name: str, records: Sequence[Record]) -> str:
    """One summary line: split name, count and length statistics."""
    lo, med, hi = length_stats(records)
    return f"{name:<8} n={len(records):>6}  length min={lo} median={med:g} max={hi}"


def provenance_text(
    source: Source,
    licence: str | None,
    stats: FilterStats,
    splits: dict[str, list[Record]],
    args: argparse.Namespace,
) -> str:
    """Render PROVENANCE.md."""
    train_pct = 100 - args.valid_pct - args.heldout_pct
    licence_note = (
        f"The package copyright file (`/{COPYRIGHT_FILE}`) lists no separate stanza for the "
        f"example data, so it falls under the `Files: *` stanza: `{licence}`."
        if licence
        else f"The copyright file `/{COPYRIGHT_FILE}` was not found in the package."
    )
    rows = "\n".join(
        "| {} | {} | {} | {:g} | {} |".format(name, len(recs), *length_stats(recs))
        for name, recs in splits.items()
    )
    return f"""# Provenance of data/selfsup

Generated by `tools/data/prepare_sequences.py`.

## Source

- Debian package: `{PACKAGE}` version `{source.version}` (`{source.deb.name}`,
  fetched with `apt-get download`, unpacked with `dpkg -x`, not installed).
- Files: `/{EXAMPLE_DATA}/{SOURCE_FILES[0]}` and `/{EXAMPLE_DATA}/{SOURCE_FILES[1]}`
  (UniProtKB entries with their original UniProt FASTA headers, as shipped by MMseqs2).

## Licence

- {licence_note}
- The sequences and headers are UniProtKB data; UniProt distributes its data under
  Creative Commons Attribution 4.0 (https://www.uniprot.org/help/license). Attribute UniProt
  ("The UniProt Consortium") when redistributing.

## Processing rules

1. Sequences upper-cased; kept only if made solely of the 20 standard amino acids
   (`ACDEFGHIKLMNPQRSTVWY`) and {args.min_len} <= length <= {args.max_len}.
2. Exact duplicates removed (first occurrence, DB before QUERY, wins).
3. Near-duplicates removed greedily, longest first (ties by sequence): a sequence is dropped
   if any of its {args.n_kmers} evenly spaced {args.kmer}-mers (first, middle, last) occurs
   anywhere in an already kept sequence.
4. Split by the first 8 bytes of sha256(sequence) mod 100: buckets 0-{train_pct - 1} train
   (~{train_pct}%), {train_pct}-{100 - args.heldout_pct - 1} valid (~{args.valid_pct}%),
   {100 - args.heldout_pct}-99 heldout (~{args.heldout_pct}%). Records within a split are
   ordered by sha256 hex digest.
5. `examples/library.fasta` is picked from the heldout split by `tools/data/example_library.py`.
6. FASTA lines wrapped at {LINE_WIDTH} residues; headers are the original ones.

## Counts

- read: {stats.read}
- dropped, non-standard residues: {stats.bad_alphabet}
- dropped, length outside {args.min_len}..{args.max_len}: {stats.bad_length}
- dropped, exact duplicates: {stats.exact_duplicates}
- dropped, near-duplicates: {stats.near_duplicates}
- kept: {stats.kept}

| split | sequences | min len | median len | max len |
|---|---|---|---|---|
{rows}
"""


# --------------------------------------------------------------------------- CLI


def create_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "data" / "raw",
                        help="where the .deb is downloaded and extracted (default: data/raw)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "data" / "selfsup",
                        help="output directory for the splits (default: data/selfsup)")
    parser.add_argument("--min-len", type=int, default=30)
    parser.add_argument("--max-len", type=int, default=1022)
    parser.add_argument("--kmer", type=int, default=20, help="near-duplicate k-mer length")
    parser.add_argument("--n-kmers", type=int, default=3, help="sampled k-mers per sequence")
    parser.add_argument("--valid-pct", type=int, default=5)
    parser.add_argument("--heldout-pct", type=int, default=5)
    return parser


def run(args: argparse.Namespace) -> None:
    """Fetch, filter, de-duplicate, split and write everything."""
    if args.kmer > args.min_len:
        raise PrepareError("--kmer must not exceed --min-len")
    source = fetch_source(args.cache_dir)
    print(f"source: {source.deb} (version {source.version})")
    stats = FilterStats()
    records = filter_records(
        read_records(source.root / EXAMPLE_DATA / name for name in SOURCE_FILES),
        args.min_len, args.max_len, stats,
    )
    records, stats.near_duplicates = drop_near_duplicates(records, args.kmer, args.n_kmers)
    stats.kept = len(records)
    print(f"read {stats.read}; dropped {stats.bad_alphabet} non-standard, {stats.bad_length} "
          f"out-of-range length, {stats.exact_duplicates} exact duplicates, "
          f"{stats.near_duplicates} near-duplicates; kept {stats.kept}")
    splits = split_records(records, args.valid_pct, args.heldout_pct)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, recs in splits.items():
        write_fasta(args.out_dir / f"{name}.fasta", ((r.header, r.seq) for r in recs), LINE_WIDTH)
        print(format_stats(name, recs))
    licence = licence_line(source.root)
    print(f"licence: {licence or 'copyright file not found'}")
    provenance = args.out_dir / "PROVENANCE.md"
    text = provenance_text(source, licence, stats, splits, args)
    provenance.write_text(text, encoding="utf-8")
    print(f"wrote {provenance}")


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run))
