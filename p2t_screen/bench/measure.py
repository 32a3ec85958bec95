"""What a bench measures with: a timed path, the device synchronised before a clock is read, and
this process's memory."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """One measured path."""

    name: str
    sequences: int
    residues: int
    seconds: float

    @property
    def seq_per_s(self) -> float:
        return self.sequences / self.seconds

    @property
    def res_per_s(self) -> float:
        return self.residues / self.seconds


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_memory_mib(key: str = "VmRSS") -> float:
    """A memory figure of this process from Linux /proc (VmRSS: resident now; VmHWM: the peak of
    this process image, which unlike getrusage's ru_maxrss does not carry over the peak of the
    process that forked it before exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mib() -> float:
    """Resident memory now, to see whether it grows with the library."""
    return proc_memory_mib("VmRSS")
