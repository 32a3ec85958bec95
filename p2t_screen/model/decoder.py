"""Prot2Token's autoregressive decoder: token + learned position embeddings, causal
self-attention with a KV cache, cross-attention to the encoder memory, feed-forward.

Pre-norm (p2t's own models) or post-norm (PyTorch's default, as in the published checkpoints).
Cross-attention keys/values depend only on the memory, so they are computed once per batch
(`memory_kv`) and reused for every decoding step and every task.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import check_fields
from .stacking import RowInput, SideInputs, by_decoder_row, by_memory_row


@dataclass(frozen=True)
class DecoderConfig:
    """Shape of the decoder and of the bridge from encoder memory into it."""

    vocab_size: int
    memory_dim: int  # encoder width E, projected to `dim`
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 8
    ffn_dim: int = 1024
    max_len: int = 1026  # decoder positions: prompt + outputs + <eos>
    memory_positions: int = 0  # size of a learned table added to the memory; 0 = none
    norm_first: bool = True
    dropout: float = 0.1
    memory_dropout: float = 0.05
    # Per-residue tasks: add memory row j to the decoder input at position j (the input that
    # predicts residue j's label), so label j reads residue j without learning alignment.
    residue_skip: bool = False
    # Site tasks: position token p's logit also gets a pointer score, a bilinear form between the
    # decoder state and memory row p (residue p), so choosing a site can read the residue itself
    # instead of first learning to copy its position code out of cross-attention.
    site_pointer: bool = False
    # Class, multi-label and regression tasks: every decoder input also gets the mean of the
    # memory rows, a whole-protein summary that no learned attention pattern has to gather.
    pooled_memory: bool = False
    # Every decoder input also gets the task token's embedding, so tasks of the same kind (say
    # secondary structure and solvent accessibility, both reading residue j at step j) are told
    # apart at every step instead of only through attention back to the prompt.
    task_every_step: bool = False
    # Per-residue tasks read their own previous labels (Prot2Token). False: they do not (their
    # inputs are <pad>), so each label comes from the encoder alone, one wrong label cannot
    # drag the following ones along, and decoding needs one decoder pass instead of one per residue.
    residue_feedback: bool = True
    # Every memory row adds a learned linear mix of the rows around it (a 1-D convolution of this
    # odd width, 0 = none, starting at zero): per-residue labels read their sequence window (GOR's
    # +-7) at once. Being linear, it adds nothing to the pooled mean.
    memory_window: int = 0

    def __post_init__(self) -> None:
        check_fields(self, positive=("vocab_size", "memory_dim", "dim", "num_layers", "num_heads", "ffn_dim",
                                     "max_len"), at_least_zero=("memory_positions", "dropout", "memory_dropout",
                                                                "memory_window"),
                     ceilings={"vocab_size": 1e7, "memory_dim": 1 << 15, "dim": 1 << 15, "num_layers": 512,
                               "num_heads": 1024, "ffn_dim": 1 << 17, "max_len": 1 << 17, "memory_positions": 1 << 17,
                               "dropout": 1.0, "memory_dropout": 1.0, "memory_window": 1023})
        if self.memory_window and self.memory_window % 2 == 0:
            raise ValueError(f"decoder memory_window must be odd (a window centred on its residue), "
                             f"got {self.memory_window}")
        if self.dim % self.num_heads:
            raise ValueError(f"decoder dim {self.dim} is not divisible by {self.num_heads} heads")

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Preallocated self-attention keys/values for one layer: (R, H, T_max, hd), written in place at
    positions given as a tensor, so a decoding step has the same shapes at every position."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    @classmethod
    def empty(cls, rows: int, heads: int, max_len: int, head_dim: int,
              dtype: torch.dtype, device: torch.device) -> KVCache:
        k = torch.zeros(rows, heads, max_len, head_dim, dtype=dtype, device=device)
        return cls._static(k, torch.zeros_like(k))

    @classmethod
    def _static(cls, k: Tensor, v: Tensor) -> KVCache:
        """A cache whose tensors a compiled step may write in place: on CUDA their addresses are
        marked static, so CUDA graphs capture the writes instead of skipping the graph."""
        if k.is_cuda:
            torch._dynamo.mark_static_address(k)
            torch._dynamo.mark_static_address(v)
        return cls(k, v)

    def first(self, rows: int) -> KVCache:
        """The cache of the first `rows` rows (a view: writes reach this cache)."""
        return KVCache(self.k[:rows], self.v[:rows])

    def resized(self, rows: int, length: int) -> KVCache:
        """A new cache of the first `rows` rows with room for `length` positions, holding this one's."""
        k = self.k.new_zeros((rows, self.k.shape[1], length, self.k.shape[3]))
        v = torch.zeros_like(k)
        kept = min(length, self.k.shape[2])
        k[:, :, :kept], v[:, :, :kept] = self.k[:rows, :, :kept], self.v[:rows, :, :kept]
        return KVCache._static(k, v)

    def update(self, positions: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write (R, H, t, hd) at `positions` (t,); return the whole cache (callers mask it)."""
        self.k.index_copy_(2, positions, k)
        self.v.index_copy_(2, positions, v)
        return self.k, self.v


class Attention(nn.Module):
    """Multi-head attention with a fused input projection laid out like nn.MultiheadAttention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, hd)

    def self_attend(self, x: Tensor, cache: KVCache | None, positions: Tensor) -> Tensor:
        """Causal self-attention; with a cache, `positions` (t,) are where x's tokens go, and each
        attends to every cached position up to its own."""
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is None:
            return self._merge(F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1))
        k, v = cache.update(positions, k, v)
        seen = torch.arange(k.shape[2], device=k.device)[None, :] <= positions[:, None]  # (t, T_max)
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=seen))

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the memory (B, S, D) -> two (B, H, S, hd)."""
        d = memory.shape[-1]
        kv = F.linear(memory, self.in_proj.weight[d:], self.in_proj.bias[d:])
        k, v = kv.chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def cross_attend(self, x: Tensor, kv: tuple[Tensor, Tensor], keep: Tensor | None) -> Tensor:
        """x (R, t, D) attends to the memory (B rows); R = G x B stacked rows share it (`by_memory_row`)."""
        d, batch = x.shape[-1], kv[0].shape[0]
        q = F.linear(x, self.in_proj.weight[:d], self.in_proj.bias[:d])
        groups = x.shape[0] // batch
        q = self._split(by_memory_row(q, batch) if groups > 1 else q)
        out = self._merge(F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=keep))
        return by_decoder_row(out, groups) if groups > 1 else out

    def _merge(self, out: Tensor) -> Tensor:
        b, h, t, hd = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * hd))  # (B, T, D)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = Attention(cfg.dim, cfg.num_heads)
        self.cross_attn = Attention(cfg.dim, cfg.num_heads)
        self.linear1 = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.linear2 = nn.Linear(cfg.ffn_dim, cfg.dim)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.dim) for _ in range(3))
        self.dropout = nn.Dropout(cfg.dropout)

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.gelu(self.linear1(x))))

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], keep: Tensor | None,
                cache: KVCache | None, positions: Tensor) -> Tensor:
        drop = self.dropout
        if self.norm_first:
            x = x + drop(self.self_attn.self_attend(self.norm1(x), cache, positions))
            x = x + drop(self.cross_attn.cross_attend(self.norm2(x), kv, keep))
            return x + drop(self._ffn(self.norm3(x)))
        x = self.norm1(x + drop(self.self_attn.self_attend(x, cache, positions)))
        x = self.norm2(x + drop(self.cross_attn.cross_attend(x, kv, keep)))
        return self.norm3(x + drop(self._ffn(x)))


class Decoder(nn.Module):
    """Token decoder over a projected encoder memory."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.projection = nn.Linear(cfg.memory_dim, cfg.dim)
        self.memory_pos = (nn.Parameter(torch.zeros(cfg.memory_positions, cfg.dim))
                           if cfg.memory_positions else None)
        self.window = (nn.Conv1d(cfg.dim, cfg.dim, cfg.memory_window, padding=cfg.memory_window // 2)
                       if cfg.memory_window else None)
        if self.window is not None:
            nn.init.zeros_(self.window.weight)
            nn.init.zeros_(self.window.bias)
        self.memory_dropout = nn.Dropout(cfg.memory_dropout)
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.pos_embed = nn.Parameter(torch.zeros(cfg.max_len, cfg.dim))
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.dim) if cfg.norm_first else None
        self.output = nn.Linear(cfg.dim, cfg.vocab_size)
        # site_pointer: starts at zero (the model starts as if it had none); `pointer_ids[p - 1]`
        # is the vocabulary id of position token p, set by the model that knows the vocabulary.
        self.pointer = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.site_pointer else None
        if self.pointer is not None:
            nn.init.zeros_(self.pointer.weight)
        self.register_buffer("pointer_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        nn.init.normal_(self.pos_embed, std=0.02)
        if self.memory_pos is not None:
            nn.init.normal_(self.memory_pos, std=0.02)

    def project_memory(self, hidden: Tensor, keep: Tensor | None = None) -> Tensor:
        """Encoder states (B, S, E) -> decoder memory (B, S, D). `keep` (B, S): the rows that are
        the protein's (the memory window reads zeros elsewhere; None: all rows are)."""
        memory = self.projection(hidden)
        if self.window is not None:
            own = memory if keep is None else memory * keep[..., None].to(memory.dtype)  # zeros off the protein
            memory = memory + self.window(own.transpose(1, 2)).transpose(1, 2)
        if self.memory_pos is not None:
            memory = memory + self.memory_pos[: memory.shape[1]]
        return self.memory_dropout(memory)

    def memory_kv(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Cross-attention keys/values of every layer, computed once per batch."""
        return [layer.cross_attn.memory_kv(memory) for layer in self.layers]

    def check_length(self, tokens: int) -> None:
        """ValueError unless the decoder has positions for `tokens` tokens (prompt and outputs)."""
        if tokens > self.cfg.max_len:
            raise ValueError(f"decoder input of {tokens} tokens exceeds max_len {self.cfg.max_len}")

    def new_caches(self, rows: int, max_len: int, like: Tensor) -> list[KVCache]:
        """Empty self-attention caches for `rows` decoder rows decoding up to `max_len` tokens."""
        self.check_length(max_len)
        hd = self.cfg.dim // self.cfg.num_heads
        return [KVCache.empty(rows, self.cfg.num_heads, max_len, hd, like.dtype, like.device)
                for _ in self.layers]

    def forward(self, tokens: Tensor, memory_kv: list[tuple[Tensor, Tensor]],
                memory_keep: Tensor | None, caches: list[KVCache] | None = None,
                pos: int | Tensor = 0, side: SideInputs | None = None) -> Tensor:
        """Logits (R, T, V) for tokens (R, T) placed at positions pos..pos+T, over a memory of B rows
        (R = G x B: G stacked tasks, see `by_memory_row`). With `caches`, `pos` may be a 0-dim device
        tensor, so a step has the same shapes at every position (capturable). `side`: the inputs
        beside the tokens that the model's options enable (see `SideInputs`)."""
        t = tokens.shape[1]
        if isinstance(pos, int):
            self.check_length(pos + t)
        if caches is None and not (isinstance(pos, int) and pos == 0):
            raise ValueError("decoding from a position past 0 needs caches")
        positions = pos + torch.arange(t, device=tokens.device)  # (t,)
        side = side or SideInputs()
        x = self.embedding(tokens) + self.pos_embed.index_select(0, positions)
        if side.residue is not None:
            x = x + self._residue_rows(side.residue, positions, x)
        if side.pooled is not None:
            x = x + self._tile(side.pooled.value, x.shape[0])[:, None, :].to(x.dtype) * side.pooled.mask(x)
        if side.task is not None and self.cfg.task_every_step:
            x = x + self.embedding(side.task[: x.shape[0]])[:, None, :]
        x = self.embed_dropout(x)
        keep = None if memory_keep is None else memory_keep[:, None, None, :]  # (B, 1, 1, S)
        for i, layer in enumerate(self.layers):
            x = layer(x, memory_kv[i], keep, None if caches is None else caches[i], positions)
        if self.final_norm is not None:
            x = self.final_norm(x)
        logits = self.output(x)
        if side.pointer is not None and self.pointer is not None:
            scores = self._pointer_scores(side.pointer, x)  # (R, T, n)
            logits = logits.index_add(2, self.pointer_ids[: scores.shape[2]], scores.to(logits.dtype))
        return logits

    @staticmethod
    def _tile(value: Tensor, rows: int) -> Tensor:
        """(B, ...) -> (R, ...): decoder row r gets value[r % B]."""
        groups = rows // value.shape[0]
        return value if groups == 1 else value.repeat(groups, *[1] * (value.dim() - 1))

    def _residue_rows(self, residue: RowInput, positions: Tensor, x: Tensor) -> Tensor:
        """Memory row j for the input at position j (zeros past the memory): (R, t, D)."""
        width = residue.value.shape[1]
        at = residue.value.index_select(1, positions.clamp(max=width - 1))  # (B, t, D)
        at = at * (positions < width)[None, :, None].to(at.dtype)
        return self._tile(at, x.shape[0]).to(x.dtype) * residue.mask(x)

    def _pointer_scores(self, pointer: RowInput, x: Tensor) -> Tensor:
        """Position token p's pointer score from memory row p (R, T, n), zero in rows that do not read it."""
        memory = pointer.value
        n = min(memory.shape[1] - 1, len(self.pointer_ids))  # memory row p is residue p
        query = self.pointer(x)  # (R, T, D)
        groups = x.shape[0] // memory.shape[0]
        if groups > 1:
            query = by_memory_row(query, memory.shape[0])
        scores = query @ memory[:, 1:n + 1].transpose(1, 2) / math.sqrt(x.shape[-1])  # (B, G*T, n)
        if groups > 1:
            scores = by_decoder_row(scores, groups)
        return scores * pointer.mask(scores)
