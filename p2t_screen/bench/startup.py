"""`p2t bench --startup`: how long the command takes to answer `--version` and `--help`, each in
a fresh process (best and median of a few), beside a bare Python that only starts, and the
import of torch that the help no longer pays for."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

COMMANDS = {
    "python (bare start)": ["-c", "pass"],
    "p2t --version": ["-m", "p2t_screen", "--version"],
    "p2t --help": ["-m", "p2t_screen", "--help"],
    "p2t screen --help": ["-m", "p2t_screen", "screen", "--help"],
    "p2t calibrate --help": ["-m", "p2t_screen", "calibrate", "--help"],
    "import torch (for comparison)": ["-c", "import torch"],
}


@dataclass(frozen=True)
class StartupTiming:
    what: str
    best: float
    median: float


def time_startup(repeats: int = 5) -> list[StartupTiming]:
    """Each command run `repeats` times in a new interpreter (output discarded)."""
    found = []
    for what, args in COMMANDS.items():
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            seconds.append(time.perf_counter() - start)
        found.append(StartupTiming(what, min(seconds), statistics.median(seconds)))
    return found
