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
    assert not (tmp_path / ".out.p2t-lock").exists()  # each holder removes the lock file as it lets go


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
    assert not (tmp_path / ".out.p2t-lock").exists()  # and the file it left is gone after the next run


def test_overwrite_stopped_before_its_first_part_keeps_the_old_results(finished, tiny_model_dir):
    from p2t_screen.screen.screener import Stopped

    src, out, expected = finished
    with pytest.raises(Stopped):
        screen_file(ScreenRequest(**{**request(src, out, tiny_model_dir, overwrite=True).__dict__,
                                     "tasks": ("kingdom",)}), should_stop=lambda: True)
    assert rows(out) == expected and (out / SUCCESS_FILE).exists()


def test_an_unwritable_output_is_one_clear_error_before_any_work(tmp_path, tiny_model_dir, monkeypatch):
    from p2t_screen.errors import OutputError

    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: a read-only place cannot be made here
        pytest.skip("running as a user whom file permissions do not bind (root)")
    with pytest.raises(OutputError, match=f"cannot write the output folder {locked / 'out'}: no permission to "
                                          f"create files in {locked}$"):
        screen_file(request(library(tmp_path), locked / "out", tiny_model_dir))


def test_a_write_failing_mid_run_keeps_finished_parts_and_resumes(tmp_path, tiny_model_dir, monkeypatch):
    """Disk full on the third part: one line naming the file, the two finished parts kept; the
    rerun completes the run exactly."""
    import errno

    import pyarrow.parquet as pq

    from p2t_screen.errors import OutputError
    from p2t_screen.io import writer

    src, out = library(tmp_path), tmp_path / "out"
    real, calls = pq.write_table, []

    def filling_up(table, where, **kwargs):
        calls.append(where)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, **kwargs)

    monkeypatch.setattr(writer.pq, "write_table", filling_up)
    with pytest.raises(OutputError, match=r"cannot write .*part-00002.*No space left on device.*rerun"):
        screen_file(request(src, out, tiny_model_dir))
    monkeypatch.undo()
    assert [p["file"] for p in json.loads((out / RUN_FILE).read_text())["parts"]] == ["part-00000.parquet",
                                                                                       "part-00001.parquet"]
    assert screen_file(request(src, out, tiny_model_dir)).resumed_parts == 2
    assert len(rows(out)) == 60


def test_directories_and_nucleotides_are_refused_saying_what_p2t_saw(tmp_path, tiny_model_dir):
    from p2t_screen.errors import InputError

    with pytest.raises(InputError, match="is a directory, not a FASTA file"):
        screen_file(request(tmp_path, tmp_path / "out", tiny_model_dir))
    dna = tmp_path / "dna.fasta"
    dna.write_text(">g1\nATGCGTACGTTAGC\n>g2\nATGAAACCCGGGTTTNA\n")
    with pytest.raises(InputError, match=r"looks like nucleotide sequences: 100% .*--allow-nucleotide"):
        screen_file(request(dna, tmp_path / "out", tiny_model_dir))
    assert not (tmp_path / "out").exists()
    screen_file(request(dna, tmp_path / "out", tiny_model_dir, allow_nucleotide=True))
    assert len(rows(tmp_path / "out")) == 4


def test_bad_slurm_variables_name_the_variable():
    from p2t_screen.screen.sources import parse_shard

    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID='abc' is not a whole number"):
        parse_shard(None, {"SLURM_ARRAY_TASK_ID": "abc", "SLURM_ARRAY_TASK_COUNT": "4"})
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID=9 .* is not one of the SLURM_ARRAY_TASK_COUNT=4"):
        parse_shard(None, {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert parse_shard(None, {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}) == (2, 4)


def test_an_output_under_a_file_is_one_clear_error_before_any_work(tmp_path, tiny_model_dir):
    from p2t_screen.errors import OutputError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match=f"cannot write the output folder {tmp_path / 'file' / 'out'}: "
                                          f"{tmp_path / 'file'} is a file, not a folder$"):
        screen_file(request(library(tmp_path), tmp_path / "file" / "out", tiny_model_dir))


def test_a_folder_of_other_files_is_neither_used_nor_replaced_without_force(tmp_path, tiny_model_dir):
    src, out = library(tmp_path), tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(UsageError, match=r"holds 1 file\(s\) that are no p2t run \(notes.txt\).*--force"):
            screen_file(request(src, out, tiny_model_dir, overwrite=overwrite))
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    screen_file(request(src, out, tiny_model_dir, force=True))  # written beside the notes
    assert (out / "notes.txt").exists() and (out / SUCCESS_FILE).exists()
    screen_file(request(src, tmp_path / "other", tiny_model_dir))
    (tmp_path / "other" / RUN_FILE).unlink()
    screen_file(request(src, tmp_path / "other", tiny_model_dir, overwrite=True, force=True))  # replaced
    assert json.loads((tmp_path / "other" / RUN_FILE).read_text())["parts"]


def test_streams_are_read_once_and_fingerprinted_as_read(tmp_path, tiny_model_dir):
    """`-` (a pipe), a FIFO: read once into a temporary file; the same bytes again are the same run
    (finished: nothing to do), other bytes a different run."""
    import threading

    text = library(tmp_path).read_text()
    cmd = [sys.executable, "-m", "p2t_screen", "screen", "-", "-o", str(tmp_path / "out"), "--model",
           str(tiny_model_dir), "--tasks", "kingdom", "--device", "cpu"]
    env = {**os.environ, "P2T_HOME": str(tmp_path / "home")}
    first = subprocess.run(cmd, input=text, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert len(rows(tmp_path / "out")) == 30
    assert json.loads((tmp_path / "out" / RUN_FILE).read_text())["input"] == "-"
    again = subprocess.run(cmd, input=text, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    other = subprocess.run(cmd, input=text + ">extra\nMKV\n", capture_output=True, text=True, env=env)
    assert other.returncode == 2 and "input_sha256" in other.stderr
    assert not list(tmp_path.glob(".out.p2t-input-*"))  # the spooled copies are gone
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    screen_file(ScreenRequest(input=fifo, output=tmp_path / "from-fifo", model=str(tiny_model_dir),
                              tasks=("kingdom",), device="cpu"))
    writer.join()
    assert rows(tmp_path / "from-fifo") == rows(tmp_path / "out")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 96 KiB tmpfs, mounted for the test (skipped, saying why, where mounts are not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip() or 'mount failed'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_filesystem_that_fills_up_mid_run_keeps_the_finished_parts(tmp_path, tiny_model_dir, small_tmpfs):
    from p2t_screen.errors import OutputError

    src, out = library(tmp_path, n=300), small_tmpfs / "out"
    with pytest.raises(OutputError, match="No space left on device.*finished parts are kept"):
        screen_file(request(src, out, tiny_model_dir))
    kept = json.loads((out / RUN_FILE).read_text())["parts"]
    assert kept and len(kept) < 43  # 300 records in windows of 7: 43 parts when complete
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_tmpfs)], check=True)  # space freed
    resumed = screen_file(request(src, out, tiny_model_dir))
    assert resumed.resumed_parts == len(kept) and len(rows(out)) == 600


def test_two_runs_started_together_on_one_folder_never_mix(tmp_path, tiny_model_dir):
    """Two processes with different tasks, started at once on one folder: one finishes, the other
    is refused (the folder is locked, or holds the other's run), and the folder holds one run."""
    src, out = library(tmp_path, n=60), tmp_path / "out"
    env = {**os.environ, "P2T_HOME": str(tmp_path / "home")}
    base = [sys.executable, "-m", "p2t_screen", "screen", str(src), "-o", str(out), "--model", str(tiny_model_dir),
            "--device", "cpu", "-q", "--tasks"]
    procs = [subprocess.Popen(base + [tasks], stderr=subprocess.PIPE, text=True, env=env)
             for tasks in ("kingdom", "stability")]
    codes = sorted(p.wait() for p in procs)
    errors = " ".join(p.stderr.read() for p in procs)
    assert codes == [0, 2], errors
    assert "being written by another p2t run" in errors or "holds a different run" in errors
    record = json.loads((out / RUN_FILE).read_text())
    assert {t for _, t, _, _ in rows(out)} == set(record["tasks"]) and len(rows(out)) == 60
