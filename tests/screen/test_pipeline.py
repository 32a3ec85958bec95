"""screen_file end to end: one row per (record, task), typed schema, readable everywhere."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from p2t_screen.errors import InputError, UsageError
from p2t_screen.io.schema import SCHEMA, read_run_metadata
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig

LIBRARY = (
    ">sp|P1|A first protein\r\nMKTAYIAKQR\r\nQISFVKSHFSRQ*\r\n"
    "\n"
    ">dup one\nmstyk\n"
    ">dup two\nMSTYK\n"
    ">empty\n"
    ">bad\nMK1TA\n"
    ">\nACDEFGHIK\n"
    ">long\n" + "MKST" * 20 + "\n"
)


def write(tmp_path: Path, text: str, gz: bool = False) -> Path:
    path = tmp_path / ("lib.fasta.gz" if gz else "lib.fasta")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def run(tmp_path, model_dir, text=LIBRARY, **kw):
    src = write(tmp_path, text, kw.pop("gz", False))
    req = ScreenRequest(input=src, output=tmp_path / "out", model=str(model_dir), device="cpu",
                        on_invalid=kw.pop("on_invalid", "skip"), **kw)
    return screen_file(req), tmp_path / "out"


def test_one_row_per_record_and_task_with_statuses(tmp_path, tiny_model_dir):
    summary, out = run(tmp_path, tiny_model_dir, tasks=("stability", "ss3"), gz=True)
    table = ds.dataset(out).to_table().sort_by([("input_index", "ascending"), ("task", "ascending")])
    assert table.schema.remove_metadata() == SCHEMA
    assert table.num_rows == 7 * 2 == summary.rows
    rows = table.to_pylist()
    by = {(r["input_index"], r["task"]): r for r in rows}
    first = by[(0, "ss3")]
    assert first["seq_id"] == "sp|P1|A" and first["header"] == "sp|P1|A first protein"
    assert first["length"] == 22 and len(first["residue_labels"]) == 22 == len(first["residue_probs"])
    assert by[(1, "stability")]["seq_hash"] == by[(2, "stability")]["seq_hash"]
    assert by[(1, "stability")]["value"] == by[(2, "stability")]["value"]
    assert [by[(i, "stability")]["status"] for i in range(7)] == \
        ["ok", "ok", "ok", "empty", "invalid", "ok", "ok"]
    assert "'1'" in by[(4, "stability")]["error"]
    assert by[(5, "ss3")]["seq_id"] == ""
    long = by[(6, "ss3")]
    assert long["truncated"] and long["length"] == 80 and long["residues_used"] == 64
    assert len(long["residue_labels"]) == 64
    assert summary.status_counts["stability"] == {"ok": 5, "empty": 1, "invalid": 1}
    assert not summary.all_ok


def test_run_metadata_is_in_the_schema(tmp_path, tiny_model_dir):
    _, out = run(tmp_path, tiny_model_dir, tasks=("kingdom",), command="p2t screen lib.fasta")
    meta = read_run_metadata(pq.read_schema(next(out.glob("part-*.parquet"))))
    assert meta["tasks"] == ["kingdom"] and meta["command"] == "p2t screen lib.fasta"
    assert meta["dtype"] == "fp32" and meta["policy"] == {"on_invalid": "skip", "on_long": "truncate"}
    assert len(meta["model"]["sha256"]) == 64 and meta["schema_version"] == 4
    assert (out / "_SUCCESS").exists()


def test_readable_by_pandas_polars_and_duckdb(tmp_path, tiny_model_dir):
    _, out = run(tmp_path, tiny_model_dir, screen=ScreenConfig(window_records=2))
    assert len(list(out.glob("part-*.parquet"))) == 4  # 7 records in windows of 2
    import duckdb
    import pandas as pd
    import polars as pl

    frame = pd.read_parquet(out)
    assert len(frame) == 7 * 6
    assert sorted(frame["input_index"].unique()) == list(range(7))
    assert pl.read_parquet(out / "*.parquet").height == 42
    count = duckdb.sql(f"SELECT count(*) FROM '{out}/*.parquet'").fetchall()[0][0]
    assert count == 42


def test_rows_come_out_in_input_order(tmp_path, tiny_model_dir):
    _, out = run(tmp_path, tiny_model_dir, tasks=("kingdom",), screen=ScreenConfig(window_records=3))
    table = ds.dataset(out).to_table()  # part files are named in window order
    assert table.column("input_index").to_pylist() == list(range(7))


def test_identical_sequences_are_encoded_once(tmp_path, tiny_model_dir, monkeypatch):
    from p2t_screen.screen import screener as predict

    seen: list[str] = []
    real = predict.encoder_tokens
    monkeypatch.setattr(predict, "encoder_tokens",
                        lambda inputs, dev: seen.extend(i.protein for i in inputs) or real(inputs, dev))
    run(tmp_path, tiny_model_dir)
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 4  # 5 runnable records, 2 identical


def test_error_policy_stops_before_writing(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match=r"record 5 \(id 'bad'\).*'1'"):
        run(tmp_path, tiny_model_dir, on_invalid="error")
    assert not (tmp_path / "out").exists()


def test_long_error_policy(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match="exceeds the encoder limit of 64"):
        run(tmp_path, tiny_model_dir, on_long="error")


def test_long_skip_policy(tmp_path, tiny_model_dir):
    summary, _ = run(tmp_path, tiny_model_dir, tasks=("kingdom",), on_long="skip")
    assert summary.status_counts["kingdom"]["too_long"] == 1


def test_runs_are_never_mixed(tmp_path, tiny_model_dir):
    first, _ = run(tmp_path, tiny_model_dir, tasks=("kingdom",))
    again, _ = run(tmp_path, tiny_model_dir, tasks=("kingdom",))
    assert again.already_complete and again.status_counts == first.status_counts
    with pytest.raises(UsageError, match=r"holds a different run \(tasks changed\)"):
        run(tmp_path, tiny_model_dir, tasks=("stability",))
    with pytest.raises(UsageError, match=r"input_sha256 changed"):
        run(tmp_path, tiny_model_dir, text=LIBRARY + ">x\nMK\n", tasks=("kingdom",))
    summary, out = run(tmp_path, tiny_model_dir, tasks=("stability",), overwrite=True)
    assert set(ds.dataset(out).to_table().column("task").to_pylist()) == {"stability"}


def openings_of(path: Path, monkeypatch) -> list[Path]:
    """From now on, each time `path` is opened (to parse it, to hash it) adds an entry."""
    opened: list[Path] = []
    real = io.open

    def counting(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == path:
            opened.append(path)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)  # what Path.open calls
    return opened


def test_before_the_weights_load_the_input_is_read_once_and_the_config_parsed_once(
        tmp_path, tiny_model_dir, monkeypatch):
    from p2t_screen.model import store
    from p2t_screen.screen import pipeline

    src = write(tmp_path, LIBRARY.replace(">bad\nMK1TA\n", ""))
    opened = openings_of(src, monkeypatch)
    parsed, at_load = [], []
    parse, load = store.config_from_json, pipeline.load_model
    monkeypatch.setattr(store, "config_from_json", lambda doc, origin: parsed.append(origin) or parse(doc, origin))
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: at_load.append(len(opened)) or load(*a, **k))
    # on_invalid=error: the whole file is checked before the weights load, in the same pass as the count and digest
    summary = screen_file(ScreenRequest(input=src, output=tmp_path / "out", model=str(tiny_model_dir),
                                        tasks=("kingdom",), device="cpu", on_invalid="error"))
    assert summary.records == 6 and summary.status_counts["kingdom"] == {"ok": 5, "empty": 1}
    assert at_load == [1]  # check, count and digest: one pass
    assert len(opened) == 2  # and the screen's own
    assert parsed == [str(tiny_model_dir / "config.json")]  # routing read it; loading reused it


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_the_fingerprint_holds_the_sha256_of_the_input_as_stored(tmp_path, tiny_model_dir, gz):
    """What `file_sha256` gave before the digest was taken in the reading pass: output folders of
    earlier runs still resume."""
    from p2t_screen.model.store import file_sha256

    _, out = run(tmp_path, tiny_model_dir, tasks=("kingdom",), gz=gz)
    src = tmp_path / ("lib.fasta.gz" if gz else "lib.fasta")
    meta = read_run_metadata(pq.read_schema(next(out.glob("part-*.parquet"))))
    assert meta["fingerprint"]["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() == file_sha256(src)


def test_empty_file_gives_an_empty_typed_dataset(tmp_path, tiny_model_dir):
    summary, out = run(tmp_path, tiny_model_dir, text="")
    table = ds.dataset(out).to_table()
    assert table.num_rows == 0 and table.schema.remove_metadata() == SCHEMA
    assert summary.all_ok


def test_unknown_task_fails_before_reading(tmp_path, tiny_model_dir):
    with pytest.raises(UsageError, match="has no task 'nope'"):
        run(tmp_path, tiny_model_dir, tasks=("nope",))


def test_missing_input_is_an_input_error(tmp_path, tiny_model_dir):
    req = ScreenRequest(input=tmp_path / "missing.fasta", output=tmp_path / "o", model=str(tiny_model_dir))
    with pytest.raises(InputError, match="not found"):
        screen_file(req)


def test_python_api_without_files(tiny_model_dir):
    import p2t_screen as p2t

    model = p2t.load_model(tiny_model_dir)
    screener = p2t.Screener(model, model.config.select_tasks(["kingdom", "phospho"]))
    records = p2t.records_from_sequences([("a", "MKSTY"), ("b", "")], p2t.ReadPolicy(max_residues=64))
    table = pa.Table.from_batches(list(screener.screen(records)))
    assert table.num_rows == 4
    assert table.column("status").to_pylist() == ["ok", "ok", "empty", "empty"]


def test_the_run_names_its_input_by_absolute_path_so_readers_find_it_from_anywhere(tmp_path, tiny_model_dir,
                                                                                  monkeypatch):
    import json

    from p2t_screen.results.sequences import InputSequences

    (tmp_path / "lib.fasta").write_text(">a\nMKTAYIAKQR\n")
    monkeypatch.chdir(tmp_path)
    screen_file(ScreenRequest(input=Path("lib.fasta"), output=Path("out"), model=str(tiny_model_dir),
                              device="cpu", tasks=("stability",)))
    record = json.loads((tmp_path / "out" / "_p2t_run.json").read_text())
    assert Path(record["input"]).is_absolute() and Path(record["input"]).samefile(tmp_path / "lib.fasta")
    monkeypatch.chdir(tmp_path.parent)
    found = InputSequences.of_run(record)
    assert found is not None and found.path.samefile(tmp_path / "lib.fasta")
