"""`p2t bench --export`'s result set: the template's records tiled, read back as a finished screen."""

from __future__ import annotations

import pytest
from conftest import TASKS, tiny_model

from p2t_screen.bench.exports import tiled_results
from p2t_screen.bench.library import generate_library
from p2t_screen.model.store import save_model
from p2t_screen.results.dataset import Results
from p2t_screen.results.export import ExportRequest, Format, Layout, export
from p2t_screen.screen.pipeline import ScreenRequest, screen_file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiled_results_read_back_checked_and_export(tmp_path):
    tasks = [t for t in TASKS if t.name in ("stability", "ss3")]  # a scalar and a per-residue task
    model = save_model(tiny_model(tasks=tasks), tmp_path / "model")
    seqs = generate_library(tmp_path / "template.fasta", 4, 10, 30, seed=0)
    screen_file(ScreenRequest(input=tmp_path / "template.fasta", output=tmp_path / "template", model=str(model),
                              device="cpu"))
    tiled = tiled_results(tmp_path / "template", seqs, tmp_path / "tiled", 10)
    results = Results.open(tiled)  # parts checked against the run record, the run finished
    assert results.finished["records"] == 10
    assert [group[0]["seq_id"] for group in results.records()] == [f"tile{i}" for i in range(10)]
    assert export(ExportRequest(tiled, Format.THREE_LINE, Layout.LONG, tmp_path / "ss.3line")).rows == 10
