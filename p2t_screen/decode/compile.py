"""The decoder step through `torch.compile`, on a fixed ladder of shapes.

A compiled step is only worth its compile when it sees few shapes: under `mode="reduce-overhead"`
every new shape is a new compile and a new CUDA-graph capture. So a compiled decode never lets
its shapes follow the data (gpt-fast allocates its cache once; nano-vllm pads each batch up to
a captured size). Every compiled step has a shape from a `ShapeLadder`:

- inputs per batch padded up to a power of two (the padding rows repeat the last input and are
  dropped after decoding), so a stack has G x rung decoder rows, and no block leaves the stack:
  a finished block's rows are masked (`<pad>`), not cut out;
- the memory width (encoder positions, plus a ligand's) padded up to a power of two from 32, the
  top rung being the widest memory the model can have; the padding positions are masked;
- the KV cache allocated once per stack for its prompt and its longest task's steps, rounded up
  to a power of two from 32, the top rung being the decoder's `max_len`.

The two-token prompt step runs eagerly. The ladder's rungs are what `p2t bench --compile`
prints and what the run records; the number of compiled graphs cannot exceed its size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.decoder import Decoder

Step = Callable[..., Tensor]  # the decoder's forward, or a compiled twin of it
SMALLEST_LENGTH = 32  # the first memory and cache rung


def _rungs(first: int, top: int) -> tuple[int, ...]:
    """first, 2 first, 4 first, ... below `top`, then `top`."""
    found, n = [], first
    while n < top:
        found.append(n)
        n *= 2
    return (*found, top)


def _up(rungs: Sequence[int], n: int) -> int:
    """The smallest rung that holds `n`."""
    for rung in rungs:
        if n <= rung:
            return rung
    raise ValueError(f"{n} is beyond the top rung {rungs[-1]} of the compiled shapes")


@dataclass(frozen=True)
class ShapeLadder:
    """The shapes a compiled decoder step may see: inputs per batch, memory width, cache length."""

    batch: tuple[int, ...]
    memory: tuple[int, ...]
    cache: tuple[int, ...]

    @classmethod
    def for_model(cls, max_batch: int, max_memory: int, max_len: int) -> ShapeLadder:
        """Powers of two up to the largest batch a token budget allows, the widest memory the
        model can have and the decoder's positions."""
        return cls(_rungs(1, max(1, max_batch)), _rungs(min(SMALLEST_LENGTH, max_memory), max_memory),
                   _rungs(min(SMALLEST_LENGTH, max_len), max_len))

    @property
    def size(self) -> int:
        """How many step shapes there can be (a bound: a run meets few of them)."""
        return len(self.batch) * len(self.memory) * len(self.cache)

    def describe(self) -> dict[str, list[int] | int]:
        return {"batch": list(self.batch), "memory": list(self.memory), "cache": list(self.cache), "size": self.size}

    def cache_rung(self, positions: int) -> int:
        return _up(self.cache, positions)

    def fit(self, proteins: list[str], memory: Tensor, keep: Tensor | None) -> tuple[list[str], Tensor, Tensor]:
        """A batch's proteins, memory (B, S, D) and keep-mask (B, S) padded up to the ladder's
        rungs: rows repeat the last input, positions are zeros that the mask hides."""
        batch, width = memory.shape[:2]
        rows, positions = _up(self.batch, batch), _up(self.memory, width)
        if keep is None:  # a padded memory is read whole: every position is kept
            keep = torch.ones((batch, width), dtype=torch.bool, device=memory.device)
        if rows > batch:
            index = torch.cat([torch.arange(batch), torch.full((rows - batch,), batch - 1)]).to(memory.device)
            memory, keep = memory[index], keep[index]
            proteins = [*proteins, *[proteins[-1]] * (rows - batch)]
        if positions > width:
            memory = F.pad(memory, (0, 0, 0, positions - width))  # (rows, positions, D)
            keep = F.pad(keep, (0, positions - width), value=False)  # (rows, positions)
        return proteins, memory, keep


def compiled_step(decoder: Decoder, backend: str = "inductor", ladder: ShapeLadder | None = None) -> Step:
    """The decoder's forward through `torch.compile`: on CUDA with `mode="reduce-overhead"`, so each
    step replays as a CUDA graph; `fullgraph=True`, so a break in the step fails loudly instead of
    silently running part of it eagerly; `dynamic=False`, one static graph per shape of the ladder
    (dynamo's recompile limit is raised to the ladder's size, so no shape falls back to eager)."""
    if ladder is not None:
        for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                     "accumulated_cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), ladder.size))
    cuda = next(decoder.parameters()).device.type == "cuda"
    return torch.compile(decoder, backend=backend, fullgraph=True, dynamic=False,
                         mode="reduce-overhead" if cuda and backend == "inductor" else None)
