"""`p2t bench --host`: what the host costs per record, and whether it hides behind the model.

Three screens of one generated library through `screen_file` (reading, windows, batching, rows,
Arrow, Parquet, run record):
- host only: the model replaced by a no-op of the same interface (`Screener.predict` returns,
  for every input, each task's outcome computed once beforehand), with the host stages in line
  ("before") and in their background threads ("after"): host microseconds per record, after an
  untimed warm-up screen (a process's first screen pays one-time costs);
- the real model with the stages on, timing the model's own share (`predict`, synchronised)
  inside it: end-to-end time against max(host, model) tells whether the host is on the path.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..model.runtime import resolve_device
from ..model.store import load_model, resolve_model_path
from ..screen.config import ScreenConfig
from ..screen.pipeline import ScreenRequest, screen_file
from ..screen.screener import Screener
from .library import AA_FREQ, generate_library


@dataclass(frozen=True)
class HostReport:
    records: int
    host_inline_s: float  # no-op model, stages in line
    host_staged_s: float  # no-op model, stages in background threads
    model_s: float  # the model's own time inside the real screen
    screen_s: float  # the real screen, end to end (stages on)

    def lines(self) -> list[str]:
        per = 1e6 / self.records
        bound = max(self.host_staged_s, self.model_s)
        return [(f"host per record, model replaced by a no-op: {self.host_inline_s * per:,.0f} us in line (before), "
                f"{self.host_staged_s * per:,.0f} us with read-ahead / write-behind (after)"),
                (f"real model: screen {self.screen_s:.2f} s end to end; the model's own share {self.model_s:.2f} s; "
                f"host alone {self.host_staged_s:.2f} s; screen / max(host, model) = {self.screen_s / bound:.2f}x "
                f"(1.00x: the host is hidden; screen / model alone = {self.screen_s / self.model_s:.2f}x)")]


@contextmanager
def _predict_replaced(make: Callable[[Callable], Callable]) -> Iterator[None]:
    """Swap `Screener.predict` for `make(original)` for the duration (the bench's only hook)."""
    original = Screener.predict
    Screener.predict = make(original)
    try:
        yield
    finally:
        Screener.predict = original


def _noop(canned: dict[str, object]) -> Callable[[Callable], Callable]:
    def make(original: Callable) -> Callable:
        def predict(self, inputs, tasks=None):
            return {t.name: [canned[t.name]] * len(inputs) for t in (self.tasks if tasks is None else tasks)}
        return predict
    return make


def _timed(total: list[float], device: torch.device) -> Callable[[Callable], Callable]:
    def make(original: Callable) -> Callable:
        def predict(self, inputs, tasks=None):
            start = time.perf_counter()
            out = original(self, inputs, tasks)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            total[0] += time.perf_counter() - start
            return out
        return predict
    return make


def run_host_bench(model_ref: str | None, tasks: list[str] | None, n: int, lo: int, hi: int, device: str,
                   max_tokens: int, seed: int = 0, log: Callable[[str], None] = print) -> HostReport:
    """The three screens of the module docstring on `n` generated sequences."""
    dev = resolve_device(device)
    path = resolve_model_path(model_ref)
    model = load_model(path, dev)
    specs = model.config.select_tasks(tasks or [t.name for t in model.config.tasks][:2])
    letters, weights = zip(*AA_FREQ.items())
    protein = "".join(random.Random(seed).choices(letters, weights, k=min((lo + hi) // 2,
                                                                          model.config.encoder.max_residues)))
    canned = {name: outcomes[0] for name, outcomes in Screener(model, specs).predict([protein]).items()}
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "host.fasta"
        generate_library(fasta, n, lo, min(hi, model.config.encoder.max_residues), seed)

        def screen(label: str, stages: bool) -> float:
            log(f"screen: {label}")
            req = ScreenRequest(input=fasta, output=Path(tmp) / label.replace(" ", "_"), model=str(path),
                                tasks=tuple(s.name for s in specs), device=device, command="p2t bench --host",
                                screen=replace(ScreenConfig(max_tokens=max_tokens), host_stages=stages))
            return screen_file(req).seconds

        with _predict_replaced(_noop(canned)):
            screen("warm-up, untimed", True)  # a process's first screen pays one-time costs (imports, caches)
            inline = screen("no-op model in line", False)
            staged = screen("no-op model staged", True)
        model_time = [0.0]
        with _predict_replaced(_timed(model_time, dev)):
            real = screen("real model staged", True)
    return HostReport(n, inline, staged, model_time[0], real)
