"""Same input, same numbers: batches follow the input (blocks), never the clock, so parts closed
at other times, a stop and a resume, or a slower machine give bit-identical rows."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from p2t_screen.io.records import Record, Status
from p2t_screen.screen import windows
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Stopped
from p2t_screen.screen.windows import Blocks

pytestmark = pytest.mark.usefixtures("one_thread")
AA = "ACDEFGHIKLMNPQRSTVWY"


def library(tmp_path: Path, n: int = 60) -> Path:
    rng = random.Random(1)
    seqs = ["".join(rng.choice(AA) for _ in range(rng.randint(5, 64))) for _ in range(n)]
    seqs[20] = seqs[2]  # a duplicate in another block
    path = tmp_path / "lib.fasta"
    path.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    return path


def screen(src: Path, out: Path, model_dir: Path, should_stop=None, **config):
    # 300 tokens per batch, blocks of 2 batches' worth (600 residues, ~18 records): several
    # batches per block, several blocks per part unless the clock closes parts sooner.
    cfg = ScreenConfig(**{"max_tokens": 300, "block_batches": 2, **config})
    req = ScreenRequest(input=src, output=out, model=str(model_dir), device="cpu", screen=cfg)
    return screen_file(req, should_stop=should_stop)


def rows(out: Path):
    table = ds.dataset(out).to_table().sort_by([("input_index", "ascending"), ("task", "ascending")])
    return table.drop_columns([c for c in table.column_names if c == "model"])


def test_parts_closed_by_the_clock_give_the_numbers_of_parts_closed_by_size(tmp_path, tiny_model_dir):
    src = library(tmp_path)
    by_size = screen(src, tmp_path / "size", tiny_model_dir, window_seconds=None)
    every_block = screen(src, tmp_path / "clock", tiny_model_dir, window_seconds=1e-9)  # a slow machine
    assert by_size.parts == 1 and every_block.parts > 2
    assert rows(tmp_path / "clock").equals(rows(tmp_path / "size"))


def test_a_slower_clock_changes_parts_but_not_a_digit(tmp_path, tiny_model_dir, monkeypatch):
    src = library(tmp_path)
    fast = screen(src, tmp_path / "fast", tiny_model_dir, window_seconds=60.0)
    ticks = iter(range(0, 10**9, 25))  # every clock read 25 s later: each block "takes" 25 s
    monkeypatch.setattr(windows.time, "perf_counter", lambda: float(next(ticks)))
    slow = screen(src, tmp_path / "slow", tiny_model_dir, window_seconds=60.0)
    assert fast.parts == 1 and slow.parts >= 2
    assert rows(tmp_path / "slow").equals(rows(tmp_path / "fast"))


def test_a_stop_keeps_the_finished_blocks_and_the_resume_is_bit_identical(tmp_path, tiny_model_dir):
    src = library(tmp_path)
    screen(src, tmp_path / "full", tiny_model_dir)
    polls = {"n": 0}

    def stop_later():
        polls["n"] += 1
        return polls["n"] > 4  # within the second block

    with pytest.raises(Stopped):
        screen(src, tmp_path / "out", tiny_model_dir, should_stop=stop_later)
    kept = list((tmp_path / "out").glob("part-*.parquet"))
    assert len(kept) == 1  # one minute's part was not due yet: the finished block was written anyway
    assert 0 < ds.dataset(tmp_path / "out").count_rows() < ds.dataset(tmp_path / "full").count_rows()
    resumed = screen(src, tmp_path / "out", tiny_model_dir)
    assert resumed.resumed_parts == 1
    assert rows(tmp_path / "out").equals(rows(tmp_path / "full"))


def _records(lengths):
    return [Record(i, f"r{i}", "", "A" * n, Status.OK, None, n, False) for i, n in enumerate(lengths)]


def test_block_bounds_follow_the_input_from_its_first_record_also_when_resuming():
    lengths = [30, 50, 20, 70, 10, 40, 60, 25, 35, 45]
    whole = Blocks(iter(_records(lengths)), 100, 100)
    blocks = []
    while block := whole.next():
        blocks.append([r.input_index for r in block])
    assert blocks == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    skipped = []
    resumed = Blocks(iter(_records(lengths)), 100, 100, resume_after=5, on_skipped=skipped.append)
    assert [r.input_index for r in resumed.next()] == [6, 7, 8]
    assert [r.input_index for r in skipped] == [0, 1, 2, 3, 4, 5]
    by_records = Blocks(iter(_records(lengths)), 4, 10**6)
    assert [r.input_index for r in by_records.next()] == [0, 1, 2, 3]
