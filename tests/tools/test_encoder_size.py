"""tools/encoder_size.py on a toy corpus: each shape's run ends where its schedule does, its held-out
loss is measured along the way, and the report puts the shapes side by side."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import encoder_size

AA = "ACDEFGHIKLMNPQRSTVWY"


def toy(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AA) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def test_two_shapes_measured_side_by_side(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(encoder_size, "SHAPES", {"1x16": (1, 16, 2, 1e-3), "2x32": (2, 32, 4, 1e-3)})
    monkeypatch.setattr(encoder_size, "MAX_TOKENS", 512)
    train, valid = toy(40, 0), toy(8, 1)
    # A budget of 0 minutes still trains the 10-step floor; `every` 0 pauses after every step.
    results = [encoder_size.study(name, train, valid, 0.0, 0.0, tmp_path) for name in ("1x16", "2x32")]
    for result in results:
        points = result["points"]
        assert result["steps"] == 10 and points[-1]["step"] == 10
        assert [p["step"] for p in points] == sorted({p["step"] for p in points})
        assert all(p["seconds"] > 0 and p["loss"] > 0 and p["residues"] > 0 for p in points)
        assert result["screen_residues_per_s"] > 0 and result["train_residues_per_s"] > 0
    assert results[0]["parameters"] < results[1]["parameters"]
    text = encoder_size.report(results, 0.0)
    assert "| 1x16 |" in text and "| 2x32 |" in text and "Lowest held-out loss" in text
