"""The host never makes the accelerator wait without reason: inside a batch, the only
device-to-host reads are the decode loop's early-exit checks (every EARLY_EXIT_EVERY steps) and
one copy of each stack's results. On CPU nothing waits, so the reads are counted where they are
asked for: a TorchFunctionMode sees every `.item()`, `.tolist()`, `.cpu()`, `bool(tensor)`, ...,
and names the p2t function that asked."""

from __future__ import annotations

import math
import traceback

import pytest
import torch
from conftest import TASKS, tiny_model
from torch.overrides import TorchFunctionMode

from p2t_screen.decode.loop import EARLY_EXIT_EVERY
from p2t_screen.screen.screener import Screener

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIONS = {"residue_skip": True, "site_pointer": True, "pooled_memory": True, "task_every_step": True}
READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
         "masked_select", "unique"}  # each waits for the device (the last three: data-dependent shapes)


class HostReads(TorchFunctionMode):
    """Records (function, p2t file and function that called it) for every read of device data."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            caller = [f for f in traceback.extract_stack()[:-1] if "/p2t_screen/" in f.filename][-1]
            self.found.append((name, caller.filename.split("/p2t_screen/")[1], caller.name))
        return func(*args, **(kwargs or {}))


def test_one_batch_reads_the_device_only_where_the_loop_says(monkeypatch):
    model = tiny_model(seed=3, tasks=TASKS, **OPTIONS)  # every side input on: the model decides who reads them
    screener = Screener(model, list(TASKS))
    proteins = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MKVLAAGIVGLLLAST"]
    steps = []
    from p2t_screen.decode import stack as stack_module

    running_after = stack_module.Stack.running_after
    monkeypatch.setattr(stack_module.Stack, "running_after",
                        lambda self, step, done, check: steps.append(step) or running_after(self, step, done, check))
    screener.predict(proteins)  # warm
    steps.clear()
    reads = HostReads()
    with reads:
        screener.predict(proteins)
    places = {(where, fn) for _, where, fn in reads.found}
    assert places <= {("decode/stack.py", "running_after"), ("screen/outcome.py", "to_host")}, reads.found
    copies = [r for r in reads.found if r[2] == "to_host"]
    assert [name for name, _, _ in copies] == ["cpu", "tolist"]  # one stack, one copy (then a host list)
    checks = [r for r in reads.found if r[2] == "running_after" and r[0] == "tolist"]
    assert 0 < len(checks) <= math.ceil(len(steps) / EARLY_EXIT_EVERY)


def test_side_inputs_decide_on_the_host_when_the_blocks_are_known():
    model = tiny_model(seed=3, tasks=TASKS, **OPTIONS)
    memory = torch.randn(2, 6, 32)
    ids = [model.vocab.id(t.token) for t in TASKS]
    task_ids = torch.tensor(ids).repeat_interleave(2)
    reads = HostReads()
    with reads:
        side = model.side_inputs(memory, task_ids, None, ids)
    assert reads.found == []
    assert side.pointer is not None and side.pointer.readers is not None and side.residue is not None
    alone = model.side_inputs(memory, task_ids[:2], None, ids[:1])  # one block: a class task
    assert alone.pointer is None and alone.residue is None and alone.pooled.readers is None
