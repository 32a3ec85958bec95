"""A fresh model for a training config: its encoder new, loaded or taken from an earlier model,
its decoder sized for the tasks, the parts that train chosen."""

from __future__ import annotations

from dataclasses import asdict, replace

import torch

from ..model.config import PROMPT_LEN
from ..model.encoder import EncoderConfig
from ..model.esm_io import load_esm2
from ..model.init import init_alignment, init_position_tokens
from ..model.model import P2TModel, create_model
from ..model.molecule import MoleculeConfig, molecule_vocab
from ..model.store import BUNDLED, load_model
from ..tasks.inputs import LIGAND
from .config import ENCODER_NEW, TrainingConfig


def decoder_length(cfg: TrainingConfig) -> int:
    """Decoder positions a new model needs: the prompt, then the longest output of its tasks."""
    steps = max(t.spec.task_kind.output_steps(t.spec, cfg.encoder.max_residues) for t in cfg.tasks)
    return PROMPT_LEN + steps


def build_model(cfg: TrainingConfig, smiles: list[str] = ()) -> P2TModel:
    """A fresh model for the config's tasks, its encoder new, loaded, or taken from `init`;
    protein-ligand tasks add a molecule encoder whose vocabulary is the training `smiles`."""
    specs = [t.spec for t in cfg.tasks]
    opts = dict(asdict(cfg.decoder), max_len=decoder_length(cfg))
    if any(t.inputs == LIGAND for t in specs):
        opts["molecule"] = MoleculeConfig(molecule_vocab(smiles), dim=cfg.decoder.dim,
                                          **asdict(cfg.molecule))
    align = opts.pop("align_init")
    enc = cfg.encoder
    if enc.init:
        base = load_model(enc.init)
        model = create_model(cfg.name, replace(base.config.encoder, source=BUNDLED), specs,
                             encoder=base.encoder, **opts)
        _copy_decoder(base, model)
        return model
    if enc.source == ENCODER_NEW:
        ecfg = EncoderConfig(BUNDLED, enc.num_layers, enc.embed_dim, enc.attention_heads,
                             max_residues=enc.max_residues)
        model = create_model(cfg.name, ecfg, specs, **opts)
    else:
        loaded_cfg, encoder = load_esm2(enc.source)
        # A frozen encoder is referenced; a fine-tuned one is stored with the model.
        source = enc.source if enc.trainable_layers() == 0 else BUNDLED
        model = create_model(cfg.name, replace(loaded_cfg, source=source, max_residues=enc.max_residues),
                             specs, encoder=encoder, **opts)
    if align:
        init_position_tokens(model, scale=1.0)
        init_alignment(model)
    else:
        init_position_tokens(model)
    return model


def _copy_decoder(base: P2TModel, model: P2TModel) -> None:
    """Copy every decoder weight whose shape matches; token rows are matched by token string."""
    own, src = model.decoder.state_dict(), base.decoder.state_dict()
    rows = [(model.vocab.id(t), base.vocab.id(t)) for t in model.vocab.tokens if t in base.vocab]
    new_ids, old_ids = (torch.tensor(x) for x in zip(*rows))
    with torch.no_grad():
        for key, value in own.items():
            if key in ("embedding.weight", "output.weight", "output.bias"):
                value[new_ids] = src[key][old_ids]
            elif key in src and src[key].shape == value.shape:
                value.copy_(src[key])
            elif key in ("pos_embed", "memory_pos") and key in src:
                n = min(len(value), len(src[key]))
                value[:n] = src[key][:n]


def set_trainable(model: P2TModel, layers: int | None) -> None:
    """Freeze the encoder (0), train its last N layers, or all of it (None)."""
    for p in model.encoder.parameters():
        p.requires_grad = layers is None
    if layers:
        for layer in model.encoder.layers[-layers:]:
            for p in layer.parameters():
                p.requires_grad = True
        for p in model.encoder.emb_layer_norm_after.parameters():
            p.requires_grad = True
