"""Device and precision choices, checked up front with clear errors."""

from __future__ import annotations

import torch

from ..errors import UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' | 'fp32' | 'bf16' | 'fp16' for `device`; CPU always computes in fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}: use auto, fp32, bf16 or fp16")
    if device.type == "cpu" and name != "fp32":
        raise UsageError(f"dtype {name} is not supported on CPU; use fp32 (or auto)")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """Short name of a dtype for metadata and logs."""
    return {v: k for k, v in DTYPES.items()}[dtype]
