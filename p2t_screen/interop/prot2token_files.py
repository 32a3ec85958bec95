"""The published Prot2Token files: `config.yaml`, `decoder_tokenizer.yaml`, the checkpoint's
tensors (read as tensors only, never as pickled code), and the task specs its vocabulary names."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ..errors import ModelError
from ..model.config import PROMPT_LEN
from ..tasks.catalog import CATALOG
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab

# Task tokens of the published vocabularies -> p2t task specs (with the published constants).
KNOWN_TASKS: dict[str, TaskSpec] = {
    "<task_stability>": CATALOG["stability"],
    "<task_fluorescence>": CATALOG["fluorescence"],
    "<task_protein_melting_temperature>": CATALOG["melting_temperature"],
    "<task_kinase_phosphorylation_site>": CATALOG["kinase_phosphorylation_site"],
}


# Known, but p2t cannot run them: the reason is given in the error.
UNSUPPORTED_TASKS: dict[str, str] = {
    "<task_protein_ligand_affinity>": "needs a SMILES input and the BARTSmiles molecule encoder "
                                      "(published range 0.40..15.22)",
}


_REPACK_HINT = ("In an environment you trust, re-save only the weights: "
                "python -c \"import torch; c = torch.load('IN.pth', weights_only=False); "
                "torch.save({'model_state_dict': c['model_state_dict']}, 'OUT.pth')\"")



def sidecar(checkpoint: Path, filename: str) -> Path:
    """A file published beside a checkpoint: in its folder, or one up (`run/checkpoints/x.pth`)."""
    checkpoint = Path(checkpoint)
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / filename).is_file():
            return folder / filename
    raise ModelError(f"no {filename} in {checkpoint.parent} or {checkpoint.parent.parent}; "
                     f"pass its path (p2t: --config or --tokenizer)")


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ModelError(f"{what} {path} is not valid YAML: {exc}") from exc


def read_config(path: Path) -> dict[str, Any]:
    doc = _read_yaml(path, "Prot2Token config")

    def get(*keys: str, default: Any = KeyError) -> Any:
        node = doc
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                if default is KeyError:
                    raise ModelError(f"{path}: missing {'.'.join(keys)}")
                return default
            node = node[k]
        return node

    def integer(*keys: str) -> int:
        value = get(*keys)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"{path}: {'.'.join(keys)} must be a positive integer, got {value!r}")
        return value

    root = "prot2token_model"
    cfg = {
        "dim": integer(root, "decoder", "dimension"),
        "ffn": integer(root, "decoder", "dim_feedforward"),
        "heads": integer(root, "decoder", "num_heads"),
        "layers": integer(root, "decoder", "num_layers"),
        "max_len": integer(root, "decoder", "max_len"),
        "enc_max_len": integer(root, "protein_encoder", "max_len"),
        "model_name": str(get(root, "protein_encoder", "model_name", default="")),
        "memory_pos": bool(get(root, "protein_encoder", "drop_positional_encoding", default=True)),
    }
    activation = str(get(root, "decoder", "activation_function", default="gelu")).lower()
    if activation != "gelu":
        raise ModelError(f"{path}: decoder.activation_function {activation!r} is not supported "
                         "(p2t's decoder uses GELU, as the published checkpoints do)")
    positions = str(get(root, "positional_encoding_type", default="learned"))
    if positions != "learned":
        raise ModelError(f"{path}: positional_encoding_type {positions!r} is not supported "
                         "(only 'learned', as in the published checkpoints)")
    if get(root, "molecule_encoder", "enable", default=False):
        raise ModelError(f"{path}: molecule_encoder.enable is true; p2t has no molecule (SMILES) "
                         "encoder, so this checkpoint cannot be imported")
    if cfg["enc_max_len"] < 3:
        raise ModelError(f"{path}: protein_encoder.max_len {cfg['enc_max_len']} leaves no residues")
    if cfg["max_len"] - 1 < PROMPT_LEN + 1:
        raise ModelError(f"{path}: decoder.max_len {cfg['max_len']} is too short")
    return cfg


def read_vocab(path: Path) -> Vocab:
    mapping = _read_yaml(path, "decoder tokenizer")
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in mapping.items()):
        raise ModelError(f"{path}: expected a flat map of token -> integer id")
    try:
        return Vocab.from_mapping(mapping)
    except ValueError as exc:
        raise ModelError(f"{path}: unusable decoder vocabulary: {exc}") from exc


def _label_specs(vocab: Vocab, task_tokens: list[str]) -> dict[str, TaskSpec]:
    """Label-set tasks whose labels are the checkpoint's own tokens (everything that is no
    special, task, digit, position or separator token), in sorted order as the reference
    writes multi-label outputs."""
    if "<task_kinase_group>" not in task_tokens:
        return {}
    labels = sorted(t for t in vocab.tokens if not (t.startswith("<") and t.endswith(">"))
                    and not t.isdigit() and t != ".")
    if not labels:
        return {}
    return {"<task_kinase_group>": TaskSpec(
        "kinase_group", "multilabel", labels=tuple(labels), token="<task_kinase_group>",
        description="kinase group(s) of a kinase sequence (labels from the checkpoint's vocabulary)")}


def task_specs(vocab: Vocab, origin: Path, skip_unknown: bool) -> tuple[list[TaskSpec], list[str]]:
    task_tokens = [t for t in vocab.tokens if t.startswith("<task_")]
    found = {**KNOWN_TASKS, **_label_specs(vocab, task_tokens)}
    known = [found[t] for t in task_tokens if t in found]
    unknown = [t for t in task_tokens if t not in found]
    if unknown and not skip_unknown:
        reasons = "; ".join(f"{t} ({UNSUPPORTED_TASKS.get(t, 'not known to the importer')})"
                            for t in unknown)
        raise ModelError(f"{origin}: task tokens p2t cannot run: {reasons}. Pass "
                         "--skip-unknown-tasks to import the other tasks only")
    if not known:
        raise ModelError(f"{origin}: no task p2t can run (task tokens: {', '.join(task_tokens) or 'none'}; "
                         f"supported: {', '.join(KNOWN_TASKS)})")
    return known, unknown


def read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelError(f"Prot2Token checkpoint not found: {path}")
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln or "WeightsUnpickler" in ln),
                   lines[0] if lines else type(exc).__name__)
        raise ModelError(
            f"{path} needs pickled code to load ({why[:300]}); p2t only reads tensors and will "
            f"not execute code from a checkpoint. {_REPACK_HINT}") from None
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise ModelError(f"cannot read Prot2Token checkpoint {path}: {exc}") from None
    if not isinstance(data, dict) or "model_state_dict" not in data:
        keys = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{path}: no 'model_state_dict' in the checkpoint (found {keys})")
    raw = data["model_state_dict"]
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: model_state_dict is a {type(raw).__name__}, not a dict of tensors")
    state: dict[str, Tensor] = {}
    for key, value in raw.items():
        key = str(key)
        key = key[len("_orig_mod."):] if key.startswith("_orig_mod.") else key
        if not isinstance(value, Tensor):
            raise ModelError(f"{path}: model_state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        if key in state:
            raise ModelError(f"{path}: key {key!r} appears twice (with and without '_orig_mod.')")
        state[key] = value
    return state


