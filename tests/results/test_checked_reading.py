"""Readers check an output folder before they read it: a damaged or foreign part, a missing run
record and an unfinished run are refused (exit 2, one line saying how to repair), and
`--allow-partial` reads an unfinished run's rows while every file written says what is missing."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from p2t_screen.cli import EXIT_USAGE, app
from p2t_screen.errors import UsageError
from p2t_screen.io.schema import read_run_metadata
from p2t_screen.results.dataset import Results, UnfinishedRun
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Stopped

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def library(tmp: Path, seed: int = 0, name: str = "lib.fasta") -> Path:
    rng = random.Random(seed)
    path = tmp / name
    path.write_text("".join(f">s{i}\n{''.join(rng.choice('ACDEFGHIKLMNPQRSTVWY') for _ in range(rng.randint(5, 60)))}\n"
                            for i in range(30)))
    return path


def request(src: Path, out: Path, model_dir: Path) -> ScreenRequest:
    return ScreenRequest(input=src, output=out, model=str(model_dir), device="cpu",
                         screen=ScreenConfig(window_records=4, max_tokens=200))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """Two finished runs of different libraries (several parts each) and one stopped after its
    first parts, the way an interrupted run leaves its folder."""
    tmp = tmp_path_factory.mktemp("runs")
    src, other = library(tmp), library(tmp, seed=1, name="other.fasta")
    screen_file(request(src, tmp / "done", tiny_model_dir))
    screen_file(request(other, tmp / "other", tiny_model_dir))
    calls = {"n": 0}

    def stop_soon():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Stopped):
        screen_file(request(src, tmp / "stopped", tiny_model_dir), should_stop=stop_soon)
    return tmp


def _copy(runs: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs / name, tmp_path / name))


def _one_line(result) -> str:
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", [["export", "--wide"], ["export", "-f", "parquet"], ["report"]])
def test_a_part_replaced_by_another_runs_part_is_refused(runs, tmp_path, command):
    out = _copy(runs, "done", tmp_path)
    shutil.copy(runs / "other" / "part-00001.parquet", out / "part-00001.parquet")
    text = _one_line(runner.invoke(app, [*command, str(out), "-o", str(tmp_path / "x.out")]))
    assert "part-00001.parquet is not the part this run wrote" in text
    assert "rerun the screen that wrote it" in text and "--overwrite" in text
    assert not (tmp_path / "x.out").exists()


def test_a_missing_part_and_a_missing_record_are_named(runs, tmp_path):
    out = _copy(runs, "done", tmp_path)
    (out / "part-00002.parquet").unlink()
    assert "part-00002.parquet is missing" in _one_line(runner.invoke(app, ["export", str(out)]))
    out = _copy(runs, "other", tmp_path / "b")
    (out / "_p2t_run.json").unlink()
    assert "run record _p2t_run.json is missing or unreadable" in _one_line(runner.invoke(app, ["export", str(out)]))


def test_a_damaged_part_file_given_alone_is_refused(runs, tmp_path):
    out = _copy(runs, "done", tmp_path)
    shutil.copy(runs / "other" / "part-00000.parquet", out / "part-00000.parquet")
    text = _one_line(runner.invoke(app, ["export", str(out / "part-00000.parquet"), "-o", str(tmp_path / "x.csv")]))
    assert "is not the part this run wrote" in text
    assert runner.invoke(app, ["export", str(out / "part-00001.parquet"), "-o", str(tmp_path / "y.csv")]).exit_code == 0


def test_an_unfinished_run_is_refused_and_says_which_records_are_missing(runs, tmp_path):
    out = runs / "stopped"
    record = json.loads((out / "_p2t_run.json").read_text())
    have = sum(1 for _ in Results.open(out, allow_partial=True).records())
    total = record["records"]
    assert 0 < have < total
    with pytest.raises(UnfinishedRun):
        Results.open(out)
    for command in (["export", "--wide"], ["report"]):
        text = _one_line(runner.invoke(app, [*command, str(out), "-o", str(tmp_path / "refused")]))
        assert f"unfinished run: {have} of {total} input records have rows" in text
        assert f"input_index after {record['parts'][-1]['last']}" in text and "--allow-partial" in text
    assert not (tmp_path / "refused").exists()


def test_allow_partial_writes_what_is_there_and_says_what_is_missing(runs, tmp_path):
    out = runs / "stopped"
    missing = Results.open(out, allow_partial=True).unfinished
    csv = tmp_path / "partial.csv"
    result = runner.invoke(app, ["export", "--wide", str(out), "-o", str(csv), "--allow-partial"])
    assert result.exit_code == 0, result.output
    assert "warning: unfinished run" in " ".join(result.output.split())
    legend = (tmp_path / "partial.csv.legend.txt").read_text().splitlines()
    assert legend[0] == f"UNFINISHED\t{missing}; these are the rows written so far"
    parquet = tmp_path / "partial.parquet"
    assert runner.invoke(app, ["export", str(out), "-f", "parquet", "-o", str(parquet), "--allow-partial"]).exit_code == 0
    assert read_run_metadata(pq.read_schema(parquet))["unfinished"] == missing
    page = tmp_path / "partial.html"
    result = runner.invoke(app, ["report", str(out), "-o", str(page), "--allow-partial"])
    assert result.exit_code == 0, result.output
    assert missing in page.read_text()


def test_a_finished_run_reads_as_before(runs):
    results = Results.open(runs / "done")
    assert results.unfinished is None and results.finished is not None
    record = json.loads((runs / "done" / "_p2t_run.json").read_text())
    assert [p.name for p in results.parts] == [e["file"] for e in record["parts"]]


def test_a_part_the_record_does_not_list_is_not_read(runs, tmp_path):
    out = _copy(runs, "done", tmp_path)
    parts = sorted(out.glob("part-*.parquet"))
    shutil.copy(runs / "other" / "part-00000.parquet", out / f"part-{len(parts):05d}.parquet")  # a stray file
    assert len(Results.open(out).parts) == len(parts)


def test_a_folder_with_no_results_says_so(tmp_path):
    with pytest.raises(UsageError, match="no such results folder"):
        Results.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no p2t results"):
        Results.open(tmp_path / "empty")


def test_a_folder_lost_mid_swap_says_where_its_results_wait(runs, tmp_path):
    """A run killed between the two renames of an --overwrite (file systems without an atomic
    exchange) leaves no folder at the output path; a reader says where the results wait."""
    shutil.copytree(runs / "done", tmp_path / ".out.p2t-old")
    with pytest.raises(UsageError, match=r"killed mid-swap .* \.out\.p2t-old; rerun that screen"):
        Results.open(tmp_path / "out")
