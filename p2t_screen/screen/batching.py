"""Length-sorted batches filled up to a padded-token budget (ESM's `<cls>`/`<eos>` included)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


SPECIAL_TOKENS = 2  # <cls> and <eos> around every sequence


def padded_tokens(batch_size: int, longest: int) -> int:
    """Encoder tokens a batch occupies once padded to its longest member."""
    return batch_size * (longest + SPECIAL_TOKENS)


def token_budget_batches(items: Sequence[T], length: Callable[[T], int],
                         max_tokens: int) -> Iterator[list[T]]:
    """Sort by length and yield batches whose padded size fits `max_tokens`.

    A single item over the budget forms a batch of its own rather than being dropped.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    batch: list[T] = []
    for item in sorted(items, key=length):
        if batch and padded_tokens(len(batch) + 1, length(item)) > max_tokens:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def shuffled_batches(items: Sequence[T], length: Callable[[T], int], max_tokens: int,
                     rng: random.Random) -> list[list[T]]:
    """Training order: length-grouped batches (ties in random order), the batches shuffled."""
    order = list(items)
    rng.shuffle(order)  # token_budget_batches sorts stably, so this randomises equal lengths
    plan = list(token_budget_batches(order, length, max_tokens))
    rng.shuffle(plan)
    return plan
