"""Batched, grammar-constrained greedy decoding, every task of a batch in one loop.

A batch's tasks decode as one stack: G blocks of B rows (R = G x B decoder rows, block g = task g
over the batch's B inputs), each row with its own task prompt, grammar state, forced prompt
tokens and temperature, so the decoder runs once per step for all of them instead of once per
task per step. Blocks run longest grammar first; a block drops off the end of the stack when its
grammar's last step is past (known on the host), or when all its rows are done (checked every
few steps for grammars whose length bound is loose), so a short task costs no steps of a long one.

Finished rows are tracked by a device mask and write `<pad>`. The loop never calls `.item()` per
token. The decoder step itself has static shapes (a preallocated KV cache written at a position
held in a device tensor), so it can be compiled and captured (`Stepper`, `--compile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model.decoder import Decoder, KVCache
from ..model.rows import SideInputs
from ..tasks.grammar import Grammar, TableGrammar
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab

EARLY_EXIT_EVERY = 8
CACHE_START = 64  # positions a stack's KV cache has room for at first (it doubles as needed)
SideFor = Callable[[Tensor], SideInputs]  # the decoder rows' task token ids (R,) -> their side inputs
Step = Callable[..., Tensor]  # the decoder's forward, or a compiled twin of it
NextLogits = Callable[[int, Tensor], Tensor]  # (step just taken, tokens of the active rows) -> logits


@dataclass
class Decoded:
    """Decoder output for one task and batch, still on the device."""

    tokens: Tensor  # (B, S) chosen ids, <pad> after <eos>
    probs: Tensor  # (B, S) probability of each chosen token under the constrained distribution
    first_probs: Tensor  # (B, V) constrained distribution at the first step (class tasks)


@dataclass(frozen=True)
class TaskRows:
    """One task's block of a stacked decode: its prompt token, grammar over the batch's B rows and,
    optionally, per-row forced prompt tokens `forced` (B, F) of lengths `forced_len` (B,): row b's
    first forced_len[b] steps take forced[b] instead of the model's choice (probability 1), so a
    row-specific prompt costs no padding inside the sequence; they are still returned in `tokens`
    (callers strip them). `temperature` divides the logits of the reported probabilities
    (calibration), never the choice."""

    task_id: int
    grammar: Grammar
    forced: Tensor | None = None
    forced_len: Tensor | None = None
    temperature: float = 1.0
    prompts: tuple[tuple[int, ...], ...] = ()  # each row's forced prompt ids (what `forced` holds)


def task_rows(spec: TaskSpec, vocab: Vocab, proteins: Sequence[str], max_steps: int,
              device: torch.device) -> TaskRows:
    """A task's block over a batch of proteins: its grammar and any per-row prompt of its kind."""
    kind = spec.task_kind
    grammar = kind.grammar(spec, vocab, proteins, max_steps, device)
    prompts = tuple(tuple(vocab.ids(kind.prompt_tokens(spec, p))) for p in proteins)
    forced = forced_len = None
    if any(prompts):
        lengths = [len(p) for p in prompts]
        table = torch.full((len(prompts), max(lengths)), vocab.pad_id, dtype=torch.long)
        for row, ids in enumerate(prompts):
            table[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        forced, forced_len = table.to(device), torch.tensor(lengths, device=device)
    return TaskRows(vocab.id(spec.token), grammar, forced, forced_len, spec.reported_temperature, prompts)


def _choose(logits: Tensor, allowed: Tensor, done: Tensor, pad_id: int,
            bias: Tensor | None = None, temperature: float | Tensor = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(token, its reported probability, reported log-probabilities): the choice reads the
    untempered distribution (plus `bias`); only the reported probabilities are tempered
    (`temperature`: a number, or (R, 1) per row)."""
    masked = logits.float().masked_fill(~allowed, float("-inf"))  # (R, V)
    logp = torch.log_softmax(masked, dim=-1)
    best = (logp if bias is None else logp + bias).argmax(-1)
    token = torch.where(done, torch.full_like(done, pad_id, dtype=torch.long), best)
    plain = isinstance(temperature, float) and temperature == 1.0
    reported = logp if plain else torch.log_softmax(masked / temperature, dim=-1)
    prob = reported.gather(1, token[:, None]).squeeze(1).exp().masked_fill(done, 0.0)
    return token, prob, reported


class Stack:
    """The blocks of a stacked decode as one grammar, forced-token table and temperature column;
    `active` counts the blocks still running (a prefix: blocks are sorted longest first)."""

    def __init__(self, blocks: Sequence[TaskRows], batch: int, eos_id: int, vocab_size: int,
                 device: torch.device) -> None:
        self.order = sorted(range(len(blocks)), key=lambda i: -blocks[i].grammar.max_steps)
        self.blocks = [blocks[i] for i in self.order]
        self.batch, self.active = batch, len(blocks)
        self.max_steps = self.blocks[0].grammar.max_steps
        self.loose = [not isinstance(b.grammar, TableGrammar) for b in self.blocks]
        self.eos_id = eos_id
        self.eos = torch.zeros((batch, vocab_size), dtype=torch.bool, device=device)  # a finished block's mask
        self.eos[:, eos_id] = True
        self.task_ids = torch.tensor([b.task_id for b in self.blocks], device=device).repeat_interleave(batch)
        self.forced = self.forced_len = None
        if any(b.forced is not None for b in self.blocks):
            width = max(b.forced.shape[1] for b in self.blocks if b.forced is not None)
            self.forced = torch.zeros((len(blocks) * batch, width), dtype=torch.long, device=device)
            self.forced_len = torch.zeros(len(blocks) * batch, dtype=torch.long, device=device)
            for g, b in enumerate(self.blocks):
                if b.forced is not None:
                    self.forced[g * batch:(g + 1) * batch, : b.forced.shape[1]] = b.forced
                    self.forced_len[g * batch:(g + 1) * batch] = b.forced_len
        temps = [b.temperature for b in self.blocks]
        self.temperature: float | Tensor = 1.0 if all(t == 1.0 for t in temps) else \
            torch.tensor(temps, device=device).repeat_interleave(batch)[:, None]

    @property
    def rows(self) -> int:
        return self.active * self.batch

    def allowed(self, step: int) -> Tensor:  # (rows, V)
        masks = [b.grammar.allowed(step) if step < b.grammar.max_steps else self.eos
                 for b in self.blocks[: self.active]]
        return masks[0] if len(masks) == 1 else torch.cat(masks)

    def bias(self, step: int) -> Tensor | None:  # (rows, V) or None
        biases = [b.grammar.bias(step) if step < b.grammar.max_steps else None for b in self.blocks[: self.active]]
        if all(x is None for x in biases):
            return None
        like = next(x for x in biases if x is not None)
        return torch.cat([(like.new_zeros(()) if x is None else x).expand(self.batch, like.shape[-1])
                          for x in biases])

    def advance(self, tokens: Tensor) -> None:
        for g, block in enumerate(self.blocks[: self.active]):
            block.grammar.advance(tokens[g * self.batch:(g + 1) * self.batch])

    def running_after(self, step: int, done: Tensor, check_done: bool) -> int:
        """Blocks that still run at step + 1: those whose grammar goes on and, when `check_done`
        (one host sync), that still have an unfinished row, or one behind them does."""
        active = sum(1 for b in self.blocks[: self.active] if b.grammar.max_steps > step + 1)
        if check_done and any(self.loose[:active]):
            unfinished = (~done[: active * self.batch].view(active, self.batch).all(1)).tolist()
            active = max((g + 1 for g, u in enumerate(unfinished) if u), default=0)
        return active

    def split(self, tokens: Tensor, probs: Tensor, first: Tensor) -> list[Decoded]:
        """Each block's rows, in the order the blocks were given."""
        out = [Decoded(tokens[g * self.batch:(g + 1) * self.batch, : b.grammar.max_steps],
                       probs[g * self.batch:(g + 1) * self.batch, : b.grammar.max_steps],
                       first[g * self.batch:(g + 1) * self.batch]) for g, b in enumerate(self.blocks)]
        given = [None] * len(out)
        for g, i in enumerate(self.order):
            given[i] = out[g]
        return given


class Caches:
    """The stack's self-attention caches. Room for positions starts small and doubles when a step
    needs more, so a step attends to at most twice the positions it has (not to the longest
    task's whole length), the shapes change a few times per batch (each a static shape for a
    compiled step), and a growth keeps only the rows still in the stack (short tasks' rows are
    not carried to the long task's length)."""

    def __init__(self, decoder: Decoder, rows: int, total: int, like: Tensor) -> None:
        if total > decoder.cfg.max_len:
            raise ValueError(f"decoder input of {total} tokens exceeds max_len {decoder.cfg.max_len}")
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


@torch.no_grad()
def decode_stack(decoder: Decoder, memory_kv: list[tuple[Tensor, Tensor]], memory_keep: Tensor | None,
                 bos_id: int, blocks: Sequence[TaskRows], eos_id: int, pad_id: int = 0,
                 side_for: SideFor | None = None, feedback: bool = True, step: Step | None = None,
                 trim: bool = True) -> list[Decoded]:
    """Decode every block's rows together after its `<bos> <task>` prompt; one `Decoded` per block.

    `side_for` gives the side inputs of the stacked rows from their task ids (`P2TModel.side_inputs`).
    `feedback=False`: the decoder reads `<pad>` instead of each chosen token (the model was trained
    so), so every step's logits come from one pass over the prompt and `<pad>`s.
    `step`: the decoder's cached forward (default: the decoder itself; `Stepper` compiles it).
    `trim=False` keeps every block in the stack to the end (static shapes for a compiled step).
    """
    batch = memory_kv[0][0].shape[0]
    stack = Stack(blocks, batch, eos_id, decoder.cfg.vocab_size, memory_kv[0][0].device)
    prompt = torch.stack([torch.full_like(stack.task_ids, bos_id), stack.task_ids], dim=1)  # (R, 2)
    side = side_for(stack.task_ids) if side_for is not None else None
    steps, plen = stack.max_steps, prompt.shape[1]
    if not feedback:
        if stack.forced is not None:
            raise ValueError("forced prompt tokens need feedback")
        inputs = torch.cat([prompt, prompt.new_full((prompt.shape[0], steps - 1), pad_id)], dim=1)
        ahead = decoder(inputs, memory_kv, memory_keep, None, 0, side)[:, plen - 1:]  # (R, steps, V)
        return _greedy(stack, ahead[:, 0], lambda s, token: ahead[: token.shape[0], s + 1], pad_id, trim)
    step = decoder if step is None else step
    caches = Caches(decoder, prompt.shape[0], plen + steps, memory_kv[0][0])
    first = step(prompt, memory_kv, memory_keep, caches.at(prompt.shape[0], plen), 0, side)[:, -1]  # (R, V)
    position = torch.full((), plen, dtype=torch.long, device=prompt.device)  # where the next token goes

    def next_logits(taken: int, token: Tensor) -> Tensor:
        live = caches.at(token.shape[0], plen + taken + 1)
        if step is not decoder:  # a CUDA-graph replay may reuse the last one's outputs: this step is new
            torch.compiler.cudagraph_mark_step_begin()
        logits = step(token[:, None], memory_kv, memory_keep, live, position, side)[:, -1]
        position.add_(1)
        return logits

    return _greedy(stack, first, next_logits, pad_id, trim)


def _greedy(stack: Stack, logits: Tensor, next_logits: NextLogits, pad_id: int, trim: bool) -> list[Decoded]:
    """The choice loop shared by both decoders: constrain, choose, record, advance the grammars."""
    rows, steps, device = logits.shape[0], stack.max_steps, logits.device
    tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=device)
    probs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    first = None
    for step in range(steps):
        live = stack.rows
        temperature = stack.temperature if isinstance(stack.temperature, float) else stack.temperature[:live]
        token, prob, logp = _choose(logits, stack.allowed(step), done[:live], pad_id, stack.bias(step), temperature)
        if stack.forced is not None and step < stack.forced.shape[1]:
            given = stack.forced_len[:live] > step
            token = torch.where(given, stack.forced[:live, step], token)
            prob = prob.masked_fill(given, 1.0)
        if first is None:
            first = logp.exp()
        tokens[:live, step], probs[:live, step] = token, prob
        stack.advance(token)
        done[:live] |= token.eq(stack.eos_id)
        if step == steps - 1:
            break
        check = step % EARLY_EXIT_EVERY == EARLY_EXIT_EVERY - 1
        active = stack.running_after(step, done, check)
        if active == 0:
            tokens, probs = tokens[:, : step + 1], probs[:, : step + 1]
            break
        if trim:
            stack.active = active
        logits = next_logits(step, token[: stack.rows])
    return stack.split(tokens, probs, first)


def compiled_step(decoder: Decoder, backend: str = "inductor") -> Step:
    """The decoder's forward through `torch.compile`: on CUDA with `mode="reduce-overhead"`, so each
    step replays as a CUDA graph; `fullgraph=True`, so a break in the step fails loudly instead of
    silently running part of it eagerly. Shapes that change between batches (rows, memory width)
    recompile, then run with dynamic shapes."""
    cuda = next(decoder.parameters()).device.type == "cuda"
    return torch.compile(decoder, backend=backend, fullgraph=True,
                         mode="reduce-overhead" if cuda and backend == "inductor" else None)


def greedy_decode(decoder: Decoder, memory_kv: list[tuple[Tensor, Tensor]], memory_keep: Tensor | None,
                  prompt: Tensor, grammar: Grammar, eos_id: int, pad_id: int = 0,
                  forced: Tensor | None = None, forced_len: Tensor | None = None,
                  side: SideInputs | None = None, feedback: bool = True, temperature: float = 1.0) -> Decoded:
    """One task's decoding after `prompt` (B, 2) `<bos> <task>` (a stack of one; see `decode_stack`)."""
    block = TaskRows(int(prompt[0, 1]), grammar, forced, forced_len, temperature)
    return decode_stack(decoder, memory_kv, memory_keep, int(prompt[0, 0]), [block], eos_id, pad_id,
                        side_for=lambda _: side, feedback=feedback)[0]


