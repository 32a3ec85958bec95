"""Models and weights that `p2t pull` can download, as data: where each file lives at its source
(with a base-URL override per source, for sites with a mirror), what it provides (the tasks a
model offers), its size and its licence. Nothing here touches the network.

- fair-esm's ESM2 weights (`P2T_ESM_URL`, default https://dl.fbaipublicfiles.com/fair-esm), for the
  torch hub cache (`$TORCH_HOME/hub/checkpoints`), where fair-esm and p2t's loader read them;
- the published Prot2Token checkpoints in the authors' Hugging Face repository Mahdip72/prot2token
  (`HF_ENDPOINT`, default https://huggingface.co), in the dated folders the official package's
  `prepare_config_and_checkpoint` reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError

ESM_URL_ENV, ESM_URL = "P2T_ESM_URL", "https://dl.fbaipublicfiles.com/fair-esm"
HF_URL_ENV, HF_URL = "HF_ENDPOINT", "https://huggingface.co"
PROT2TOKEN_REPO = "Mahdip72/prot2token"
ESM2, PROT2TOKEN = "esm2", "prot2token"  # the two sources
ESM_LICENCE = "MIT (fair-esm, Meta Platforms)"
PROT2TOKEN_LICENCE = ("research only: \"The Prot2Token repository and the pre-trained models are provided ONLY "
                      "for research purposes and are not intended for commercial use\" (authors' README; "
                      "commercial licensing: University of Missouri Technology Transfer Office); code AGPL-3.0")


@dataclass(frozen=True)
class Pullable:
    """One catalogue entry: its files at the source, what it provides, its size and licence."""

    name: str
    source: str  # "esm2" (encoder weights) or "prot2token" (a model to import)
    files: tuple[str, ...]  # paths below the source's base URL (and below `--from DIR`)
    provides: str
    size: str
    licence: str
    tasks: tuple[str, ...] = ()  # the tasks of the model it installs (prot2token entries)
    layers: int | None = None  # esm2 entries: the layer count and width the checkpoint's cfg must state
    width: int | None = None

    @property
    def env(self) -> str:
        return ESM_URL_ENV if self.source == ESM2 else HF_URL_ENV

    def url(self, path: str) -> str:
        base = os.environ.get(self.env) or (ESM_URL if self.source == ESM2 else HF_URL)
        prefix = "" if self.source == ESM2 else f"/{PROT2TOKEN_REPO}/resolve/main"
        return f"{base.rstrip('/')}{prefix}/{path}"


def esm2_entry(name: str, layers: int, params: str, width: int, size: str) -> Pullable:
    """The catalogue entry of fair-esm's ESM2 model `name`: its weights and contact regression."""
    return Pullable(name, ESM2, (f"models/{name}.pt", f"regression/{name}-contact-regression.pt"),
                    f"ESM2 encoder, {layers} layers, width {width}, {params} parameters "
                    f"(encoder.source = \"{name}\")", size, ESM_LICENCE, layers=layers, width=width)


def _prot2token(task: str, folder: str, checkpoint: str, provides: str) -> Pullable:
    files = (f"{folder}/checkpoints/{checkpoint}", f"{folder}/config.yaml", f"{folder}/decoder_tokenizer.yaml")
    return Pullable(f"prot2token-{task.replace('_', '-')}", PROT2TOKEN, files,
                    f"{provides} (Prot2Token, with its fine-tuned ESM2-650M encoder)",
                    ">= 2.6 GB (ESM2-650M inside)", PROT2TOKEN_LICENCE, (task,))


# ESM2 sizes: the fp32 weights, about 4 bytes per parameter (fair-esm publishes no byte counts
# and no digests, so a pull checks each checkpoint's layer count and width and records its sha256).
CATALOGUE: dict[str, Pullable] = {p.name: p for p in (
    esm2_entry("esm2_t6_8M_UR50D", 6, "8M", 320, "~30 MB"),
    esm2_entry("esm2_t12_35M_UR50D", 12, "35M", 480, "~140 MB"),
    esm2_entry("esm2_t30_150M_UR50D", 30, "150M", 640, "~600 MB"),
    esm2_entry("esm2_t33_650M_UR50D", 33, "650M", 1280, "~2.6 GB"),
    esm2_entry("esm2_t36_3B_UR50D", 36, "3B", 2560, "~11 GB"),
    esm2_entry("esm2_t48_15B_UR50D", 48, "15B", 5120, "~60 GB"),
    _prot2token("stability", "stability/2024-07-05__17-35-31", "best_valid_stability_spearman.pth",
                "task stability (regression)"),
    _prot2token("fluorescence", "fluorescence/2024-04-23__18-20-05", "best_valid_fluorescence_spearman.pth",
                "task fluorescence (regression)"),
    _prot2token("kinase_group", "kinase_group/2025-02-03__23-14-25", "best_valid_kinase_group_macro_f1.pth",
                "task kinase_group (multi-label)"),
    _prot2token("kinase_phosphorylation_site", "kinase_phosphorylation_site/2025-04-27__06-44-44",
                "best_valid_kinase_phosphorylation_site_f1.pth",
                "task kinase_phosphorylation_site (sites of a substrate-kinase pair)"),
    _prot2token("melting_temperature", "protein_melting_temperature/2025-06-05__00-04-55",
                "best_valid_protein_melting_temperature_rmse.pth", "task melting_temperature (regression)"),
)}


def lookup(names: list[str]) -> list[Pullable]:
    """Catalogue entries by name; an unknown name is a UsageError listing the known ones."""
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise UsageError(f"nothing called {', '.join(map(repr, unknown))} can be pulled; known: "
                         f"{', '.join(CATALOGUE)} (`p2t pull --list`)")
    return [CATALOGUE[n] for n in names]


def providers(task: str) -> list[Pullable]:
    """Catalogue entries whose model offers `task`."""
    return [p for p in CATALOGUE.values() if task in p.tasks]
