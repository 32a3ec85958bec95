"""Runs that survive: resume after a stop or SIGKILL, signals, out-of-memory splitting, shards."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from p2t_screen.errors import UsageError
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Stopped
from p2t_screen.screen.sources import parse_shard

AA = "ACDEFGHIKLMNPQRSTVWY"


def library(tmp_path: Path, n: int = 30, seed: int = 0, name: str = "lib.fasta") -> Path:
    rng = random.Random(seed)
    seqs = ["".join(rng.choice(AA) for _ in range(rng.randint(5, 60))) for _ in range(n)]
    seqs[7] = seqs[3]  # a duplicate
    path = tmp_path / name
    path.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)) + ">empty\n")
    return path


def table(out: Path):
    t = ds.dataset(out).to_table()
    return t.sort_by([("input_index", "ascending"), ("task", "ascending")])


def request(src, out, model_dir, **kw):
    return ScreenRequest(input=src, output=out, model=str(model_dir), device="cpu",
                         screen=ScreenConfig(window_records=4, max_tokens=200), **kw)


def test_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_model_dir):
    src = library(tmp_path)
    full = screen_file(request(src, tmp_path / "full", tiny_model_dir))
    calls = {"n": 0}

    def stop_after_some_batches():
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Stopped):
        screen_file(request(src, tmp_path / "out", tiny_model_dir), should_stop=stop_after_some_batches)
    kept = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert 0 < len(kept) < full.parts and not (tmp_path / "out" / "_SUCCESS").exists()
    (tmp_path / "out" / ".part-00099.parquet.tmp").write_bytes(b"half a file")  # killed mid-write
    resumed = screen_file(request(src, tmp_path / "out", tiny_model_dir))
    assert resumed.resumed_parts == len(kept)
    assert resumed.status_counts == full.status_counts and resumed.rows == full.rows
    assert table(tmp_path / "out").equals(table(tmp_path / "full"))
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_sigkill_at_any_moment_then_rerun(tmp_path, tiny_model_dir):
    src = library(tmp_path, n=400, seed=1)
    cmd = [sys.executable, "-m", "p2t_screen", "screen", str(src), "--model", str(tiny_model_dir),
           "--device", "cpu", "--window-records", "8", "--max-tokens", "200", "-q"]
    subprocess.run([*cmd, "-o", str(tmp_path / "full")], check=False)
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "out")])
    while len(list((tmp_path / "out").glob("part-*.parquet"))) < 3 and proc.poll() is None:
        time.sleep(0.05)  # kill on an event (the third part), whatever the machine's speed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    rerun = subprocess.run([*cmd, "-o", str(tmp_path / "out")])
    assert rerun.returncode == 3  # the empty record is not ok
    assert table(tmp_path / "out").equals(table(tmp_path / "full"))


def test_sigterm_stops_cleanly_with_its_exit_code(tmp_path, tiny_model_dir):
    src = library(tmp_path, n=600, seed=2)
    cmd = [sys.executable, "-m", "p2t_screen", "screen", str(src), "--model", str(tiny_model_dir),
           "--device", "cpu", "--window-records", "8", "--max-tokens", "200", "-o", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while not list((tmp_path / "out").glob("part-*.parquet")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate()
    assert proc.returncode == 143, stderr
    assert "rerun the same command to resume" in stderr
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 3
    assert table(tmp_path / "out").num_rows == 601 * 6


def test_out_of_memory_splits_batches_then_marks_rows(tmp_path, tiny_model_dir):
    src = library(tmp_path, n=20, seed=3)
    reference = screen_file(request(src, tmp_path / "ref", tiny_model_dir))

    def host_limit(batch) -> None:  # an injected memory limit: 40 residues a batch
        if sum(item.residues for item in batch) > 40:
            raise MemoryError("simulated: batch does not fit")

    summary = screen_file(request(src, tmp_path / "out", tiny_model_dir), memory_guard=host_limit)
    got, ref = table(tmp_path / "out"), table(tmp_path / "ref")
    oom = [r for r in got.to_pylist() if r["status"] == "oom"]
    assert oom and all(r["residues_used"] > 40 for r in oom)
    assert "out of memory" in oom[0]["error"]
    ok_rows = {(r["input_index"], r["task"]): r for r in got.to_pylist() if r["status"] == "ok"}
    for r in ref.to_pylist():
        if r["residues_used"] <= 40 and r["status"] == "ok":
            assert ok_rows[(r["input_index"], r["task"])]["sites"] == r["sites"]
    assert summary.rows == reference.rows


def test_shards_together_equal_one_run(tmp_path, tiny_model_dir):
    src = library(tmp_path, n=40, seed=4)
    screen_file(request(src, tmp_path / "all", tiny_model_dir))
    for i in range(3):
        screen_file(request(src, tmp_path / f"shard{i}", tiny_model_dir, shard=(i, 3)))
    import pyarrow as pa

    parts = [table(tmp_path / f"shard{i}") for i in range(3)]
    assert all(p.num_rows for p in parts)
    union = pa.concat_tables(parts).sort_by([("input_index", "ascending"), ("task", "ascending")])
    whole = table(tmp_path / "all")
    # Other batch neighbours change probabilities in the last bits only; predictions are equal.
    floats = ["confidence", "label_probs", "site_probs", "residue_probs"]
    assert union.drop_columns(floats).equals(whole.drop_columns(floats))
    for a, b in zip(union.column("confidence").to_pylist(), whole.column("confidence").to_pylist()):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-4, abs=1e-6)
    hashes = [set(p.column("seq_hash").to_pylist()) for p in parts]
    assert not (hashes[0] & hashes[1]) and not (hashes[1] & hashes[2])


def test_shard_parsing_and_slurm_defaults():
    assert parse_shard("2/8") == (2, 8)
    assert parse_shard(None, {}) is None
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert parse_shard(None, env) == (2, 4)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def listed_parts(out: Path) -> list:
    try:
        return json.loads((out / "_p2t_run.json").read_text()).get("parts", [])
    except (OSError, ValueError):  # not written yet, or being replaced
        return []


def test_a_kill_in_a_long_run_keeps_its_finished_parts(tmp_path, tiny_model_dir):
    """Parts close by time as well as by size: killed once its first part exists, a run of 2,000
    records keeps the parts it finished, and the rerun completes it exactly."""
    rng = random.Random(4)
    src = tmp_path / "big.fasta"
    src.write_text("".join(f">b{i}\n{''.join(rng.choice(AA) for _ in range(rng.randint(20, 60)))}\n" for i in range(2000)))
    cmd = [sys.executable, "-m", "p2t_screen", "screen", str(src), "--model", str(tiny_model_dir), "--tasks",
           "kingdom,phospho", "--device", "cpu", "--part-seconds", "0.3", "-q"]
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "out")])
    while not listed_parts(tmp_path / "out") and proc.poll() is None:  # a part counts once listed
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((tmp_path / "out" / "_p2t_run.json").read_text())
    kept = [p["last"] for p in record["parts"]]
    assert kept and kept[-1] < 1999 and not (tmp_path / "out" / "_SUCCESS").exists()
    resumed = screen_file(ScreenRequest(input=src, output=tmp_path / "out", model=str(tiny_model_dir),
                                        tasks=("kingdom", "phospho"), device="cpu"))
    assert resumed.resumed_parts == len(kept)
    full = screen_file(ScreenRequest(input=src, output=tmp_path / "full", model=str(tiny_model_dir),
                                     tasks=("kingdom", "phospho"), device="cpu"))
    assert resumed.rows == full.rows == 4000
    assert table(tmp_path / "out").select(["input_index", "task", "label", "sites"]).equals(
        table(tmp_path / "full").select(["input_index", "task", "label", "sites"]))
