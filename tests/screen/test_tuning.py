"""`--max-tokens auto` and the encoder probe (`screen.tuning`), on a simulated device memory."""

from __future__ import annotations

import json
import weakref

import pyarrow.parquet as pq
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from p2t_screen.io.schema import read_run_metadata
from p2t_screen.screen import pipeline
from p2t_screen.screen.config import DEFAULT_MAX_TOKENS, ScreenConfig
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.screener import Screener
from p2t_screen.screen.tuning import (
    BISECTIONS,
    FIRST_BUDGET,
    search_budget,
    trial_inputs,
)
from p2t_screen.tasks.inputs import PAIR, PROTEIN
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearDevice:
    """Peak bytes = fixed + per token; past `capacity` the run is out of memory."""

    def __init__(self, fixed: int, per_token: int, capacity: int) -> None:
        self.fixed, self.per_token, self.capacity = fixed, per_token, capacity

    def peak(self, tokens: int) -> int | None:
        used = self.fixed + self.per_token * tokens
        return None if used > self.capacity else used


def test_search_doubles_then_bisects_to_the_largest_budget_that_fits():
    device = LinearDevice(fixed=10_000_000, per_token=1_000, capacity=10**12)
    free = 100_000_000  # allowed: 85 MB -> the true largest budget is 75,000 tokens
    search = search_budget(device.peak, free, smallest=66)
    best = (free * 0.85 - device.fixed) // device.per_token
    assert device.peak(search.max_tokens) <= free * 0.85
    # doubling 1024 .. 65536 fit, 131072 did not; 4 bisections leave a gap of 65536 / 16
    assert best - 65536 / 2**BISECTIONS < search.max_tokens <= best
    tried = [tokens for tokens, _ in search.trials]
    assert tried[:8] == [FIRST_BUDGET * 2**i for i in range(8)]
    assert len(tried) == 8 + BISECTIONS
    assert max(t for t, peak in search.trials if peak is not None and peak <= free * 0.85) == search.max_tokens


def test_out_of_memory_trials_count_as_not_fitting():
    device = LinearDevice(fixed=0, per_token=1_000, capacity=5_000_000)  # the card's limit is below the free figure
    search = search_budget(device.peak, free_bytes=10**9, smallest=66)
    assert 4096 <= search.max_tokens <= 5000
    assert any(peak is None for _, peak in search.trials)


def test_when_even_the_first_trial_fails_the_search_goes_down_to_one_input():
    device = LinearDevice(fixed=0, per_token=1_000, capacity=10**12)
    search = search_budget(device.peak, free_bytes=400_000, smallest=66)  # 340 tokens allowed
    assert 66 <= search.max_tokens <= 340 and search.trials[0] == (1024, 1_024_000)
    hopeless = search_budget(device.peak, free_bytes=10_000, smallest=66)  # not one input fits
    assert hopeless.max_tokens == 66 and [t for t, _ in hopeless.trials] == [1024, 66]


def test_the_search_stops_doubling_at_the_most():
    device = LinearDevice(fixed=0, per_token=1, capacity=10**12)
    search = search_budget(device.peak, free_bytes=10**12, smallest=66, most=8192)
    assert search.max_tokens == 8192 and [t for t, _ in search.trials] == [1024, 2048, 4096, 8192]


class SimulatedDevice(TorchDispatchMode):
    """A device memory on CPU: the bytes of the tensors alive while a run runs (each storage
    counted once, released when the tensor that brought it dies), its peak, and an out-of-memory
    error (torch's own) past `capacity`."""

    def __init__(self, free: int, capacity: int | None = None) -> None:
        super().__init__()
        self.free, self.capacity = free, capacity if capacity is not None else free
        self.live: dict[int, int] = {}
        self.now = self.top = 0
        self.runs = 0

    def free_bytes(self) -> int:
        return self.free

    def peak_bytes(self, run) -> int | None:
        self.live, self.now, self.top = {}, 0, 0
        self.runs += 1
        try:
            with self:
                run()
        except torch.cuda.OutOfMemoryError:
            return None
        return self.top

    def _release(self, ptr: int) -> None:
        self.now -= self.live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                ptr = storage.data_ptr()
                if ptr and ptr not in self.live:
                    self.live[ptr] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.top = max(self.top, self.now)
                    weakref.finalize(tensor, self._release, ptr)
                    if self.now > self.capacity:
                        raise torch.cuda.OutOfMemoryError("simulated: out of memory")
        return out


@pytest.fixture(scope="module")
def model():
    return tiny_model(max_residues=120)


def test_a_budget_measured_on_the_simulated_device_fits_it_and_grows_with_its_memory(model):
    from p2t_screen.screen.tuning import fit_budget

    screener = Screener(model, list(model.config.tasks))
    small, large = SimulatedDevice(free=2 * 2**20), SimulatedDevice(free=8 * 2**20)
    found_small = fit_budget([screener], longest=100, meter=small)
    found_large = fit_budget([screener], longest=100, meter=large)
    for device, found in ((small, found_small), (large, found_large)):
        allowed = device.free * 0.85
        peaks = dict(found.trials)
        assert peaks[found.max_tokens] is not None and peaks[found.max_tokens] <= allowed
        assert any(t > found.max_tokens and (p is None or p > allowed) for t, p in found.trials)
        assert device.runs == len(found.trials)
    assert found_large.max_tokens > 2 * found_small.max_tokens
    # the budget found is one the screen runs: a batch at it has the rows the budget allows
    assert len(trial_inputs(PROTEIN, found_small.max_tokens, 100, 120, screener.batch_length())) == \
        found_small.max_tokens // 102


def test_trial_batches_are_distinct_proteins_of_the_longest_length_or_full_pairs(model):
    screener = Screener(model, list(model.config.tasks))
    proteins = trial_inputs(PROTEIN, 1024, 100, 120, screener.batch_length())
    assert len(proteins) == 1024 // 102 and {len(p.protein) for p in proteins} == {100}
    assert len({p.protein for p in proteins}) == len(proteins)  # duplicates would be encoded once
    pairs = trial_inputs(PAIR, 1024, 30, 120, screener.batch_length())
    assert {p.encoder_length for p in pairs} == {120} and len(pairs) == 1024 // 122


def test_a_run_with_auto_budget_records_what_it_measured(tmp_path, tiny_model_dir, monkeypatch):
    fasta = tmp_path / "lib.fasta"
    fasta.write_text("".join(f">p{i}\n{'MKTAYIAKQRQISFVKSHFSRQ'[: 5 + i % 15] * 3}\n" for i in range(12)))
    device = SimulatedDevice(free=4 * 2**20)
    monkeypatch.setattr(pipeline, "device_meter", lambda _: device)
    notes = []

    class Notes:
        def start(self, records, residues): pass
        def advance(self, records, residues): pass
        def finish(self): pass
        def note(self, message): notes.append(message)

    req = ScreenRequest(input=fasta, output=tmp_path / "out", model=str(tiny_model_dir), device="cpu",
                        screen=ScreenConfig(max_tokens=None))
    summary = screen_file(req, Notes())
    assert summary.all_ok and summary.rows == 12 * len(summary.status_counts)
    meta = read_run_metadata(pq.read_schema(next((tmp_path / "out").glob("*.parquet"))))
    search = meta["max_tokens_auto"]
    assert meta["max_tokens"] == search["max_tokens"] and search["free_bytes"] == 4 * 2**20
    assert search["margin"] == 0.15 and len(search["trials"]) == device.runs >= 2
    assert notes and notes[0].startswith(f"--max-tokens auto: {search['max_tokens']:,}")
    json.dumps(meta)  # the record stays JSON


def test_on_cpu_auto_is_the_fixed_default_and_the_encoder_is_padded(tmp_path, tiny_model_dir):
    fasta = tmp_path / "lib.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nMSTYK\n")
    req = ScreenRequest(input=fasta, output=tmp_path / "out", model=str(tiny_model_dir), device="cpu",
                        screen=ScreenConfig(max_tokens=None))
    assert screen_file(req).all_ok
    meta = read_run_metadata(pq.read_schema(next((tmp_path / "out").glob("*.parquet"))))
    assert meta["max_tokens"] == DEFAULT_MAX_TOKENS and "fixed default" in meta["max_tokens_auto"]
    assert meta["packed_encoder"] is False


def test_a_screener_refuses_an_unresolved_budget(model):
    with pytest.raises(ValueError, match="auto"):
        Screener(model, list(model.config.tasks), ScreenConfig(max_tokens=None))
