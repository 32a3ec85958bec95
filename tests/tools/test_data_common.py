"""tools/data/common.py: the one FASTA writer (one line or wrapped), FASTA read back through
p2t_screen.io.fasta, and the data scripts' shared entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "data"))
from common import PrepareError, command_line, fasta_records, fasta_sequences, script_main, write_fasta  # noqa: E402

RECORDS = [("sp|P1|A one", "MKTAYIAKQRQISFVKSHFSRQ"), ("s2", "MSTY")]


def test_write_fasta_one_line_or_wrapped_and_read_back(tmp_path):
    write_fasta(tmp_path / "a.fasta", RECORDS)
    assert (tmp_path / "a.fasta").read_text() == ">sp|P1|A one\nMKTAYIAKQRQISFVKSHFSRQ\n>s2\nMSTY\n"
    write_fasta(tmp_path / "b.fasta", RECORDS, width=10)
    assert (tmp_path / "b.fasta").read_text() == ">sp|P1|A one\nMKTAYIAKQR\nQISFVKSHFS\nRQ\n>s2\nMSTY\n"
    assert [(r.header, r.sequence) for r in fasta_records(tmp_path / "b.fasta")] == RECORDS


def test_fasta_sequences_keep_every_record_whole(tmp_path):
    long = "A" * 1500
    (tmp_path / "c.fasta").write_text(f">x\nmk ta\n>y\n{long}\n>z\nMK1\n")
    assert fasta_sequences(tmp_path / "c.fasta") == ["MKTA", long, "MK1"]  # upper-cased, none cut or dropped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail", choices=["prepare", "check"])
    return parser


def _run(args: argparse.Namespace) -> dict:
    if args.fail == "prepare":
        raise PrepareError("no such package")
    if args.fail == "check":
        raise AssertionError("duplicate ids")  # what a failed `assert` in a data script raises
    return {"rows": 3}


def test_script_main_reports_failures_in_one_line(capsys):
    seen = []
    assert script_main(_parser(), _run, seen.append, []) == 0 and seen == [{"rows": 3}]
    assert script_main(_parser(), _run, seen.append, ["--fail", "prepare"]) == 1
    assert capsys.readouterr().err == "error: no such package\n"
    assert script_main(_parser(), _run, seen.append, ["--fail", "check"]) == 1
    assert capsys.readouterr().err == "error: a check on the data failed: duplicate ids\n"
    assert seen == [{"rows": 3}]


def test_command_line_names_the_script_under_tools_data(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/anywhere/promod3.py", "--out-dir", "a b"])
    assert command_line("/repo/tools/data/promod3.py") == "python tools/data/promod3.py --out-dir 'a b'"


@pytest.mark.parametrize("width", [None, 60])
def test_an_empty_file_is_written_for_no_records(tmp_path, width):
    write_fasta(tmp_path / "e.fasta", [], width)
    assert (tmp_path / "e.fasta").read_text() == ""
