#!/usr/bin/env python3
"""Build per-residue secondary-structure and solvent-accessibility tasks from the ProMod3 structure DB.

Source: Debian package ``promod3-data``, file ``/usr/share/promod3/loop_data/structure_db.dat``
(PDB chains with per-residue amino acid, DSSP state and solvent accessibility). The package is
fetched with ``apt-get download`` (never installed) and unpacked with ``dpkg -x``.

Outputs (relative to the repository root, see tools/data/FORMAT.md):
  data/raw/promod3/                           the extracted package
  data/interim/promod3/                       MMseqs2 input and cluster table
  data/tasks/secondary_structure/             H / E / C per residue (DSSP 8 -> 3 states)
  data/tasks/solvent_accessibility/           B / E per residue (relative solvent accessibility)

Run from the repository root:
  python tools/data/promod3.py
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import (
    MAX_LEN,
    MIN_LEN,
    REPO_ROOT,
    SPLITS,
    STANDARD_AA,
    PrepareError,
    command_line,
    deb_version,
    easy_cluster,
    fetch_deb,
    run_command,
    script_main,
    sha256_file,
    sha_key,
    split_for,
)

PACKAGE = "promod3-data"
DB_MEMBER = Path("usr/share/promod3/loop_data/structure_db.dat")

SPLIT_FRACTIONS = {"train": 0.80, "valid": 0.05, "test": 0.15}
SPLIT_CAPS = {"train": None, "valid": 300, "test": 1000}  # None: every chain of every cluster
MAX_X_FRACTION = 0.05
BURIED_RSA = 0.25

# Theoretical maximum accessible surface area (A^2) per residue type, from
# Tien MZ, Meyer AG, Sydykova DK, Spielman SJ, Wilke CO (2013) "Maximum allowed solvent
# accessibilites of residues in proteins". PLoS ONE 8(11): e80635, Table 1 ("Theoretical").
MAX_ASA_TIEN2013 = {
    "A": 129.0, "R": 274.0, "N": 195.0, "D": 193.0, "C": 167.0,
    "E": 223.0, "Q": 225.0, "G": 104.0, "H": 224.0, "I": 197.0,
    "L": 201.0, "K": 236.0, "M": 224.0, "F": 240.0, "P": 159.0,
    "S": 155.0, "T": 172.0, "W": 285.0, "Y": 263.0, "V": 174.0,
}

# DSSP 8 states -> 3 (H,G,I helix; E,B strand; T,S and coil 'C'/' '/'-' coil).
DSSP_TO_Q3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E",
              "T": "C", "S": "C", "C": "C", " ": "C", "-": "C"}

TASKS = {
    "secondary_structure": {"H": "alpha_helix", "E": "beta_sheet", "C": "coil_or_loop"},
    "solvent_accessibility": {"B": "buried", "E": "exposed"},
}

# Layout of structure_db.dat (little-endian), found by inspection and checked while reading.
HEADER_BYTES = 77
HEADER_MAGIC = 1234
HEADER_VERSION = 2
PDB_ID_LEN = 4
CHAIN_TAIL = struct.Struct("<iHHfff")  # offset, length, first residue number, shift xyz
ARRAY_ITEM_BYTES = (  # (name, bytes per residue), in file order
    ("aa", 1), ("backbone", 24), ("dihedrals", 4), ("sasa", 2),
    ("depth", 2), ("dssp", 1), ("seq_profile", 40), ("struct_profile", 40),
)


@dataclass(frozen=True)
class StructureDB:
    """Chain table and the per-residue arrays needed here (views into a memory map)."""

    ids: list[str]
    offsets: np.ndarray  # (C,) int64
    lengths: np.ndarray  # (C,) int64
    aa: np.ndarray  # (N,) uint8 ASCII
    sasa: np.ndarray  # (N,) uint16, A^2
    dssp: np.ndarray  # (N,) uint8 ASCII
    backbone: np.ndarray | None = None  # (N, 4, 3) int16: N, CA, C, O in 0.01 A, relative to the chain shift
    shifts: np.ndarray | None = None  # (C, 3) float32, A


@dataclass(frozen=True)
class Chain:
    """One kept chain: id, sequence and its two per-residue label strings."""

    id: str
    sequence: str
    q3: str
    rsa2: str


@dataclass
class FilterStats:
    """Counts of chains read and dropped at each step."""

    read: int = 0
    too_many_x: int = 0
    too_short: int = 0
    too_long: int = 0
    exact_duplicates: int = 0
    kept_before_cap: int = 0
    dropped_by_cap: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- read


def expect(ok: bool, what: str) -> None:
    """Raise PrepareError naming the layout assumption that failed."""
    if not ok:
        raise PrepareError(f"structure_db.dat layout differs from the notes: {what}")


def read_chain_table(buf: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]:
    """Parse header and per-chain records; return ids, offsets, lengths, shifts and the end position."""
    magic, version = struct.unpack_from("<ii", buf, 0)
    expect((magic, version) == (HEADER_MAGIC, HEADER_VERSION), f"header magic/version {magic}/{version}")
    (n_chains,) = struct.unpack_from("<Q", buf, HEADER_BYTES)
    pos = HEADER_BYTES + 8
    ids, offsets, lengths = [], np.empty(n_chains, np.int64), np.empty(n_chains, np.int64)
    shifts = np.empty((n_chains, 3), np.float32)
    for i in range(n_chains):
        (id_len,) = struct.unpack_from("<I", buf, pos)
        expect(id_len == PDB_ID_LEN, f"chain {i}: PDB id length {id_len}")
        pdb_id = bytes(buf[pos + 4 : pos + 8]).decode("ascii")
        (name_len,) = struct.unpack_from("<I", buf, pos + 8)
        pos += 12
        chain_name = bytes(buf[pos : pos + name_len]).decode("ascii")
        pos += name_len
        offset, length, _, *shift = CHAIN_TAIL.unpack_from(buf, pos)
        offsets[i], lengths[i], shifts[i] = offset, length, shift
        pos += CHAIN_TAIL.size
        ids.append(f"{pdb_id}_{chain_name}")
    expect(offsets[0] == 0 and bool(np.all(offsets[1:] == offsets[:-1] + lengths[:-1])),
           "chain offsets are not contiguous")
    expect(len(set(ids)) == len(ids), "PDB id + chain name is not unique")
    return ids, offsets, lengths, shifts, pos


def read_structure_db(path: Path) -> StructureDB:
    """Memory-map structure_db.dat and return views of the arrays used here."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    ids, offsets, lengths, shifts, pos = read_chain_table(buf)
    n_res = int(lengths.sum())
    arrays: dict[str, np.ndarray] = {}
    for name, item_bytes in ARRAY_ITEM_BYTES:
        (count,) = struct.unpack_from("<Q", buf, pos)
        expect(count == n_res, f"array {name}: count {count} != total residues {n_res}")
        arrays[name] = buf[pos + 8 : pos + 8 + count * item_bytes]
        pos += 8 + count * item_bytes
    expect(pos == buf.size, f"arrays end at {pos}, file has {buf.size} bytes")
    sasa = np.frombuffer(arrays["sasa"], dtype="<u2")  # (N,)
    backbone = np.frombuffer(arrays["backbone"], dtype="<i2").reshape(n_res, 4, 3)  # (N, atoms, xyz)
    return StructureDB(ids, offsets, lengths, arrays["aa"], sasa, arrays["dssp"], backbone, shifts)


# --------------------------------------------------------------------------- labels


def byte_table(mapping: dict[str, str], default: str) -> np.ndarray:
    """A 256-entry uint8 lookup table from a char -> char mapping."""
    table = np.full(256, ord(default), dtype=np.uint8)
    for src, dst in mapping.items():
        table[ord(src)] = ord(dst)
    return table


def q3_codes(dssp: np.ndarray) -> np.ndarray:
    """DSSP 8-state bytes -> H/E/C bytes, failing on a state outside the known alphabet."""
    seen = {chr(c) for c in np.unique(dssp)}
    expect(seen <= set(DSSP_TO_Q3), f"unknown DSSP states {sorted(seen - set(DSSP_TO_Q3))}")
    return byte_table(DSSP_TO_Q3, "C")[dssp]


def rsa_codes(aa: np.ndarray, sasa: np.ndarray) -> np.ndarray:
    """Relative solvent accessibility (SASA / Tien 2013 max ASA) -> B/E bytes; X counts as exposed."""
    max_asa = np.full(256, np.inf)
    for residue, area in MAX_ASA_TIEN2013.items():
        max_asa[ord(residue)] = area
    buried = sasa / max_asa[aa] < BURIED_RSA  # (N,)
    return np.where(buried, np.uint8(ord("B")), np.uint8(ord("E")))


def residue_letters(aa: np.ndarray) -> np.ndarray:
    """Amino-acid bytes with anything outside the 20 standard residues replaced by X."""
    return byte_table({c: c for c in STANDARD_AA}, "X")[aa]


def select_chains(db: StructureDB, stats: FilterStats) -> list[Chain]:
    """Apply the X, length and exact-duplicate filters; keep the first of each identical sequence."""
    letters = residue_letters(db.aa).tobytes()
    q3 = q3_codes(db.dssp).tobytes()
    rsa = rsa_codes(db.aa, db.sasa).tobytes()
    seen: set[str] = set()
    chains = []
    for cid, start, length in zip(db.ids, db.offsets.tolist(), db.lengths.tolist()):
        stats.read += 1
        seq = letters[start : start + length].decode("ascii")
        if seq.count("X") > MAX_X_FRACTION * length:
            stats.too_many_x += 1
        elif length < MIN_LEN:
            stats.too_short += 1
        elif length > MAX_LEN:
            stats.too_long += 1
        elif seq in seen:
            stats.exact_duplicates += 1
        else:
            seen.add(seq)
            end = start + length
            chains.append(Chain(cid, seq, q3[start:end].decode("ascii"), rsa[start:end].decode("ascii")))
    stats.kept_before_cap = len(chains)
    return chains


# --------------------------------------------------------------------------- split


def cluster(chains: list[Chain], work_dir: Path) -> dict[str, str]:
    """Cluster with MMseqs2 easy-cluster (30% id, 80% coverage, 1 thread); return member -> representative."""
    work_dir.mkdir(parents=True, exist_ok=True)
    rep_of = easy_cluster(((c.id, c.sequence) for c in chains), work_dir,
                          ["--min-seq-id", "0.3", "-c", "0.8", "--threads", "1"])
    missing = {c.id for c in chains} - rep_of.keys()
    if missing:
        raise PrepareError(f"{len(missing)} chains missing from the MMseqs2 clusters, e.g. {sorted(missing)[:3]}")
    return rep_of


def split_of(rep: str) -> str:
    """Split of a cluster from the sha256 of its representative id."""
    return split_for(int(sha_key(rep), 16) / 2**256, SPLIT_FRACTIONS["train"], SPLIT_FRACTIONS["valid"])


def assign_splits(chains: list[Chain], rep_of: dict[str, str], stats: FilterStats) -> dict[str, list[Chain]]:
    """Whole clusters to splits, then cap the capped splits taking one chain per cluster first (sha256 order)."""
    clusters: dict[str, list[Chain]] = defaultdict(list)
    for chain in chains:
        clusters[rep_of[chain.id]].append(chain)
    ranked: dict[str, list[tuple[int, str, str, Chain]]] = {s: [] for s in SPLITS}
    for rep, members in clusters.items():
        members.sort(key=lambda c: sha_key(c.id))
        for rank, chain in enumerate(members):
            ranked[split_of(rep)].append((rank, sha_key(rep), chain.id, chain))
    out = {}
    for split in SPLITS:
        order = sorted(ranked[split], key=lambda item: item[:3])
        kept = order[: SPLIT_CAPS[split]]  # a cap of None keeps them all
        stats.dropped_by_cap[split] = len(order) - len(kept)
        out[split] = sorted((item[3] for item in kept), key=lambda c: c.id)
    return out


def cluster_counts(splits: dict[str, list[Chain]], rep_of: dict[str, str]) -> dict[str, int]:
    """Number of distinct clusters per split after capping."""
    return {s: len({rep_of[c.id] for c in chains}) for s, chains in splits.items()}


# --------------------------------------------------------------------------- write


def label_summary(labels: list[str], codes: dict[str, str]) -> dict[str, dict[str, float]]:
    """Residue counts and fractions per label name."""
    counts = Counter()
    for label in labels:
        counts.update(label)
    total = sum(counts.values())
    return {name: {"residues": counts[code], "fraction": round(counts[code] / total, 4)}
            for code, name in codes.items()}


def write_task(task: str, splits: dict[str, list[Chain]], out_root: Path, provenance: dict) -> dict:
    """Write data.parquet and PROVENANCE.json for one per-residue task; return the provenance."""
    codes = TASKS[task]
    field_name = "q3" if task == "secondary_structure" else "rsa2"
    rows = [(c.id, c.sequence, getattr(c, field_name), split) for split in SPLITS for c in splits[split]]
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(("id", "sequence", "label", "split"))})
    out_dir = out_root / task
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / "data.parquet")
    train_labels = [getattr(c, field_name) for c in splits["train"]]
    prov = {"task": task, "kind": "per_residue", "labels": list(codes.values()), "label_codes": codes,
            **provenance, "label_counts": label_summary(train_labels, codes)}
    (out_dir / "PROVENANCE.json").write_text(json.dumps(prov, indent=2) + "\n")
    return prov


def base_provenance(deb: Path, version: str, stats: FilterStats, splits: dict[str, list[Chain]],
                    rep_of: dict[str, str], mmseqs_version: str, command: str) -> dict:
    """Provenance fields shared by both tasks."""
    return {
        "source": {"package": PACKAGE, "version": version, "file": f"/{DB_MEMBER}",
                   "deb": deb.name, "deb_sha256": sha256_file(deb)},
        "licence": "Apache-2.0 (ProMod3, debian/copyright); structures derived from the PDB (CC0-1.0)",
        "label_definition": {
            "secondary_structure": "DSSP 8 states from the DB: H,G,I -> H; E,B -> E; T,S,C -> C",
            "solvent_accessibility": f"RSA = SASA / max ASA (Tien et al. 2013 theoretical); B if RSA < {BURIED_RSA}",
        },
        "split_method": (f"MMseqs2 {mmseqs_version} easy-cluster --min-seq-id 0.3 -c 0.8 --threads 1 on all kept "
                         "chains; whole clusters assigned by sha256(representative id) / 2^256: "
                         "<0.80 train, <0.85 valid, else test; train keeps every chain, valid and test are "
                         f"capped at {SPLIT_CAPS['valid']} and {SPLIT_CAPS['test']} chains, taking one chain "
                         "per cluster first, clusters in sha256 order"),
        "counts": {s: len(splits[s]) for s in SPLITS},
        "clusters": cluster_counts(splits, rep_of),
        "filters": {
            "chains_read": stats.read,
            "dropped_more_than_5pct_X": stats.too_many_x,
            f"dropped_shorter_than_{MIN_LEN}": stats.too_short,
            f"dropped_longer_than_{MAX_LEN}": stats.too_long,
            "dropped_exact_duplicate_sequence": stats.exact_duplicates,
            "kept_before_cap": stats.kept_before_cap,
            "clusters_before_cap": len(set(rep_of.values())),
            "dropped_by_size_cap": stats.dropped_by_cap,
        },
        "command": command,
    }


# --------------------------------------------------------------------------- main


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=REPO_ROOT / "data/raw",
                        help="where the .deb is cached and extracted")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "data/interim/promod3",
                        help="MMseqs2 input, output and temporary files")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "data/tasks",
                        help="task folders are written below this")
    return parser


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Fetch, read, filter, cluster, split and write both tasks; return their provenance."""
    started = time.monotonic()
    deb, root = fetch_deb(PACKAGE, args.raw_dir, "promod3", DB_MEMBER)
    version = deb_version(deb)
    mmseqs_version = run_command(["mmseqs", "version"]).strip()
    db = read_structure_db(root / DB_MEMBER)
    print(f"read {len(db.ids)} chains, {db.aa.size} residues", file=sys.stderr)
    stats = FilterStats()
    chains = select_chains(db, stats)
    print(f"kept {len(chains)} chains after filters; clustering", file=sys.stderr)
    rep_of = cluster(chains, args.work_dir)
    splits = assign_splits(chains, rep_of, stats)
    shared = base_provenance(deb, version, stats, splits, rep_of, mmseqs_version, command_line(__file__))
    result = {task: write_task(task, splits, args.out_dir, shared) for task in TASKS}
    print(f"wrote {shared['counts']} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run))
