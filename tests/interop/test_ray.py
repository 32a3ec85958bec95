"""The Ray Data engine gives the same rows as the single-machine path (local Ray, 2 CPUs)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import ray
import typer
from typer.testing import CliRunner

from p2t_screen.cli.ray import screen_ray
from p2t_screen.distributed import (
    INSTALL_HINT,
    ScreenActor,
    fasta_to_parquet,
    require_ray,
    screen_dataset,
    screen_parquet,
)
from p2t_screen.errors import InputError, UsageError
from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.io.schema import SCHEMA, read_run_metadata
from p2t_screen.results.export import ExportRequest, Format, Layout, export
from p2t_screen.model.store import load_model
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Screener

FLOAT_COLUMNS = ("value", "confidence", "label_probs", "site_probs", "residue_probs")
MAX_TOKENS = 256  # small, so batches are split into several encoder calls


def library(n: int = 40) -> list[tuple[str, str]]:
    """(id, sequence) pairs: random proteins plus a duplicate, an empty, an invalid, a long one."""
    rng = random.Random(7)
    items = [(f"p{i}", "".join(rng.choices("ACDEFGHIKLMNPQRSTVWY", k=rng.randint(5, 50))))
             for i in range(n - 4)]
    items += [("dup", items[3][1].lower()), ("empty", ""), ("bad", "MK1TA"), ("long", "MKST" * 20)]
    return items


def to_fasta(items: list[tuple[str, str]]) -> str:
    return "".join(f">{sid} description of {sid}\n{seq}\n" for sid, seq in items)


def sort_rows(table: pa.Table) -> list[dict]:
    return table.sort_by([("input_index", "ascending"), ("task", "ascending")]).to_pylist()


def close(a, b) -> bool:
    """Equal, with floats (also nested in lists and structs) compared approximately."""
    if a is None or b is None:
        return a is b
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-4, abs=1e-5)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(close, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def assert_same_rows(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows
    for g, w in zip(sort_rows(got), sort_rows(want)):
        for name in SCHEMA.names:
            if name in FLOAT_COLUMNS:
                assert close(g[name], w[name]), (name, g, w)
            else:
                assert g[name] == w[name], (name, g, w)


def reference(model_dir: Path, items: list[tuple[str, str]], tasks: list[str] | None = None) -> pa.Table:
    """Single-process Screener over the same records."""
    model = load_model(model_dir)
    policy = ReadPolicy("skip", "truncate", model.config.encoder.max_residues)
    screener = Screener(model, model.config.select_tasks(tasks), ScreenConfig(max_tokens=MAX_TOKENS))
    return pa.Table.from_batches(list(screener.screen(records_from_sequences(items, policy))))


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (the machine is shared: 2 CPUs)."""
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


# ------------------------------------------------------------ the actor alone, without Ray


def test_actor_runs_without_ray(tiny_model_dir):
    actor = ScreenActor(str(tiny_model_dir), ["kingdom", "phospho"], device="cpu")
    batch = pa.table({"id": ["a", "b", "c"], "header": ["a first", "b second", "c third"],
                      "sequence": ["MKSTY", "", "mk1"]})
    out = actor(batch)
    assert out.schema.remove_metadata().equals(SCHEMA, check_metadata=False)
    assert read_run_metadata(out.schema)["engine"] == "ray"
    rows = out.to_pylist()
    assert [(r["input_index"], r["task"]) for r in rows] == [
        (0, "kingdom"), (0, "phospho"), (1, "kingdom"), (1, "phospho"), (2, "kingdom"), (2, "phospho")]
    assert [r["seq_id"] for r in rows[::2]] == ["a", "b", "c"]
    assert [r["header"] for r in rows[::2]] == ["a first", "b second", "c third"]
    assert [r["status"] for r in rows[::2]] == ["ok", "empty", "invalid"]


def test_actor_keeps_global_indices_and_policy_errors_name_them(tiny_model_dir):
    batch = pa.table({"input_index": [100, 101, 102], "sequence": ["MKSTY", "ACDE", "MK1TA"]})
    rows = ScreenActor(tiny_model_dir, ["kingdom"], device="cpu")(batch).to_pylist()
    assert [(r["input_index"], r["seq_id"], r["status"]) for r in rows] == [
        (100, "seq101", "ok"), (101, "seq102", "ok"), (102, "seq103", "invalid")]
    strict = ScreenActor(tiny_model_dir, ["kingdom"], device="cpu", on_invalid="error")
    with pytest.raises(InputError, match=r"record 103 \(id 'seq103'\): invalid character '1'"):
        strict(batch)
    with pytest.raises(ValueError, match="'sequence' column"):
        strict(pa.table({"seq": ["MK"]}))


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=re.escape(f"install it with: {INSTALL_HINT}")):
        require_ray()


def test_modules_import_without_loading_ray():
    code = ("import sys, p2t_screen.distributed, p2t_screen.interop.ray, p2t_screen.cli.ray; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------ on a local Ray


def test_screen_dataset_matches_single_process(local_ray, tiny_model_dir):
    items = library()
    table = pa.table({"input_index": pa.array(range(len(items)), pa.int64()),
                      "seq_id": [sid for sid, _ in items], "sequence": [seq for _, seq in items]})
    ds = ray.data.from_arrow([table.slice(0, 25), table.slice(25)])
    rows = screen_dataset(ds, tiny_model_dir, concurrency=2, num_cpus=0.5, batch_size=8,
                          max_tokens=MAX_TOKENS)
    got = pa.concat_tables(ray.get(rows.to_arrow_refs()))
    want = reference(tiny_model_dir, items)
    assert got.num_rows == len(items) * 6
    assert got.schema.remove_metadata().equals(SCHEMA)
    assert_same_rows(got, want)
    statuses = {r["seq_id"]: r["status"] for r in got.to_pylist()}
    assert (statuses["empty"], statuses["bad"], statuses["long"]) == ("empty", "invalid", "ok")


def test_screen_dataset_checks_options_before_running(local_ray, tiny_model_dir):
    ds = ray.data.from_items([{"sequence": "MK"}])
    with pytest.raises(UsageError, match="no task 'nope'"):
        screen_dataset(ds, tiny_model_dir, ["nope"])
    with pytest.raises(UsageError, match="invalid ScreenActor options"):
        screen_dataset(ds, tiny_model_dir, max_token=5)


def test_fasta_to_parquet_and_screen_parquet_round_trip(local_ray, tiny_model_dir, tmp_path):
    items = library()
    fasta = tmp_path / "lib.fasta"
    fasta.write_text(to_fasta(items))
    assert fasta_to_parquet(fasta, tmp_path / "in", rows_per_file=16) == len(items)
    parts = sorted((tmp_path / "in").glob("*.parquet"))
    assert len(parts) == 3
    staged = pq.read_table(parts)
    assert staged.column("input_index").to_pylist() == list(range(len(items)))
    assert staged.column("seq_id").to_pylist() == [sid for sid, _ in items]
    with pytest.raises(UsageError, match="already holds Parquet"):
        fasta_to_parquet(fasta, tmp_path / "in")
    (tmp_path / "none.fasta").write_text("")
    assert fasta_to_parquet(tmp_path / "none.fasta", tmp_path / "none") == 0
    assert pq.read_table(tmp_path / "none").num_rows == 0  # one empty file: a readable dataset

    tasks = ["kingdom", "ss3"]
    counts = screen_parquet(tmp_path / "in", tmp_path / "out", tiny_model_dir, tasks,
                            concurrency=2, num_cpus=0.5, batch_size=8, max_tokens=MAX_TOKENS)
    out = pads.dataset(tmp_path / "out", format="parquet").to_table()
    assert out.num_rows == len(items) * len(tasks)
    keys = {(r["input_index"], r["task"]) for r in out.select(["input_index", "task"]).to_pylist()}
    assert keys == {(i, t) for i in range(len(items)) for t in tasks}
    assert counts["kingdom"] == {"ok": len(items) - 2, "empty": 1, "invalid": 1}
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    assert read_run_metadata(pq.read_schema(next((tmp_path / "out").glob("*.parquet"))))["tasks"] == tasks
    wide = pq.read_table(export(ExportRequest(tmp_path / "out", Format.PARQUET, Layout.WIDE,
                                              tmp_path / "wide.parquet")).path)  # p2t export reads Ray output too
    assert sorted(wide.column("input_index").to_pylist()) == list(range(len(items)))

    single = screen_file(ScreenRequest(input=fasta, output=tmp_path / "single", model=str(tiny_model_dir),
                                       tasks=tuple(tasks), device="cpu", on_invalid="skip",
                                       screen=ScreenConfig(max_tokens=MAX_TOKENS)))
    assert single.rows == out.num_rows
    assert_same_rows(out, pads.dataset(tmp_path / "single", format="parquet").to_table())
    with pytest.raises(UsageError, match="not empty"):
        screen_parquet(tmp_path / "in", tmp_path / "out", tiny_model_dir, tasks)


def test_cli_screens_fasta_and_reports_like_screen(local_ray, tiny_model_dir, tmp_path):
    app = typer.Typer()
    app.command("screen-ray")(screen_ray)
    app.command("unused")(lambda: None)  # two commands keep the sub-command name on the line
    fasta = tmp_path / "lib.fasta"
    fasta.write_text(to_fasta(library(12)))
    base = ["screen-ray", str(fasta), "--model", str(tiny_model_dir), "--tasks", "kingdom"]
    runner = CliRunner()

    result = runner.invoke(app, [*base, "-o", str(tmp_path / "out"), "--cpus-per-actor", "0.5"])
    assert result.exit_code == 3, result.output  # finished; the empty and invalid rows are not ok
    assert pads.dataset(tmp_path / "out", format="parquet").count_rows() == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.fasta", "out"]  # staging removed

    result = runner.invoke(app, [*base, "-o", str(tmp_path / "strict"), "--on-invalid", "error"])
    assert result.exit_code == 2
    assert "record 11 (id 'bad')" in result.output and not (tmp_path / "strict").exists()
    result = runner.invoke(app, [*base[:-1], "nope", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nope" in result.output

    # Parquet is not pre-checked: the policy error is raised in an actor and reported by p2t.
    pq.write_table(pa.table({"sequence": ["MKT", "MK1"]}), tmp_path / "lib.parquet")
    parquet = ["screen-ray", str(tmp_path / "lib.parquet"), "--model", str(tiny_model_dir),
               "--tasks", "kingdom", "-o", str(tmp_path / "pq"), "--on-invalid", "error"]
    result = runner.invoke(app, parquet)
    assert result.exit_code == 2, result.output
    assert "no input_index column" in result.output
    assert "record 2 (id 'seq2'): invalid character '1'" in result.output
    assert "[on_invalid=error, on_long=truncate]" in result.output



def test_actor_takes_decision_thresholds_and_records_them(tmp_path):
    import random

    from conftest import flags_model_dir

    path = flags_model_dir(tmp_path / "m")
    rng = random.Random(1)
    batch = pa.table({"sequence": ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(30))
                                   for _ in range(10)]})
    counts = []
    for t in (0.2, 0.8):
        out = ScreenActor(path, ["ligands"], device="cpu", thresholds=[("ligands", t)])(batch)
        assert read_run_metadata(out.schema)["thresholds"] == {"ligands": t}
        rows = out.to_pylist()
        assert all(r["labels"] == [p["label"] for p in r["label_probs"] if p["prob"] >= t] for r in rows)
        counts.append(sum(len(r["labels"]) for r in rows))
    assert counts[0] > counts[1]
    with pytest.raises(UsageError, match="only multi-label tasks with encoding 'flags'"):
        ScreenActor(path, ["kingdom"], device="cpu", thresholds=[("kingdom", 0.3)])
    from typer.testing import CliRunner

    from p2t_screen.cli import app

    fasta = tmp_path / "lib.fasta"
    fasta.write_text(">a\nMKTAYIAK\n")
    result = CliRunner().invoke(app, ["screen-ray", str(fasta), "--model", str(path), "-o", str(tmp_path / "o"),
                                      "--threshold", "kingdom=0.3"])  # refused before Ray starts
    assert result.exit_code == 2 and "only multi-label tasks" in " ".join(result.output.split()), result.output

