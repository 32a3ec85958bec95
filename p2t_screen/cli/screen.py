"""`p2t screen`."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from ..errors import P2TError
from ..io.records import OnInvalid, OnLong
from ..model.locations import DEFAULT_MODEL
from ..screen.config import ScreenConfig
from .app import app
from .common import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_NO_RECORDS,
    EXIT_OK,
    EXIT_ROWS_NOT_OK,
    EXIT_TERMINATED,
    COVERAGE_HELP,
    MAX_TOKENS_HELP,
    THRESHOLD_HELP,
    err,
    fail,
    parse_coverage,
    parse_max_tokens,
    split_tasks,
)
from .progress import LogProgress, RichProgress

if TYPE_CHECKING:
    from ..screen.pipeline import RunSummary
# The library's modules (torch among them) are imported when a command runs, not for `--help`.


@app.command(epilog=EXIT_CODES_HELP)
def screen(
    input: Annotated[Path, typer.Argument(help="FASTA library (.fasta or .fasta.gz; - or a pipe: read once from the stream)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="output folder (Parquet dataset)")] = Path("results"),
    model: Annotated[Optional[str], typer.Option(help=f"model directory or installed name [default: the model offering each task ({DEFAULT_MODEL} first); {DEFAULT_MODEL} for all]")] = None,
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or 'all'")] = "all",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16 (CPU: fp32)")] = "auto",
    max_tokens: Annotated[Optional[int], typer.Option(parser=parse_max_tokens, metavar="N|auto", help=MAX_TOKENS_HELP)] = "auto",
    on_invalid: Annotated[OnInvalid, typer.Option(help="error: stop before running; skip: row status 'invalid'; x: unknown letters -> X")] = OnInvalid.ERROR,
    long: Annotated[OnLong, typer.Option("--long", help="sequences over the encoder limit: truncate | skip | error")] = OnLong.TRUNCATE,
    overwrite: Annotated[bool, typer.Option(help="discard results already in the output folder and start fresh")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/N: screen only shard i of N (by sequence hash); default from SLURM_ARRAY_TASK_ID/COUNT")] = None,
    window_records: Annotated[int, typer.Option(min=1, help="records per output part at most (memory bound)")] = ScreenConfig.window_records,
    part_seconds: Annotated[float, typer.Option(min=0.001, help="close a part after about this many seconds of work: an interruption loses at most that much")] = 60.0,
    partner: Annotated[Optional[Path], typer.Option(help="FASTA of partner proteins for pair tasks (e.g. kinases): each record is paired with every partner")] = None,
    pair_by_id: Annotated[bool, typer.Option("--pair-by-id", help="pair each record only with the partner of the same id")] = False,
    ligand: Annotated[Optional[list[str]], typer.Option(help="SMILES for protein-ligand tasks (repeatable)")] = None,
    ligands: Annotated[Optional[Path], typer.Option(help=".smi file (SMILES [name] per line) for protein-ligand tasks")] = None,
    threshold: Annotated[Optional[list[str]], typer.Option(help=THRESHOLD_HELP)] = None,
    coverage: Annotated[float, typer.Option(parser=parse_coverage, metavar="LEVEL", help=COVERAGE_HELP)] = "0.9",
    fast_memory: Annotated[bool, typer.Option("--fast-memory", help="run models made for a padded memory (imported Prot2Token checkpoints) on a masked memory, each batch padded to its longest protein: faster, but outputs drift from the published model")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="decoder steps through torch.compile (CUDA graphs on a GPU): faster steps after a compile per batch shape, worth it on long GPU runs")] = False,
    force: Annotated[bool, typer.Option("--force", help="use an output folder that holds files but no p2t run (with --overwrite: replace it)")] = False,
    allow_nucleotide: Annotated[bool, typer.Option("--allow-nucleotide", help="screen a library that looks like DNA/RNA (>90% A/C/G/T/U/N) anyway")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="another run is writing the output folder: wait for it instead of refusing")] = False,
    report: Annotated[bool, typer.Option("--report", help="at the end, write an HTML report (OUTPUT/_report.html; see p2t report)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or summary")] = False,
) -> None:
    """Screen a FASTA library: one typed Parquet row per (record, task).

    Rerun the same command after an interruption to resume; SIGINT/SIGTERM stop after the
    current batch, keeping every finished block (a second signal exits at once).
    """
    from ..results.report import ReportRequest, write_report
    from ..screen.pipeline import ScreenRequest, screen_file
    from ..screen.run_record import parse_thresholds
    from ..screen.screener import Stopped
    from ..screen.sources import is_stream, parse_shard

    stop = StopOnSignal()
    try:
        request = ScreenRequest(
            input=input, output=output, model=model, tasks=tuple(split_tasks(tasks)), device=device,
            dtype=dtype, on_invalid=on_invalid, on_long=long,
            screen=ScreenConfig(max_tokens=max_tokens, window_records=window_records, window_seconds=part_seconds,
                                fast_memory=fast_memory, compile=compile, coverage=coverage),
            overwrite=overwrite, command=shlex.join(["p2t", *sys.argv[1:]]), shard=parse_shard(shard),
            partner=partner, pair_by_id=pair_by_id, ligand=tuple(ligand or ()), ligands=ligands,
            thresholds=parse_thresholds(threshold), wait=wait, allow_nucleotide=allow_nucleotide,
            force=force)
        with stop:
            summary = screen_file(request, _progress(quiet), should_stop=stop)
    except P2TError as exc:
        raise fail(exc) from None
    except Stopped:
        raise _stopped(stop, output) from None
    if not quiet:
        _print_summary(summary, _found(output))
    if report:
        try:
            done = write_report(ReportRequest(output, fasta=None if is_stream(input) else input))
        except P2TError as exc:
            raise fail(exc) from None
        if not quiet:
            err.print(f"report -> {done.path}", highlight=False)
    raise typer.Exit(_exit_code(summary, request.shard is not None, quiet))


def _exit_code(summary: RunSummary, sharded: bool, quiet: bool) -> int:
    """0 all ok, 3 some rows not ok, 4 an input with no records (an empty shard of a library is fine)."""
    if summary.records == 0 and not sharded:
        if not quiet:
            err.print("the input holds no FASTA records; an empty dataset (with the schema) was written", highlight=False)
        return EXIT_NO_RECORDS
    return EXIT_OK if summary.all_ok else EXIT_ROWS_NOT_OK


def _progress(quiet: bool) -> RichProgress | LogProgress | None:
    """A rich bar on a terminal, plain log lines otherwise, nothing when quiet."""
    return None if quiet else (RichProgress(err) if err.is_terminal else LogProgress())


def _stopped(stop: StopOnSignal, output: Path) -> typer.Exit:
    from ..io.writer import existing_parts

    parts = len(existing_parts(output))
    err.print(f"stopped by {stop.signal_name}: {parts} complete part(s) kept in {output}; "
              "rerun the same command to resume", highlight=False)
    return typer.Exit(EXIT_INTERRUPTED if stop.signal_name == "SIGINT" else EXIT_TERMINATED)


class StopOnSignal:
    """SIGINT/SIGTERM ask the run to stop after the current batch; a second one exits at once."""

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return bool(self.signal_name)

    def _handle(self, signum, frame) -> None:
        if self.signal_name:
            os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED)
        self.signal_name = signal.Signals(signum).name
        err.print(f"{self.signal_name}: stopping after the current batch (again to exit now)")

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _found(output: Path) -> dict[str, str]:
    """Each task's one-line 'what was found', read back from the finished output."""
    from ..results.dataset import Results
    from ..results.summary import summarise

    try:
        return {f.task: "; ".join(x for x in (f.summary.headline(), f.summary.trust_line()) if x)
                if f.summary.rows else "-" for f in summarise(Results.open(output)).values()}
    except P2TError:  # results that cannot be read back (e.g. no task specs): the counts alone
        return {}


def _print_summary(summary: RunSummary, found: dict[str, str]) -> None:
    if summary.already_complete:
        err.print(f"{summary.output} already holds this finished run; nothing to do (--overwrite reruns it)")
    table = Table(title=f"p2t screen: {summary.records} records", caption=f"-> {summary.output}")
    statuses = sorted({s for c in summary.status_counts.values() for s in c} - {"ok"})
    for col in ("task", "ok", *statuses):
        table.add_column(col, justify="left" if col == "task" else "right")
    if found:
        table.add_column("found", overflow="fold")
    for task, counts in summary.status_counts.items():
        table.add_row(task, str(counts.get("ok", 0)), *(str(counts.get(s, 0)) for s in statuses),
                      *([found.get(task, "-")] if found else []))
    err.print(table)
    rate = summary.residues / summary.seconds if summary.seconds else 0.0
    err.print(f"{summary.rows} rows in {summary.parts} part(s); {summary.residues} residues in "
              f"{summary.seconds:.1f}s ({rate:,.0f} residues/s, "
              f"{summary.records / max(summary.seconds, 1e-9):,.1f} records/s)", highlight=False)
