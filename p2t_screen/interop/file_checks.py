"""What a pulled file must hold, by kind, decided from its name: `.pt`/`.pth` a torch checkpoint
(zip with torch's layout, or the legacy pickle format) that loads without executing code, `.yaml`
a mapping, `.safetensors` a header that covers the whole file; and never an HTML page (a captive
portal or login page served with status 200 in place of the file).

Where a source publishes no digest these checks are what stands between a hostile network and an
installed file, so each of them can refuse: a cut zip has no central directory, a cut safetensors
file ends before its last tensor, an ESM2 checkpoint states its layer count and width.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

_ZIP = b"PK\x03\x04"
_LEGACY = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch's legacy format: the pickled magic number
_HTML = (b"<!doctype", b"<html", b"<head", b"<body")
_KINDS = {".pt": "a checkpoint", ".pth": "a checkpoint", ".yaml": "a YAML file",
          ".safetensors": "a safetensors file"}
_MAX_HEADER = 100 << 20  # bytes: a safetensors header beyond this is damage, not metadata
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class ContentError(ValueError):
    """A file that is not what its name says; the message reads after "got", naming what it is."""


@dataclass(frozen=True)
class EsmCheckpoint:
    """What an ESM2 model checkpoint must hold: fair-esm's layout, `layers` layers of width `width`."""

    name: str
    layers: int
    width: int


def check_head(head: bytes, name: str) -> None:
    """Refuse (ContentError) a file called `name` whose first bytes are an HTML page."""
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:16].lower()  # a UTF-8 BOM, then blanks
    if start.startswith(_HTML):
        raise ContentError(f"an HTML page, not {_KINDS.get(Path(name).suffix, 'the file')}: "
                           "a captive portal or login page?")


def check_content(path: Path, name: str, expect: EsmCheckpoint | None = None) -> None:
    """Refuse (ContentError) `path` unless it holds what a file called `name` must (see the module),
    and, with `expect`, the ESM2 model it names."""
    with path.open("rb") as fh:
        head = fh.read(64)
    check_head(head, name)
    suffix = Path(name).suffix
    if suffix in (".pt", ".pth"):
        data = _torch_container(path, head)
        if expect is not None:
            _check_esm(data, expect)
    elif suffix == ".yaml":
        _check_yaml(path)
    elif suffix == ".safetensors":
        _check_safetensors(path)


def _torch_container(path: Path, head: bytes) -> Any:
    """The checkpoint's structure (tensors memory-mapped, nothing executed), or None for a whole
    checkpoint whose pickle names code p2t will not run (its importer explains how to repack it)."""
    if head.startswith(_ZIP):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:  # a cut zip has lost its central directory
            raise ContentError(f"a cut or damaged zip archive, not a whole checkpoint ({exc})") from None
        if not any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
            raise ContentError("a zip archive without torch's layout (no <folder>/data.pkl)")
    elif not head.startswith(_LEGACY):
        raise ContentError("a file that is not a torch checkpoint (neither a zip archive nor "
                           "torch's legacy pickle format)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # fair-esm's cfg
            # Legacy files cannot be memory-mapped: they load whole.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(_ZIP))
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            return None
        raise ContentError(f"a checkpoint torch cannot read ({_first_line(exc)})") from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise ContentError(f"a checkpoint torch cannot read ({_first_line(exc)})") from None


def _check_esm(data: Any, expect: EsmCheckpoint) -> None:
    """fair-esm's layout, with the layer count and width of `expect` in its cfg and its weights."""
    if data is None:
        raise ContentError(f"a checkpoint that needs pickled code to load, not fair-esm's {expect.name}")
    try:
        cfg, state = data["cfg"]["model"], data["model"]
        layers, width = cfg.encoder_layers, cfg.encoder_embed_dim
        keys = list(state)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ContentError(f"a checkpoint without fair-esm's ESM2 layout (cfg.model and model; "
                           f"missing {exc})") from None
    if (layers, width) != (expect.layers, expect.width):
        raise ContentError(f"an ESM2 checkpoint with {layers} layers of width {width} in its cfg; "
                           f"{expect.name} has {expect.layers} layers of width {expect.width}")
    stored = len({int(m.group(1)) for k in keys if (m := _LAYER.search(k))})
    embed = next((state[k] for k in keys if k.endswith("embed_tokens.weight")), None)
    embed_width = embed.shape[-1] if isinstance(embed, torch.Tensor) else None
    if (stored, embed_width) != (layers, width):  # a cfg can say one thing and the weights another
        raise ContentError(f"an ESM2 checkpoint whose cfg says {layers} layers of width {width} but whose "
                           f"weights hold {stored} layers with token embeddings of width {embed_width}")


def _check_yaml(path: Path) -> None:
    try:
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        raise ContentError(f"a file that is not valid YAML ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ContentError(f"YAML holding a {type(data).__name__}, not a mapping")


def _check_safetensors(path: Path) -> None:
    """An 8-byte little-endian header length, a JSON header, tensors that end where the file does."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if size < 8 or n > min(size - 8, _MAX_HEADER):
            raise ContentError(f"a file that is not safetensors (a header of {n} bytes in a file of {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
        ends = [info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ContentError(f"a safetensors file whose header is not valid ({_first_line(exc)})") from None
    if max(ends, default=0) != size - 8 - n:
        raise ContentError(f"a safetensors file whose tensors end at byte {max(ends, default=0)} of a data "
                           f"section of {size - 8 - n} bytes (cut short or padded)")


def _first_line(exc: Exception) -> str:
    """The line of an exception's message that says what went wrong, cut short: torch's run to
    paragraphs, and the weights-only unpickler's reason comes after its advice."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0] if lines else type(exc).__name__)
    return why[:200]
