"""ESM2 checkpoints in fair-esm's own layout: found by hub name or `.pt` path, read without
executing pickled code, loaded strictly, written back.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import torch
from esm.model.esm2 import ESM2
from torch import Tensor

from ..errors import ModelError
from .encoder import EncoderConfig

_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")


# Buffers recomputed by the model, the contact head p2t never uses, and the LM head weight
# (tied to the token embedding, so it loads with it).
_IGNORABLE = re.compile(r"(\.rot_emb\.inv_freq$|^contact_head\.|^lm_head\.weight$)")


def hub_checkpoint_path(name: str) -> Path:
    """Where fair-esm's hub loader keeps the weights of model `name`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"


def resolve_esm_source(source: str) -> Path:
    """A `.pt` path or fair-esm model name -> an existing local file, or a clear ModelError."""
    if source.endswith(".pt") or os.sep in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelError(f"ESM2 checkpoint not found: {path}")
        return path
    path = hub_checkpoint_path(source)
    if not path.is_file():
        raise ModelError(
            f"ESM2 weights for '{source}' are not in the torch hub cache: expected {path} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')}). p2t does not download at run "
            "time: copy the fair-esm checkpoint there, or pass a local .pt path.")
    return path


def read_esm_checkpoint(path: Path) -> tuple[EncoderConfig, dict[str, Tensor]]:
    """Read a fair-esm ESM2 `.pt` without executing pickled code (weights_only)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise ModelError(f"cannot read ESM2 checkpoint {path}: {exc}") from exc
    try:
        cfg = data["cfg"]["model"]
        state = {_PREFIX.sub("", k): v for k, v in data["model"].items()}
        config = EncoderConfig(source=str(path), num_layers=cfg.encoder_layers,
                               embed_dim=cfg.encoder_embed_dim,
                               attention_heads=cfg.encoder_attention_heads,
                               token_dropout=bool(cfg.token_dropout))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not a fair-esm ESM2 checkpoint (missing {exc})") from exc
    return config, state


def load_encoder_state(model: ESM2, state: dict[str, Tensor], origin: str) -> None:
    """Load weights strictly: missing or unexpected keys are named, never half-loaded."""
    expected = {k for k in model.state_dict() if not _IGNORABLE.search(k)}
    found = {k for k in state if not _IGNORABLE.search(k)}
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise ModelError(f"encoder weights in {origin} do not match the architecture: "
                         f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    own = model.state_dict()
    for key in found:
        if own[key].shape != state[key].shape:
            raise ModelError(f"encoder weight {key} in {origin} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(own[key].shape)}")
    model.load_state_dict({k: state[k] for k in found}, strict=False)


def load_esm2(source: str) -> tuple[EncoderConfig, ESM2]:
    """Load an ESM2 encoder from a fair-esm model name (hub cache only) or a `.pt` path."""
    path = resolve_esm_source(source)
    config, state = read_esm_checkpoint(path)
    model = config.build()
    load_encoder_state(model, state, str(path))
    return config, model.eval()


def save_esm_checkpoint(model: ESM2, path: Path) -> None:
    """Write `model` in fair-esm's own checkpoint layout (plus the contact-regression file)."""
    cfg = argparse.Namespace(encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim,
                             encoder_attention_heads=model.attention_heads,
                             token_dropout=model.token_dropout)
    state = {f"encoder.sentence_encoder.{k}": v for k, v in model.state_dict().items()
             if not k.startswith("contact_head.regression")}
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    regression = {f"contact_head.regression.{k}": v
                  for k, v in model.contact_head.regression.state_dict().items()}
    torch.save({"model": regression}, path.with_name(path.stem + "-contact-regression.pt"))
