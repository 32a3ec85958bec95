"""`p2t bench --soak`: screen many short sequences and watch resident memory, which must not
grow with the library."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from ..model.store import read_model_config
from ..screen.config import ScreenConfig
from ..screen.pipeline import ScreenRequest, screen_file
from .library import AA_FREQ
from .measure import current_rss_mib


class _RssProbe:
    """A Progress that records resident memory when the record count crosses checkpoints."""

    def __init__(self, checkpoints: list[int]) -> None:
        self.pending, self.records, self.samples = sorted(checkpoints), 0, {}

    def start(self, records: int, residues: int) -> None:
        self.samples["start"] = current_rss_mib()

    def advance(self, records: int, residues: int) -> None:
        self.records += records
        while self.pending and self.records >= self.pending[0]:
            self.samples[self.pending.pop(0)] = current_rss_mib()

    def finish(self) -> None:
        self.samples["end"] = current_rss_mib()


def run_soak(model_ref: str | None, n: int, task: str | None, device: str, window_records: int,
             seed: int = 0) -> tuple[dict, float, int]:
    """Screen `n` short generated sequences; RSS (MiB) at 10% of them and at the end."""
    cfg = read_model_config(model_ref)
    name = task or next((t.name for t in cfg.tasks if t.task_kind.scalar), cfg.tasks[0].name)
    rng = random.Random(seed)
    letters, weights = zip(*AA_FREQ.items())
    probe = _RssProbe([n * k // 10 for k in range(1, 11)])
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "soak.fasta"
        with fasta.open("w") as fh:  # streamed: the generator itself must not hold the library
            for i in range(n):
                fh.write(f">soak{i}\n{''.join(rng.choices(letters, weights, k=rng.randint(20, 60)))}\n")
        req = ScreenRequest(input=fasta, output=Path(tmp) / "out", model=model_ref, tasks=(name,),
                            device=device, screen=ScreenConfig(window_records=window_records),
                            command="p2t bench --soak")
        summary = screen_file(req, probe)
    return probe.samples, summary.seconds, summary.rows
