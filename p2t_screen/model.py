"""A p2t model: an ESM2 encoder, a decoder, its vocabulary and the task specs it was trained for."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from esm.model.esm2 import ESM2
from torch import Tensor, nn

from .decoder import Decoder, DecoderConfig
from .encoder import EncoderConfig, esm2_forward
from .errors import UsageError
from .smiles import MoleculeConfig, MoleculeEncoder
from .tasks import KINDS, TaskSpec
from .vocab import Vocab

PROMPT_LEN = 2  # <bos> <task_X>
# How the decoder memory is built. "masked": the encoder sees each batch padded to its longest
# sequence and the decoder ignores padding (p2t's own models). "padded": the encoder input is
# padded to max_residues + 2 tokens and the decoder attends to every position, padding included,
# with no memory mask: what the published Prot2Token checkpoints were trained and run with.
MEMORY_MODES = ("masked", "padded")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's modules and interpret its tokens."""

    name: str
    encoder: EncoderConfig
    decoder: DecoderConfig
    vocab: Vocab
    tasks: tuple[TaskSpec, ...]
    memory: str = "masked"  # one of MEMORY_MODES
    molecule: MoleculeConfig | None = None  # SMILES encoder of protein-ligand tasks

    def __post_init__(self) -> None:
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, got {self.memory!r}")
        ligand_tasks = [t.name for t in self.tasks if t.inputs == "ligand"]
        if ligand_tasks and self.molecule is None:
            raise ValueError(f"task(s) {ligand_tasks} read ligands but the model has no molecule encoder")
        if self.molecule is not None and self.molecule.dim != self.decoder.dim:
            raise ValueError(f"molecule encoder width {self.molecule.dim} != decoder width {self.decoder.dim}")
        if self.decoder.vocab_size != len(self.vocab):
            raise ValueError(f"decoder vocab_size {self.decoder.vocab_size} != vocabulary size "
                             f"{len(self.vocab)}")
        if self.decoder.memory_dim != self.encoder.embed_dim:
            raise ValueError(f"decoder memory_dim {self.decoder.memory_dim} != encoder width "
                             f"{self.encoder.embed_dim}")
        if 0 < self.decoder.memory_positions < self.encoder.max_residues + 2:
            raise ValueError(f"decoder memory_positions {self.decoder.memory_positions} must cover "
                             f"max_residues + 2 = {self.encoder.max_residues + 2} encoder positions")
        for spec in self.tasks:
            needed = [spec.token, *KINDS[spec.kind].label_tokens(spec, self.encoder.max_residues)]
            missing = [t for t in needed if t not in self.vocab]
            if missing:
                raise ValueError(f"task {spec.name!r} needs tokens missing from the vocabulary: "
                                 f"{missing[:10]}")
            if spec.encoding == "flags" and self.max_output_steps < len(spec.labels) + 1:
                raise ValueError(f"task {spec.name!r} writes {len(spec.labels) + 1} tokens; the decoder "
                                 f"allows {self.max_output_steps}")
            if spec.kind == "per_residue" and self.max_output_steps < self.encoder.max_residues + 1:
                raise ValueError(f"per-residue task {spec.name!r} needs decoder max_len >= "
                                 f"{self.encoder.max_residues + 1 + PROMPT_LEN}")

    @property
    def max_output_steps(self) -> int:
        """Tokens the decoder can write after the prompt, `<eos>` included."""
        return self.decoder.max_len - PROMPT_LEN

    def task(self, name: str) -> TaskSpec:
        """The spec of one of this model's tasks, or a UsageError listing the ones it has."""
        for spec in self.tasks:
            if spec.name == name:
                return spec
        have = ", ".join(s.name for s in self.tasks)
        raise UsageError(f"model '{self.name}' has no task '{name}'; it has: {have}")

    def select_tasks(self, names: list[str] | None) -> list[TaskSpec]:
        """Resolve a user's task list (None or ['all'] meaning every task)."""
        if not names or names == ["all"]:
            return list(self.tasks)
        seen: list[TaskSpec] = []
        for name in names:
            spec = self.task(name)
            if spec not in seen:
                seen.append(spec)
        return seen


class P2TModel(nn.Module):
    """ESM2 encoder + Prot2Token decoder. Pure computation: no I/O, no progress, no prints."""

    def __init__(self, config: ModelConfig, encoder: ESM2 | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else config.encoder.build()
        self.decoder = Decoder(config.decoder)
        if config.decoder.site_pointer and any(KINDS[t.kind].side_input == "pointer" for t in config.tasks):
            # position tokens 1..max_residues: site tasks bring them all (checked by ModelConfig)
            self.decoder.pointer_ids = torch.tensor(
                config.vocab.ids([str(p) for p in range(1, config.encoder.max_residues + 1)]), dtype=torch.long)
        self.molecule = MoleculeEncoder(config.molecule) if config.molecule is not None else None
        self.source = ""  # where it was loaded from, set by the loader
        self.checksum = ""
        self.metadata: dict = {}

    @property
    def vocab(self) -> Vocab:
        return self.config.vocab

    def encode(self, tokens: Tensor, memory: str | None = None, molecules: Tensor | None = None,
               rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """ESM token ids (B, T) -> decoder memory (B, S, D) and its keep-mask (B, S) or None.

        `memory` overrides the model's own mode (`config.memory`). "padded" pads the tokens to
        max_residues + 2 (S = that) and returns no mask: the decoder attends to every position.
        "masked" keeps S = T and masks the padding. `molecules` (B, M) SMILES ids (protein-ligand
        tasks) append the molecule encoder's memory: S grows by M, and a mask is returned.
        `rows` (B,): batch row b uses protein `tokens[rows[b]]` (inputs sharing a protein, such as
        one protein with many ligands, encode it once); B is then len(rows).
        """
        out, keep = self._encode_protein(tokens, memory)
        if rows is not None:
            out, keep = out[rows], (None if keep is None else keep[rows])
        if molecules is None:
            return out, keep
        if self.molecule is None:
            raise ValueError(f"model '{self.config.name}' has no molecule encoder")
        mol, mol_keep = self.molecule(molecules)
        if keep is None:
            keep = torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
        return torch.cat([out, mol.to(out.dtype)], dim=1), torch.cat([keep, mol_keep], dim=1)

    def encoder_hidden(self, tokens: Tensor) -> Tensor:
        """The protein encoder's last-layer representations (B, T, E), with the model's own
        rotary frequencies (imported checkpoints carry theirs)."""
        return esm2_forward(self.encoder, tokens, self.config.encoder.rotary_inv_freq)

    def _encode_protein(self, tokens: Tensor, memory: str | None) -> tuple[Tensor, Tensor | None]:
        mode = memory or self.config.memory
        if mode not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, got {mode!r}")
        if mode == "padded":
            width = self.config.encoder.max_residues + 2
            if tokens.shape[1] > width:
                raise ValueError(f"{tokens.shape[1]} encoder tokens exceed the model's {width}")
            tokens = F.pad(tokens, (0, width - tokens.shape[1]), value=self.encoder.padding_idx)
        out = self.decoder.project_memory(self.encoder_hidden(tokens))
        return out, (None if mode == "padded" else tokens.ne(self.encoder.padding_idx))

    def feeds_back(self, spec: TaskSpec) -> bool:
        """Whether the decoder reads the task's previous output tokens (see residue_feedback)."""
        return self.decoder.cfg.residue_feedback or KINDS[spec.kind].side_input != "skip"

    def side_inputs(self, memory: Tensor, task_ids: Tensor, keep: Tensor | None = None
                    ) -> dict[str, Tensor | None]:
        """The decoder's side inputs (`skip`, `pointer`, `pooled`: see `Decoder.forward`) for
        rows started with task tokens `task_ids` (B,): each enabled one is given to the rows whose
        task kind reads it (`TaskKind.side_input`), zeros to other rows, None when no row does.
        `keep` (B, S): the memory rows that `pooled` averages (None: all). With
        `task_every_step`, `task` is `task_ids` itself."""
        cfg = self.decoder.cfg
        enabled = {"skip": cfg.residue_skip, "pointer": cfg.site_pointer, "pooled": cfg.pooled_memory}
        out: dict[str, Tensor | None] = {}
        for name, on in enabled.items():
            ids = [self.vocab.id(t.token) for t in self.config.tasks if KINDS[t.kind].side_input == name]
            rows = torch.isin(task_ids, torch.tensor(ids if on else [], dtype=torch.long, device=task_ids.device))
            if not bool(rows.any()):
                out[name] = None
                continue
            value = memory  # (B, S, D)
            if name == "pooled" and keep is None:
                value = memory.mean(1)  # (B, D)
            elif name == "pooled":
                weight = keep.to(memory.dtype)  # (B, S)
                value = (memory * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp_min(1)  # (B, D)
            out[name] = value * rows.view(-1, *[1] * (value.dim() - 1)).to(value.dtype)
        out["task"] = task_ids if cfg.task_every_step else None
        return out

    def prompt(self, spec: TaskSpec, batch: int, device: torch.device) -> Tensor:
        """`<bos> <task_X>` for every row: (B, 2)."""
        ids = torch.tensor([self.vocab.bos_id, self.vocab.id(spec.token)], device=device)
        return ids.expand(batch, -1)


def create_model(name: str, encoder_config: EncoderConfig, tasks: list[TaskSpec],
                 encoder: ESM2 | None = None, molecule: MoleculeConfig | None = None,
                 **decoder_options) -> P2TModel:
    """A new (untrained) model for `tasks`, with a vocabulary built from their token grammars."""
    max_res = encoder_config.max_residues
    vocab = Vocab.build([t.token for t in tasks],
                        [tok for t in tasks for tok in KINDS[t.kind].label_tokens(t, max_res)])
    decoder_options.setdefault("max_len", max_res + 1 + PROMPT_LEN)
    decoder = DecoderConfig(vocab_size=len(vocab), memory_dim=encoder_config.embed_dim, **decoder_options)
    return P2TModel(ModelConfig(name, encoder_config, decoder, vocab, tuple(tasks), molecule=molecule),
                    encoder)


def sinusoid(positions: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position codes (Vaswani et al.), unit RMS: (positions, dim)."""
    pos = torch.arange(positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-torch.log(torch.tensor(1e4)) / dim))
    table = torch.zeros(positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


@torch.no_grad()
def init_position_tokens(model: P2TModel, scale: float = 0.5) -> None:
    """Start memory positions, decoder positions and position tokens from shared sinusoidal codes.

    Residue p sits at memory index p (after `<cls>`); giving the memory slot, decoder position p
    and the input embedding and output row of token "p" one shared code lets alignment and
    pointing be learned once for all positions instead of separately for each of ~1000. Only the
    initialisation changes: every tensor keeps its shape and stays trainable.
    """
    dec = model.decoder
    dim = dec.cfg.dim
    n = max(model.config.encoder.max_residues + 2, dec.cfg.max_len, dec.cfg.memory_positions)
    codes = sinusoid(n, dim) * scale
    if dec.memory_pos is not None:
        dec.memory_pos.copy_(codes[: len(dec.memory_pos)])
    # Decoder input j predicts the label of residue j (memory index j) in per-residue tasks.
    dec.pos_embed.copy_(codes[: len(dec.pos_embed)])
    for p in range(1, n):
        if str(p) in model.vocab:
            i = model.vocab.id(str(p))
            dec.embedding.weight[i] = codes[p]
            dec.output.weight[i] = codes[p]


@torch.no_grad()
def init_alignment(model: P2TModel, gain: float = 2.0, token_scale: float = 0.02) -> None:
    """Start every cross-attention looking up the memory slot of its own decoder position.

    Call after `init_position_tokens` (scale 1): queries and keys start as `gain` x identity
    (biases zero), so the shared position code in the decoder input matches the same code in
    the memory, and decoder step j attends to residue j from the first step on; token
    embeddings start small so the position code dominates the query. Per-residue and site tasks
    then learn what to read instead of first having to find where to read, which from a random
    start takes thousands of steps. Only the initialisation changes; every weight stays trainable.
    """
    dec = model.decoder
    dim = dec.cfg.dim
    eye = torch.eye(dim) * gain
    for layer in dec.layers:
        proj = layer.cross_attn.in_proj
        proj.weight[:dim] = eye  # queries
        proj.weight[dim:2 * dim] = eye  # keys
        proj.bias[:2 * dim] = 0.0
    positions = [model.vocab.id(t) for t in model.vocab.tokens if t.isdigit()]
    codes = dec.embedding.weight[positions].clone()
    dec.embedding.weight.mul_(token_scale)
    dec.embedding.weight[positions] = codes  # position tokens keep their shared code
    if dec.cfg.task_every_step:  # then the task embedding tells tasks apart: unit RMS, not small
        tasks = [model.vocab.id(t.token) for t in model.config.tasks]
        dec.embedding.weight[tasks] = torch.randn(len(tasks), dim)
    dec.embedding.weight[0] = 0.0  # <pad>
    # Output rows keep the code's direction but not its size: a normalised state (norm ~sqrt(D))
    # against unit-scale codes would start with logits near +-D, and a loss in the tens.
    dec.output.weight[positions] /= math.sqrt(dim)
