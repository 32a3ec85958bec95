"""A calibrated model's screen: `p2t calibrate` from CSV files stores its constants and domain
index in the model directory; every ok row then carries intervals, sets and a domain flag; a
model without calibration, or a task whose temperature changed since, gives nulls and says so;
a stopped and resumed run, and shards, give the same intervals as one run."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from conftest import tiny_model
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.model.store import load_model, save_model
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import ScreenConfig, Stopped
from p2t_screen.trust.store import CALIBRATION_FILE

pytestmark = pytest.mark.usefixtures("one_thread")
AA = "ACDEFGHIKLMNPQRSTVWY"


def proteins(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AA) for _ in range(rng.randint(8, 50))) for _ in range(n)]


def labelled_csvs(folder: Path) -> list[str]:
    """Random labels (a random model: coverage still holds, exchangeability is all it needs)."""
    rng = random.Random(3)
    files = {}
    seqs = proteins(120, 5)
    split = ["train"] * 60 + ["valid"] * 60
    rows = {
        "stability": [f"{rng.uniform(-1.9, 3.3):.3f}" for _ in seqs],
        "kingdom": [rng.choice(["archaea", "bacteria", "eukaryota"]) for _ in seqs],
        "ss3": ["".join(rng.choice("HEC") for _ in s) for s in seqs],
        "phospho": [";".join(str(i + 1) for i, a in enumerate(s) if a in "STY" and rng.random() < 0.3) for s in seqs],
    }
    for task, labels in rows.items():
        path = folder / f"{task}.csv"
        path.write_text("id,sequence,label,split\n" + "".join(
            f"p{i},{s},{lab},{sp}\n" for i, (s, lab, sp) in enumerate(zip(seqs, labels, split))))
        files[task] = f"{task}={path}"
    return list(files.values())


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calibrated")
    model_dir = save_model(tiny_model(), folder / "tiny")
    result = CliRunner().invoke(app, ["calibrate", str(model_dir), *labelled_csvs(folder), "--device", "cpu",
                                      "--json"])
    assert result.exit_code == 0, result.output
    return model_dir


def library(tmp_path: Path, n: int = 40) -> Path:
    path = tmp_path / "lib.fasta"
    path.write_text("".join(f">q{i}\n{s}\n" for i, s in enumerate(proteins(n, 11))))
    return path


def screen(src: Path, out: Path, model: Path, should_stop=None, **config):
    cfg = ScreenConfig(**{"max_tokens": 300, "block_batches": 2, **config})
    return screen_file(ScreenRequest(input=src, output=out, model=str(model), device="cpu", screen=cfg,
                                     tasks=("stability", "kingdom", "ss3", "phospho")), should_stop=should_stop)


def table(out: Path):
    return ds.dataset(out).to_table().sort_by([("input_index", "ascending"), ("task", "ascending")])


def test_calibration_is_stored_with_its_size_source_and_date(calibrated):
    doc = json.loads((calibrated / CALIBRATION_FILE).read_text())
    assert set(doc["tasks"]) == {"stability", "kingdom", "ss3", "phospho"}
    for entry in doc["tasks"].values():
        assert entry["examples"] == 60 and entry["source"]["split"] == "valid"
        assert len(entry["source"]["sha256"]) == 64 and entry["created"].startswith("20")
        assert set(entry["levels"]) == {"0.8", "0.9", "0.95"}
    assert doc["domain"]["training_proteins"] == 60 and doc["domain"]["held_out"] == 60
    assert (calibrated / "domain.safetensors").is_file()
    assert load_model(calibrated).domain is not None


def test_every_ok_row_carries_its_interval_set_and_domain_flag(tmp_path, calibrated):
    screen(library(tmp_path), tmp_path / "out", calibrated)
    rows = table(tmp_path / "out").to_pylist()
    assert rows and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["domain_score"] is not None and isinstance(r["in_domain"], bool)
        if r["task"] == "stability":
            assert r["value_lo"] <= r["value"] <= r["value_hi"]
            assert r["set_size"] == pytest.approx(r["value_hi"] - r["value_lo"])
        elif r["task"] == "kingdom":
            assert set(r["label_set"]) <= {"archaea", "bacteria", "eukaryota"}
            assert r["set_size"] == len(r["label_set"]) and (not r["label_set"] or r["label"] in r["label_set"])
        elif r["task"] == "ss3":
            assert len(r["residue_sets"]) == r["residues_used"]
            # a residue's set holds its predicted label, or is empty (no label likely enough)
            assert all(s == "" or lab in s for lab, s in zip(r["residue_labels"], r["residue_sets"]))
            assert r["set_size"] == pytest.approx(sum(map(len, r["residue_sets"])) / r["residues_used"], rel=1e-5)
        elif r["task"] == "phospho":
            assert set(r["site_set"]) <= set(r["sites"])
    meta = json.loads((tmp_path / "out" / "_p2t_run.json").read_text())
    assert meta["coverage"] == 0.9 and set(meta["conformal"]) == {"stability", "kingdom", "ss3", "phospho"}


def test_a_higher_coverage_gives_wider_answers(tmp_path, calibrated):
    src = library(tmp_path)
    screen(src, tmp_path / "low", calibrated, coverage=0.8)
    screen(src, tmp_path / "high", calibrated, coverage=0.95)
    low, high = table(tmp_path / "low").to_pylist(), table(tmp_path / "high").to_pylist()
    for a, b in zip(low, high):
        if a["task"] == "phospho":  # calls with fewer false ones: fewer calls
            assert b["set_size"] <= a["set_size"]
        else:  # intervals and sets that hold the truth more often: larger
            assert b["set_size"] >= a["set_size"] - 1e-6
    assert sum(b["set_size"] for b in high if b["task"] != "phospho") > \
        sum(a["set_size"] for a in low if a["task"] != "phospho")


def test_no_calibration_gives_nulls_and_says_so(tmp_path, tiny_model_dir):
    notes = []

    class Notes:
        def start(self, records, residues): ...
        def advance(self, records, residues): ...
        def finish(self): ...
        def note(self, message): notes.append(message)

    cfg = ScreenConfig(max_tokens=300)
    screen_file(ScreenRequest(input=library(tmp_path), output=tmp_path / "out", model=str(tiny_model_dir),
                              device="cpu", screen=cfg), Notes())
    t = table(tmp_path / "out")
    for column in ("value_lo", "value_hi", "label_set", "site_set", "residue_sets", "set_size",
                   "domain_score", "in_domain"):
        assert t.column(column).null_count == t.num_rows, column
    assert len([n for n in notes if "no conformal calibration" in n]) == 1
    assert any("no domain index" in n for n in notes)


def test_a_task_whose_temperature_changed_is_no_longer_covered(tmp_path, calibrated):
    moved = tmp_path / "moved"
    shutil.copytree(calibrated, moved)
    model = load_model(moved)
    tasks = tuple(replace(t, temperature=2.0) if t.name == "kingdom" else t for t in model.config.tasks)
    save_model(model, moved, {}, replace(model.config, tasks=tasks))
    assert (moved / CALIBRATION_FILE).is_file()  # kept beside the re-saved model files
    screen(library(tmp_path), tmp_path / "out", moved)
    t = table(tmp_path / "out").to_pylist()
    assert all(r["label_set"] is None for r in t if r["task"] == "kingdom")
    assert all(r["value_lo"] is not None for r in t if r["task"] == "stability")


def test_resume_and_shards_give_the_intervals_of_one_run(tmp_path, calibrated):
    src = library(tmp_path, 60)
    screen(src, tmp_path / "full", calibrated)
    polls = {"n": 0}

    def stop_later():
        polls["n"] += 1
        return polls["n"] > 4

    with pytest.raises(Stopped):
        screen(src, tmp_path / "out", calibrated, should_stop=stop_later)
    screen(src, tmp_path / "out", calibrated)
    assert table(tmp_path / "out").equals(table(tmp_path / "full"))
    for i in range(2):
        req = ScreenRequest(input=src, output=tmp_path / f"shard{i}", model=str(calibrated), device="cpu",
                            screen=ScreenConfig(max_tokens=300, block_batches=2), shard=(i, 2),
                            tasks=("stability", "kingdom", "ss3", "phospho"))
        screen_file(req)
    merged = ds.dataset([str(p) for i in range(2) for p in (tmp_path / f"shard{i}").glob("part-*.parquet")])
    columns = ["input_index", "task", "value_lo", "value_hi", "label_set", "site_set", "residue_sets", "in_domain"]
    order = [("input_index", "ascending"), ("task", "ascending")]
    shards = merged.to_table(columns=[*columns, "domain_score"]).sort_by(order)
    whole = table(tmp_path / "full")
    assert shards.select(columns).equals(whole.select(columns))
    # Shards batch other proteins together: the encoder's float sums may differ in the last digit.
    assert shards.column("domain_score").to_pylist() == pytest.approx(whole.column("domain_score").to_pylist(),
                                                                       abs=1e-5)


def test_coverage_outside_the_stored_levels_is_refused(tmp_path, calibrated):
    result = CliRunner().invoke(app, ["screen", str(library(tmp_path)), "-o", str(tmp_path / "o"), "--model",
                                      str(calibrated), "--coverage", "0.85"])
    assert result.exit_code == 2 and "0.8, 0.9, 0.95" in result.output


def test_people_see_it_in_the_wide_export_the_report_and_the_summary(tmp_path, calibrated):
    import csv

    src = library(tmp_path)
    out = tmp_path / "out"
    screen(src, out, calibrated)
    runner = CliRunner()
    wide = tmp_path / "wide.csv"
    done = runner.invoke(app, ["export", str(out), "--wide", "-f", "csv", "-o", str(wide)])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(wide.read_text(encoding="utf-8-sig").splitlines()))
    assert {"stability_interval", "kingdom_set", "ss3_set_size", "phospho_controlled", "in_domain",
            "domain_score"} <= set(rows[0])
    assert all(" to " in r["stability_interval"] for r in rows)
    per_residue = tmp_path / "residues.tsv"
    done = runner.invoke(app, ["export", str(out), "--per-residue", "-f", "tsv", "-o", str(per_residue),
                               "--task", "ss3"])
    assert done.exit_code == 0, done.output
    header, first = per_residue.read_text().splitlines()[:2]
    assert '"set"' in header.split("\t") and len(first.split("\t")) == len(header.split("\t"))
    done = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert done.exit_code == 0, done.output
    html = (tmp_path / "r.html").read_text()
    assert "conformal set size / interval width" in html and "out of domain" in html
