"""Models made only to be timed, and their speed against the device: a model of a published ESM2
shape without downloading it, twins of a model with other task heads or per-residue feedback;
encoder FLOPs per residue, model FLOP utilisation, sequences per GPU-hour.

`--encoder-shape esm2_t33_650M_UR50D` gives the model under test a random-weight encoder of that
shape (layers, width, heads as fair-esm publishes them) under decoders of the same sizes and
tasks; its answers mean nothing, its speed is the speed of that shape.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..errors import UsageError
from ..model.encoder import EncoderConfig
from ..model.model import P2TModel, create_model
from ..model.store import BUNDLED, save_model
from ..tasks.spec import TaskSpec

# name -> (layers, width, attention heads), as fair-esm's pretrained ESM2 models.
ESM2_SHAPES = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}

# Dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a
# word of the device name; the first match wins (H100 PCIe before the SXM figure).
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0), ("V100", 125.0), ("RTX 4090", 165.0))


def shaped_model(base: P2TModel, shape: str, path: Path, seed: int = 0) -> Path:
    """`base`'s tasks and decoder sizes over a random-weight encoder of ESM2 shape `shape`."""
    if shape not in ESM2_SHAPES:
        raise UsageError(f"unknown --encoder-shape {shape!r} (known: {', '.join(ESM2_SHAPES)})")
    layers, width, heads = ESM2_SHAPES[shape]
    torch.manual_seed(seed)
    encoder = EncoderConfig(source=BUNDLED, num_layers=layers, embed_dim=width, attention_heads=heads,
                            max_residues=base.config.encoder.max_residues)
    options = {k: v for k, v in base.config.decoder.to_dict().items() if k not in ("vocab_size", "memory_dim")}
    model = create_model(f"{base.config.name}-on-{shape}", encoder, list(base.config.tasks),
                         molecule=base.config.molecule, **options)
    return save_model(model.eval(), path, config=replace(model.config, memory_layout=base.config.memory_layout))


def scalar_twin(model: P2TModel, path: Path) -> Path:
    """A copy of `model` whose tasks are one regression and one class head (same encoder and
    decoder sizes and weights, new task heads): times scalar tasks on models that have none.
    Its predictions mean nothing; it exists only to be timed."""
    tasks = [TaskSpec("bench_regression", "regression", value_range=(0.0, 1.0)),
             TaskSpec("bench_class", "class", labels=("a", "b", "c"))]
    cfg = model.config
    decoder_options = {k: v for k, v in cfg.decoder.to_dict().items()
                       if k not in ("vocab_size", "memory_dim")}
    twin = create_model(f"{cfg.name}-scalar-twin", replace(cfg.encoder, source=BUNDLED), tasks,
                        encoder=model.encoder, **decoder_options)
    own = twin.decoder.state_dict()
    twin.decoder.load_state_dict({k: v for k, v in model.decoder.state_dict().items()
                                  if k in own and own[k].shape == v.shape}, strict=False)
    return save_model(twin.float(), path)


def feedback_twin(model: P2TModel, path: Path) -> Path:
    """A copy of `model` (same weights) whose per-residue tasks read their previous labels, one
    decoder step per residue: times what `residue_feedback = false` saves. Its per-residue
    outputs mean nothing (the model was not trained so); it exists only to be timed."""
    cfg = model.config
    return save_model(model, path, config=replace(cfg, decoder=replace(cfg.decoder, residue_feedback=True)))


def encoder_flops_per_residue(layers: int, width: int, length: int) -> float:
    """Forward FLOPs per residue of an ESM2 encoder on sequences of `length` tokens: per layer
    2 x 12 width^2 for the projections and feed-forward (4x width), and 4 x length x width for
    attention scores and their weighted sum."""
    return layers * (24.0 * width * width + 4.0 * length * width)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, where known (None for CPUs and unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for word, tflops in PEAK_TFLOPS if word in name), None)


def utilisation_note(model: P2TModel, residues: int, sequences: int, seconds: float, label: str,
                     device: torch.device) -> str:
    """One line: residues/s, sequences per GPU-hour and (where the peak is known) FLOP utilisation."""
    enc = model.config.encoder
    length = residues / max(sequences, 1) + 2  # <cls> ... <eos>
    flops = encoder_flops_per_residue(enc.num_layers, enc.embed_dim, int(length)) * residues
    peak = peak_flops(device)
    achieved = flops / seconds
    dtype = next(model.parameters()).dtype
    if device.type != "cuda":
        mfu = "no utilisation figure off CUDA"
    elif peak is None:
        mfu = f"no known peak for {torch.cuda.get_device_name(device)}: add it to bench.shapes.PEAK_TFLOPS"
    elif dtype not in (torch.bfloat16, torch.float16):
        mfu = f"the table's peaks are bf16/fp16; this ran in {dtype}"
    else:
        mfu = f"{achieved / peak:.1%} of the {peak / 1e12:.0f} TFLOP/s bf16/fp16 dense peak"
    return (f"{label}: {residues / seconds:,.0f} residues/s, {sequences / seconds * 3600:,.0f} sequences/hour; "
            f"encoder {flops / residues / 1e9:.3g} GFLOP/residue, {achieved / 1e12:.3g} TFLOP/s achieved ({mfu})")
