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

from pathlib import Path

from ..errors import ModelError
from ..model.config import PADDED, ModelConfig
from ..model.decoder import DecoderConfig
from ..model.encoder import EncoderConfig
from ..model.model import P2TModel
from ..model.store import BUNDLED, CONFIG_FILE, file_sha256, save_model
from .prot2token_files import read_config, read_state_dict, read_vocab, task_specs
from .prot2token_map import load_weights, plan


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
    cfg = read_config(config_yaml)
    vocab = read_vocab(tokenizer_yaml)
    tasks, skipped = task_specs(vocab, tokenizer_yaml, skip_unknown_tasks)
    state = read_state_dict(checkpoint)

    mapping, dropped, sizes = plan(state, cfg, checkpoint)
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
    load_weights(model, state, mapping, checkpoint)
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


