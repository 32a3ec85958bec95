"""--overwrite swaps a new run in for the old one recoverably: killed at any step, the next run
finds the old results or the finished swap at the output path, never neither, and nothing hidden
stays beside it. Symbolic links are followed, not replaced; the lock file goes with its run."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from p2t_screen.errors import OutputError, UsageError
from p2t_screen.io import writer
from p2t_screen.io.writer import RUN_FILE, SUCCESS_FILE, OutputLock, check_parts, read_record, settle_replacement
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Stopped

AA = "ACDEFGHIKLMNPQRSTVWY"


def library(tmp_path: Path, n: int = 30) -> Path:
    path = tmp_path / "lib.fasta"
    path.write_text("".join(f">p{i}\n{AA[i % 20:] + AA[: i % 7 + 3]}\n" for i in range(n)))
    return path


def request(src: Path, out: Path, model: Path, tasks: tuple[str, ...] = ("stability", "kingdom"), **kw
            ) -> ScreenRequest:
    return ScreenRequest(input=src, output=out, model=str(model), tasks=tasks, device="cpu",
                         screen=ScreenConfig(window_records=7), **kw)


def rows(out: Path) -> list[tuple]:
    table = ds.dataset(out).to_table()
    return sorted(zip(table.column("input_index").to_pylist(), table.column("task").to_pylist(),
                      table.column("value").to_pylist(), table.column("label").to_pylist()))


def assert_verified(out: Path) -> None:
    """A finished run: `_SUCCESS`, and exactly the parts its run record lists, each checking out."""
    record = read_record(out / RUN_FILE)
    assert record is not None and (out / SUCCESS_FILE).is_file()
    assert check_parts(out, record["parts"]) == (record["parts"], None)
    assert [p["file"] for p in record["parts"]] == sorted(p.name for p in out.glob("part-*.parquet"))


def hidden_beside(out: Path) -> list[str]:
    """What p2t left beside the folder: lock file, replacement, old results."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.p2t-*"))


@pytest.fixture
def old_run(tmp_path, tiny_model_dir):
    """A finished two-task run in tmp/out, and the rows of the one-task run that replaces it."""
    src, out = library(tmp_path), tmp_path / "out"
    screen_file(request(src, out, tiny_model_dir))
    screen_file(request(src, tmp_path / "reference", tiny_model_dir, tasks=("kingdom",)))
    return src, out, rows(out), rows(tmp_path / "reference")


# A screen with --overwrite that SIGKILLs itself at one step of the swap. `way`: "exchange"
# (renameat2 RENAME_EXCHANGE) or "renames" (the two-rename fallback).
KILLED_SWAP = """
import os, shutil, signal, sys
from pathlib import Path
from p2t_screen.io import writer
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig

src, out, model, point, way = sys.argv[1:]
real_replace, real_exchange, real_rmtree = os.replace, writer._exchange, shutil.rmtree
real_swap = writer.PartWriter._swap_in
committed = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def swap_in(self):
    if point == "before":  # the first part is written in .p2t-new, nothing renamed yet
        die()
    real_swap(self)

def exchange(a, b):
    if way == "renames":
        return False
    assert real_exchange(a, b), "this file system cannot exchange"
    committed.append(b)
    if point == "exchanged":
        die()
    return True

def replace(a, b, *rest, **kw):
    real_replace(a, b, *rest, **kw)
    if str(b).endswith(".p2t-old") and point == "aside":
        die()
    if str(a).endswith(".p2t-new"):
        committed.append(b)
        if point == "moved_in":
            die()

def rmtree(path, *rest, **kw):
    parts = sorted(Path(path).glob("part-*.parquet")) if committed and Path(path).is_dir() else []
    if point == "deleting" and parts:
        parts[0].unlink()  # the old results half deleted
        die()
    real_rmtree(path, *rest, **kw)

writer.PartWriter._swap_in, writer._exchange, os.replace, shutil.rmtree = swap_in, exchange, replace, rmtree
screen_file(ScreenRequest(input=Path(src), output=Path(out), model=model, tasks=("kingdom",), device="cpu",
                          screen=ScreenConfig(window_records=7), overwrite=True))
"""

# (step killed, way of swapping, what the output path must hold afterwards)
KILL_POINTS = [
    ("before", "exchange", "old"),
    ("exchanged", "exchange", "new"),
    ("deleting", "exchange", "new"),
    ("aside", "renames", "old"),
    ("moved_in", "renames", "new"),
    ("deleting", "renames", "new"),
]


def kill_during_swap(src: Path, out: Path, model: Path, point: str, way: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(src), str(out), str(model), point, way],
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize("point,way,holds", KILL_POINTS)
def test_a_swap_killed_at_any_step_leaves_old_or_new_results(old_run, tiny_model_dir, point, way, holds):
    src, out, old_rows, new_rows = old_run
    kill_during_swap(src, out, tiny_model_dir, point, way)
    if way == "exchange":  # one atomic step: readers never find the output path missing
        assert read_record(out / RUN_FILE)["tasks"] == (["kingdom"] if holds == "new" else ["stability", "kingdom"])
    if holds == "old":  # the old run's own command: its results are there, whole, nothing to do
        assert screen_file(request(src, out, tiny_model_dir)).already_complete
        assert rows(out) == old_rows
    else:  # the new run's command, as a resume: it goes on from its first part
        assert screen_file(request(src, out, tiny_model_dir, tasks=("kingdom",))).resumed_parts == 1
        assert rows(out) == new_rows
    assert_verified(out)
    assert hidden_beside(out) == []


@pytest.mark.parametrize("point,way", [("aside", "renames"), ("exchanged", "exchange")])
def test_the_same_overwrite_rerun_after_a_kill_finishes_the_replacement(old_run, tiny_model_dir, point, way):
    src, out, _, new_rows = old_run
    kill_during_swap(src, out, tiny_model_dir, point, way)
    screen_file(request(src, out, tiny_model_dir, tasks=("kingdom",), overwrite=True))
    assert rows(out) == new_rows
    assert_verified(out)
    assert hidden_beside(out) == []


def folder(path: Path, name: str) -> Path:
    path.mkdir()
    (path / name).write_text(name)
    return path


@pytest.mark.parametrize("state,kept", [
    ({"out": "old", "new": "new"}, "old"),  # killed before the swap
    ({"old": "old", "new": "new"}, "old"),  # killed between the two renames: put back
    ({"out": "new", "old": "old"}, "new"),  # killed after them, or while deleting the old results
    ({"out": "new", "new": "old"}, "new"),  # killed after an exchange
])
def test_the_names_alone_decide_how_a_swap_is_settled(tmp_path, state, kept):
    out = tmp_path / "out"
    for role, content in state.items():
        folder(out if role == "out" else tmp_path / f".out.p2t-{role}", content)
    with OutputLock(out):
        assert [p.name for p in out.iterdir()] == [kept]
        assert hidden_beside(out) == [".out.p2t-lock"]
    assert hidden_beside(out) == []


def test_the_exchange_is_atomic_and_falls_back_where_unsupported(tmp_path, monkeypatch):
    a, b = folder(tmp_path / "a", "x"), folder(tmp_path / "b", "y")
    if not writer._exchange(a, b):
        pytest.skip("this system or file system has no renameat2(RENAME_EXCHANGE)")
    assert [p.name for p in a.iterdir()] == ["y"] and [p.name for p in b.iterdir()] == ["x"]
    with pytest.raises(FileNotFoundError):
        writer._exchange(a, tmp_path / "missing")
    monkeypatch.setattr(writer, "_renameat2", lambda: None)  # no renameat2 in the C library
    assert not writer._exchange(a, b) and [p.name for p in a.iterdir()] == ["y"]


@pytest.mark.parametrize("way", ["exchange", "renames"])
def test_both_ways_of_swapping_replace_the_results(old_run, tiny_model_dir, monkeypatch, way):
    src, out, _, new_rows = old_run
    used = []
    real = writer._exchange
    monkeypatch.setattr(writer, "_exchange", lambda a, b: used.append(way) or (way == "exchange" and real(a, b)))
    screen_file(request(src, out, tiny_model_dir, tasks=("kingdom",), overwrite=True))
    assert used == [way] and rows(out) == new_rows
    assert_verified(out)
    assert hidden_beside(out) == []


def test_a_swap_failing_between_its_renames_puts_the_old_results_back(old_run, tiny_model_dir, monkeypatch):
    src, out, old_rows, _ = old_run
    real = os.replace

    def refusing(a, b, *rest, **kw):
        if str(a).endswith(".p2t-new"):
            raise OSError(errno.EACCES, "Permission denied", str(a))
        return real(a, b, *rest, **kw)

    monkeypatch.setattr(writer, "_exchange", lambda a, b: False)
    monkeypatch.setattr(writer.os, "replace", refusing)
    with pytest.raises(OutputError, match="Permission denied"):
        screen_file(request(src, out, tiny_model_dir, tasks=("kingdom",), overwrite=True))
    monkeypatch.undo()
    assert rows(out) == old_rows
    assert_verified(out)
    assert hidden_beside(out) == []


def test_an_overwrite_stopped_before_its_first_part_leaves_nothing_beside(old_run, tiny_model_dir):
    src, out, old_rows, _ = old_run
    with pytest.raises(Stopped):
        screen_file(request(src, out, tiny_model_dir, tasks=("kingdom",), overwrite=True), should_stop=lambda: True)
    assert rows(out) == old_rows and hidden_beside(out) == []


def test_overwrite_through_a_symbolic_link_writes_its_target_and_keeps_the_link(old_run, tiny_model_dir, tmp_path):
    src, target, _, new_rows = old_run
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "results"
    link.symlink_to(target)
    screen_file(request(src, link, tiny_model_dir, tasks=("kingdom",), overwrite=True))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert rows(target) == new_rows
    assert_verified(target)
    assert hidden_beside(target) == [] and hidden_beside(link) == []


def test_a_run_through_a_symbolic_link_resumes(tmp_path, tiny_model_dir):
    src, target, link = library(tmp_path), tmp_path / "real", tmp_path / "link"
    target.mkdir()
    link.symlink_to("real")  # relative, as `ln -s real link` makes it
    calls = []
    with pytest.raises(Stopped):
        screen_file(request(src, link, tiny_model_dir), should_stop=lambda: calls.append(1) or len(calls) > 2)
    resumed = screen_file(request(src, link, tiny_model_dir))
    assert resumed.resumed_parts > 0 and link.is_symlink() and os.readlink(link) == "real"
    assert_verified(target)
    assert len(rows(link)) == 60 and hidden_beside(target) == []


@pytest.mark.parametrize("out,make,error,message", [
    ("out", lambda t: (t / "out").symlink_to(t / "missing"), UsageError,
     "output path {t}/out is a symbolic link to {t}/missing, which does not exist: create the folder it points to, "
     "or remove the link"),
    ("out", lambda t: (t / "out").symlink_to("out"), UsageError,
     "output path {t}/out is a symbolic link that leads back to itself"),
    ("d/out", lambda t: (t / "d").symlink_to(t / "gone"), UsageError,
     "output path {t}/d/out lies under {t}/d, which is a symbolic link to {t}/gone, which does not exist"),
    ("out", lambda t: (t / "out").write_text("x"), UsageError, "output path {t}/out is a file, not a folder"),
    ("out", lambda t: ((t / "f").write_text("x"), (t / "out").symlink_to(t / "f")), UsageError,
     "output path {t}/out is a symbolic link to {t}/f, which is a file, not a folder"),
    ("f/out", lambda t: (t / "f").write_text("x"), OutputError,
     "cannot write the output folder {t}/f/out: {t}/f is a file, not a folder"),
])
def test_an_unusable_output_path_is_refused_naming_the_cause(tmp_path, tiny_model_dir, out, make, error, message):
    src = library(tmp_path)
    make(tmp_path)
    with pytest.raises(error, match=re.escape(message.format(t=tmp_path))):
        screen_file(request(src, tmp_path / out, tiny_model_dir))
    assert hidden_beside(tmp_path / out) == [] and not list(tmp_path.glob(".*.p2t-*"))


def test_an_output_on_a_read_only_file_system_names_it(tmp_path, tiny_model_dir):
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip() or 'mount failed'})")
    try:
        with pytest.raises(OutputError, match=f"cannot write the output folder {mount / 'out'}: {mount} is on a "
                                              "read-only file system"):
            screen_file(request(library(tmp_path), mount / "out", tiny_model_dir))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_an_unwritable_parent_is_named(tmp_path, monkeypatch):
    """Permissions do not bind root, so the refusal is injected where the lock file is created."""
    real = Path.open

    def denied(self, *args, **kwargs):
        if self.name.endswith(".p2t-lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(OutputError, match=re.escape(f"cannot write the output folder {tmp_path / 'out'}: no "
                                                    f"permission to create files in {tmp_path}")):
        OutputLock(tmp_path / "out").__enter__()


def test_no_lock_file_is_left_after_a_finished_or_failed_run(old_run, tiny_model_dir, tmp_path):
    src, out, _, _ = old_run
    assert hidden_beside(out) == []  # after two finished runs
    (tmp_path / "lib2.fasta").write_text(">a\nMKV\n")
    with pytest.raises(UsageError, match="holds a different run"):  # refused inside the lock
        screen_file(request(tmp_path / "lib2.fasta", out, tiny_model_dir))
    assert hidden_beside(out) == []
    with pytest.raises(Stopped):
        screen_file(request(src, tmp_path / "stopped", tiny_model_dir), should_stop=lambda: True)
    assert hidden_beside(tmp_path / "stopped") == []


def test_a_waiting_run_takes_over_the_lock_after_its_file_was_removed(tmp_path):
    """The holder removes the lock file as it lets go: a run that was waiting on that file locks
    the current one instead, so a third run cannot slip in beside it."""
    out = tmp_path / "out"
    got = threading.Event()
    first = OutputLock(out, command="first").__enter__()
    second = OutputLock(out, wait=True, command="second")
    waiter = threading.Thread(target=lambda: (second.__enter__(), got.set()))
    waiter.start()
    time.sleep(0.2)  # the waiter blocks on the first holder's file
    assert not got.is_set()
    first.__exit__(None, None, None)
    assert got.wait(10)
    waiter.join()
    with pytest.raises(UsageError, match=r"being written by another p2t run \(pid \d+ on .*: second\)"):
        OutputLock(out).__enter__()
    second.__exit__(None, None, None)
    assert hidden_beside(out) == []


def test_concurrent_lock_holders_exclude_each_other(tmp_path):
    out, inside, overlaps = tmp_path / "out", [], []

    def hold_repeatedly() -> None:
        for _ in range(40):
            with OutputLock(out, wait=True):
                inside.append(1)
                overlaps.append(len(inside))
                time.sleep(0.0005)
                inside.pop()

    threads = [threading.Thread(target=hold_repeatedly) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 160 and max(overlaps) == 1
    assert hidden_beside(out) == []


def test_settling_refuses_to_guess_when_it_cannot_put_the_old_results_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    folder(tmp_path / ".out.p2t-old", "old")

    def refusing(a, b, *rest, **kw):
        raise OSError(errno.EACCES, "Permission denied", str(a))

    monkeypatch.setattr(writer.os, "replace", refusing)
    with pytest.raises(OutputError, match=r"cannot put the previous results .*\.out\.p2t-old back at .*out"):
        settle_replacement(out)
    monkeypatch.undo()
    assert (tmp_path / ".out.p2t-old" / "old").exists()  # nothing lost
    assert hidden_beside(out) == [".out.p2t-old"]
