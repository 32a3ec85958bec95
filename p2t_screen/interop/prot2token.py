"""Import a published Prot2Token checkpoint (`.pth` + `config.yaml` + `decoder_tokenizer.yaml`)
as a p2t model directory that runs faithfully: `memory="padded"`, post-norm decoder.

Nothing in the checkpoint is executed: it is read with `torch.load(weights_only=True)`. Every
tensor is accounted for: mapped to p2t's names, dropped knowingly (listed in the config's
`imported_from` metadata), or refused with an error naming it. Sizes come from the files
(tensor shapes, key counts, config.yaml), the vocabulary from the tokenizer map as is.

Name mapping (HF-transformers ESM -> fair-esm ESM2; Prot2Token decoder -> p2t decoder):
  protein_encoder.model.embeddings.word_embeddings      -> encoder embed_tokens
  ...encoder.layer.{i}.attention.self.{query,key,value} -> layers.{i}.self_attn.{q,k,v}_proj
  ...encoder.layer.{i}.attention.output.dense           -> layers.{i}.self_attn.out_proj
  ...encoder.layer.{i}.attention.LayerNorm              -> layers.{i}.self_attn_layer_norm
  ...encoder.layer.{i}.intermediate.dense / output.dense -> layers.{i}.fc1 / fc2
  ...encoder.layer.{i}.LayerNorm                        -> layers.{i}.final_layer_norm
  ...encoder.emb_layer_norm_after                       -> emb_layer_norm_after
  protein_encoder.bottleneck (Conv1d, kernel 1)         -> decoder projection (Linear)
  decoder.decoder_pos_embed [1, L-1, D]                 -> decoder pos_embed [L-1, D]
  decoder.protein_encoder_pos_embed [1, S, D]           -> decoder memory_pos [S, D]
  decoder.decoder.layers.{i}.self_attn / multihead_attn -> layers.{i}.self_attn / cross_attn
  decoder.decoder.layers.{i}.{linear1,linear2,norm1..3} -> same names
  decoder.embedding, decoder.output                     -> same names
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ..errors import ModelError
from ..model.config import PADDED, PROMPT_LEN, ModelConfig
from ..model.decoder import DecoderConfig
from ..model.encoder import ALPHABET, EncoderConfig, rotary_inv_freq
from ..model.model import P2TModel
from ..model.store import BUNDLED, CONFIG_FILE, file_sha256, save_model
from ..tasks.catalog import CATALOG
from ..tasks.spec import TaskSpec
from ..tasks.vocab import Vocab

ENC = "protein_encoder.model."


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


# Tensors the reference model holds but never uses for its output (or recomputes).
_DROPPED = re.compile(
    r"^protein_encoder\.model\.(embeddings\.position_embeddings\.weight"  # unused with rotary
    r"|embeddings\.position_ids"  # an arange buffer older transformers versions saved
    r"|pooler\..*|contact_head\..*"
    r"|encoder\.layer\.\d+\.attention\.self\.rotary_embeddings\.inv_freq)$")


_INV_FREQ = re.compile(r"^protein_encoder\.model\.encoder\.layer\.(\d+)\.attention\.self\."
                       r"rotary_embeddings\.inv_freq$")


# Attention heads of the published ESM2 widths, used only when no inv_freq tensor gives head size.
_ESM2_HEADS = {320: 20, 480: 20, 640: 20, 1280: 20, 2560: 40, 5120: 40}


_ENC_LAYER = {  # HF ESM layer part -> fair-esm ESM2 layer part
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
    "output.dense": "fc2", "LayerNorm": "final_layer_norm",
}


_DEC_LAYER = {  # nn.TransformerDecoderLayer -> p2t DecoderLayer
    "self_attn.in_proj_weight": "self_attn.in_proj.weight",
    "self_attn.in_proj_bias": "self_attn.in_proj.bias",
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn.out_proj.bias": "self_attn.out_proj.bias",
    "multihead_attn.in_proj_weight": "cross_attn.in_proj.weight",
    "multihead_attn.in_proj_bias": "cross_attn.in_proj.bias",
    "multihead_attn.out_proj.weight": "cross_attn.out_proj.weight",
    "multihead_attn.out_proj.bias": "cross_attn.out_proj.bias",
    **{f"{m}.{p}": f"{m}.{p}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3")
       for p in ("weight", "bias")},
}


_REPACK_HINT = ("In an environment you trust, re-save only the weights: "
                "python -c \"import torch; c = torch.load('IN.pth', weights_only=False); "
                "torch.save({'model_state_dict': c['model_state_dict']}, 'OUT.pth')\"")


Transform = Callable[[Tensor], Tensor]


def _same(t: Tensor) -> Tensor:
    return t


def _squeeze_conv(t: Tensor) -> Tensor:  # Conv1d weight [D, E, 1] -> Linear weight [D, E]
    if t.dim() != 3 or t.shape[-1] != 1:
        raise ValueError(f"expected a kernel-1 Conv1d weight [D, E, 1], got {tuple(t.shape)}")
    return t[..., 0]


def _squeeze_batch(t: Tensor) -> Tensor:  # learned table [1, N, D] -> [N, D]
    if t.dim() != 3 or t.shape[0] != 1:
        raise ValueError(f"expected a [1, N, D] table, got {tuple(t.shape)}")
    return t[0]


def sidecar(checkpoint: Path, filename: str) -> Path:
    """A file published beside a checkpoint: in its folder, or one up (`run/checkpoints/x.pth`)."""
    checkpoint = Path(checkpoint)
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / filename).is_file():
            return folder / filename
    raise ModelError(f"no {filename} in {checkpoint.parent} or {checkpoint.parent.parent}; "
                     f"pass its path (p2t: --config or --tokenizer)")


def import_prot2token(checkpoint: Path, config_yaml: Path, tokenizer_yaml: Path, out: Path,
                      name: str | None = None, *, skip_unknown_tasks: bool = False) -> Path:
    """Convert a Prot2Token checkpoint into a p2t model directory at `out`; returns `out`.

    Raises ModelError (naming the file, key or problem) for anything that does not match the
    published layout; nothing is written then.
    """
    checkpoint, config_yaml, tokenizer_yaml, out = map(Path, (checkpoint, config_yaml, tokenizer_yaml, out))
    if (out / CONFIG_FILE).exists():
        raise ModelError(f"{out} already holds a model ({CONFIG_FILE}); choose another output folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out} exists and is not an empty folder; choose another output folder")
    cfg = _read_config(config_yaml)
    vocab = _read_vocab(tokenizer_yaml)
    tasks, skipped = _task_specs(vocab, tokenizer_yaml, skip_unknown_tasks)
    state = _read_state_dict(checkpoint)

    mapping, dropped, sizes = _plan(state, cfg, checkpoint)
    model_name = name or "prot2token-" + "-".join(t.name for t in tasks)
    try:
        encoder_cfg = EncoderConfig(
            source=BUNDLED, num_layers=sizes["enc_layers"], embed_dim=sizes["width"],
            attention_heads=sizes["heads"], token_dropout=True, max_residues=cfg["enc_max_len"] - 2,
            rotary_inv_freq=sizes["inv_freq"])
        # The reference's decoder_pos_embed has max_len - 1 rows: p2t's max_len counts rows.
        decoder_cfg = DecoderConfig(
            vocab_size=len(vocab), memory_dim=sizes["width"], dim=cfg["dim"], num_layers=cfg["layers"],
            num_heads=cfg["heads"], ffn_dim=cfg["ffn"], max_len=cfg["max_len"] - 1,
            memory_positions=sizes["memory_positions"], norm_first=False)
        config = ModelConfig(model_name, encoder_cfg, decoder_cfg, vocab, tuple(tasks), memory_layout=PADDED)
    except ValueError as exc:
        raise ModelError(f"{checkpoint}: the checkpoint's sizes do not make a usable model: {exc}") from exc
    model = P2TModel(config)
    _load(model, state, mapping, checkpoint)
    extra = {"imported_from": {
        "format": "prot2token",
        "checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": file_sha256(checkpoint),
        "config_yaml": str(config_yaml.resolve()), "tokenizer_yaml": str(tokenizer_yaml.resolve()),
        "encoder_model_name": cfg["model_name"],
        "dropped_tensors": dropped,
        "placeholder_tensors": sorted(k for k in model.encoder.state_dict() if k.startswith("lm_head.")
                                      and k != "lm_head.weight"),
        "rotary_inv_freq": sizes["rotary_note"],
        "skipped_tasks": skipped,
        "note": "Prot2Token checkpoints are published for research only; see their license.",
    }}
    return save_model(model.eval(), out, extra, replace=False)


# ---------------------------------------------------------------- inputs
def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ModelError(f"{what} {path} is not valid YAML: {exc}") from exc


def _read_config(path: Path) -> dict[str, Any]:
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


def _read_vocab(path: Path) -> Vocab:
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


def _task_specs(vocab: Vocab, origin: Path, skip_unknown: bool) -> tuple[list[TaskSpec], list[str]]:
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


def _read_state_dict(path: Path) -> dict[str, Tensor]:
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


# ---------------------------------------------------------------- mapping
def _plan(state: dict[str, Tensor], cfg: dict[str, Any], origin: Path
          ) -> tuple[dict[str, tuple[str, str, Transform]], list[str], dict[str, Any]]:
    """checkpoint key -> (module, p2t key, transform), the dropped keys, and the sizes found."""
    if any(k.startswith("molecule_encoder.") or k.startswith("decoder.molecule_encoder") for k in state):
        raise ModelError(f"{origin}: the checkpoint has a molecule encoder, which p2t does not support")
    emb = state.get(ENC + "embeddings.word_embeddings.weight")
    if emb is None:
        raise ModelError(f"{origin}: missing {ENC}embeddings.word_embeddings.weight "
                         "(not a Prot2Token checkpoint with an HF ESM2 encoder?)")
    if emb.dim() != 2 or emb.shape[0] != len(ALPHABET.all_toks):
        raise ModelError(f"{origin}: {ENC}embeddings.word_embeddings.weight has shape {tuple(emb.shape)}; "
                         f"expected [{len(ALPHABET.all_toks)}, width] (ESM2's alphabet)")
    width = int(emb.shape[1])
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(ENC) + r"encoder\.layer\.(\d+)\.", k))}
    enc_layers = max(layer_ids) + 1 if layer_ids else 0
    if enc_layers == 0:
        raise ModelError(f"{origin}: no encoder layers ({ENC}encoder.layer.N.*)")

    inv = {int(m.group(1)): v for k, v in state.items() if (m := _INV_FREQ.match(k))}
    inv_freq: tuple[float, ...] | None = None
    if inv:
        first = inv[min(inv)]
        if first.dim() != 1 or first.numel() == 0 or width % (2 * first.numel()):
            raise ModelError(f"{origin}: rotary inv_freq of shape {tuple(first.shape)} does not divide "
                             f"the encoder width {width} into heads")
        for i, v in inv.items():
            if v.shape != first.shape or not torch.equal(v.float(), first.float()):
                raise ModelError(f"{origin}: rotary inv_freq of encoder layer {i} differs from layer "
                                 f"{min(inv)}; p2t uses one table for all layers")
        head_dim = 2 * first.numel()
        heads = width // head_dim
        fresh = rotary_inv_freq(head_dim)
        if torch.equal(first.float(), fresh):
            rotary_note = "recomputed in fp32 (equal to the checkpoint's values)"
        else:  # e.g. rounded through fp16 while ESM2 trained: HF and the reference use these values
            inv_freq = tuple(float(f) for f in first.float())
            worst = ((first.float() - fresh).abs() / fresh).max().item()
            rotary_note = f"kept from the checkpoint (up to {worst:.2g} relative from the fp32 recomputation)"
    elif width in _ESM2_HEADS:
        heads = _ESM2_HEADS[width]
        rotary_note = "recomputed in fp32 (not in the checkpoint)"
    else:
        raise ModelError(f"{origin}: cannot tell the encoder's attention heads: no rotary inv_freq "
                         f"tensors and width {width} is not a published ESM2 width")

    mapping: dict[str, tuple[str, str, Transform]] = {
        ENC + "embeddings.word_embeddings.weight": ("encoder", "embed_tokens.weight", _same),
        "protein_encoder.bottleneck.weight": ("decoder", "projection.weight", _squeeze_conv),
        "protein_encoder.bottleneck.bias": ("decoder", "projection.bias", _same),
        "decoder.embedding.weight": ("decoder", "embedding.weight", _same),
        "decoder.decoder_pos_embed": ("decoder", "pos_embed", _squeeze_batch),
        "decoder.output.weight": ("decoder", "output.weight", _same),
        "decoder.output.bias": ("decoder", "output.bias", _same),
    }
    for p in ("weight", "bias"):
        mapping[f"{ENC}encoder.emb_layer_norm_after.{p}"] = ("encoder", f"emb_layer_norm_after.{p}", _same)
        for i in range(enc_layers):
            for hf, fair in _ENC_LAYER.items():
                mapping[f"{ENC}encoder.layer.{i}.{hf}.{p}"] = ("encoder", f"layers.{i}.{fair}.{p}", _same)
    for i in range(cfg["layers"]):
        for ref, ours in _DEC_LAYER.items():
            mapping[f"decoder.decoder.layers.{i}.{ref}"] = ("decoder", f"layers.{i}.{ours}", _same)
    memory_positions = 0
    if cfg["memory_pos"]:
        mapping["decoder.protein_encoder_pos_embed"] = ("decoder", "memory_pos", _squeeze_batch)
        table = state.get("decoder.protein_encoder_pos_embed")
        memory_positions = int(table.shape[1]) if table is not None and table.dim() == 3 else cfg["enc_max_len"]

    dropped = sorted(k for k in state if k not in mapping and _DROPPED.match(k))
    unknown = sorted(k for k in state if k not in mapping and not _DROPPED.match(k))
    missing = sorted(k for k in mapping if k not in state)
    if unknown or missing:
        raise ModelError(f"{origin}: tensors do not match the Prot2Token layout "
                         f"({enc_layers} encoder layers, {cfg['layers']} decoder layers per config.yaml): "
                         f"missing {_some(missing)}, unexpected {_some(unknown)}")
    sizes = {"enc_layers": enc_layers, "width": width, "heads": heads, "inv_freq": inv_freq,
             "rotary_note": rotary_note, "memory_positions": memory_positions}
    return mapping, dropped, sizes


def _some(keys: list[str], n: int = 8) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


@torch.no_grad()
def _load(model: P2TModel, state: dict[str, Tensor], mapping: dict[str, tuple[str, str, Transform]],
          origin: Path) -> None:
    """Copy every mapped tensor into the model, checking shapes against the built modules."""
    own = {"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict()}
    for key, (module, target, transform) in mapping.items():
        try:
            value = transform(state[key])
        except ValueError as exc:
            raise ModelError(f"{origin}: tensor {key}: {exc}") from None
        dest = own[module][target]
        if value.shape != dest.shape:
            raise ModelError(f"{origin}: tensor {key} has shape {tuple(state[key].shape)}; the model "
                             f"built from its config and other tensors needs {tuple(dest.shape)} "
                             f"(as {module} {target})")
        if not value.is_floating_point():
            raise ModelError(f"{origin}: tensor {key} has dtype {value.dtype}, expected floating point")
        dest.copy_(value)
    # fair-esm's LM head (never used to embed): no counterpart in the HF encoder; fixed placeholders.
    head = model.encoder.lm_head
    for p in (head.dense.weight, head.dense.bias, head.bias, head.layer_norm.bias):
        p.zero_()
    head.layer_norm.weight.fill_(1.0)
    filled = {m: {t for mm, t, _ in mapping.values() if mm == m} for m in own}
    unfilled = [f"decoder {k}" for k in own["decoder"] if k not in filled["decoder"]]
    unfilled += [f"encoder {k}" for k in own["encoder"] if k not in filled["encoder"]
                 and not k.startswith(("lm_head.", "contact_head.")) and not k.endswith("inv_freq")]
    if unfilled:  # a mapping bug, not a user error
        raise AssertionError(f"importer left model tensors unset: {unfilled[:8]}")
