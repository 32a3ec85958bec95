"""`--max-tokens auto`: the token budget a screen measures on its device before the first
batch, so the user need not guess one per card, model and task set.

The default on CUDA. A batch's peak memory grows with its padded encoder tokens: the encoder's
activations, then every task's decoder stack (rows x the KV cache of its longest output).
`search_budget` finds the largest budget whose trial batch fits: trial budgets double from
`FIRST_BUDGET` until one does not fit (or `MOST_BUDGET` is reached), then `BISECTIONS` halvings
of the gap between the last that fit and the first that did not. A trial fits when its peak
stays under the free memory less a safety margin (`SAFETY_MARGIN` of it): what the allocator's
peak does not see (fragmentation, library workspaces, the compiled steps' CUDA-graph pools)
lives there. A trial batch (`trial_inputs`) holds inputs as long as the library's longest
record and runs every task of every model of the run, eagerly. OOM back-off
(`Screener.run_batch`) stays as the safety net. On CPU the budget is the fixed
`DEFAULT_MAX_TOKENS`: a CPU screen is bound by compute, not by memory, and host RAM is not the
device's to measure. The budget decides the batches, so a resumed run reuses the one its
first attempt recorded (`pipeline`): its numbers then equal an uninterrupted run's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..tasks.inputs import LIGAND, PAIR, PROTEIN, ModelInput
from .batching import SPECIAL_TOKENS

SAFETY_MARGIN = 0.15  # share of the device's free memory a batch's measured peak must leave unused
FIRST_BUDGET = 1024  # the first trial budget (padded encoder tokens)
MOST_BUDGET = 1 << 21  # trials stop doubling here: a part holds at most about this many residues
BISECTIONS = 4
_LETTERS = "ACDEFGHIKLMNPQRSTVWY"


@dataclass
class BudgetSearch:
    """The token budget a search found and how: each trial's budget and peak bytes (None: it ran
    out of memory)."""

    max_tokens: int
    free_bytes: int
    margin: float
    trials: list[tuple[int, int | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "free_bytes": self.free_bytes, "margin": self.margin,
                "trials": [[tokens, peak] for tokens, peak in self.trials]}

    def describe(self) -> str:
        fitted = [peak for tokens, peak in self.trials if tokens == self.max_tokens]
        peak = f", its trial peak {fitted[0] / 2**30:.2f} GiB" if fitted and fitted[0] is not None else ""
        return (f"--max-tokens auto: {self.max_tokens:,} padded tokens per batch ({len(self.trials)} trial "
                f"batches; {self.free_bytes / 2**30:.1f} GiB free, {self.margin:.0%} kept aside{peak})")


def search_budget(peak: Callable[[int], int | None], free_bytes: int, smallest: int,
                  margin: float = SAFETY_MARGIN, first: int = FIRST_BUDGET, most: int = MOST_BUDGET,
                  bisections: int = BISECTIONS) -> BudgetSearch:
    """The largest budget (within `first`..`most`, at least `smallest`: one input) whose trial
    `peak(budget)` (bytes, or None when out of memory) stays under `free_bytes` less `margin`.
    Doubling, then `bisections` halvings; when not even `first` fits, halvings down to
    `smallest`, which is returned even if it does not fit (OOM back-off then marks rows)."""
    allowed = free_bytes * (1.0 - margin)
    search = BudgetSearch(smallest, free_bytes, margin)

    def fits(tokens: int) -> bool:
        used = peak(tokens)
        search.trials.append((tokens, used))
        return used is not None and used <= allowed

    first = max(first, smallest)
    if not fits(first):
        good, bad = smallest, first
        if smallest < first and not fits(smallest):
            return search
    else:
        good, bad = first, None
        while bad is None and good < most:
            trial = min(2 * good, most)
            if fits(trial):
                good = trial
            else:
                bad = trial
    for _ in range(bisections if bad is not None else 0):
        mid = (good + bad) // 2
        if mid <= good:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    search.max_tokens = good
    return search


class MemoryMeter(Protocol):
    """A device's memory as the search sees it (tests simulate one)."""

    def free_bytes(self) -> int: ...

    def peak_bytes(self, run: Callable[[], object]) -> int | None:
        """Peak bytes allocated above the start while `run` runs; None when it ran out of memory."""
        ...


class CudaMemory:
    """A CUDA device's free memory and the caching allocator's peak."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def free_bytes(self) -> int:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info(self.device)[0]

    def peak_bytes(self, run: Callable[[], object]) -> int | None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        start = torch.cuda.memory_allocated(self.device)
        try:
            run()
            torch.cuda.synchronize(self.device)
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            torch.cuda.empty_cache()
        return torch.cuda.max_memory_allocated(self.device) - start


def device_meter(device: torch.device) -> MemoryMeter | None:
    """The meter of a device whose memory bounds the token budget (None: a CPU's does not)."""
    return CudaMemory(device) if device.type == "cuda" else None


def synthetic_protein(length: int, seed: int) -> str:
    """A random protein of `length` residues (distinct seeds give distinct proteins, so a trial
    batch's rows are not encoded once as duplicates)."""
    return "".join(random.Random(seed).choices(_LETTERS, k=length))


def trial_inputs(form: str, tokens: int, longest: int, max_residues: int, counted: Callable[[ModelInput], int],
                 ligand: str | None = None) -> list[ModelInput]:
    """The inputs of `form` that fill a `tokens` budget at the library's worst: proteins of the
    longest record's length, pairs as long as the encoder reads, the longest ligand; `counted`:
    the length a batch's budget counts per input (`Screener.batch_length`)."""
    if form == PAIR:
        a = (max_residues - 1) // 2
        make = lambda i: ModelInput(synthetic_protein(a, 2 * i), partner=synthetic_protein(max_residues - 1 - a, 2 * i + 1))  # noqa: E731
    else:
        length = max(1, min(longest, max_residues))
        make = lambda i: ModelInput(synthetic_protein(length, i), ligand=ligand if form == LIGAND else None)  # noqa: E731
    rows = max(1, tokens // (counted(make(0)) + SPECIAL_TOKENS))
    return [make(i) for i in range(rows)]


def fit_budget(screeners: Sequence[Any], longest: int, meter: MemoryMeter) -> BudgetSearch:
    """`--max-tokens auto` for a run's `screeners` (eager `Screener`s of every model, each with its
    tasks): the search above, each trial running every task of every screener on a batch of that
    budget."""

    def run(tokens: int) -> None:
        for screener in screeners:
            max_residues = screener.model.config.encoder.max_residues
            ligands = screener.ligands or []
            usable = [lig.smiles for lig in ligands if lig.error is None]
            ligand = max(usable, key=len) if usable else None
            for form in (PROTEIN, PAIR, LIGAND):
                if screener.by_input[form] and (form != LIGAND or ligand):
                    screener.predict(trial_inputs(form, tokens, longest, max_residues, screener.batch_length(),
                                                  ligand), screener.by_input[form])

    smallest = max(s.batch_length()(ModelInput("A" * max(1, longest))) for s in screeners) + SPECIAL_TOKENS
    return search_budget(lambda tokens: meter.peak_bytes(lambda: run(tokens)), meter.free_bytes(), smallest)
