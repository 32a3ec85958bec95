"""Batched, grammar-constrained greedy decoding, every task of a batch in one loop.

A batch's tasks decode as one stack (`stack.Stack`): G blocks of B rows, each row with its own
task prompt, grammar state, forced prompt tokens and temperature, so the decoder runs once per
step for all of them instead of once per task per step. A block drops off the end of the stack
when its grammar's last step is past (known on the host), or when all its rows are done (checked
every `EARLY_EXIT_EVERY` steps, for grammars whose rows may end early), so a short task costs no
steps of a long one.

Finished rows are tracked by a device mask and write `<pad>`. The loop never calls `.item()` per
token: the host learns only what it must, at the early-exit checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..model.decoder import Decoder
from ..model.stacking import SideInputs
from .blocks import Decoded, TaskBlock
from .cache import FixedCaches, GrowingCaches
from .choice import choose
from .compile import ShapeLadder, Step
from .stack import Stack

EARLY_EXIT_EVERY = 8  # steps between the host's checks for blocks whose rows are all done
SideFor = Callable[[Stack], SideInputs]  # the stack -> its decoder rows' side inputs
NextLogits = Callable[[int, Tensor], Tensor]  # (step just taken, tokens of the live rows) -> logits


@torch.no_grad()
def decode_stack(decoder: Decoder, memory_kv: list[tuple[Tensor, Tensor]], memory_keep: Tensor | None,
                 bos_id: int, blocks: Sequence[TaskBlock], eos_id: int, pad_id: int = 0,
                 side_for: SideFor | None = None, feedback: bool = True, step: Step | None = None,
                 ladder: ShapeLadder | None = None) -> list[Decoded]:
    """Decode every block's rows together after its `<bos> <task>` prompt; one `Decoded` per block.

    `side_for` gives the side inputs of the stack's decoder rows (`P2TModel.side_inputs`).
    `feedback=False`: the decoder reads `<pad>` instead of each chosen token (the model was trained
    so), so every step's logits come from one pass over the prompt and `<pad>`s.
    `step`: the decoder's cached forward (default: the decoder itself; `compile.compiled_step`).
    `ladder`: the shapes a compiled `step` sees (`compile.ShapeLadder`; the batch and memory come
    padded to its rungs): the caches are allocated once at a rung, every block stays in the stack
    to the end (finished rows are masked), and the prompt step runs eagerly. Without it (eager),
    blocks leave the stack as they finish and the caches grow by doubling: fewer rows and
    positions per step.
    """
    batch = memory_kv[0][0].shape[0]
    stack = Stack(blocks, batch, eos_id, decoder.cfg.vocab_size, memory_kv[0][0].device)
    prompt = torch.stack([torch.full_like(stack.task_ids, bos_id), stack.task_ids], dim=1)  # (R, 2)
    side = side_for(stack) if side_for is not None else None
    steps, plen = stack.max_steps, prompt.shape[1]
    if not feedback:
        if stack.forced is not None:
            raise ValueError("forced prompt tokens need feedback")
        inputs = torch.cat([prompt, prompt.new_full((prompt.shape[0], steps - 1), pad_id)], dim=1)
        ahead = decoder(inputs, memory_kv, memory_keep, None, 0, side)[:, plen - 1:]  # (R, steps, V)
        return _greedy(stack, ahead[:, 0], lambda s, token: ahead[: token.shape[0], s + 1], pad_id, trim=True)
    step = decoder if step is None else step
    rows, like = prompt.shape[0], memory_kv[0][0]
    if ladder is None:
        caches: GrowingCaches | FixedCaches = GrowingCaches(decoder, rows, plen + steps, like)
    else:
        decoder.check_length(plen + steps)
        caches = FixedCaches(decoder, rows, ladder.cache_rung(plen + steps), like)
    first = decoder(prompt, memory_kv, memory_keep, caches.at(rows, plen), 0, side)[:, -1]  # (R, V), eager
    position = torch.full((), plen, dtype=torch.long, device=prompt.device)  # where the next token goes

    def next_logits(taken: int, token: Tensor) -> Tensor:
        live = caches.at(token.shape[0], plen + taken + 1)
        if step is not decoder:  # a CUDA-graph replay may reuse the last one's outputs: this step is new
            torch.compiler.cudagraph_mark_step_begin()
        logits = step(token[:, None], memory_kv, memory_keep, live, position, side)[:, -1]
        position.add_(1)
        return logits

    return _greedy(stack, first, next_logits, pad_id, trim=ladder is None)


def _greedy(stack: Stack, logits: Tensor, next_logits: NextLogits, pad_id: int, trim: bool) -> list[Decoded]:
    """The choice loop shared by both decoders: constrain, choose, record, advance the grammars."""
    rows, steps, device = logits.shape[0], stack.max_steps, logits.device
    tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=device)
    probs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    dists = (torch.zeros((rows, steps, stack.label_width), dtype=torch.float32, device=device)
             if stack.label_index is not None else None)  # (R, S, K)
    first = None
    for step in range(steps):
        live = stack.live_rows
        token, prob, logp = choose(logits, stack.allowed(step), done[:live], pad_id, stack.bias(step),
                                   stack.temperature_of_live_rows())
        if stack.forced is not None and step < stack.forced.shape[1]:
            forced_now = stack.forced_len[:live] > step
            token = torch.where(forced_now, stack.forced[:live, step], token)
            prob = prob.masked_fill(forced_now, 1.0)
        if first is None:
            first = logp.exp()
        tokens[:live, step], probs[:live, step] = token, prob
        if dists is not None:
            dists[:live, step] = stack.label_dists(logp)
        stack.advance(token)
        done[:live] |= token.eq(stack.eos_id)
        if step == steps - 1:
            break
        check = step % EARLY_EXIT_EVERY == EARLY_EXIT_EVERY - 1
        active = stack.running_after(step, done, check)
        if active == 0:
            tokens, probs = tokens[:, : step + 1], probs[:, : step + 1]
            dists = dists[:, : step + 1] if dists is not None else None
            break
        if trim:
            stack.active = active
        logits = next_logits(step, token[: stack.live_rows])
    return stack.split(tokens, probs, first, dists)
