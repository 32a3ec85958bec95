"""What `p2t bench` checks beside its timings: that the fast paths write what the slow ones
write, and how many decoder calls a batch costs."""

from __future__ import annotations

from ..model.model import P2TModel
from ..screen.batching import token_budget_batches
from ..screen.config import ScreenConfig
from ..screen.screener import Screener
from ..tasks.spec import TaskSpec


def decoder_calls(model: P2TModel, seqs: list[str], tasks: list[TaskSpec], max_tokens: int) -> tuple[float, float]:
    """Decoder forward calls per batch over the library's first batches (up to 8), tasks stacked
    in one decode loop and task by task."""
    batches = list(token_budget_batches(seqs, len, max_tokens))[:8]
    calls = [0]
    hook = model.decoder.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        per_mode = []
        for stack in (True, False):
            calls[0] = 0
            screener = Screener(model, tasks, ScreenConfig(max_tokens=max_tokens, stack_tasks=stack))
            for batch in batches:
                screener.predict(batch)
            per_mode.append(calls[0] / len(batches))
    finally:
        hook.remove()
    return per_mode[0], per_mode[1]


def same_outputs(model: P2TModel, seqs: list[str], tasks: list[TaskSpec], naive: list) -> bool:
    """Do the batched, cached path and the naive path write the same tokens?"""
    screener = Screener(model, tasks)
    fast = screener.predict(seqs)
    vocab = model.vocab
    for i in range(len(seqs)):
        for j, spec in enumerate(tasks):
            kind = spec.task_kind
            toks = [vocab.tokens[t] for t in naive[i][j]]
            ref = kind.parse(spec, toks, [1.0] * len(toks), {lab: 0.0 for lab in spec.labels})
            got = fast[spec.name][i]
            if (ref.value, ref.label, ref.labels, ref.sites, ref.residue_labels) != \
               (got.value, got.label, got.labels, got.sites, got.residue_labels):
                return False
    return True


def memory_agreement(model: P2TModel, seqs: list[str], tasks: list[TaskSpec]) -> float:
    """Fraction of (sequence, task) outputs that the masked memory
    (`--fast-memory`) leaves identical to the faithful padded memory."""
    faithful = Screener(model, tasks).predict(seqs)
    fast = Screener(model, tasks, ScreenConfig(fast_memory=True)).predict(seqs)
    same = [_fields(a) == _fields(b) for t in tasks for a, b in zip(faithful[t.name], fast[t.name])]
    return sum(same) / max(len(same), 1)


def _fields(result) -> tuple:
    return (result.value, result.label, result.labels, result.sites, result.residue_labels)
