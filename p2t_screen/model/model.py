"""A p2t model: an ESM2 encoder, a decoder, its vocabulary and the task specs it was trained for."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from esm.model.esm2 import ESM2
from torch import Tensor, nn

from ..tasks.kind import SideInput
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab
from .config import PADDED, PROMPT_LEN, ModelConfig, check_memory_layout
from .decoder import Decoder, DecoderConfig
from .encoder import EncoderConfig, esm2_forward, esm2_forward_packed
from .molecule import MoleculeConfig, MoleculeEncoder
from .stacking import RowInput, SideInputs


class P2TModel(nn.Module):
    """ESM2 encoder + Prot2Token decoder. Pure computation: no I/O, no progress, no prints."""

    def __init__(self, config: ModelConfig, encoder: ESM2 | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else config.encoder.build()
        self.decoder = Decoder(config.decoder)
        if config.decoder.site_pointer and any(t.task_kind.side_input is SideInput.POINTER for t in config.tasks):
            # position tokens 1..max_residues: site tasks bring them all (checked by ModelConfig)
            self.decoder.pointer_ids = torch.tensor(
                config.vocab.ids([str(p) for p in range(1, config.encoder.max_residues + 1)]), dtype=torch.long)
        self.molecule = MoleculeEncoder(config.molecule) if config.molecule is not None else None
        self.source = ""  # where it was loaded from, set by the loader
        self.checksum = ""
        self.metadata: dict = {}
        # Set by the loader from the model directory (`trust.store`, `trust.domain`): each task's
        # conformal calibration by name, and the domain index (None: the model has none).
        self.calibrations: dict = {}
        self.domain = None

    @property
    def vocab(self) -> Vocab:
        return self.config.vocab

    def encode(self, tokens: Tensor, layout: str | None = None, molecules: Tensor | None = None,
               protein_index: Tensor | None = None, encode_hidden: Callable[[Tensor], Tensor] | None = None,
               packed: bool = False) -> tuple[Tensor, Tensor | None]:
        """ESM token ids (B, T) -> decoder memory (B, S, D) and its keep-mask (B, S) or None.

        `layout` overrides the model's own memory layout (`config.memory_layout`). PADDED pads the
        tokens to max_residues + 2 (S = that) and returns no mask: the decoder attends to every
        position. MASKED keeps S = T and masks the padding. `molecules` (B, M) SMILES ids
        (protein-ligand tasks) append the molecule encoder's memory: S grows by M, and a mask is
        returned. `protein_index` (B,): batch row b uses protein `tokens[protein_index[b]]` (inputs
        sharing a protein, such as one protein with many ligands, encode it once); B is then
        len(protein_index). `encode_hidden` replaces `encoder_hidden` (an encoder trunk shared with
        other models). `packed`:
        a masked memory's encoder runs on the real tokens only (`esm2_forward_packed`; a padded
        memory never packs: the decoder reads its padded positions too); off unless asked
        (`ScreenConfig.packed_encoder`).
        """
        out, keep = self._encode_protein(tokens, layout, encode_hidden, packed)
        if protein_index is not None:
            out, keep = out[protein_index], (None if keep is None else keep[protein_index])
        if molecules is None:
            return out, keep
        if self.molecule is None:
            raise ValueError(f"model '{self.config.name}' has no molecule encoder")
        mol, mol_keep = self.molecule(molecules)
        if keep is None:
            keep = torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
        return torch.cat([out, mol.to(out.dtype)], dim=1), torch.cat([keep, mol_keep], dim=1)

    def encoder_hidden(self, tokens: Tensor, packed: bool = False) -> Tensor:
        """The protein encoder's last-layer representations (B, T, E), with the model's own
        rotary frequencies (imported checkpoints carry theirs); `packed`: computed on the real
        tokens only, zeros at `<pad>` (`esm2_forward_packed`)."""
        forward = esm2_forward_packed if packed else esm2_forward
        return forward(self.encoder, tokens, self.config.encoder.rotary_inv_freq)

    def _encode_protein(self, tokens: Tensor, layout: str | None, encode_hidden: Callable[[Tensor], Tensor] | None,
                        packed: bool) -> tuple[Tensor, Tensor | None]:
        layout = check_memory_layout(layout or self.config.memory_layout)
        if encode_hidden is None:
            packs = layout != PADDED and packed
            encode_hidden = lambda t: self.encoder_hidden(t, packs)  # noqa: E731
        if layout == PADDED:
            width = self.config.encoder.max_residues + 2
            if tokens.shape[1] > width:
                raise ValueError(f"{tokens.shape[1]} encoder tokens exceed the model's {width}")
            tokens = F.pad(tokens, (0, width - tokens.shape[1]), value=self.encoder.padding_idx)
        residues = tokens.ne(self.encoder.padding_idx)
        out = self.decoder.project_memory(encode_hidden(tokens), residues)
        return out, (None if layout == PADDED else residues)

    def feeds_back(self, spec: TaskSpec) -> bool:
        """Whether the decoder reads the task's previous output tokens (see residue_feedback)."""
        return self.decoder.cfg.residue_feedback or not spec.task_kind.one_pass_without_feedback

    def side_inputs(self, memory: Tensor, task_ids: Tensor, keep: Tensor | None = None,
                    tasks_present: Sequence[int] | None = None) -> SideInputs:
        """The decoder's side inputs for decoder rows started with task tokens `task_ids` (R,), over
        a memory (B, S, D) with R = G x B (`model.stacking`): each one the model enables goes to the
        rows whose task kind reads it (`TaskKind.side_input`), None when no row does. `keep` (B, S):
        the memory rows that `pooled` averages (None: all). With `task_every_step`, `task` is
        `task_ids` itself. `tasks_present`: the task ids among the rows, when the host knows them
        (a stacked decode's blocks); whether none or all rows read an input is then decided on
        the host, with no wait for the device (else, in training, by asking the device)."""
        cfg = self.decoder.cfg
        enabled = {SideInput.RESIDUE: cfg.residue_skip, SideInput.POINTER: cfg.site_pointer,
                   SideInput.POOLED: cfg.pooled_memory}
        found: dict[SideInput, RowInput | None] = {}
        for name, on in enabled.items():
            ids = [self.vocab.id(t.token) for t in self.config.tasks if t.task_kind.side_input is name] if on else []
            readers = torch.isin(task_ids, torch.tensor(ids, dtype=torch.long, device=task_ids.device))  # (R,)
            if tasks_present is not None:
                some, every = any(t in ids for t in tasks_present), all(t in ids for t in tasks_present)
            else:
                some, every = bool(readers.any()), bool(readers.all())
            if not some:
                found[name] = None
                continue
            value = memory  # (B, S, D)
            if name is SideInput.POOLED and keep is None:
                value = memory.mean(1)  # (B, D)
            elif name is SideInput.POOLED:
                weight = keep.to(memory.dtype)  # (B, S)
                value = (memory * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp_min(1)  # (B, D)
            found[name] = RowInput(value, None if every else readers)
        return SideInputs(residue=found[SideInput.RESIDUE], pointer=found[SideInput.POINTER],
                          pooled=found[SideInput.POOLED], task=task_ids if cfg.task_every_step else None)

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
                        [tok for t in tasks for tok in t.task_kind.label_tokens(t, max_res)])
    decoder_options.setdefault("max_len", max_res + 1 + PROMPT_LEN)
    decoder = DecoderConfig(vocab_size=len(vocab), memory_dim=encoder_config.embed_dim, **decoder_options)
    return P2TModel(ModelConfig(name, encoder_config, decoder, vocab, tuple(tasks), molecule=molecule),
                    encoder)
