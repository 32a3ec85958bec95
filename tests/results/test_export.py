"""`p2t export`: wide, long and per-residue tables in CSV, TSV, xlsx and Parquet, and 3-line files."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from screened import screen
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.errors import InputError, UsageError
from p2t_screen.results.dataset import Results
from p2t_screen.results.export import ExportRequest, Format, Layout, export

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    return screen(tmp_path_factory.mktemp("screened"))


def _export(out, fmt, layout=Layout.WIDE, **kw):
    return export(ExportRequest(out, Format(fmt), layout, **kw))


def _key(row):
    return row["input_index"], row.get("partner_id"), row.get("ligand_id")


def _natural(kind, spec, row, task):
    """A wide row's answer for `task`, turned back into the long dataset's typed form."""
    cell = row[task]
    if kind == "regression":
        return cell
    if kind == "class":
        return cell, row[f"{task}_prob"]
    if kind == "multilabel":
        return [lab for lab in cell.split(";") if lab]
    if kind == "sites":
        return [int(p) for p in cell.split(";") if p]
    table = dict(zip(spec.codes or [lab[0] for lab in spec.labels], spec.labels))
    return [table[c] for c in cell]


def _long_answer(kind, row):
    return {"regression": lambda: row["value"], "class": lambda: (row["label"], row["confidence"]),
            "multilabel": lambda: row["labels"], "sites": lambda: row["sites"],
            "per_residue": lambda: row["residue_labels"]}[kind]()


def test_wide_values_equal_the_long_dataset(screened, tmp_path):
    out, records = screened
    long_rows = pq.read_table(out).to_pylist()
    wide = {}
    for row in pq.read_table(_export(out, "parquet", output=tmp_path / "w.parquet").path).to_pylist():
        assert _key(row) not in wide, "two wide rows share a key"
        wide[_key(row)] = row
    specs = Results.open(out).specs
    assert set(wide) == {(r["input_index"], r["partner_id"], r["ligand_id"]) for r in long_rows}
    assert {r["id"] for r in wide.values()} == {rid for rid, _ in records}  # every record has a row
    compared = set()
    for row in long_rows:
        w = wide[_key(row)]
        if row["status"] != "ok":
            assert w["status"] != "ok" and w[row["task"]] is None and w["error"]
            continue
        spec = specs[row["task"]]
        assert _natural(spec.kind, spec, w, row["task"]) == _long_answer(spec.kind, row), row["task"]
        compared.add(spec.kind)
        if spec.kind == "multilabel":
            probs = dict((d["label"], d["prob"]) for d in row["label_probs"])
            written = [float(p) for p in w[f"{row['task']}_probs"].split(";") if p]
            assert written == pytest.approx([probs[lab] for lab in row["labels"]], abs=5e-4)
    assert compared == {"regression", "class", "multilabel", "sites", "per_residue"}
    assert wide[(1, "k2", None)]["binds"] in ("no", "yes")  # a pair row
    assert wide[(1, None, "broken")]["status"] == "invalid"  # the broken ligand's row
    assert "unclosed ring" in wide[(1, None, "broken")]["error"]


def test_csv_tsv_and_xlsx_hold_the_same_table(screened, tmp_path):
    out, _ = screened
    reference = pq.read_table(_export(out, "parquet", output=tmp_path / "w.parquet").path)
    csv_file = _export(out, "csv", output=tmp_path / "w.csv")
    raw = csv_file.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads it as UTF-8
    assert csv_file.legend.read_text().startswith("id\t")
    frame = pd.read_csv(csv_file.path, keep_default_na=False)
    assert list(frame.columns) == reference.schema.names  # the mark is not part of the first name
    parsed = pacsv.read_csv(csv_file.path, convert_options=pacsv.ConvertOptions(
        column_types=reference.schema, strings_can_be_null=True, quoted_strings_can_be_null=False))
    assert parsed.to_pylist() == reference.to_pylist()  # floats written in full, read back equal
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == reference.num_rows + 1  # one physical line per row: no lists spread across lines

    tsv = _export(out, "tsv", output=tmp_path / "w.tsv").path
    assert not tsv.read_bytes().startswith(b"\xef\xbb\xbf")
    assert pacsv.read_csv(tsv, parse_options=pacsv.ParseOptions(delimiter="\t"), convert_options=pacsv.ConvertOptions(
        column_types=reference.schema, strings_can_be_null=True, quoted_strings_can_be_null=False)).to_pylist() == reference.to_pylist()

    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.load_workbook(_export(out, "xlsx", output=tmp_path / "w.xlsx").path, read_only=True)
    assert book.sheetnames == ["results", "legend"]
    cells = [list(r) for r in book["results"].iter_rows(values_only=True)]
    assert tuple(cells[0]) == tuple(reference.schema.names)
    expected = reference.to_pylist()
    for got, want in zip(cells[1:], expected, strict=True):
        for name, value in zip(reference.schema.names, got):
            if isinstance(want[name], float):
                assert value == pytest.approx(want[name], rel=1e-6)
            else:
                assert value == (want[name] if want[name] != "" else None), name
    legend = {r[0]: r[1] for r in book["legend"].iter_rows(min_row=2, values_only=True)}
    assert "H=H" in legend["ss3"] and "partner protein" in legend["partner_id"]
    sheet = openpyxl.load_workbook(tmp_path / "w.xlsx")["results"]  # not read-only: filters, widths, formats
    assert sheet.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(cells[0]))}{len(cells)}"
    assert sheet.freeze_panes == "A2"
    names = list(reference.schema.names)
    letter = openpyxl.utils.get_column_letter
    assert sheet.column_dimensions[letter(names.index("header") + 1)].width >= 40
    confidence = [n for n in names if n.endswith("_confidence") or n.endswith("_prob")][0]
    assert sheet.cell(row=2, column=names.index(confidence) + 1).number_format == "0.000"


def test_long_text_export_has_one_line_per_row_and_the_answer_as_text(screened, tmp_path):
    out, _ = screened
    done = _export(out, "csv", Layout.LONG, output=tmp_path / "long.csv")
    table = pacsv.read_csv(done.path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                                                                           quoted_strings_can_be_null=False))
    assert table.num_rows == pq.read_table(out).num_rows == done.rows
    rows = table.to_pylist()
    ss3 = next(r for r in rows if r["task"] == "ss3" and r["status"] == "ok")
    assert set(ss3["answer"]) <= set("HEC") and len(ss3["answer"]) == ss3["residues_used"]
    assert all(r["answer"] is None for r in rows if r["status"] != "ok")
    typed = _export(out, "parquet", Layout.LONG, output=tmp_path / "long.parquet").path
    assert pq.read_table(typed).to_pylist() == pq.read_table(out).to_pylist()  # the typed dataset, one file


def test_per_residue_formats_show_the_screened_residues(screened, tmp_path):
    out, records = screened
    sequences = dict(records)
    done = export(ExportRequest(out, Format.THREE_LINE, output=tmp_path / "x.3line"))
    lines = done.path.read_text().splitlines()
    assert len(lines) == 3 * done.rows
    ok = [r for r in pq.read_table(out).to_pylist() if r["status"] == "ok" and r["task"] in ("ss3", "phospho", "positions_k")]
    assert done.rows == len(ok)
    for head, seq, labels in zip(lines[::3], lines[1::3], lines[2::3]):
        rid, task = head[1:].split()[:2]
        assert seq == sequences[rid] and len(labels) == len(seq)
        assert set(labels) <= (set("HEC") if task == "ss3" else set("+-"))

    table = pq.read_table(export(ExportRequest(out, Format.PARQUET, Layout.RESIDUES, output=tmp_path / "r.parquet",
                                               tasks=("ss3",))).path).to_pylist()
    assert len(table) == sum(r["residues_used"] for r in ok if r["task"] == "ss3")
    first = [r for r in table if r["id"] == "p0"]
    assert "".join(r["residue"] for r in first) == sequences["p0"]
    assert [r["position"] for r in first] == list(range(1, len(sequences["p0"]) + 1))
    assert all(r["label"] in "HEC" and r["code"] == r["label"] and 0 < r["probability"] <= 1 for r in first)

    with pytest.raises(UsageError, match="no per-residue answers"):
        export(ExportRequest(out, Format.TSV, Layout.RESIDUES, tasks=("kingdom",)))
    other = tmp_path / "other.fasta"
    other.write_text(">p0\nMKV\n")
    with pytest.raises(InputError, match="record 1 .'p0'. differs"):
        export(ExportRequest(out, Format.THREE_LINE, output=tmp_path / "y.3line", fasta=other))
    assert not (tmp_path / "y.3line").exists()  # nothing half-written


def test_an_empty_result_set_exports_headers_only(tmp_path, tiny_model_dir):
    (tmp_path / "empty.fasta").write_text("")
    result = CliRunner().invoke(app, ["screen", str(tmp_path / "empty.fasta"), "--model", str(tiny_model_dir),
                                      "-o", str(tmp_path / "out"), "--device", "cpu", "-q"])
    assert result.exit_code == 4, result.output
    for fmt in ("csv", "tsv", "xlsx", "parquet"):
        done = _export(tmp_path / "out", fmt, output=tmp_path / f"e.{fmt}")
        assert done.rows == 0 and done.path.stat().st_size > 0
    assert pacsv.read_csv(tmp_path / "e.csv").num_rows == 0
    assert pq.read_table(tmp_path / "e.parquet").schema.names[:3] == ["id", "header", "input_index"]


def test_export_cli(screened, tmp_path):
    out, _ = screened
    run = CliRunner().invoke
    result = run(app, ["export", str(out), "--wide", "--format", "xlsx", "-o", str(tmp_path / "t.xlsx")])
    assert result.exit_code == 0, result.output
    assert "rows ->" in result.output and (tmp_path / "t.xlsx").is_file()
    result = run(app, ["export", str(out), "--wide", "--per-residue"])
    assert result.exit_code == 2 and "one of --wide and --per-residue" in result.output
    result = run(app, ["export", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such results folder" in result.output
    result = run(app, ["export", str(out), "--format", "3line", "--wide"])
    assert result.exit_code == 2 and "no --wide form" in result.output
