"""What screening one (input, task) gives: a typed result, or a failure with a status; and the
decoded tokens of a stack turned into those outcomes, after one copy to the host per stack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..decode import Decoded
from ..io.records import Status
from ..tasks.spec import TaskResult, TaskSpec
from ..tasks.vocab import Vocab


@dataclass(frozen=True)
class Failure:
    """A (record, task) that produced no prediction."""

    status: Status
    error: str


Outcome = TaskResult | Failure


@dataclass(frozen=True)
class HostDecoded:
    """One task's decoded rows on the host: token ids, their probabilities, and (class tasks) the
    first step's probability of each label."""

    ids: list[list[int]]
    probs: list[list[float]]
    first: list[dict[str, float]]
    label_dists: np.ndarray | None = None  # (B, S, K) each step's distribution over the labels, when kept


def to_host(specs: Sequence[TaskSpec], decoded: Sequence[Decoded], vocab: Vocab) -> list[HostDecoded]:
    """Every task's decoded rows of one stack copied to the host in one transfer: tokens,
    probabilities and the first-step label probabilities flattened into one float64 tensor
    (exact for token ids and float32 probabilities), instead of two or three copies per task."""
    pieces, shapes = [], []
    for spec, out in zip(specs, decoded):
        first = None
        if spec.task_kind.needs_first_probs:
            label_ids = torch.tensor(vocab.ids(spec.labels), device=out.first_probs.device)
            first = out.first_probs[:, label_ids]  # (B, labels)
        shapes.append((tuple(out.tokens.shape), None if first is None else tuple(first.shape)))
        pieces += [out.tokens.double().flatten(), out.probs.double().flatten()]
        if first is not None:
            pieces.append(first.double().flatten())
    flat = torch.cat(pieces).cpu().tolist() if pieces else []
    found, at = [], 0

    def take(shape: tuple[int, int]) -> list[list[float]]:
        nonlocal at
        rows, width = shape
        block = [flat[at + r * width: at + (r + 1) * width] for r in range(rows)]
        at += rows * width
        return block

    for spec, (shape, first_shape) in zip(specs, shapes):
        ids = [[int(x) for x in row] for row in take(shape)]
        probs = take(shape)
        first = ([dict(zip(spec.labels, row)) for row in take(first_shape)] if first_shape is not None
                 else [{} for _ in ids])
        found.append(HostDecoded(ids, probs, first))
    for i, out in enumerate(decoded):  # label distributions, where kept: one array each, not Python lists
        if out.label_dists is not None:
            found[i] = HostDecoded(found[i].ids, found[i].probs, found[i].first,
                                   out.label_dists.float().cpu().numpy())
    return found


def parse_outcomes(spec: TaskSpec, decoded: HostDecoded, vocab: Vocab, prompt_lengths: Sequence[int]
                   ) -> list[Outcome]:
    """Typed outcomes of one task's rows; the first `prompt_lengths[row]` tokens of a row are its
    forced prompt, not output. A row that did not end, or does not parse, is a per-row failure
    (unreachable under the grammar, kept so that nothing is ever lost silently)."""
    kind, outcomes = spec.task_kind, []
    for row, (row_ids, row_probs, row_first, skip) in enumerate(
            zip(decoded.ids, decoded.probs, decoded.first, prompt_lengths)):
        row_ids, row_probs = row_ids[skip:], row_probs[skip:]
        if vocab.eos_id not in row_ids:
            outcomes.append(Failure(Status.ERROR, "decoder output did not terminate"))
            continue
        end = row_ids.index(vocab.eos_id)
        tokens = [vocab.tokens[i] for i in row_ids[:end]]
        try:
            result = kind.parse(spec, tokens, row_probs[:end], row_first)
            if decoded.label_dists is not None:
                result.label_dists = decoded.label_dists[row, skip: skip + end]  # (steps, K)
            outcomes.append(result)
        except ValueError as exc:
            outcomes.append(Failure(Status.ERROR, f"unparseable output {tokens}: {exc}"))
    return outcomes
