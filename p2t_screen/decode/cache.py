"""The self-attention caches of a stacked decode, and how they grow.

Room for positions starts small and doubles when a step needs more, so a step attends to at
most twice the positions it has (not to the longest task's whole length), and a growth keeps
only the rows still in the stack (short tasks' rows are not carried to the long task's length).
"""

from __future__ import annotations

from torch import Tensor

from ..model.decoder import Decoder, KVCache

CACHE_START = 64  # positions a stack's KV cache has room for at first (it doubles as needed)


class GrowingCaches:
    """Every decoder layer's KV cache for one stack, grown by doubling as the decode goes on."""

    def __init__(self, decoder: Decoder, rows: int, total: int, like: Tensor) -> None:
        """`rows` decoder rows that will hold at most `total` positions (prompt and outputs)."""
        decoder.check_length(total)
        self.total = total
        self.caches = decoder.new_caches(rows, min(total, CACHE_START), like)

    def at(self, rows: int, positions: int) -> list[KVCache]:
        """Caches of the first `rows` rows with room for `positions` positions."""
        room = self.caches[0].k.shape[2]
        if positions > room:
            room = min(self.total, max(2 * room, positions))
            self.caches = [c.resized(rows, room) for c in self.caches]
        if rows < self.caches[0].k.shape[0]:
            return [c.first(rows) for c in self.caches]
        return self.caches


class FixedCaches:
    """Every decoder layer's KV cache for one stack, allocated once at its full length (a rung of
    the compiled shapes: `compile.ShapeLadder`), so every compiled step sees the same shapes."""

    def __init__(self, decoder: Decoder, rows: int, total: int, like: Tensor) -> None:
        self.caches = decoder.new_caches(rows, total, like)

    def at(self, rows: int, positions: int) -> list[KVCache]:
        """The whole caches: under compiled steps no row leaves the stack."""
        return self.caches
