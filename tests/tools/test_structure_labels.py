"""tools/data/structure_labels.py: coordinates read as promod3 stores them, DSSP 8 states, and
3Di states that follow the geometry (an ideal helix is one state inside, any rigid motion keeps them)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "data"))
from promod3 import StructureDB  # noqa: E402
from structure_labels import PrepareError, chain_coordinates, dssp8_codes, threedi_states  # noqa: E402


def ideal_helix(n: int, phi: float = -57.0, psi: float = -47.0, omega: float = 180.0) -> np.ndarray:
    """(n, 4, 3) N, CA, C, O of a chain with fixed backbone dihedrals, placed atom by atom (NeRF)."""
    bonds = {"N": 1.33, "CA": 1.458, "C": 1.525}
    angles = {"N": 116.2, "CA": 121.7, "C": 111.2}
    atoms = [np.array([0.0, 1.4, 0.0]), np.array([0.0, 0.0, 0.0]), np.array([1.525, 0.0, 0.0])]  # N, CA, C
    torsions = {"N": psi, "CA": omega, "C": phi}
    for _ in range(n - 1):
        for name in ("N", "CA", "C"):
            a, b, c = atoms[-3:]
            bc = (c - b) / np.linalg.norm(c - b)
            normal = np.cross(b - a, bc)
            normal /= np.linalg.norm(normal)
            theta, tau = np.radians(angles[name]), np.radians(torsions[name])
            d = bonds[name] * np.array([-np.cos(theta), np.sin(theta) * np.cos(tau), np.sin(theta) * np.sin(tau)])
            atoms.append(c + np.column_stack([bc, np.cross(normal, bc), normal]) @ d)
    backbone = np.array(atoms).reshape(n, 3, 3)
    oxygen = backbone[:, 2] + 1.23 * (backbone[:, 2] - backbone[:, 1]) / 1.525  # not read by 3Di
    return np.concatenate([backbone, oxygen[:, None]], axis=1)


def test_coordinates_are_the_stored_hundredths_minus_the_chain_shift():
    stored = np.array([[[100, 200, 300]] * 4, [[-50, 0, 50]] * 4], dtype="<i2")  # 2 residues
    db = StructureDB(["X_A"], np.array([0]), np.array([2]), np.zeros(2, np.uint8), np.zeros(2, np.uint16),
                     np.zeros(2, np.uint8), stored, np.array([[1.0, 2.0, 3.0]], np.float32))
    xyz = chain_coordinates(db, 0)
    assert xyz.shape == (2, 4, 3)
    assert xyz[0, 1] == pytest.approx([0.0, 0.0, 0.0]) and xyz[1, 3] == pytest.approx([-1.5, -2.0, -2.5])


def test_dssp_eight_states_with_blank_and_dash_as_coil():
    raw = np.frombuffer(b"HGIEBTSC -", dtype=np.uint8)
    assert dssp8_codes(raw) == "HGIEBTSCCC"
    with pytest.raises(PrepareError, match="unknown DSSP"):
        dssp8_codes(np.frombuffer(b"HQ", dtype=np.uint8))


def test_threedi_of_an_ideal_helix_is_one_state_inside_and_invariant_to_rigid_motion():
    mini3di = pytest.importorskip("mini3di")
    encoder = mini3di.Encoder()
    helix = ideal_helix(30)
    assert np.linalg.norm(helix[1:, 0] - helix[:-1, 2], axis=1) == pytest.approx(np.full(29, 1.33))
    states = threedi_states(encoder, helix)
    assert len(states) == 30 and states[0] == states[-1] == "D"  # chain ends: Foldseek's invalid state
    assert len(set(states[6:24])) == 1  # every inner residue sees the same geometry
    turn = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    turn *= np.sign(np.linalg.det(turn))  # a rotation, not a reflection
    assert threedi_states(encoder, helix @ turn.T + [10.0, -4.0, 7.0]) == states
    strand = threedi_states(encoder, ideal_helix(30, phi=-120.0, psi=130.0))
    assert strand[6:24] != states[6:24]  # another geometry, other states
