"""`p2t report`: one self-contained HTML page about a screen, readable offline.

The page carries its styles, script and figures inline (figures as SVG data URIs), and loads
nothing else. It stays light for 100,000 proteins: figures aggregate, the rows that are not ok
are counted by reason with the first ones listed, and the per-protein table holds the first
`table_rows` proteins, with the whole table written beside the page as CSV (one click away).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from ..version import __version__
from .dataset import Results
from .export import ExportRequest, Format, Layout, export
from .figures import chart_svg, data_uri
from .sequences import InputSequences
from .summary import Found, Problems, summarise
from .tracks import picked_records, track_html
from .wide import legend, wide_batches, wide_schema

REPORT_FILE = "_report.html"  # inside the results folder: dataset readers skip names starting with '_'
PROBLEMS_LISTED = 100


@dataclass(frozen=True)
class ReportRequest:
    """What the report shows (`output` None: `_report.html` in the results folder)."""

    results: Path
    output: Path | None = None
    ids: tuple[str, ...] = ()  # proteins to draw residue tracks for (default: the first `tracks`)
    tracks: int = 3
    table_rows: int = 1000
    fasta: Path | None = None  # the screened library (default: the run's input, when still there)
    allow_partial: bool = False  # report on an unfinished run (the page says what is missing)


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    table: Path  # the full per-protein table, beside the page
    proteins: int  # rows of the full table
    unfinished: str | None = None  # what the results lack, when they are an unfinished run's


def default_report_path(results: Path) -> Path:
    return results / REPORT_FILE if results.is_dir() else results.with_suffix(".report.html")


def write_report(request: ReportRequest) -> ReportSummary:
    """Write the report page and the full per-protein CSV beside it."""
    results = Results.open(request.results, request.allow_partial)
    out = request.output or default_report_path(request.results)
    sequences = InputSequences.of_run(results.run, request.fasta)
    table = export(ExportRequest(request.results, Format.CSV, Layout.WIDE, out.with_suffix(".csv"),
                                 allow_partial=request.allow_partial))
    problems = Problems(PROBLEMS_LISTED)
    found = summarise(results, sequences, problems)
    body = "".join([
        _run_section(results, found),
        _problems_section(problems),
        "<h2>What each task found</h2>", *(_task_section(f) for f in found.values()),
        _tracks_section(results, sequences, request),
        _table_section(results, request.table_rows, table.rows, table.path.name),
    ])
    page = _page(f"p2t report: {results.run.get('input', results.path)}", body)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return ReportSummary(out, table.path, table.rows, results.unfinished)


def _static(name: str) -> str:
    return resources.files("p2t_screen.results").joinpath("static", name).read_text(encoding="utf-8")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{_static('report.css')}</style></head><body><main><h1>{escape(title)}</h1>{body}"
            f"<p class='muted'>written by p2t {escape(__version__)}</p></main></body></html>\n")


def _facts(rows: list[tuple[str, str]]) -> str:
    return "<table class='facts'>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _run_section(results: Results, found: dict[str, Found]) -> str:
    run, done = results.run, results.finished
    models = "<br>".join(f"{escape(m.get('name', ''))} <code title='{escape(m.get('sha256', ''))}'>"
                         f"sha256 {escape(m.get('sha256', '')[:12])}</code> <span class='muted'>"
                         f"{escape(m.get('path', ''))}</span>" for m in run.get("models") or [run.get("model", {})])
    facts = [("input", escape(str(run.get("input", "")))), ("model(s)", models),
             ("tasks", escape(", ".join(results.tasks))),
             ("command", f"<code>{escape(str(run.get('command', '')))}</code>"),
             ("ran", escape(f"{run.get('created', '')} on {run.get('host', '')}, {run.get('device', '')} "
                            f"{run.get('dtype', '')}, p2t {run.get('p2t_version', '')}"))]
    if done:
        rate = done["residues"] / done["seconds"] if done.get("seconds") else 0.0
        facts += [("records", f"{done['records']:,} ({done['rows']:,} rows, {done['residues']:,} residues)"),
                  ("throughput", (f"{done['seconds']:.1f} s: {rate:,.0f} residues/s, "
                                 f"{done['records'] / max(done['seconds'], 1e-9):,.1f} records/s"))]
    else:
        what = results.unfinished or "unfinished run"
        facts.append(("state", f"<span class='bad'>{escape(what)}; these are the parts written so far</span>"))
    statuses = sorted({s for f in found.values() for s in f.statuses} - {"ok"})
    head = "".join(f"<th>{escape(s)}</th>" for s in ["task", "kind", "ok", *statuses])
    body = "".join(f"<tr><td>{escape(f.task)}</td><td>{escape(f.kind)}</td><td class='num'>{f.statuses['ok']}</td>"
                   + "".join(f"<td class='num bad'>{f.statuses[s] or ''}</td>" for s in statuses) + "</tr>"
                   for f in found.values())
    return f"<h2>The run</h2>{_facts(facts)}<h3>Rows per task and status</h3><table>{head}{body}</table>"


def _problems_section(problems: Problems) -> str:
    reasons, listed, columns = problems.reasons, problems.listed, problems.COLUMNS
    if not reasons:
        return "<h2>Rows that are not ok</h2><p>None: every row is ok.</p>"
    counts = "".join(f"<tr><td>{escape(t)}</td><td class='bad'>{escape(s)}</td><td>{escape(e)}</td>"
                     f"<td class='num'>{n}</td></tr>" for (t, s, e), n in reasons.most_common(20))
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(r[c] or ''))}</td>" for c in columns) + "</tr>" for r in listed)
    total = sum(reasons.values())
    return (f"<h2>Rows that are not ok ({total:,})</h2><h3>By reason</h3><table><tr><th>task</th><th>status</th>"
            f"<th>reason</th><th>rows</th></tr>{counts}</table><h3>The first {len(listed)}</h3><table><tr>"
            + "".join(f"<th>{c}</th>" for c in columns) + f"</tr>{rows}</table>")


def _task_section(found: Found) -> str:
    figures = "".join(f"<img alt='{escape(c.title)}' src='{data_uri(chart_svg(c))}'>" for c in found.summary.charts())
    headline = "; ".join(x for x in (found.summary.headline(), found.summary.trust_line()) if x) \
        if found.summary.rows else "no ok rows"
    return (f"<h3>{escape(found.task)} <span class='muted'>{escape(found.kind)}, {found.statuses['ok']:,} ok rows"
            f"</span></h3><p class='headline'>{escape(headline)}</p><div class='figures'>{figures}</div>")


def _tracks_section(results: Results, sequences: InputSequences | None, request: ReportRequest) -> str:
    if not any(spec.task_kind.residue_tracks for spec in results.specs.values()):
        return ""
    picked = list(picked_records(results, request.ids, request.tracks))
    which = "the proteins asked for" if request.ids else f"the first {len(picked)} proteins (--ids to choose)"
    missing = sorted(set(request.ids) - {rows[0]["seq_id"] for rows in picked})
    note = f"<p class='bad'>not in these results: {escape(', '.join(missing))}</p>" if missing else ""
    return (f"<h2>Residue tracks</h2><p class='muted'>{which}</p>{note}"
            + "".join(track_html(results, rows, sequences) for rows in picked))


def _plain(value: Any) -> Any:
    """A JSON-ready cell: NaN and infinities (not JSON) become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


# Characters that could end or comment out a <script> block (`</script>`, `<!--`), or that old
# parsers read as line ends, written as JSON escapes: the parsed data is the same.
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(data: Any) -> str:
    """JSON to embed in a `<script type="application/json">` block: no text in it can end the block."""
    return json.dumps(data, allow_nan=False, default=str).translate(_SCRIPT_UNSAFE)


def _table_section(results: Results, limit: int, total: int, table_file: str) -> str:
    schema = wide_schema(results)
    rows: list[list[Any]] = []
    for batch in wide_batches(results):
        rows += [[_plain(v) for v in r.values()] for r in batch.to_pylist()][: limit - len(rows)]
        if len(rows) >= limit:
            break
    data = {"columns": schema.names, "docs": [doc for _, doc in legend(schema)], "rows": rows}
    blob = script_json(data)
    shown = f"the first {len(rows):,} of {total:,}" if len(rows) < total else f"all {total:,}"
    return (f"<h2>Per protein</h2><p>{shown} proteins; the whole table: <a href='{escape(table_file)}'>"
            f"{escape(table_file)}</a> (CSV for a spreadsheet; <code>p2t export --wide --format xlsx</code> "
            "for Excel). Click a column to sort; type to filter.</p>"
            "<div class='controls' id='p2t-pager'><input id='p2t-filter' type='search' placeholder='filter: words "
            "that must appear'><button class='prev'>previous</button><button class='next'>next</button>"
            "<span class='where muted'></span></div><div id='p2t-table-wrap'><table id='p2t-table'><thead></thead>"
            f"<tbody></tbody></table></div><script type='application/json' id='p2t-rows'>{blob}</script>"
            f"<script>{_static('report.js')}</script>")
