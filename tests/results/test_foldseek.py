"""`p2t export --format foldseek`: predicted 3Di states and the screened amino acids, keyed alike,
in the three TSV files `foldseek tsv2db` turns into a 3Di + amino-acid database."""

from __future__ import annotations

import random

import pytest
from conftest import tiny_model
from screened import screen
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.errors import OutputError, UsageError
from p2t_screen.model.store import save_model
from p2t_screen.results.export import ExportRequest, Format, Layout, export
from p2t_screen.tasks.catalog import CATALOG, THREE_DI

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def screened_3di(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("3di")
    model = save_model(tiny_model(tasks=[CATALOG["structure_3di"], CATALOG["secondary_structure"]]), tmp / "m")
    rng = random.Random(4)
    records = [(f"q{i}", "".join(rng.choice(THREE_DI) for _ in range(rng.randint(5, 60)))) for i in range(9)]
    records.append(("cut", "M" * 70))  # longer than the model's 64 residues: screened cut
    records.append(("=HYPERLINK(1)", "MKTAYIAKQR"))  # a formula as id: defused in header.tsv
    (tmp / "lib.fasta").write_text("".join(f">{rid} protein {rid}\n{seq}\n" for rid, seq in records))
    result = CliRunner().invoke(app, ["screen", str(tmp / "lib.fasta"), "--model", str(model), "-o",
                                      str(tmp / "out"), "--long", "truncate", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    return tmp / "out", dict(records)


def _table(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_foldseek_folder_pairs_3di_with_the_screened_residues(screened_3di, tmp_path):
    out, sequences = screened_3di
    done = export(ExportRequest(out, Format.FOLDSEEK, output=tmp_path / "fs"))
    assert done.rows == len(sequences) and sorted(p.name for p in done.path.iterdir()) == [
        "3di.fasta", "3di.tsv", "README.txt", "aa.tsv", "header.tsv"]
    aa, states, headers = (_table(done.path / n) for n in ("aa.tsv", "3di.tsv", "header.tsv"))
    assert [r[0] for r in aa] == [r[0] for r in states] == [r[0] for r in headers] == \
        [str(i) for i in range(1, len(sequences) + 1)]  # one key per protein, the same in all three
    assert headers[-1][1] == "'=HYPERLINK(1) protein =HYPERLINK(1)"  # no spreadsheet runs it
    for (_, residues), (_, codes), (_, header) in zip(aa, states, headers):
        header = header.removeprefix("'")
        rid = header.split()[0]
        assert header == f"{rid} protein {rid}"
        assert residues == sequences[rid][:64]  # the residues screened (the long one was cut)
        assert len(codes) == len(residues) and set(codes) <= set(THREE_DI)
    fasta = (done.path / "3di.fasta").read_text().splitlines()
    assert fasta[0::2] == [">" + h.removeprefix("'").split()[0] for _, h in headers] and fasta[1::2] == [c for _, c in states]
    readme = (done.path / "README.txt").read_text()
    assert "foldseek tsv2db 3di.tsv p2tDB_ss --output-dbtype 0" in readme and "--output-dbtype 12" in readme
    again = export(ExportRequest(out, Format.FOLDSEEK, output=tmp_path / "fs"))  # replaces the folder
    assert again.rows == done.rows and not list(tmp_path.glob(".fs*"))
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(OutputError, match="a file of that name is in the way"):
        export(ExportRequest(out, Format.FOLDSEEK, output=tmp_path / "taken"))
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_foldseek_export_needs_a_3di_task(screened_3di, tmp_path_factory):
    out, _ = screened_3di
    with pytest.raises(UsageError, match="does not write 3Di states"):
        export(ExportRequest(out, Format.FOLDSEEK, tasks=("secondary_structure",)))
    with pytest.raises(UsageError, match="no --wide"):
        export(ExportRequest(out, Format.FOLDSEEK, Layout.WIDE))
    other, _ = screen(tmp_path_factory.mktemp("kinds"))
    with pytest.raises(UsageError, match="none of these results has one"):
        export(ExportRequest(other, Format.FOLDSEEK))
    result = CliRunner().invoke(app, ["export", str(out), "--format", "foldseek"])
    assert result.exit_code == 0 and "proteins ->" in result.output
    assert (out.parent / "out.foldseek" / "3di.tsv").is_file()
