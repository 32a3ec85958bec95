"""Training progress: a rich bar with loss and learning rate, and a metrics table per epoch."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


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

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "data":
            table = Table(title="training data (after validation)")
            for col in ("task", "train", "valid", "test", "truncated"):
                table.add_column(col, justify="left" if col == "task" else "right")
            for task, info in data.items():
                c = info["counts"]
                table.add_row(task, str(c["train"]), str(c["valid"]), str(c["test"]), str(info["truncated"]))
            self.console.print(table)
        elif kind == "start":
            self.task = self.bar.add_task("train", total=data["steps"], completed=data["resumed_at"],
                                          epoch=0, loss="-", lr="-")
            if data["resumed_at"]:
                self.console.print(f"resuming at step {data['resumed_at']}")
        elif kind == "step" and self.plain:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.console.print(f"p2t train step={data['step']}/{self.bar.tasks[0].total} "
                                   f"epoch={data['epoch']} loss={data['loss']:.4f} lr={data['lr']:.2e}",
                                   highlight=False)
        elif kind == "step":
            self.bar.update(self.task, completed=data["step"], epoch=data["epoch"],
                            loss=f"{data['loss']:.3f}", lr=f"{data['lr']:.1e}")
        elif kind == "epoch":
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
        elif kind == "thresholds":
            for task, info in data.items():
                self.console.print(f"{task}: decision threshold {info['threshold']:.2f} "
                                   f"(best validation {info['metric']} "
                                   f"{info['validation'][str(info['threshold'])]:.3f} "
                                   f"on {info['examples']} examples)")
