"""Decoding: every task of a batch written as tokens under its grammar, in one stacked loop.

The room sits between `model/` (the networks) and `screen/` (records, batches, rows): it knows
decoder steps, grammars and token ids, nothing of records or files.

- `blocks.py`: one task's block of decoder rows over a batch (prompt, grammar, forced tokens),
  and `Decoded`, what a block's decode gives back;
- `stack.py`: the blocks of one decode as one stack (grammar masks, forced tokens, temperatures);
- `choice.py`: the constrained choice of each step's tokens;
- `cache.py`: the self-attention caches of a stack and how they grow;
- `loop.py`: the loop itself (`decode_stack`);
- `compile.py`: the decoder step through `torch.compile`, on a fixed ladder of shapes.
"""

from .blocks import Decoded, TaskBlock, task_block
from .compile import ShapeLadder, compiled_step
from .loop import decode_stack

__all__ = ["Decoded", "ShapeLadder", "TaskBlock", "compiled_step", "decode_stack", "task_block"]
