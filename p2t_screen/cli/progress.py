"""Progress for people and for logs: a rich bar on a terminal, periodic plain lines otherwise;
screening and training alike.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table


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

    def note(self, message: str) -> None:
        self.bar.console.print(message, style="dim", highlight=False)


class _Periodic:
    """Plain lines to a stream, at most one every `every` seconds between the first and the last."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 30.0) -> None:
        self.stream, self.every = stream, every
        self.started = self.last = 0.0

    def _due(self) -> bool:
        """True at most once every `every` seconds."""
        now = time.perf_counter()
        if now - self.last < self.every:
            return False
        self.last = now
        return True


class LogProgress(_Periodic):
    """Plain `key=value` lines every `every` seconds (cron jobs, batch schedulers)."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 30.0) -> None:
        super().__init__(stream, every)
        self.records = self.residues = 0

    def start(self, records: int, residues: int) -> None:
        self.total_records, self.total_residues = records, residues
        self.started = self.last = time.perf_counter()
        self._line("start")

    def advance(self, records: int, residues: int) -> None:
        self.records += records
        self.residues += residues
        if self._due():
            self._line("progress")

    def finish(self) -> None:
        self._line("done")

    def note(self, message: str) -> None:
        print(f"p2t note {message}", file=self.stream, flush=True)

    def _line(self, event: str) -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.residues / elapsed if elapsed > 0 else 0.0
        left = self.total_residues - self.residues
        eta = f"{left / rate:.0f}s" if rate > 0 else "-"
        pct = 100.0 * self.residues / self.total_residues if self.total_residues else 100.0
        print(f"p2t {event} records={self.records}/{self.total_records} "
              f"residues={self.residues}/{self.total_residues} ({pct:.1f}%) "
              f"rate={rate:.0f}res/s elapsed={elapsed:.0f}s eta={eta}", file=self.stream, flush=True)


class TrainProgress:
    """Renders `fit` events; quiet mode prints nothing."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        # A rich bar on a terminal; plain step lines otherwise (see `event`).
        self.bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("epoch {task.fields[epoch]} loss {task.fields[loss]} lr {task.fields[lr]}"),
                            TimeRemainingColumn(), console=console, disable=quiet)
        self.task = None
        self.plain = not console.is_terminal  # logs: a line every `every` seconds instead of a bar
        self.every, self.last = 30.0, 0.0

    def __enter__(self) -> TrainProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def event(self, event: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if event == "data":
            table = Table(title="training data (after validation)")
            for col in ("task", "train", "valid", "test", "truncated"):
                table.add_column(col, justify="left" if col == "task" else "right")
            for task, info in data.items():
                c = info["counts"]
                table.add_row(task, str(c["train"]), str(c["valid"]), str(c["test"]), str(info["truncated"]))
            self.console.print(table)
        elif event == "start":
            self.task = self.bar.add_task("train", total=data["steps"], completed=data["resumed_at"],
                                          epoch=0, loss="-", lr="-")
            if data["resumed_at"]:
                self.console.print(f"resuming at step {data['resumed_at']}")
        elif event == "step" and self.plain:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.console.print(f"p2t train step={data['step']}/{self.bar.tasks[0].total} "
                                   f"epoch={data['epoch']} loss={data['loss']:.4f} lr={data['lr']:.2e}",
                                   highlight=False)
        elif event == "step":
            self.bar.update(self.task, completed=data["step"], epoch=data["epoch"],
                            loss=f"{data['loss']:.3f}", lr=f"{data['lr']:.1e}")
        elif event == "epoch":
            table = Table(title=f"epoch {data['epoch']}: loss {data['loss']:.4f}, "
                                f"{data['seq_per_s']:.1f} examples/s, score {data['score']:.4f} "
                                f"(best {data['best']:.4f})")
            table.add_column("task")
            table.add_column("validation metrics")
            for task, metrics in data["metrics"].items():
                shown = {k: v for k, v in metrics.items() if not k.startswith("f1[")}
                table.add_row(task, ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in shown.items()))
            self.console.print(table)
        elif event == "thresholds":
            for task, info in data.items():
                self.console.print(f"{task}: decision threshold {info['threshold']:.2f} "
                                   f"(best validation {info['metric']} "
                                   f"{info['validation'][str(info['threshold'])]:.3f} "
                                   f"on {info['examples']} examples)")
        elif event == "calibration":
            if "domain" in data:
                d = data["domain"]
                self.console.print(f"domain index: {d['proteins']:,} training proteins, in-domain threshold "
                                   f"{d['threshold']:.4f}", highlight=False)
            for task, info in data["tasks"].items():
                c = info["calibration"]
                self.console.print(f"{task}: conformal calibration on {c['examples']:,} validation proteins "
                                   f"(levels {', '.join(c['levels'])})", highlight=False)


class PretrainLog:
    """Renders `pretrain` events as a plain line every 30 s (and at the last step)."""

    def __init__(self, console: Console, quiet: bool = False, every: float = 30.0) -> None:
        self.console, self.quiet, self.every, self.last = console, quiet, every, 0.0

    def event(self, name: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if name == "step" and (now - self.last >= self.every or data["step"] == data["total"]):
            self.last = now
            self.console.print(f"p2t pretrain step={data['step']}/{data['total']} epoch={data['epoch']} "
                               f"loss={data['loss']:.4f} lr={data['lr']:.2e} "
                               f"residues/s={data['residues_per_s']:,.0f}", highlight=False)
        elif name == "start" and data["resumed_at"]:
            self.console.print(f"resuming at step {data['resumed_at']}")


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


class RichTransfer:
    """A download bar: bytes, rate and time left."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=console)
        self.task = None

    def start(self, name: str, total: int | None, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, completed=done)

    def advance(self, nbytes: int) -> None:
        self.bar.update(self.task, advance=nbytes)

    def finish(self) -> None:
        self.bar.stop()


class LogTransfer(_Periodic):
    """Plain lines for logs: one at the start, one every `every` seconds, one at the end."""

    def start(self, name: str, total: int | None, done: int) -> None:
        self.name, self.total, self.done, self.from_ = name, total, done, done
        self.started = self.last = time.perf_counter()
        self._line("start" if not done else f"resume at {_bytes(done)}")

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self._due():
            self._line("progress")

    def finish(self) -> None:
        self._line("done")

    def _line(self, event: str) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = (self.done - self.from_) / elapsed
        total = _bytes(self.total) if self.total else "?"
        print(f"p2t pull {event} {self.name} {_bytes(self.done)}/{total} {_bytes(rate)}/s", file=self.stream,
              flush=True)
