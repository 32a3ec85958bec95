"""Text from a FASTA file cannot become a live spreadsheet formula in any CSV or TSV p2t writes,
nor break out of the report's embedded data: ids and headers that start with =, +, -, @, a tab
or a carriage return, and headers holding `</script>`, `<!--<script>` and line separators."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import html5lib
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.results.cells import safe_batch, safe_text
from p2t_screen.results.report import _static

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TRIGGERS = "=+-@\t\r"
# (id, rest of the header): every trigger character leads an id or a header
HOSTILE = [
    ('=HYPERLINK("http://example.org/x","click")', "formula"),
    ("=cmd|'/C calc'!A0", "dde"),
    ("+SUM(1,2)", "plus"),
    ("-2+3", "minus"),
    ("@SUM(A1)", "at"),
    ("plain", "<!--<script> inside a comment </script><script>alert(1)</script>"),
    ("amp&lt;", "&amp; \u2028 line \u2029 paragraph <b>bold</b>"),
]
SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


@pytest.fixture(scope="module")
def screened(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("hostile")
    fasta = tmp / "lib.fasta"
    lines = [f">{rid} {rest}\n{SEQ[: 10 + i]}\n" for i, (rid, rest) in enumerate(HOSTILE)]
    lines.append(">tabbed\t\tid with tabs\n" + SEQ + "\n")  # the header starts, after the id, with a tab
    fasta.write_text("".join(lines), encoding="utf-8")
    out = tmp / "out"
    result = runner.invoke(app, ["screen", str(fasta), "--model", str(tiny_model_dir), "-o", str(out),
                                 "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    return out


def _cells(path: Path, delimiter: str) -> list[list[str]]:
    text = path.read_text(encoding="utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _assert_no_live_cell(rows: list[list[str]]) -> int:
    """No cell starts with a trigger unless it is a plain number; returns the defused cells."""
    defused = 0
    for row in rows:
        for cell in row:
            if cell[:1] in TRIGGERS and cell:
                float(cell)  # only a number may start so: "-1.25" stays a number
            defused += cell.startswith("'")
    return defused


@pytest.mark.parametrize("layout", [[], ["--wide"], ["--per-residue"]])
@pytest.mark.parametrize("fmt,delimiter", [("csv", ","), ("tsv", "\t")])
def test_no_csv_or_tsv_cell_is_a_live_formula(screened, tmp_path, layout, fmt, delimiter):
    path = tmp_path / f"x.{fmt}"
    result = runner.invoke(app, ["export", str(screened), "-f", fmt, *layout, "-o", str(path)])
    assert result.exit_code == 0, result.output
    rows = _cells(path, delimiter)
    assert _assert_no_live_cell(rows) > 0
    ids = {row[rows[0].index("id")] for row in rows[1:]}
    assert {"'" + rid.split()[0] for rid, _ in HOSTILE if rid[0] in TRIGGERS} <= ids
    assert "plain" in ids
    legend = (tmp_path / f"x.{fmt}.legend.txt").read_text()
    assert "leading apostrophe" in legend


def test_numbers_stay_numbers(screened, tmp_path):
    """A regression answer below zero is a number in the long CSV, not defused text."""
    path = tmp_path / "long.csv"
    assert runner.invoke(app, ["export", str(screened), "-o", str(path)]).exit_code == 0
    rows = _cells(path, ",")
    answer, task = rows[0].index("answer"), rows[0].index("task")
    values = [float(r[answer]) for r in rows[1:] if r[task] == "stability"]
    assert values and all(v == v for v in values)
    wide = tmp_path / "wide.csv"
    assert runner.invoke(app, ["export", str(screened), "--wide", "-o", str(wide)]).exit_code == 0
    rows = _cells(wide, ",")
    assert [float(r[rows[0].index("stability")]) for r in rows[1:]] == pytest.approx(values)


def test_the_report_table_csv_is_defused_too(screened, tmp_path):
    page = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(screened), "-o", str(page)]).exit_code == 0
    rows = _cells(page.with_suffix(".csv"), ",")
    assert _assert_no_live_cell(rows) >= 5


def test_each_trigger_character_is_defused():
    for c in TRIGGERS:
        assert safe_text(c + "x") == "'" + c + "x"
    assert safe_text("-1.5e-3") == "-1.5e-3" and safe_text("+7") == "+7" and safe_text("-inf") == "'-inf"
    assert safe_text("a=b") == "a=b" and safe_text("") == ""
    batch = pa.RecordBatch.from_pydict({"s": ["=1+1", "ok", None, "-3", "\rx"], "n": [-1.0, 2.0, 3.0, 4.0, 5.0]})
    out = safe_batch(batch)
    assert out.column("s").to_pylist() == ["'=1+1", "ok", None, "-3", "'\rx"]
    assert out.column("n").to_pylist() == [-1.0, 2.0, 3.0, 4.0, 5.0] and out.schema == batch.schema


def test_the_reports_embedded_data_cannot_break_out(screened, tmp_path):
    page = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(screened), "-o", str(page)]).exit_code == 0
    html = page.read_text(encoding="utf-8")
    blob_start = html.index("id='p2t-rows'>")
    blob = html[blob_start: html.index("</script>", blob_start)]
    assert "<" not in blob.split(">", 1)[1] and "\u2028" not in blob and "&" not in blob.split(">", 1)[1]
    tree = html5lib.parse(html, namespaceHTMLElements=False)  # the WHATWG parsing algorithm, as browsers run it
    scripts = tree.findall(".//script")
    data = [s for s in scripts if s.get("id") == "p2t-rows"]
    assert len(data) == 1
    table = json.loads(data[0].text)
    headers = {row[table["columns"].index("header")] for row in table["rows"]}
    assert {f"{rid} {rest}" for rid, rest in HOSTILE} <= headers  # every header intact, as written
    assert scripts[-1].text == _static("report.js")  # the page's own script survives, whole
    assert tree.find(".//main").findall(".//p")[-1].text.startswith("written by p2t")
