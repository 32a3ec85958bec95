"""The applicability domain: how like the model's training proteins a protein is.

A protein's representation is the mean of the decoder memory over its residues (what every
task's decoder reads). The index stores the training proteins' representations, centred on
their mean, projected on their first `dims` principal axes and scaled to unit length, as int8
(at most `MAX_PROTEINS`, evenly spread over the training set: 64 dims x 50,000 proteins is
3.2 MB). A protein's `domain_score` is the mean cosine similarity to its `k` nearest training
proteins; `in_domain` is a score at or above the threshold that 95% of held-out (validation)
proteins reach, fixed when the index is built. A matrix product against 50,000 rows is a few
milliseconds on a CPU and less on a GPU, so no nearest-neighbour library is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import Tensor

DOMAIN_FILE = "domain.safetensors"
MAX_PROTEINS = 50_000
DIMS = 64
NEIGHBOURS = 5
PASSING = 0.95  # share of held-out in-distribution proteins that are in domain


def pooled(memory: Tensor, residues: Tensor) -> Tensor:
    """Mean memory row over each protein's residues: memory (B, S, D), residues (B, T) True at
    residue positions (T <= S: the protein's part of the memory) -> (B, D)."""
    weight = residues.to(memory.dtype)  # (B, T)
    part = memory[:, : residues.shape[1]]  # (B, T, D)
    return (part * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp_min(1)


@dataclass
class DomainIndex:
    """Training proteins' reduced representations and the in-domain threshold."""

    centre: Tensor  # (D,)
    axes: Tensor  # (D, d)
    vectors: Tensor  # (N, d) int8: unit vectors x 127
    threshold: float
    neighbours: int = NEIGHBOURS

    def to(self, device: torch.device | str) -> DomainIndex:
        return DomainIndex(self.centre.to(device), self.axes.to(device), self.vectors.to(device),
                           self.threshold, self.neighbours)

    def reduce(self, representations: Tensor) -> Tensor:
        """(B, D) -> unit vectors (B, d) in the index's reduced space."""
        z = (representations.float() - self.centre) @ self.axes  # (B, d)
        return torch.nn.functional.normalize(z, dim=1)

    def score(self, representations: Tensor) -> Tensor:
        """Each protein's mean cosine similarity to its nearest training proteins (B,)."""
        sims = self.reduce(representations) @ self.vectors.float().T / 127.0  # (B, N)
        k = min(self.neighbours, sims.shape[1])
        return sims.topk(k, dim=1).values.mean(1)

    def save(self, model_dir: Path) -> Path:
        """Write the index into a model directory atomically (readable by all, as the weights are)."""
        path = Path(model_dir) / DOMAIN_FILE
        tmp = path.with_name(f".{path.name}.saving")
        tmp.write_bytes(save({"centre": self.centre.cpu().contiguous(), "axes": self.axes.cpu().contiguous(),
                              "vectors": self.vectors.cpu().contiguous(),
                              "threshold": torch.tensor([self.threshold], dtype=torch.float64),
                              "neighbours": torch.tensor([self.neighbours])}))
        tmp.replace(path)
        return path


def build_index(train: np.ndarray, held_out: np.ndarray, dims: int = DIMS, neighbours: int = NEIGHBOURS,
                max_proteins: int = MAX_PROTEINS) -> DomainIndex:
    """An index of the training representations (N, D) whose threshold lets PASSING of the
    held-out representations (M, D) in."""
    if len(train) < 2 or not len(held_out):
        raise ValueError(f"a domain index needs training and held-out proteins (got {len(train)} and "
                         f"{len(held_out)})")
    if len(train) > max_proteins:
        train = train[np.linspace(0, len(train) - 1, max_proteins).astype(int)]
    x = train.astype(np.float64)
    centre = x.mean(0)
    _, _, vt = np.linalg.svd(x - centre, full_matrices=False)  # rows of vt: principal axes
    axes = vt[: min(dims, vt.shape[0])].T  # (D, d)
    index = DomainIndex(torch.tensor(centre, dtype=torch.float32), torch.tensor(axes, dtype=torch.float32),
                        torch.zeros((0, axes.shape[1]), dtype=torch.int8), 0.0, neighbours)
    units = index.reduce(torch.tensor(train, dtype=torch.float32))
    index.vectors = torch.round(units * 127).to(torch.int8)
    scores = index.score(torch.tensor(held_out, dtype=torch.float32)).numpy()
    index.threshold = float(np.quantile(scores, 1.0 - PASSING))
    return index


def load_domain(model_dir: Path) -> DomainIndex | None:
    """The model directory's domain index, or None when it has none."""
    path = Path(model_dir) / DOMAIN_FILE
    if not path.is_file():
        return None
    try:
        t = load_file(str(path))
        return DomainIndex(t["centre"], t["axes"], t["vectors"], float(t["threshold"][0]), int(t["neighbours"][0]))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ValueError(f"cannot read the domain index {path}: {exc}") from exc
