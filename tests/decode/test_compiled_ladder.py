"""Compiled decoding on a fixed ladder of shapes, proven on CPU: the decoder step goes through
dynamo whole (`fullgraph=True`; the "eager" backend runs the graphs dynamo captures, so every
shape is a capture and a recompile exactly as under inductor, without kernels to build), over a
library of mixed lengths, and never compiles more graphs than its ladder has shapes; its answers
equal the eager path's. (Per-residue labels come from one pass here, `residue_feedback=False`,
as in the default model: the stepped stack holds the class, sites and regression tasks, whose
longest rows run to a thousand steps.)"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_model
from torch._dynamo.utils import counters

from p2t_screen.decode import ShapeLadder
from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.screen.config import ScreenConfig
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.spec import TaskSpec

pytestmark = pytest.mark.usefixtures("one_thread")
AA = "ACDEFGHIKLMNPQRSTVWY"
TASKS = [
    TaskSpec("kingdom", "class", labels=("archaea", "bacteria", "eukaryota")),
    TaskSpec("phospho", "sites", residues="STY"),
    TaskSpec("ss3", "per_residue", labels=("H", "E", "C")),
    TaskSpec("stability", "regression", value_range=(-1.97, 3.4)),
]


def library(n: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """n proteins of 30 to 1,000 residues, most of them short (log-uniform lengths), as screens see."""
    rng = random.Random(seed)
    lengths = [int(round(30 * (1000 / 30) ** rng.random())) for _ in range(n)]
    return [(f"p{i}", "".join(rng.choice(AA) for _ in range(n_aa))) for i, n_aa in enumerate(lengths)]


def test_the_ladder_rungs():
    ladder = ShapeLadder.for_model(max_batch=100, max_memory=1002, max_len=1003)
    assert ladder.batch == (1, 2, 4, 8, 16, 32, 64, 100)
    assert ladder.memory == (32, 64, 128, 256, 512, 1002) and ladder.cache == (32, 64, 128, 256, 512, 1003)
    assert ladder.size == 8 * 6 * 6 and ladder.cache_rung(33) == 64 and ladder.cache_rung(1003) == 1003
    with pytest.raises(ValueError, match="beyond the top rung"):
        ladder.cache_rung(1004)
    proteins, memory, keep = ladder.fit(["AB", "CDE", "F"], torch.randn(3, 5, 4), torch.ones(3, 5, dtype=torch.bool))
    assert proteins == ["AB", "CDE", "F", "F"] and memory.shape == (4, 32, 4) and keep.shape == (4, 32)
    assert not keep[:, 5:].any() and torch.equal(memory[3, :5], memory[2, :5]) and not memory[:, 5:].any()


def test_compiled_screen_keeps_to_its_ladder_and_equals_the_eager_one():
    model = tiny_model(seed=21, tasks=TASKS, max_residues=1000, residue_feedback=False)
    records = list(records_from_sequences(library(), ReadPolicy(max_residues=1000)))
    config = ScreenConfig(max_tokens=6000, window_seconds=None)
    eager = Screener(model, list(TASKS), config)
    torch._dynamo.reset()
    counters.clear()
    compiled = Screener(model, list(TASKS), ScreenConfig(max_tokens=6000, window_seconds=None, compile=True,
                                                          compile_backend="eager"))
    got = pa_rows(compiled, records)
    graphs = counters["stats"]["unique_graphs"]
    assert 0 < graphs <= compiled.ladder.size and not counters["graph_break"]
    expected = pa_rows(eager, records)
    assert len(got) == len(expected) == len(records) * len(TASKS)
    for a, b in zip(got, expected):
        assert (a["seq_id"], a["task"], a["status"]) == (b["seq_id"], b["task"], b["status"]) and a["status"] == "ok"
        for column in ("label", "labels", "sites", "residue_labels"):
            assert a[column] == b[column], (a["seq_id"], a["task"], column)
        for column in ("value", "confidence"):
            assert (a[column] is None) == (b[column] is None), (a["seq_id"], a["task"], column)
            if a[column] is not None:
                assert a[column] == pytest.approx(b[column], rel=1e-5, abs=1e-6), (a["seq_id"], a["task"], column)
        assert (a["residue_probs"] or []) == pytest.approx(b["residue_probs"] or [], abs=1e-5)
        assert [d["label"] for d in a["label_probs"] or []] == [d["label"] for d in b["label_probs"] or []]
        assert [d["prob"] for d in a["label_probs"] or []] == pytest.approx(
            [d["prob"] for d in b["label_probs"] or []], abs=1e-5)
    print(f"{graphs} compiled graphs for {len(records)} proteins; ladder of {compiled.ladder.size} shapes")


def pa_rows(screener: Screener, records) -> list[dict]:
    return [row for batch in screener.screen(records) for row in batch.to_pylist()]
