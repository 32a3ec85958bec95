#!/usr/bin/env python3
"""Build per-residue structure tasks from the ProMod3 structure DB: Foldseek 3Di states and DSSP 8 states.

Same chains, sequences and clustered splits as data/tasks/secondary_structure (built by
tools/data/promod3.py, which this reads), so the three structure tasks share one split.

Outputs (relative to the repository root, see tools/data/FORMAT.md):
  data/tasks/structure_3di/           one of Foldseek's 20 3Di states per residue (letters as Foldseek writes them)
  data/tasks/secondary_structure_8/   DSSP 8 states per residue (H G I E B T S C; blank and '-' read as C)

3Di states come from `mini3di` (PyPI, BSD-3, a NumPy port of Foldseek's encoder) on each chain's
N, CA and C coordinates with an ideal virtual CB (mini3di builds it from N/CA/C where CB is NaN);
residues without neighbours on both sides (chain ends) get Foldseek's invalid state 'D'.
promod3 stores coordinates as int16 in 0.01 A; the absolute position is stored value / 100 minus
the chain's shift (checked on 3BWW_A against the PDB file: within 0.005 A). 3Di depends on spatial
partners, so a chain that promod3 keeps only in part can differ from Foldseek on the whole PDB
chain; the self-check below compares with mini3di on the PDB file's coordinates of the same residues.

Run from the repository root (after tools/data/promod3.py):
  python tools/data/structure_labels.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import REPO_ROOT, SPLITS, PrepareError, command_line, script_main
from promod3 import DB_MEMBER, StructureDB, byte_table, read_structure_db, residue_letters

SOURCE_TASK = "secondary_structure"
THREEDI = "ACDEFGHIKLMNPQRSTVWY"  # Foldseek's 3Di letters, state 0..19 (mini3di.encoder.ALPHABET)
DSSP8 = {"H": "alpha_helix", "G": "helix_3_10", "I": "pi_helix", "E": "strand", "B": "bridge",
         "T": "turn", "S": "bend", "C": "coil"}
DSSP_COIL = {" ": "C", "-": "C"}  # DSSP writes no letter for coil; promod3 stores ' ' or '-'
TASKS = {"structure_3di": {c: f"3di_{c}" for c in THREEDI}, "secondary_structure_8": DSSP8}
# Peptide geometry (A) the coordinate reading must reproduce (median over all residues).
BONDS = {"N-CA": (0, 1, 1.458), "CA-C": (1, 2, 1.525), "C-O": (2, 3, 1.231)}
BOND_TOLERANCE = 0.03
PEPTIDE_BREAK = 2.0  # C(i)-N(i+1) farther than this is a chain break
# Self-check: 3Di of 3BWW_A (PDB residues 107-205) computed by mini3di from the PDB file's
# coordinates (mini3di's test data, whose whole-chain states match Foldseek's).
CHECK_CHAIN, CHECK_3DI = "3BWW_A", ("DDADALDVVVLVVLLVVQLVVCVVVVHAAADEQAADQDHDPRHPDDRLVSRQSNCVSNVH"
                                     "AHAYELVRLVRCCVRPVPADSVNSVVRHPVVRHPHYDYD")
CHECK_MIN_SAME = 0.97  # coordinates rounded to 0.01 A may move a state that lies near a boundary


def chain_coordinates(db: StructureDB, index: int) -> np.ndarray:
    """(L, 4, 3) float64 absolute N, CA, C, O coordinates of one chain, in A."""
    start, length = int(db.offsets[index]), int(db.lengths[index])
    return db.backbone[start : start + length].astype(np.float64) / 100.0 - db.shifts[index]


def check_geometry(db: StructureDB) -> dict[str, float]:
    """Median bond lengths over the whole DB; PrepareError when the reading looks wrong."""
    raw = db.backbone.astype(np.float32) / 100.0  # (N, 4, 3); bonds within a residue ignore the shift
    found = {}
    for name, (a, b, expected) in BONDS.items():
        found[name] = float(np.median(np.linalg.norm(raw[:, a] - raw[:, b], axis=1)))
        if abs(found[name] - expected) > BOND_TOLERANCE:
            raise PrepareError(f"backbone layout differs from the notes: median {name} {found[name]:.3f} A")
    return found


def threedi_states(encoder, xyz: np.ndarray) -> str:
    """Foldseek 3Di letters of one chain from its (L, 4, 3) backbone, with an ideal virtual CB."""
    cb = np.full((len(xyz), 3), np.nan)
    return encoder.build_sequence(encoder.encode_atoms(xyz[:, 1], cb, xyz[:, 0], xyz[:, 2]))


def dssp8_codes(dssp: np.ndarray) -> str:
    """DSSP state bytes as the 8 letters of DSSP8, failing on any other state."""
    seen = {chr(c) for c in np.unique(dssp)}
    unknown = seen - set(DSSP8) - set(DSSP_COIL)
    if unknown:
        raise PrepareError(f"unknown DSSP states {sorted(unknown)}")
    return byte_table({**{c: c for c in DSSP8}, **DSSP_COIL}, "C")[dssp].tobytes().decode("ascii")


def self_check(db: StructureDB, encoder) -> float:
    """Share of CHECK_CHAIN's 3Di states equal to those from the PDB file's coordinates."""
    states = threedi_states(encoder, chain_coordinates(db, db.ids.index(CHECK_CHAIN)))
    same = sum(a == b for a, b in zip(states, CHECK_3DI)) / len(CHECK_3DI)
    if len(states) != len(CHECK_3DI) or same < CHECK_MIN_SAME:
        raise PrepareError(f"{CHECK_CHAIN}: 3Di differs from the PDB-derived states ({same:.2f} equal)")
    return same


def label_rows(db: StructureDB, source: pa.Table, encoder) -> tuple[dict[str, list[tuple]], int]:
    """(task -> rows of (id, sequence, label, split)) for every chain of the source task, and the
    number of chain breaks met; the sequences must be the source task's."""
    index = {cid: i for i, cid in enumerate(db.ids)}
    letters = residue_letters(db.aa)
    rows: dict[str, list[tuple]] = {task: [] for task in TASKS}
    breaks = 0
    for cid, seq, split in zip(*(source.column(c).to_pylist() for c in ("id", "sequence", "split"))):
        if cid not in index:
            raise PrepareError(f"{cid} of the {SOURCE_TASK} task is not in the structure DB")
        i = index[cid]
        start, end = int(db.offsets[i]), int(db.offsets[i] + db.lengths[i])
        if letters[start:end].tobytes().decode("ascii") != seq:
            raise PrepareError(f"{cid}: sequence differs from the {SOURCE_TASK} task's")
        xyz = chain_coordinates(db, i)
        breaks += int((np.linalg.norm(xyz[1:, 0] - xyz[:-1, 2], axis=1) > PEPTIDE_BREAK).sum())
        rows["structure_3di"].append((cid, seq, threedi_states(encoder, xyz), split))
        rows["secondary_structure_8"].append((cid, seq, dssp8_codes(db.dssp[start:end]), split))
    return rows, breaks


def write_task(task: str, rows: list[tuple], out_root: Path, provenance: dict) -> dict:
    """data.parquet and PROVENANCE.json of one per-residue task; returns the provenance."""
    codes = TASKS[task]
    out_dir = out_root / task
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(("id", "sequence", "label", "split"))})
    pq.write_table(table, out_dir / "data.parquet")
    counts = Counter(c for r in rows if r[3] == "train" for c in r[2])
    total = sum(counts.values())
    prov = {"task": task, "kind": "per_residue", "labels": list(codes.values()), "label_codes": codes,
            **provenance, "counts": {s: sum(r[3] == s for r in rows) for s in SPLITS},
            "label_counts": {name: {"residues": counts[c], "fraction": round(counts[c] / total, 4)}
                             for c, name in codes.items()}}
    (out_dir / "PROVENANCE.json").write_text(json.dumps(prov, indent=2) + "\n")
    return prov


def create_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=REPO_ROOT / "data/raw/promod3" / DB_MEMBER,
                        help="structure_db.dat (extracted by tools/data/promod3.py)")
    parser.add_argument("--source", type=Path, default=REPO_ROOT / "data/tasks" / SOURCE_TASK,
                        help="the 3-state task folder whose chains and splits are used")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "data/tasks",
                        help="task folders are written below this")
    return parser


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Read the DB and the source task, label every chain, write both tasks."""
    try:
        import mini3di
    except ImportError:
        raise PrepareError("3Di states need mini3di: pip install mini3di") from None
    started = time.monotonic()
    source_dir = args.source
    source = pq.read_table(source_dir / "data.parquet")
    source_prov = json.loads((source_dir / "PROVENANCE.json").read_text())
    db = read_structure_db(args.db)
    encoder = mini3di.Encoder()
    geometry, same = check_geometry(db), self_check(db, encoder)
    rows, breaks = label_rows(db, source, encoder)
    shared = {"source": source_prov["source"], "licence": source_prov["licence"],
              "split_method": f"the chains and splits of data/tasks/{SOURCE_TASK}: {source_prov['split_method']}",
              "label_definition": {
                  "structure_3di": (f"Foldseek 3Di states by mini3di {mini3di.__version__} from N/CA/C "
                                    "(virtual CB); chain ends: Foldseek's invalid state 'D'"),
                  "secondary_structure_8": "DSSP 8 states from the DB; blank and '-' -> C (coil)"},
              "checks": {"median_bond_lengths_A": geometry, "chain_breaks_over_2A": breaks,
                         f"{CHECK_CHAIN}_3di_equal_to_pdb_coordinates": round(same, 4)},
              "command": command_line(__file__)}
    result = {task: write_task(task, rows[task], args.out_dir, shared) for task in TASKS}
    print(f"wrote {result['structure_3di']['counts']} chains per split in {time.monotonic() - started:.0f}s",
          file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(script_main(create_parser(), run))
