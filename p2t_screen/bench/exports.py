"""`p2t bench --export N`: exports and the report streamed over a large result set, with the
peak memory of each measured in its own process at N/10 and N records (it must not grow with N).

The result set is made of real rows: a small library of ~300-residue proteins is screened with
the model, then its records are repeated (new ids and input indices; the FASTA repeated alike,
so per-residue exports can read and check the residues) up to N records.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io.schema import METADATA_KEY, read_run_metadata
from ..io.writer import RUN_FILE, SUCCESS_FILE, PartWriter, read_record
from ..results.export import ExportRequest, Format, Layout, export
from ..results.report import ReportRequest, write_report
from ..screen.pipeline import ScreenRequest, screen_file
from .library import generate_library
from .measure import proc_memory_mib

TEMPLATE_RECORDS = 100
PART_RECORDS = 20_000
JOBS = {  # name -> (format, layout); "report" writes the HTML report
    "wide csv": (Format.CSV, Layout.WIDE), "wide xlsx": (Format.XLSX, Layout.WIDE),
    "wide parquet": (Format.PARQUET, Layout.WIDE), "long csv": (Format.CSV, Layout.LONG),
    "3line": (Format.THREE_LINE, Layout.LONG), "report": (None, None),
}


@dataclass(frozen=True)
class ExportTiming:
    job: str
    records: int
    rows: int
    seconds: float
    peak_mib: float


def tiled_results(template: Path, sequences: list[str], out: Path, n: int) -> Path:
    """`n` records made by repeating the template screen's records (rows and FASTA alike), written
    as a screen writes them (parts listed in a run record, then `_SUCCESS`): readers check them."""
    table = pq.read_table(template)
    per_record = table.num_rows // len(sequences)  # every record has a row per task
    fasta = out.with_suffix(".fasta")
    with fasta.open("w") as fh:
        for i in range(n):
            fh.write(f">tile{i}\n{sequences[i % len(sequences)]}\n")
    run = {**read_run_metadata(table.schema), "input": str(fasta)}
    schema = table.schema.with_metadata({METADATA_KEY: json.dumps(run).encode()})
    writer = PartWriter(out, schema, {**read_record(template / RUN_FILE), "input": str(fasta), "records": n})
    for start in range(0, n, PART_RECORDS):
        records = np.arange(start, min(start + PART_RECORDS, n))
        rows = ((records % len(sequences))[:, None] * per_record + np.arange(per_record)).ravel()  # (records * tasks,)
        chunk = table.take(pa.array(rows))
        index = np.repeat(records, per_record)
        ids = pa.array([f"tile{i}" for i in index])
        for name, column in (("input_index", pa.array(index)), ("seq_id", ids), ("header", ids)):
            chunk = chunk.set_column(chunk.schema.get_field_index(name), name, column)
        writer.write(chunk.combine_chunks().to_batches()[0])
    residues = sum(len(sequences[i % len(sequences)]) for i in range(n))
    seconds = json.loads((template / SUCCESS_FILE).read_text())["seconds"] * n / len(sequences)  # the template's rate
    writer.finish({"output": str(out), "records": n, "residues": residues, "rows": n * per_record,
                   "parts": writer.parts, "seconds": seconds})
    return out


def _run_job(job: str, results: Path, out_dir: Path) -> tuple[int, float, float]:
    """In a fresh process: (rows written, seconds, peak resident MiB of the process)."""
    started = time.perf_counter()
    fmt, layout = JOBS[job]
    if fmt is None:
        rows = write_report(ReportRequest(results, out_dir / "report.html")).proteins
    else:
        rows = export(ExportRequest(results, fmt, layout, out_dir / f"{job.replace(' ', '_')}.{fmt.value}")).rows
    seconds = time.perf_counter() - started
    return rows, seconds, proc_memory_mib("VmHWM")


def run_export_bench(model_ref: str | None, n: int, device: str, jobs: list[str] | None = None,
                     length: int = 300, seed: int = 0, log: Callable[[str], None] = print
                     ) -> tuple[float, list[ExportTiming]]:
    """Screen a small template, tile it to n/10 and n records, time every job in its own process."""
    jobs = jobs or list(JOBS)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seqs = generate_library(tmp / "template.fasta", TEMPLATE_RECORDS, length - 50, length + 50, seed)
        log(f"screening the {TEMPLATE_RECORDS}-record template")
        screen_file(ScreenRequest(input=tmp / "template.fasta", output=tmp / "template", model=model_ref,
                                  device=device, command="p2t bench --export"))
        timings = []
        context = get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
            baseline = pool.submit(proc_memory_mib, "VmHWM").result()  # a bare process's peak
        for size in sorted({max(n // 10, 1), n}):
            log(f"tiling {size:,} records")
            results = tiled_results(tmp / "template", seqs, tmp / f"tiled{size}", size)
            for job in jobs:
                log(f"{job}: {size:,} records")
                with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
                    rows, seconds, peak = pool.submit(_run_job, job, results, tmp / f"out{size}").result()
                timings.append(ExportTiming(job, size, rows, seconds, peak))
    return baseline, timings
