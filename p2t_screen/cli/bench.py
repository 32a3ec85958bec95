"""`p2t bench`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from ..errors import P2TError
from ..screen.config import DEFAULT_MAX_TOKENS, ScreenConfig
from .app import app

if TYPE_CHECKING:
    from ..bench.screen import BenchReport
from .common import MAX_TOKENS_HELP, READ_EXIT_CODES, err, fail, out, parse_max_tokens, split_tasks


@app.command("bench", epilog=READ_EXIT_CODES)
def bench_cmd(
    model: Annotated[Optional[str], typer.Option(help="model directory or bundled name")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated tasks, or 'all' [default: the model's first two]")] = None,
    n: Annotated[int, typer.Option(min=1, help="sequences in the generated library")] = 500,
    min_len: Annotated[int, typer.Option(min=1, help="shortest generated sequence (residues)")] = 50,
    max_len: Annotated[int, typer.Option(min=1, help="longest generated sequence (residues)")] = 800,
    naive_n: Annotated[int, typer.Option(min=1, help="sequences for the (slow) naive path")] = 40,
    naive_seconds: Annotated[float, typer.Option(min=0.0, help="stop the naive path after about this many seconds per scenario, timing the sequences done (0: no cap)")] = 60.0,
    max_tokens: Annotated[Optional[int], typer.Option(parser=parse_max_tokens, metavar="N|auto", help=MAX_TOKENS_HELP)] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16 (CPU: fp32)")] = "auto",
    seed: Annotated[int, typer.Option(help="seed of the generated library (the same seed, the same sequences)")] = 0,
    soak: Annotated[int, typer.Option(min=0, help="instead: screen N short sequences and report resident memory at N/10 and N")] = 0,
    export: Annotated[int, typer.Option(min=0, help="instead: time exports and the report over N records (and N/10), peak memory of each")] = 0,
    encoder_shape: Annotated[Optional[str], typer.Option(help="bench the model's tasks over a random-weight ESM2 encoder of this shape, e.g. esm2_t33_650M_UR50D (no download)")] = None,
    length: Annotated[Optional[int], typer.Option(min=1, help="every generated sequence this long (sets --min-len and --max-len)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the figures to this JSON file")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="also time the screen with the decoder step compiled (p2t screen --compile)")] = False,
    compile_backend: Annotated[str, typer.Option(help="torch.compile backend for --compile: inductor (kernels; CUDA graphs on a GPU), or aot_eager / eager (traced only: quick)")] = "inductor",
    sync_debug: Annotated[bool, typer.Option("--sync-debug", help="on CUDA, also screen under torch.cuda.set_sync_debug_mode('warn') and count the synchronizing calls by line")] = False,
    host: Annotated[bool, typer.Option("--host", help="instead: host cost per record (model replaced by a no-op) and its overlap with the real model")] = False,
    startup: Annotated[bool, typer.Option("--startup", help="instead: seconds to answer --version and --help, each in a fresh process, beside a bare Python and an import of torch")] = False,
) -> None:
    """Measure screen throughput beside the encoder alone and a naive reference-style path."""
    if startup:
        from ..bench.startup import time_startup

        table = Table(title="start-up, each in a fresh process (5 runs)")
        for col in ("what", "best s", "median s"):
            table.add_column(col, justify="left" if col == "what" else "right")
        found = time_startup()
        for t in found:
            table.add_row(t.what, f"{t.best:.3f}", f"{t.median:.3f}")
        out.print(table)
        if json_out:
            json_out.write_text(json.dumps({"startup": [asdict(t) for t in found]}, indent=2) + "\n")
        return
    from ..bench.screen import run_bench
    from ..bench.soak import run_soak

    if host:
        from ..bench.host import run_host_bench

        try:
            found = run_host_bench(model, split_tasks(tasks) if tasks and tasks != "all" else None, n,
                                   length or min_len, length or max_len, device, max_tokens or DEFAULT_MAX_TOKENS, seed,
                                   log=lambda m: err.print(m, style="dim"))
        except P2TError as exc:
            raise fail(exc) from None
        for line in found.lines():
            out.print(line, highlight=False)
        if json_out:
            json_out.write_text(json.dumps({"host": asdict(found), "notes": found.lines()}, indent=2) + "\n")
        return
    if export:
        from ..bench.exports import run_export_bench

        try:
            baseline, timings = run_export_bench(model, export, device, log=lambda m: err.print(m, style="dim"))
        except P2TError as exc:
            raise fail(exc) from None
        _print_export(baseline, timings)
        return
    if soak:
        try:
            samples, seconds, rows = run_soak(model, soak, split_tasks(tasks)[0] if tasks else None,
                                              device, window_records=ScreenConfig.window_records)
        except P2TError as exc:
            raise fail(exc) from None
        _print_soak(samples, seconds, rows, soak)
        return
    try:
        if length:
            min_len = max_len = length
        chosen = _all_tasks(model) if tasks == "all" else split_tasks(tasks) if tasks else None
        report = run_bench(model, chosen, n, min_len, max_len,
                           naive_n, max_tokens, device, dtype, seed, log=lambda m: err.print(m, style="dim"),
                           encoder_shape=encoder_shape, compile=compile, sync_debug=sync_debug,
                           compile_backend=compile_backend, naive_seconds=naive_seconds)
    except P2TError as exc:
        raise fail(exc) from None
    _print_report(report)
    if json_out:
        json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        err.print(f"figures -> {json_out}", highlight=False)


def _all_tasks(model: str | None) -> list[str]:
    from ..model.store import read_model_config

    return [t.name for t in read_model_config(model).tasks]


def _print_soak(samples: dict, seconds: float, rows: int, soak: int) -> None:
    tenth = samples.get(soak // 10, float("nan"))
    out.print(f"soak: {rows} rows in {seconds:.1f}s ({soak / seconds:,.0f} records/s); resident "
                    f"memory {samples['start']:.0f} MiB at start, {tenth:.0f} MiB at {soak // 10} records, "
                    f"{samples[soak]:.0f} MiB at {soak} records (growth x{samples[soak] / tenth:.2f})",
                    highlight=False)
    out.print("resident MiB by records: " + ", ".join(
        f"{k}: {v:.0f}" for k, v in samples.items() if isinstance(k, int)), highlight=False)


def _print_export(baseline: float, timings: list) -> None:
    table = Table(title="exports and report, each in its own process")
    for col in ("job", "records", "rows", "seconds", "records/s", "peak RSS MiB", "above a bare process"):
        table.add_column(col, justify="left" if col == "job" else "right")
    for t in timings:
        table.add_row(t.job, f"{t.records:,}", f"{t.rows:,}", f"{t.seconds:.1f}", f"{t.records / t.seconds:,.0f}",
                      f"{t.peak_mib:.0f}", f"{t.peak_mib - baseline:+.0f}")
    out.print(table)
    sizes = sorted({t.records for t in timings})
    if len(sizes) == 2:
        small = {t.job: t for t in timings if t.records == sizes[0]}
        growth = ", ".join(f"{t.job} x{(t.peak_mib - baseline) / max(small[t.job].peak_mib - baseline, 1):.2f}"
                           for t in timings if t.records == sizes[1])
        out.print(f"memory above a bare process ({baseline:.0f} MiB) at {sizes[1]:,} vs {sizes[0]:,} records: {growth}")


def _print_report(report: BenchReport) -> None:
    for title, timings, equal, notes in report.scenarios:
        first = timings[0]
        table = Table(title=title)
        for col in ("path", "sequences", "residues", "seconds", "seq/s", "residues/s", "time vs first row"):
            table.add_column(col, justify="left" if col == "path" else "right")
        for t in timings:
            table.add_row(t.name, str(t.sequences), str(t.residues), f"{t.seconds:.2f}",
                          f"{t.seq_per_s:.1f}", f"{t.res_per_s:,.0f}", f"{first.res_per_s / t.res_per_s:.2f}x")
        out.print(table)
        for note in notes:
            out.print(note)
    out.print(f"peak RSS {report.peak_rss_mib:.0f} MiB; device {report.device}; torch threads {report.threads}")
