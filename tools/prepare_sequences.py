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
  python tools/prepare_sequences.py
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from Bio import SeqIO

PACKAGE = "mmseqs2-examples"
EXAMPLE_DATA = Path("usr/share/doc/mmseqs2/example-data")
COPYRIGHT_FILE = Path(f"usr/share/doc/{PACKAGE}/copyright")
SOURCE_FILES = ("DB.fasta.gz", "QUERY.fasta.gz")
STANDARD_AA = frozenset("ACDEFGHIKLMNPQRSTVWY")
SPLITS = ("train", "valid", "heldout")
LINE_WIDTH = 60
REPO_ROOT = Path(__file__).resolve().parent.parent


class PrepareError(Exception):
    """A user-facing failure reported without a traceback."""


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


def run_command(cmd: Sequence[str], cwd: Path | None = None) -> str:
    """Run a command and return stdout, raising PrepareError on failure."""
    try:
        done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise PrepareError(f"command not found: {cmd[0]} ({exc})") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        tail = detail[-1] if detail else f"exit status {done.returncode}"
        raise PrepareError(f"`{' '.join(cmd)}` failed: {tail}")
    return done.stdout


def find_deb(cache_dir: Path) -> Path | None:
    """Return the newest cached .deb of the package, if any."""
    debs = sorted(cache_dir.glob(f"{PACKAGE}_*.deb"))
    return debs[-1] if debs else None


def download_deb(cache_dir: Path) -> Path:
    """Download the package's .deb into cache_dir with apt-get (no install)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        run_command(["apt-get", "download", PACKAGE], cwd=cache_dir)
    except PrepareError as exc:
        raise PrepareError(
            f"could not fetch the Debian package '{PACKAGE}' with apt-get "
            f"({exc}). Run `apt-get update` and check that a Debian mirror is reachable."
        ) from None
    deb = find_deb(cache_dir)
    if deb is None:
        raise PrepareError(
            f"could not fetch the Debian package '{PACKAGE}': no .deb in {cache_dir}"
        )
    return deb


def extract_deb(deb: Path, dest: Path) -> Path:
    """Extract the .deb into dest unless its FASTA files are already there."""
    if all((dest / EXAMPLE_DATA / name).is_file() for name in SOURCE_FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    run_command(["dpkg", "-x", str(deb), str(dest)])
    missing = [n for n in SOURCE_FILES if not (dest / EXAMPLE_DATA / n).is_file()]
    if missing:
        raise PrepareError(f"{deb.name} does not contain {', '.join(missing)} under {EXAMPLE_DATA}")
    return dest


def fetch_source(cache_dir: Path) -> Source:
    """Fetch (or reuse) and extract the package; return where it lives."""
    deb = find_deb(cache_dir) or download_deb(cache_dir)
    root = extract_deb(deb, cache_dir / "extracted")
    version = run_command(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    return Source(deb=deb, root=root, version=version)


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
    """Yield records from gzipped FASTA files with upper-cased sequences."""
    for path in paths:
        with gzip.open(path, "rt") as handle:
            for rec in SeqIO.parse(handle, "fasta"):
                yield Record(header=rec.description, seq=str(rec.seq).upper())


def is_valid(seq: str, min_len: int, max_len: int, stats: FilterStats) -> bool:
    """Check alphabet and length, counting the reason for any rejection."""
    if not seq or not set(seq) <= STANDARD_AA:
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


def write_fasta(records: Iterable[Record], path: Path) -> int:
    """Write records as FASTA wrapped at LINE_WIDTH; return the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="ascii", newline="\n") as handle:
        for rec in records:
            handle.write(f">{rec.header}\n")
            for i in range(0, len(rec.seq), LINE_WIDTH):
                handle.write(rec.seq[i : i + LINE_WIDTH] + "\n")
            count += 1
    return count


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

Generated by `tools/prepare_sequences.py`.

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


def run(args: argparse.Namespace) -> int:
    """Fetch, filter, de-duplicate, split and write everything; return exit code."""
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
    for name, recs in splits.items():
        write_fasta(recs, args.out_dir / f"{name}.fasta")
        print(format_stats(name, recs))
    licence = licence_line(source.root)
    print(f"licence: {licence or 'copyright file not found'}")
    provenance = args.out_dir / "PROVENANCE.md"
    text = provenance_text(source, licence, stats, splits, args)
    provenance.write_text(text, encoding="utf-8")
    print(f"wrote {provenance}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments and run, reporting failures without a traceback."""
    args = create_parser().parse_args(argv)
    try:
        return run(args)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
