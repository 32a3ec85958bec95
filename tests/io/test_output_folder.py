"""An output folder that cannot lie: parts are verified before 'nothing to do' and before a
resume, one writer per folder, and --overwrite replaces the old results only once it has new ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from p2t_screen.errors import ModelError, UsageError
from p2t_screen.io.writer import RUN_FILE, SUCCESS_FILE, OutputLock
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig

AA = "ACDEFGHIKLMNPQRSTVWY"


def library(tmp_path: Path, n: int = 30) -> Path:
    path = tmp_path / "lib.fasta"
    path.write_text("".join(f">p{i}\n{AA[i % 20:] + AA[: i % 7 + 3]}\n" for i in range(n)))
    return path


def request(src: Path, out: Path, model: Path, **kw) -> ScreenRequest:
    return ScreenRequest(input=src, output=out, model=str(model), tasks=("stability", "kingdom"), device="cpu",
                         screen=ScreenConfig(window_records=7), **kw)


def rows(out: Path) -> list[tuple]:
    table = ds.dataset(out).to_table()
    return sorted(zip(table.column("input_index").to_pylist(), table.column("task").to_pylist(),
                      table.column("value").to_pylist(), table.column("label").to_pylist()))


@pytest.fixture
def finished(tmp_path, tiny_model_dir):
    src = library(tmp_path)
    screen_file(request(src, tmp_path / "out", tiny_model_dir))
    return src, tmp_path / "out", rows(tmp_path / "out")


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "copy_over", "only_markers"])
def test_a_damaged_finished_folder_is_repaired_not_trusted(finished, tiny_model_dir, damage):
    src, out, expected = finished
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 5  # 30 records in windows of 7
    if damage == "delete":
        parts[2].unlink()
    elif damage == "truncate":
        parts[1].write_bytes(parts[1].read_bytes()[:100])
    elif damage == "garbage":
        parts[3].write_bytes(b"not parquet at all")
    elif damage == "copy_over":
        shutil.copy(parts[0], parts[4])  # a valid part with the wrong keys
    else:
        for p in parts:
            p.unlink()
    summary = screen_file(request(src, out, tiny_model_dir))
    assert not summary.already_complete
    assert rows(out) == expected  # every row once, equal to the undamaged run
    keys = [(i, t) for i, t, _, _ in rows(out)]
    assert len(keys) == len(set(keys)) == 60
    record = json.loads((out / RUN_FILE).read_text())
    assert [p["file"] for p in record["parts"]] == [p.name for p in sorted(out.glob("part-*.parquet"))]


def test_an_intact_finished_folder_is_nothing_to_do(finished, tiny_model_dir):
    src, out, expected = finished
    assert screen_file(request(src, out, tiny_model_dir)).already_complete
    assert rows(out) == expected


def test_a_part_the_record_does_not_list_is_discarded(finished, tiny_model_dir):
    src, out, expected = finished
    shutil.copy(out / "part-00000.parquet", out / "part-00009.parquet")
    (out / SUCCESS_FILE).unlink()
    screen_file(request(src, out, tiny_model_dir))
    assert not (out / "part-00009.parquet").exists() and rows(out) == expected


def test_overwrite_with_a_broken_model_keeps_the_old_results(finished, tiny_model_dir, tmp_path):
    src, out, expected = finished
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "decoder.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError):
        screen_file(request(src, out, broken, overwrite=True))
    assert rows(out) == expected and (out / SUCCESS_FILE).exists()
    other = request(src, out, tiny_model_dir, overwrite=True)
    screen_file(ScreenRequest(**{**other.__dict__, "tasks": ("kingdom",)}))  # a real replacement
    assert {t for _, t, _, _ in rows(out)} == {"kingdom"}
    assert not list(tmp_path.glob(".out.p2t-new")) + list(tmp_path.glob(".out.p2t-old"))  # nothing left beside it


def test_a_second_writer_is_refused_naming_the_first(tmp_path, tiny_model_dir):
    src, out = library(tmp_path), tmp_path / "out"
    cmd = [sys.executable, "-m", "p2t_screen", "screen", str(src), "-o", str(out), "--model", str(tiny_model_dir),
           "--tasks", "kingdom", "--device", "cpu", "-q"]
    env = {**os.environ, "P2T_HOME": str(tmp_path / "home")}
    with OutputLock(out, command="the test"):  # this process holds the folder
        refused = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert refused.returncode == 2
        assert f"pid {os.getpid()}" in refused.stderr and "--wait" in refused.stderr
        assert not out.exists()
        waiting = subprocess.Popen(cmd + ["--wait"], stderr=subprocess.PIPE, text=True, env=env)
    assert waiting.wait() == 0, waiting.stderr.read()  # it ran once the lock was released
    assert len(rows(out)) == 30


def test_with_the_lock_free_a_killed_holder_never_blocks(tmp_path, tiny_model_dir):
    src, out = library(tmp_path), tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from p2t_screen.io.writer import OutputLock; "
                               f"lock = OutputLock(Path({str(out)!r})).__enter__(); print('held', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UsageError, match=f"pid {holder.pid}"):
        screen_file(request(src, out, tiny_model_dir))
    holder.kill()
    holder.wait()
    screen_file(request(src, out, tiny_model_dir))  # the dead holder's lock went with it
    assert len(rows(out)) == 60


def test_overwrite_stopped_before_its_first_part_keeps_the_old_results(finished, tiny_model_dir):
    from p2t_screen.screen.screener import Stopped

    src, out, expected = finished
    with pytest.raises(Stopped):
        screen_file(ScreenRequest(**{**request(src, out, tiny_model_dir, overwrite=True).__dict__,
                                     "tasks": ("kingdom",)}), should_stop=lambda: True)
    assert rows(out) == expected and (out / SUCCESS_FILE).exists()
