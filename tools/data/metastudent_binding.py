#!/usr/bin/env python3
"""Build the `binding` multilabel task (ligand classes a protein binds) from metastudent-data.

Source: the Debian package ``metastudent-data`` (516,371 Swiss-Prot proteins, January 2014,
with GO annotations from UniProt-GOA). The package is fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` (never installed). Sequences come from the MFO BLAST v4 protein
database (``goasp.fasta.{pin,psq,phr}``, parsed here with numpy), annotations from
``MFO/goasp_annot.dat``; each protein's molecular-function terms are propagated to their
ancestors over ``goGraph.txt`` (``is_a`` and ``part_of`` edges) and mapped onto eight
ligand classes (ATP, GTP, metal ion, zinc, calcium, heme, DNA, RNA).

Every accession (and every exact sequence) of the SCL2205 test split (``tst`` of the pinned
wheel ``p-scldata==2025.6.0``) is excluded so that a model trained here can be tested on it.

Outputs (relative to the repository root by default):
  data/raw/metastudent/            extracted package tree (cached)
  data/raw/wheels/                 p_scldata wheel (cached)
  data/tasks/binding/data.parquet  id, sequence, label, split
  data/tasks/binding/PROVENANCE.json

Run from the repository root:
  python tools/data/metastudent_binding.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import (
    ALLOWED,
    MAX_LEN,
    MIN_LEN,
    REPO_ROOT,
    STANDARD_AA,
    command_line,
    deb_version,
    easy_cluster,
    fetch_deb,
    fetch_wheel,
    open_wheel,
    read_member,
    require_mmseqs,
    run_command,
    script_main,
    sha256_file,
    sha_fraction,
    sha_key,
    split_for,
)
from scl2205 import CSV_PATH, ENTRIES_PATH, SPLIT_KEYS, SPLITS_PATH, read_rows, read_splits

PACKAGE = "metastudent-data"
DATA_SUBDIR = Path("usr/share/metastudent-data/dataset_201401")
DB_STEM = "goasp.fasta"
WHEEL_REQ = "p-scldata==2025.6.0"
WHEEL_PREFIX = "p_scldata-2025.6.0-"
TASK = "binding"
KIND = "multilabel"
BLAST_ALPHABET = "-ABCDEFGHIKLMNPQRSTVWXYZU*OJ"
TO_X = "UOBZJX"
MAX_X_FRAC = 0.05
GRAPH_RELATIONS = ("is_a", "part_of")
SPLIT_FRACTIONS = (("train", 0.80), ("valid", 0.05), ("test", 0.15))
# Salts keep the three sha256 draws independent: sampling takes the *lowest* sha256(accession),
# so reusing that hash for splits or caps would push the whole working set into one bucket.
SPLIT_SALT, CAP_SALT = "split:", "cap:"

# token, GO id, GO name (checked against the package's nameMapping.txt)
LABELS: tuple[tuple[str, str, str], ...] = (
    ("ATP", "GO:0005524", "ATP binding"),
    ("GTP", "GO:0005525", "GTP binding"),
    ("metal_ion", "GO:0046872", "metal ion binding"),
    ("zinc", "GO:0008270", "zinc ion binding"),
    ("calcium", "GO:0005509", "calcium ion binding"),
    ("heme", "GO:0020037", "heme binding"),
    ("DNA", "GO:0003677", "DNA binding"),
    ("RNA", "GO:0003723", "RNA binding"),
)


@dataclass(frozen=True)
class PinIndex:
    """Parsed BLAST v4 protein index (.pin)."""

    version: int
    db_type: int
    title: str
    timestamp: str
    count: int
    total_residues: int
    max_length: int
    header_offsets: np.ndarray
    sequence_offsets: np.ndarray


@dataclass(frozen=True)
class Protein:
    """One candidate protein: accession, cleaned sequence and label bitmask."""

    acc: str
    seq: str
    mask: int


@dataclass(frozen=True)
class Source:
    """The inputs as fetched: the package's dataset folder, unpacked, and the SCL2205 wheel."""

    deb: Path
    version: str
    data: Path  # DATA_SUBDIR inside the unpacked package
    wheel: Path


@dataclass(frozen=True)
class LabelTerms:
    """Which GO terms carry each label, and the checks of the GO graph they come from."""

    term_bits: dict[str, int]  # GO term -> bitmask of the labels it implies (itself or a descendant)
    relation_counts: Counter  # edges of goGraph.txt by relation
    closure_check: dict[str, dict[str, int]]  # per label term: the graph's descendants vs the closure file's


@dataclass(frozen=True)
class Excluded:
    """The SCL2205 test split, kept out of every split here."""

    accessions: set[str]
    sequences: set[str]
    split_sizes: dict[str, int]  # trn / evl / tst


@dataclass(frozen=True)
class Candidates:
    """The MFO database, read and filtered: its index, the kept proteins, label counts over all of it."""

    pin: PinIndex
    proteins: list[Protein]
    full_counts: dict[str, int]


@dataclass
class Filters:
    """Counts of what was read and dropped, in pipeline order."""

    read: int = 0
    no_annotation: int = 0
    bad_length: int = 0
    too_many_x: int = 0
    gap_or_stop: int = 0
    scl2205_test_by_accession: int = 0
    scl2205_test_by_sequence: int = 0
    exact_duplicates_collapsed: int = 0
    duplicate_groups_with_differing_labels: int = 0
    kept_unique: int = 0
    positives_available: int = 0
    negatives_available: int = 0
    sampled_positives: int = 0
    sampled_negatives: int = 0
    dropped_by_split_caps: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- fetch


def fetch_sources(raw_dir: Path) -> Source:
    """metastudent-data (~225 MB, unpacked into raw_dir/metastudent) and the SCL2205 wheel, fetched once."""
    deb, root = fetch_deb(PACKAGE, raw_dir, "metastudent", DATA_SUBDIR / "MFO" / f"{DB_STEM}.pin")
    wheel = fetch_wheel(raw_dir / "wheels", WHEEL_REQ, f"{WHEEL_PREFIX}*.whl")
    return Source(deb, deb_version(deb), root / DATA_SUBDIR, wheel)


# --------------------------------------------------------------------------- BLAST v4 parsing


def read_be_int32(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a big-endian int32 at pos; return (value, next position)."""
    return int(np.frombuffer(buf, dtype=">i4", count=1, offset=pos)[0]), pos + 4


def read_pstring(buf: bytes, pos: int) -> tuple[str, int]:
    """Read a big-endian int32 length-prefixed string (NUL padding stripped)."""
    length, pos = read_be_int32(buf, pos)
    assert 0 <= length < 4096, f"implausible string length {length} at {pos - 4}"
    return buf[pos : pos + length].rstrip(b"\x00").decode("ascii"), pos + length


def read_pin(path: Path) -> PinIndex:
    """Parse a BLAST v4 protein .pin index and check its internal consistency."""
    buf = path.read_bytes()
    version, pos = read_be_int32(buf, 0)
    db_type, pos = read_be_int32(buf, pos)
    assert version == 4, f"{path}: BLAST db version {version}, expected 4"
    assert db_type == 1, f"{path}: db type {db_type}, expected 1 (protein)"
    title, pos = read_pstring(buf, pos)
    timestamp, pos = read_pstring(buf, pos)
    count, pos = read_be_int32(buf, pos)
    # Surprise: the residue total is a *little-endian* int64 in an otherwise big-endian file.
    total = int(np.frombuffer(buf, dtype="<i8", count=1, offset=pos)[0])
    pos += 8
    max_length, pos = read_be_int32(buf, pos)
    offsets = np.frombuffer(buf, dtype=">i4", count=2 * (count + 1), offset=pos).astype(np.int64)
    assert pos + 8 * (count + 1) == len(buf), f"{path}: offset arrays do not end at end of file"
    hdr, seq = offsets[: count + 1], offsets[count + 1 :]
    assert hdr[0] == 0 and np.all(np.diff(hdr) > 0), f"{path}: header offsets not increasing from 0"
    assert seq[0] == 1 and np.all(np.diff(seq) > 1), f"{path}: sequence offsets not increasing from 1"
    lengths = np.diff(seq) - 1
    assert int(lengths.sum()) == total, f"{path}: residue total {total} != {int(lengths.sum())}"
    assert int(lengths.max()) == max_length, f"{path}: max length {max_length} != {int(lengths.max())}"
    return PinIndex(version, db_type, title, timestamp, count, total, max_length, hdr, seq)


def read_headers(path: Path, offsets: np.ndarray) -> list[str]:
    """Extract the title text of each ASN.1 (BER) Blast-def-line-set record in a .phr file."""
    phr = np.fromfile(path, dtype=np.uint8)
    assert len(phr) == offsets[-1], f"{path}: size {len(phr)} != last header offset {offsets[-1]}"
    start = offsets[:-1]
    # SEQUENCE(indef) SEQUENCE(indef) [0](indef) VisibleString
    prefix = np.frombuffer(b"\x30\x80\x30\x80\xa0\x80\x1a", dtype=np.uint8)
    for k, byte in enumerate(prefix):
        assert np.all(phr[start + k] == byte), f"{path}: unexpected ASN.1 prefix byte {k}"
    first = phr[start + 7].astype(np.int64)
    assert np.all((first < 0x80) | (first == 0x81) | (first == 0x82)), f"{path}: unexpected BER length form"
    b1 = phr[np.minimum(start + 8, len(phr) - 1)].astype(np.int64)
    b2 = phr[np.minimum(start + 9, len(phr) - 1)].astype(np.int64)
    length = np.where(first < 0x80, first, np.where(first == 0x81, b1, b1 * 256 + b2))
    text_start = start + 8 + np.where(first < 0x80, 0, first - 0x80)
    assert np.all(text_start + length < offsets[1:]), f"{path}: title runs past its record"
    raw = phr.tobytes()
    return [raw[s : s + n].decode("ascii") for s, n in zip(text_start.tolist(), length.tolist())]


def sequence_lut() -> np.ndarray:
    """Map BLAST ncbistdaa codes to ASCII: standard letters kept, U/O/B/Z/J/X to X, gap/stop to '#'."""
    lut = np.full(256, ord("#"), dtype=np.uint8)
    for code, letter in enumerate(BLAST_ALPHABET):
        if letter in STANDARD_AA:
            lut[code] = ord(letter)
        elif letter in TO_X:
            lut[code] = ord("X")
    return lut


def read_sequences(path: Path, offsets: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Decode a .psq file; return (ASCII bytes, starts, lengths, X counts); '#' marks gap/stop."""
    psq = np.fromfile(path, dtype=np.uint8)
    assert len(psq) == offsets[-1], f"{path}: size {len(psq)} != last sequence offset {offsets[-1]}"
    assert psq[0] == 0 and np.all(psq[offsets[1:] - 1] == 0), f"{path}: records not NUL-terminated"
    assert int(psq.max()) < len(BLAST_ALPHABET), f"{path}: residue code {int(psq.max())} outside alphabet"
    starts = offsets[:-1]
    lengths = np.diff(offsets) - 1
    assert int(np.count_nonzero(psq == 0)) == len(offsets), f"{path}: gap code (0) inside a sequence"
    ascii_ = sequence_lut()[psq]
    is_x = (ascii_ == ord("X")).view(np.uint8)
    x_counts = np.add.reduceat(is_x, starts, dtype=np.int64)  # segments include only a trailing NUL
    return ascii_.tobytes(), starts, lengths, x_counts


# --------------------------------------------------------------------------- GO


def read_annotations(path: Path) -> dict[str, frozenset[str]]:
    """Read goasp_annot.dat: accession then GO ids (tab-separated, repeats allowed)."""
    annot: dict[str, frozenset[str]] = {}
    with path.open() as handle:
        for line in handle:
            parts = line.split()
            if not parts:
                continue
            assert parts[0] not in annot, f"{path}: duplicate accession {parts[0]}"
            assert all(p.startswith("GO:") for p in parts[1:]), f"{path}: non-GO token in {parts[0]}"
            annot[parts[0]] = frozenset(parts[1:])
    return annot


def read_go_graph(path: Path, relations: Iterable[str]) -> tuple[dict[str, set[str]], Counter]:
    """Read goGraph.txt (parent, child, 1, relation); return child -> parents for chosen relations."""
    keep = set(relations)
    parents: dict[str, set[str]] = {}
    seen: Counter = Counter()
    with path.open() as handle:
        for line in handle:
            parent, child, _, relation = line.rstrip("\n").split("\t")
            seen[relation] += 1
            if relation in keep:
                parents.setdefault(child, set()).add(parent)
    return parents, seen


def read_names(path: Path) -> dict[str, str]:
    """Read nameMapping.txt: GO id -> term name."""
    names: dict[str, str] = {}
    with path.open() as handle:
        for line in handle:
            go, _, name = line.rstrip("\n").partition("\t")
            names.setdefault(go, name)
    return names


def descendants(parents: dict[str, set[str]], targets: Iterable[str]) -> dict[str, set[str]]:
    """Return, for each target term, the set of terms that reach it upwards (itself included)."""
    children: dict[str, set[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(child)
    out: dict[str, set[str]] = {}
    for target in targets:
        found, stack = {target}, [target]
        while stack:
            for c in children.get(stack.pop(), ()):
                if c not in found:
                    found.add(c)
                    stack.append(c)
        out[target] = found
    return out


def closure_descendants(path: Path, targets: Iterable[str]) -> dict[str, set[str]]:
    """Read fullTransitiveClosureGO.txt (term, relation, ancestor, distance) for the targets."""
    wanted = set(targets)
    out: dict[str, set[str]] = {t: {t} for t in wanted}
    with path.open() as handle:
        for line in handle:
            term, _, ancestor, _ = line.rstrip("\n").split("\t")
            if ancestor in wanted:
                out[ancestor].add(term)
    return out


def label_mask(terms: frozenset[str], term_bits: dict[str, int]) -> int:
    """Return the label bitmask of a set of annotated terms (ancestors included via term_bits)."""
    mask = 0
    for term in terms:
        mask |= term_bits.get(term, 0)
    return mask


def mask_to_label(mask: int) -> str:
    """Render a bitmask as the canonical ';'-joined label string."""
    return ";".join(token for bit, (token, _, _) in enumerate(LABELS) if mask >> bit & 1)


# --------------------------------------------------------------------------- SCL2205


def read_scl2205_test(wheel: Path) -> Excluded:
    """The accessions and sequences of the SCL2205 test split ('tst'), read and checked as
    tools/data/scl2205.py reads them, and the sizes of its three splits."""
    with open_wheel(wheel) as zf:
        rows = read_rows(read_member(zf, CSV_PATH))
        split_of = read_splits(read_member(zf, SPLITS_PATH), read_member(zf, ENTRIES_PATH), rows)
    test = [rows[i] for i, split in split_of.items() if split == "test"]
    sizes = {key: sum(1 for s in split_of.values() if s == split) for split, key in SPLIT_KEYS.items()}
    return Excluded({r.entry for r in test}, {r.seq.upper() for r in test}, sizes)


# --------------------------------------------------------------------------- selection


def collect_proteins(
    accs: list[str],
    seq_bytes: bytes,
    starts: np.ndarray,
    lengths: np.ndarray,
    x_counts: np.ndarray,
    masks: dict[str, int],
    excl_accs: set[str],
    excl_seqs: set[str],
    filters: Filters,
) -> list[Protein]:
    """Apply length/X/SCL2205 filters and collapse exact duplicates (labels unioned)."""
    filters.read = len(accs)
    keep_len = (lengths >= MIN_LEN) & (lengths <= MAX_LEN)
    keep_x = x_counts <= MAX_X_FRAC * lengths
    groups: dict[str, list[tuple[str, int]]] = {}
    for i, acc in enumerate(accs):
        if acc not in masks:
            filters.no_annotation += 1
            continue
        if not keep_len[i]:
            filters.bad_length += 1
            continue
        if not keep_x[i]:
            filters.too_many_x += 1
            continue
        seq = seq_bytes[starts[i] : starts[i] + lengths[i]].decode("ascii")
        if "#" in seq:
            filters.gap_or_stop += 1
            continue
        if acc in excl_accs:
            filters.scl2205_test_by_accession += 1
            continue
        if seq in excl_seqs:
            filters.scl2205_test_by_sequence += 1
            continue
        groups.setdefault(seq, []).append((acc, masks[acc]))
    proteins: list[Protein] = []
    for seq, members in groups.items():
        members.sort()
        union = 0
        for _, m in members:
            union |= m
        if len({m for _, m in members}) > 1:
            filters.duplicate_groups_with_differing_labels += 1
        filters.exact_duplicates_collapsed += len(members) - 1
        proteins.append(Protein(members[0][0], seq, union))
    filters.kept_unique = len(proteins)
    return proteins


def sample_working_set(proteins: list[Protein], n_pos: int, n_neg: int, filters: Filters) -> list[Protein]:
    """Take the first n_pos labelled and n_neg unlabelled proteins in sha256(accession) order."""
    ordered = sorted(proteins, key=lambda p: sha_key(p.acc))
    pos = [p for p in ordered if p.mask]
    neg = [p for p in ordered if not p.mask]
    filters.positives_available, filters.negatives_available = len(pos), len(neg)
    chosen = pos[:n_pos] + neg[:n_neg]
    filters.sampled_positives, filters.sampled_negatives = min(n_pos, len(pos)), min(n_neg, len(neg))
    return chosen


def mmseqs_clusters(proteins: list[Protein], work: Path, min_id: float, cov: float, threads: int) -> dict[str, str]:
    """Cluster with MMseqs2 easy-cluster; return accession -> representative accession."""
    require_mmseqs()
    options = ["--min-seq-id", str(min_id), "-c", str(cov), "--threads", str(threads), "-v", "1"]
    rep_of = easy_cluster(((p.acc, p.seq) for p in proteins), work, options)
    missing = {p.acc for p in proteins} - set(rep_of)
    assert not missing, f"{len(missing)} sequences missing from MMseqs2 output"
    return rep_of


def assign_splits(proteins: list[Protein], rep_of: dict[str, str]) -> dict[str, str]:
    """Assign whole clusters to splits by sha256 of the salted representative accession."""
    (_, train), (_, valid), _ = SPLIT_FRACTIONS
    return {p.acc: split_for(sha_fraction(SPLIT_SALT + rep_of[p.acc]), train, valid) for p in proteins}


def apply_caps(proteins: list[Protein], split_of: dict[str, str], caps: dict[str, int], filters: Filters) -> list[tuple[Protein, str]]:
    """Keep at most caps[split] proteins per split, in salted sha256(accession) order."""
    rows: list[tuple[Protein, str]] = []
    for name, _ in SPLIT_FRACTIONS:
        members = sorted((p for p in proteins if split_of[p.acc] == name), key=lambda p: sha_key(CAP_SALT + p.acc))
        filters.dropped_by_split_caps[name] = max(0, len(members) - caps[name])
        rows.extend((p, name) for p in members[: caps[name]])
    return rows


def label_counts(rows: list[tuple[Protein, str]], split: str) -> dict[str, int]:
    """Count each label in one split."""
    counts = {token: 0 for token, _, _ in LABELS}
    for p, s in rows:
        if s != split:
            continue
        for bit, (token, _, _) in enumerate(LABELS):
            if p.mask >> bit & 1:
                counts[token] += 1
    return counts


# --------------------------------------------------------------------------- output


def write_parquet(rows: list[tuple[Protein, str]], path: Path) -> None:
    """Write id, sequence, label, split to a parquet file."""
    table = pa.table({
        "id": pa.array([p.acc for p, _ in rows], pa.string()),
        "sequence": pa.array([p.seq for p, _ in rows], pa.string()),
        "label": pa.array([mask_to_label(p.mask) for p, _ in rows], pa.string()),
        "split": pa.array([s for _, s in rows], pa.string()),
    })
    pq.write_table(table, path)


def validate_rows(rows: list[tuple[Protein, str]], rep_of: dict[str, str]) -> None:
    """Assert the FORMAT.md invariants and split separation on the final rows."""
    ids = [p.acc for p, _ in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert len({p.seq for p, _ in rows}) == len(rows), "duplicate sequences"
    split_of_rep: dict[str, str] = {}
    for p, s in rows:
        assert MIN_LEN <= len(p.seq) <= MAX_LEN and set(p.seq) <= ALLOWED, p.acc
        assert split_of_rep.setdefault(rep_of[p.acc], s) == s, f"cluster {rep_of[p.acc]} spans splits"
    # propagation sanity: zinc and calcium binding are metal ion binding
    metal = 1 << [t for t, _, _ in LABELS].index("metal_ion")
    for token in ("zinc", "calcium"):
        bit = 1 << [t for t, _, _ in LABELS].index(token)
        assert all(p.mask & metal for p, _ in rows if p.mask & bit), f"{token} without metal_ion"


# --------------------------------------------------------------------------- steps


def label_terms(data: Path) -> LabelTerms:
    """Check the label terms' names, then map every GO term to the labels it implies, following
    goGraph.txt's is_a and part_of edges (and compare with the package's own closure file)."""
    names = read_names(data / "nameMapping.txt")
    for token, go, name in LABELS:
        assert names.get(go) == name, f"{go}: package name {names.get(go)!r} != {name!r}"
    parents, relation_counts = read_go_graph(data / "goGraph.txt", GRAPH_RELATIONS)
    desc = descendants(parents, [go for _, go, _ in LABELS])
    closure = closure_descendants(data / "fullTransitiveClosureGO.txt", [go for _, go, _ in LABELS])
    closure_check = {go: {"graph": len(desc[go]), "closure_file": len(closure[go]),
                          "only_in_graph": len(desc[go] - closure[go]), "only_in_closure": len(closure[go] - desc[go])}
                     for _, go, _ in LABELS}
    term_bits: dict[str, int] = {}
    for bit, (_, go, _) in enumerate(LABELS):
        for term in desc[go]:
            term_bits[term] = term_bits.get(term, 0) | (1 << bit)
    return LabelTerms(term_bits, relation_counts, closure_check)


def read_candidates(data: Path, term_bits: dict[str, int], excluded: Excluded, filters: Filters) -> Candidates:
    """Read the MFO BLAST database and its annotations, label every annotated protein, and keep the
    proteins that pass the filters (the database's sequences are freed on return)."""
    annot = read_annotations(data / "MFO/goasp_annot.dat")
    pin = read_pin(data / f"MFO/{DB_STEM}.pin")
    headers = read_headers(data / f"MFO/{DB_STEM}.phr", pin.header_offsets)
    accs = [h.partition("|")[0] for h in headers]
    assert len(set(accs)) == len(accs), "duplicate accessions in the MFO database"
    header_terms = {a: frozenset(filter(None, h.partition("|")[2].split(","))) for a, h in zip(accs, headers)}
    assert all(header_terms[a] == annot[a] for a in accs if a in annot), "header GO ids differ from goasp_annot.dat"
    seq_bytes, starts, lengths, x_counts = read_sequences(data / f"MFO/{DB_STEM}.psq", pin.sequence_offsets)
    masks = {a: label_mask(t, term_bits) for a, t in annot.items()}
    full_counts = {token: sum(1 for m in masks.values() if m >> bit & 1) for bit, (token, _, _) in enumerate(LABELS)}
    proteins = collect_proteins(accs, seq_bytes, starts, lengths, x_counts, masks,
                                excluded.accessions, excluded.sequences, filters)
    return Candidates(pin, proteins, full_counts)


def split_rows(working: list[Protein], args: argparse.Namespace,
               filters: Filters) -> tuple[list[tuple[Protein, str]], dict[str, str], float]:
    """Cluster the working set, assign whole clusters to splits, cap each split and check the
    result; return (rows, accession -> cluster representative, seconds spent clustering)."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mmseqs_binding_") as tmp:
        rep_of = mmseqs_clusters(working, Path(tmp), args.min_seq_id, args.coverage, args.threads)
    cluster_seconds = time.time() - started
    rows = apply_caps(working, assign_splits(working, rep_of), caps_of(args), filters)
    validate_rows(rows, rep_of)
    return rows, rep_of, cluster_seconds


def caps_of(args: argparse.Namespace) -> dict[str, int]:
    """The most proteins each split keeps."""
    return {"train": args.cap_train, "valid": args.cap_valid, "test": args.cap_test}


# --------------------------------------------------------------------------- provenance


def source_record(source: Source, pin: PinIndex) -> dict[str, Any]:
    """Where the data came from: package, files, BLAST database."""
    return {
        "package": PACKAGE,
        "version": source.version,
        "deb": source.deb.name,
        "deb_sha256": sha256_file(source.deb),
        "files": [str(DATA_SUBDIR / f"MFO/{DB_STEM}.{ext}") for ext in ("pin", "psq", "phr")]
                 + [str(DATA_SUBDIR / "MFO/goasp_annot.dat"), str(DATA_SUBDIR / "goGraph.txt"),
                    str(DATA_SUBDIR / "nameMapping.txt")],
        "blast_db": {"title": pin.title, "timestamp": pin.timestamp, "count": pin.count,
                     "total_residues": pin.total_residues, "max_length": pin.max_length},
        "description": "Swiss-Prot proteins (dataset_201401, i.e. January 2014) with GO molecular-function annotations "
                       "from UniProt-GOA, as shipped for metastudent",
    }


def filters_record(filters: Filters) -> dict[str, Any]:
    """What each filter dropped, in pipeline order."""
    return {
        "read": filters.read,
        "no_mfo_annotation": filters.no_annotation,
        f"length_outside_{MIN_LEN}_{MAX_LEN}": filters.bad_length,
        "more_than_5pct_X_after_UOBZJ_to_X": filters.too_many_x,
        "gap_or_stop_code": filters.gap_or_stop,
        "scl2205_test_by_accession": filters.scl2205_test_by_accession,
        "scl2205_test_by_sequence": filters.scl2205_test_by_sequence,
        "exact_duplicates_collapsed": filters.exact_duplicates_collapsed,
        "duplicate_groups_with_differing_labels": filters.duplicate_groups_with_differing_labels,
        "kept_unique": filters.kept_unique,
        "positives_available": filters.positives_available,
        "negatives_available": filters.negatives_available,
        "sampled_positives": filters.sampled_positives,
        "sampled_negatives": filters.sampled_negatives,
        "dropped_by_split_caps": filters.dropped_by_split_caps,
    }


def provenance(args: argparse.Namespace, source: Source, terms: LabelTerms, candidates: Candidates,
               excluded: Excluded, filters: Filters, rows: list[tuple[Protein, str]],
               rep_of: dict[str, str]) -> dict[str, Any]:
    """The PROVENANCE.json content, but for the timings."""
    splits = [name for name, _ in SPLIT_FRACTIONS]
    mmseqs_version = run_command(["mmseqs", "version"]).strip()
    return {
        "task": TASK,
        "kind": KIND,
        "labels": [token for token, _, _ in LABELS],
        "label_terms": {token: {"go_id": go, "name": name} for token, go, name in LABELS},
        "source": source_record(source, candidates.pin),
        "licence": "package GPL-2+ (debian/copyright of metastudent-data); data from UniProt-GOA "
                   "(Swiss-Prot sequences and GO annotations)",
        "label_method": (
            "MFO annotations (goasp_annot.dat, identical to the GO ids in the BLAST headers) propagated to all "
            f"ancestors over goGraph.txt relations {list(GRAPH_RELATIONS)} (regulates edges not followed); a "
            "protein has a label if any annotated term is the label's GO term or a descendant of it. Proteins "
            "with MF annotations but none of the eight classes are negatives ('' label)."
        ),
        "label_caveats": (
            "Labels include electronic annotations (IEA; noisy) and are from January 2014: missing labels "
            "are not proof of non-binding, and negatives are only 'no such annotation in 2014'. Exact-duplicate "
            "sequences were collapsed to the lowest accession with the union of their labels."
        ),
        "go_graph_check": {"relations_in_file": dict(terms.relation_counts), "descendant_sets": terms.closure_check,
                           "note": "fullTransitiveClosureGO.txt is labelled is_a only; graph closure here also "
                                   "follows part_of"},
        "label_counts_full_mfo": candidates.full_counts,
        "split_method": (
            f"MMseqs2 {mmseqs_version} easy-cluster --min-seq-id {args.min_seq_id} "
            f"-c {args.coverage} --threads {args.threads} on the sampled working set; whole clusters assigned "
            f"by sha256('{SPLIT_SALT}' + representative accession) (first 64 bits / 2^64) to train <0.80, "
            f"valid <0.85, test otherwise; then capped per split in sha256('{CAP_SALT}' + accession) order "
            f"({caps_of(args)}). Salted because the working set was sampled by lowest unsalted sha256(accession)."
        ),
        "sampling": (
            f"after filtering and de-duplication, the first {args.positives} proteins with at least one label "
            f"and the first {args.negatives} with none, in sha256(accession) order"
        ),
        "excluded": {
            "what": "every accession and every exact sequence of the SCL2205 test split ('tst')",
            "wheel": source.wheel.name,
            "wheel_sha256": sha256_file(source.wheel),
            "requirement": WHEEL_REQ,
            "scl2205_split_sizes": excluded.split_sizes,
            "removed_by_accession": filters.scl2205_test_by_accession,
            "removed_by_sequence": filters.scl2205_test_by_sequence,
        },
        "counts": {name: sum(1 for _, s in rows if s == name) for name in splits},
        "clusters": {**{name: len({rep_of[p.acc] for p, s in rows if s == name}) for name in splits},
                     "working_set": len(set(rep_of.values()))},
        "label_counts": label_counts(rows, "train"),
        "label_counts_by_split": {name: label_counts(rows, name) for name in splits},
        "no_label_counts": {name: sum(1 for p, s in rows if s == name and not p.mask) for name in splits},
        "filters": filters_record(filters),
        "command": command_line(__file__),
    }


# --------------------------------------------------------------------------- main


def create_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--raw-dir", type=Path, default=REPO_ROOT / "data/raw", help="download/extraction cache")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "data/tasks" / TASK, help="task output folder")
    parser.add_argument("--positives", type=int, default=12000, help="labelled proteins in the working set")
    parser.add_argument("--negatives", type=int, default=4000, help="proteins with none of the labels")
    parser.add_argument("--min-seq-id", type=float, default=0.3, help="MMseqs2 --min-seq-id")
    parser.add_argument("--coverage", type=float, default=0.8, help="MMseqs2 -c")
    parser.add_argument("--threads", type=int, default=1, help="MMseqs2 --threads")
    parser.add_argument("--cap-train", type=int, default=8000)
    parser.add_argument("--cap-valid", type=int, default=500)
    parser.add_argument("--cap-test", type=int, default=2000)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the task folder and return its provenance record."""
    started = time.time()
    source = fetch_sources(args.raw_dir)
    terms = label_terms(source.data)
    excluded = read_scl2205_test(source.wheel)
    filters = Filters()
    candidates = read_candidates(source.data, terms.term_bits, excluded, filters)
    working = sample_working_set(candidates.proteins, args.positives, args.negatives, filters)
    rows, rep_of, cluster_seconds = split_rows(working, args, filters)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(rows, args.out_dir / "data.parquet")
    prov = provenance(args, source, terms, candidates, excluded, filters, rows, rep_of)
    prov["timing_s"] = {"total": round(time.time() - started, 1), "mmseqs": round(cluster_seconds, 1)}
    (args.out_dir / "PROVENANCE.json").write_text(json.dumps(prov, indent=2) + "\n")
    return prov


def summary(prov: dict[str, Any]) -> None:
    """The headline numbers, as JSON."""
    keys = ("counts", "label_counts", "no_label_counts", "excluded", "timing_s")
    print(json.dumps({k: prov[k] for k in keys}, indent=2))


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run, summary))
