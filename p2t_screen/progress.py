"""Progress for people and for logs: a rich bar on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class RichProgress:
    """A bar weighted by residues, with residues/s and ETA, and a record counter."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold]screening"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[records]} records"), TextColumn("{task.fields[rate]} res/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
            transient=False)
        self.task = None
        self.records = 0
        self.started = 0.0

    def start(self, records: int, residues: int) -> None:
        self.bar.start()
        self.started = time.perf_counter()
        self.total_records = records
        self.task = self.bar.add_task("screen", total=max(residues, 1), records=f"0/{records}", rate="-")

    def advance(self, records: int, residues: int) -> None:
        self.records += records
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = self.bar.tasks[0].completed + residues
        self.bar.update(self.task, advance=residues, records=f"{self.records}/{self.total_records}",
                        rate=_si(done / elapsed))

    def finish(self) -> None:
        self.bar.stop()


class LogProgress:
    """Plain `key=value` lines every `every` seconds (cron jobs, batch schedulers)."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 30.0) -> None:
        self.stream, self.every = stream, every
        self.records = self.residues = 0
        self.started = self.last = 0.0

    def start(self, records: int, residues: int) -> None:
        self.total_records, self.total_residues = records, residues
        self.started = self.last = time.perf_counter()
        self._line("start")

    def advance(self, records: int, residues: int) -> None:
        self.records += records
        self.residues += residues
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._line("progress")

    def finish(self) -> None:
        self._line("done")

    def _line(self, event: str) -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.residues / elapsed if elapsed > 0 else 0.0
        left = self.total_residues - self.residues
        eta = f"{left / rate:.0f}s" if rate > 0 else "-"
        pct = 100.0 * self.residues / self.total_residues if self.total_residues else 100.0
        print(f"p2t {event} records={self.records}/{self.total_records} "
              f"residues={self.residues}/{self.total_residues} ({pct:.1f}%) "
              f"rate={rate:.0f}res/s elapsed={elapsed:.0f}s eta={eta}", file=self.stream, flush=True)
