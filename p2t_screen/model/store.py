"""Model directories: `config.json` + safetensors weights (+ `MODEL_CARD.md`).

Loading never executes pickled code and never runs half-loaded weights: every missing or
unexpected tensor is named in the error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab
from .config import MASKED, ModelConfig
from .decoder import DecoderConfig
from .encoder import EncoderConfig
from .esm_io import load_encoder_state, load_esm2
from .locations import CONFIG_FILE, DEFAULT_MODEL, bundled_models, resolve_model_path  # noqa: F401
from .model import P2TModel
from .molecule import MoleculeConfig
from ..trust.domain import DOMAIN_FILE, load_domain
from ..trust.store import CALIBRATION_FILE, task_calibrations

FORMAT = "p2t-model"


FORMAT_VERSION = 1


ENCODER_FILE, DECODER_FILE = "encoder.safetensors", "decoder.safetensors"


MOLECULE_FILE = "molecule.safetensors"


BUNDLED = "bundled"  # encoder source meaning "weights stored in the model directory"




# The LM head's weight is tied to the token embedding; it is stored once, as the embedding.
_TIED = ("lm_head.weight",)


def config_to_json(config: ModelConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document stored as `config.json`."""
    encoder = asdict(config.encoder)
    if encoder["rotary_inv_freq"] is None:  # only imported checkpoints carry it
        del encoder["rotary_inv_freq"]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": config.name,
        "encoder": encoder, "decoder": config.decoder.to_dict(),
        "vocab": list(config.vocab.tokens), "tasks": [t.to_dict() for t in config.tasks],
        "memory": config.memory_layout,
        **({"molecule": config.molecule.to_dict()} if config.molecule else {}), **(extra or {}),
    }


def stored_extra(path: Path, config: ModelConfig) -> dict[str, Any]:
    """The entries of a model directory's `config.json` beside the model's own (its training
    record, data provenance): what a re-save with changed specs must carry over."""
    doc = json.loads((Path(path) / CONFIG_FILE).read_text())
    return {k: v for k, v in doc.items() if k not in config_to_json(config)}


def config_from_json(doc: dict[str, Any], origin: str) -> ModelConfig:
    """Validate and rebuild a ModelConfig; errors name the file and the problem."""
    if not isinstance(doc, dict):
        raise ModelError(f"{origin}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{origin}: not a {FORMAT} v{FORMAT_VERSION} config "
                         f"(format={doc.get('format')!r}, version={doc.get('format_version')!r})")
    try:
        return ModelConfig(
            name=str(doc["name"]),
            encoder=EncoderConfig(**doc["encoder"]),
            decoder=DecoderConfig(**doc["decoder"]),
            vocab=Vocab(tuple(doc["vocab"])),
            tasks=tuple(TaskSpec.from_dict(t) for t in doc["tasks"]),
            memory_layout=str(doc.get("memory", MASKED)),  # absent before p2t stored it
            molecule=MoleculeConfig(**doc["molecule"]) if doc.get("molecule") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{origin}: invalid model config: {exc}") from exc


def read_model_config(ref: str | os.PathLike | None) -> ModelConfig:
    """A model's config without loading any weights (for checks before the expensive part)."""
    path = resolve_model_path(ref)
    try:
        doc = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path / CONFIG_FILE}: {exc}") from exc
    return config_from_json(doc, str(path / CONFIG_FILE))


MODEL_FILES = (CONFIG_FILE, ENCODER_FILE, DECODER_FILE, MOLECULE_FILE)


def save_model(model: P2TModel, path: Path, extra: dict[str, Any] | None = None,
               config: ModelConfig | None = None, *, replace: bool = True) -> Path:
    """Write a model directory atomically: a temporary sibling folder is written, then takes the
    place of `path`, so `path` never holds half a model. Files of an existing model directory
    that are not model files (a model card) are kept. `replace=False` refuses a non-empty `path`.

    The encoder is stored inside the directory when its source is 'bundled'. `config` replaces
    `model.config` in `config.json` (same modules, e.g. fewer tasks offered).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelError(f"{path} exists and is not a folder; choose another model directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.saving-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_model_files(model, tmp, extra, config)
        if path.is_dir() and any(path.iterdir()):
            if not replace:
                raise ModelError(f"{path} exists and is not empty; choose another output folder")
            _keep_other_files(path, tmp)
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_model_files(model: P2TModel, folder: Path, extra: dict[str, Any] | None,
                       config: ModelConfig | None) -> None:
    doc = config_to_json(config or model.config, extra)
    (folder / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    if model.config.encoder.source == BUNDLED:
        state = {k: v.contiguous() for k, v in model.encoder.state_dict().items()
                 if k not in _TIED and not k.startswith("contact_head.") and not k.endswith("inv_freq")}
        save_file(state, str(folder / ENCODER_FILE))
    save_file({k: v.contiguous() for k, v in model.decoder.state_dict().items()},
              str(folder / DECODER_FILE))
    if model.molecule is not None:
        save_file({k: v.contiguous() for k, v in model.molecule.state_dict().items()},
                  str(folder / MOLECULE_FILE))


def _keep_other_files(old: Path, new: Path) -> None:
    for item in old.iterdir():
        if item.name in MODEL_FILES or (new / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name)
        else:
            shutil.copy2(item, new / item.name)


def _swap_in(new: Path, path: Path) -> None:
    """Move folder `new` to `path`; an existing `path` goes aside first and is removed after."""
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)  # put the previous model back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _encoder_source(source: str, model_dir: Path) -> str:
    """A relative `.pt` path is the model directory's own file and must stay inside it; a fair-esm
    name or an absolute path is used as given."""
    if not (source.endswith(".pt") or os.sep in source) or Path(source).expanduser().is_absolute():
        return source
    inside = (model_dir / source).resolve()
    if not inside.is_relative_to(model_dir.resolve()):
        raise ModelError(f"{model_dir / CONFIG_FILE}: encoder source {source!r} points outside the model directory")
    return str(inside)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"cannot read {path}: {exc}") from exc


def _load_strict(module: torch.nn.Module, path: Path, what: str) -> None:
    state = _read_safetensors(path)
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shape = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise ModelError(f"{what} weights in {path} do not match config: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}, wrong shape {sorted(bad_shape)[:8]}")
    module.load_state_dict(state)


def file_sha256(path: Path) -> str:
    """Content hash of one file (inputs of a run, imported checkpoints)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def model_checksum(path: Path) -> str:
    """sha256 over the config, weight and calibration files, identifying exactly these weights
    and what the model states about its answers' trust."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, ENCODER_FILE, DECODER_FILE, MOLECULE_FILE, CALIBRATION_FILE, DOMAIN_FILE):
        file = path / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def load_model(ref: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, checksum: str | None = None,
               config: ModelConfig | None = None) -> P2TModel:
    """Load a model directory (or installed model name) for inference, on `device` in `dtype`.

    `checksum` and `config`: its `model_checksum` and `read_model_config`, when the caller has just
    computed them (saves reading the files twice). With `config`, `config.json` is not read again,
    so `model.metadata` (the entries stored beside the config: training record, provenance) stays empty.
    """
    path = resolve_model_path(ref)
    doc: dict[str, Any] = {}
    if config is None:
        try:
            doc = json.loads((path / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {path / CONFIG_FILE}: {exc}") from exc
        config = config_from_json(doc, str(path / CONFIG_FILE))
    if config.encoder.source == BUNDLED:
        encoder = config.encoder.build()
        load_encoder_state(encoder, _read_safetensors(path / ENCODER_FILE), str(path / ENCODER_FILE))
    else:
        found, encoder = load_esm2(_encoder_source(config.encoder.source, path))
        shape = (found.num_layers, found.embed_dim, found.attention_heads)
        want = (config.encoder.num_layers, config.encoder.embed_dim, config.encoder.attention_heads)
        if shape != want:
            raise ModelError(f"encoder {config.encoder.source} has (layers, width, heads) {shape}, "
                             f"model {path} expects {want}")
    model = P2TModel(config, encoder)
    _load_strict(model.decoder, path / DECODER_FILE, "decoder")
    if model.molecule is not None:
        _load_strict(model.molecule, path / MOLECULE_FILE, "molecule encoder")
    try:
        model.calibrations = task_calibrations(path)
        model.domain = load_domain(path)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    model.source = str(path)
    model.checksum = checksum or model_checksum(path)
    model.metadata = {k: v for k, v in doc.items() if k not in
                      ("format", "format_version", "name", "encoder", "decoder", "vocab", "tasks", "memory",
                       "molecule")}
    if model.domain is not None:
        model.domain = model.domain.to(device)
    return model.to(device=device, dtype=dtype).eval()


def stored_parameters(path: Path) -> int:
    """Parameters stored in a model directory's weight files, read from their headers only."""
    total = 0
    for name in (ENCODER_FILE, DECODER_FILE, MOLECULE_FILE):
        if (path / name).is_file():
            with safe_open(str(path / name), framework="pt") as fh:
                total += sum(math.prod(fh.get_slice(key).get_shape()) for key in fh.keys())
    return total


def describe_model(path: Path) -> dict[str, Any]:
    """What `p2t models` shows of one model directory, without loading its weights."""
    cfg = read_model_config(path)
    try:
        calibrated = sorted(task_calibrations(path))
    except ValueError:  # a damaged calibration file: `p2t screen` names it; the listing goes on
        calibrated = []
    return {"name": cfg.name, "path": str(path), "sha256": model_checksum(path)[:12],
            "encoder": f"ESM2 {cfg.encoder.num_layers}L/{cfg.encoder.embed_dim} ({cfg.encoder.source})",
            "parameters": stored_parameters(path), "tasks": [t.name for t in cfg.tasks],
            "calibrated": calibrated, "domain_index": (path / DOMAIN_FILE).is_file()}
