"""The `p2t` command through Typer's CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
from typer.testing import CliRunner

from p2t_screen.cli import EXIT_OK, EXIT_ROWS_NOT_OK, EXIT_USAGE, app

runner = CliRunner()
GOOD = ">a one\nMKTAYIAKQRQISFVKSH\n>b two\nMSTYKRN\n"


def fasta(tmp_path: Path, text: str = GOOD) -> Path:
    path = tmp_path / "lib.fasta"
    path.write_text(text)
    return path


def test_screen_all_ok_exits_zero(tmp_path, tiny_model_dir):
    out = tmp_path / "res"
    result = runner.invoke(app, ["screen", str(fasta(tmp_path)), "--model", str(tiny_model_dir),
                                 "--tasks", "stability,phospho", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == EXIT_OK, result.output
    assert ds.dataset(out).to_table().num_rows == 4
    assert "stability" in result.output and "residues/s" in result.output


def test_rows_not_ok_exit_three(tmp_path, tiny_model_dir):
    result = runner.invoke(app, ["screen", str(fasta(tmp_path, GOOD + ">e\n")), "--model",
                                 str(tiny_model_dir), "-o", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == EXIT_ROWS_NOT_OK, result.output
    assert result.output == ""


def test_usage_errors_exit_two_without_traceback(tmp_path, tiny_model_dir):
    cases = [
        (["--tasks", "nope"], "has no task 'nope'"),
        (["--dtype", "fp16", "--device", "cpu"], "not supported on CPU"),
        (["--device", "tpu"], "unknown device"),
        (["--model", str(tmp_path / "none")], "no p2t model"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["screen", str(fasta(tmp_path)), "--model", str(tiny_model_dir),
                                     "-o", str(tmp_path / "o"), *extra])
        assert result.exit_code == EXIT_USAGE, (extra, result.output)
        assert message in " ".join(result.output.split()), (extra, result.output)
        assert "Traceback" not in result.output


def test_invalid_input_names_record_and_character(tmp_path, tiny_model_dir):
    bad = fasta(tmp_path, GOOD + ">weird\nMK-TA\n")
    result = runner.invoke(app, ["screen", str(bad), "--model", str(tiny_model_dir), "-o",
                                 str(tmp_path / "o")])
    assert result.exit_code == EXIT_USAGE
    text = " ".join(result.output.split())
    assert "record 3 (id 'weird')" in text and "'-'" in text
    assert not (tmp_path / "o").exists()


def test_tasks_and_models_commands(tiny_model_dir):
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0
    names = {t["name"] for t in json.loads(result.output)}
    assert {"stability", "secondary_structure", "positions_s"} <= names
    result = runner.invoke(app, ["tasks", "--model", str(tiny_model_dir), "--json"])
    assert [t["name"] for t in json.loads(result.output)][:2] == ["stability", "kingdom"]
    result = runner.invoke(app, ["models", str(tiny_model_dir), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)[-1]
    assert described["name"] == "tiny" and "ss3" in described["tasks"]


def test_real_subprocess_with_plain_log_lines(tmp_path, tiny_model_dir):
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "p2t_screen", "screen", str(fasta(tmp_path)), "--model",
         str(tiny_model_dir), "-o", str(out), "--tasks", "all"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "p2t start records=0/2" in proc.stderr and "p2t done records=2/2" in proc.stderr
    assert ds.dataset(out).to_table().num_rows == 12


def test_threshold_option_sets_a_flags_task_decision_and_is_recorded(tmp_path):
    import random

    import pyarrow.parquet as pq
    from conftest import flags_model_dir

    model_dir = flags_model_dir(tmp_path / "flags-model")
    rng = random.Random(0)
    lib = fasta(tmp_path, "".join(f">s{i}\n{''.join(rng.choice('ACDEFGHIKLMNPQRSTVWY') for _ in range(30))}\n"
                                  for i in range(12)))
    labels = {}
    for given in ("", "0.2", "0.8"):
        out = tmp_path / f"res{given}"
        args = ["screen", str(lib), "--model", str(model_dir), "--tasks", "ligands", "-o", str(out), "-q"]
        result = runner.invoke(app, args + (["--threshold", f"ligands={given}"] if given else []))
        assert result.exit_code == EXIT_OK, result.output
        table = ds.dataset(out).to_table()
        t = float(given or 0.5)
        for row in table.to_pylist():
            assert row["labels"] == [p["label"] for p in row["label_probs"] if p["prob"] >= t]
        run = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[b"p2t"])
        assert run["thresholds"] == {"ligands": t}
        labels[given] = table.column("labels").to_pylist()
    assert sum(map(len, labels["0.2"])) > sum(map(len, labels[""])) > sum(map(len, labels["0.8"]))
    result = runner.invoke(app, ["tasks", "--model", str(model_dir), "--json"])
    assert json.loads(result.output)[0]["threshold"] == 0.5 and json.loads(result.output)[0]["encoding"] == "flags"
    # a finished folder is not silently reused with another threshold
    result = runner.invoke(app, ["screen", str(lib), "--model", str(model_dir), "--tasks", "ligands",
                                 "-o", str(tmp_path / "res0.2"), "--threshold", "ligands=0.3"])
    assert result.exit_code == EXIT_USAGE and "thresholds" in result.output
    cases = [("kingdom=0.3", "only multi-label tasks with encoding 'flags'"),
             ("other=0.3", "'other' is not among the selected tasks"),
             ("ligands=1.5", "threshold must lie in (0, 1)"),
             ("ligands", "expected TASK=P")]
    for value, message in cases:
        result = runner.invoke(app, ["screen", str(lib), "--model", str(model_dir), "-o",
                                     str(tmp_path / "bad"), "--threshold", value])
        assert result.exit_code == EXIT_USAGE, (value, result.output)
        assert message in " ".join(result.output.split()), (value, result.output)


def test_fail_escapes_markup_and_returns_the_exit_code(capsys):
    from p2t_screen.cli.common import fail

    exit_ = fail("look at [bold]this[/bold] and [on_long=skip]", 7)
    assert exit_.exit_code == 7
    assert "look at [bold]this[/bold] and [on_long=skip]" in capsys.readouterr().err
