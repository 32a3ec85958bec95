"""tools/data/promod3.py's split assignment: whole clusters go to one split, the training split keeps
every chain of every cluster, and a capped split takes one chain per cluster before any second one."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "data"))
import promod3
from promod3 import Chain, FilterStats, assign_splits, split_of


def clustered(n_clusters: int, size: int) -> tuple[list[Chain], dict[str, str]]:
    """`n_clusters` clusters of `size` chains each, and the member -> representative map."""
    chains, rep_of = [], {}
    for c in range(n_clusters):
        for m in range(size):
            chain = Chain(id=f"c{c}_m{m}", sequence="MKV", q3="CCC", rsa2="EEE")
            chains.append(chain)
            rep_of[chain.id] = f"c{c}_m0"
    return chains, rep_of


def test_train_keeps_every_chain_and_clusters_stay_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    chains, rep_of = clustered(60, 3)
    monkeypatch.setattr(promod3, "SPLIT_CAPS", {"train": None, "valid": 1000, "test": 1000})
    stats = FilterStats()
    splits = assign_splits(chains, rep_of, stats)
    assert sum(len(v) for v in splits.values()) == len(chains)
    assert stats.dropped_by_cap == {"train": 0, "valid": 0, "test": 0}
    for split, members in splits.items():
        assert all(split_of(rep_of[c.id]) == split for c in members)
    assert len(splits["train"]) > len(splits["test"])  # 80% of the clusters, by sha256


def test_a_capped_split_takes_one_chain_per_cluster_first(monkeypatch: pytest.MonkeyPatch) -> None:
    chains, rep_of = clustered(60, 3)
    train_clusters = {rep_of[c.id] for c in chains if split_of(rep_of[c.id]) == "train"}
    cap = len(train_clusters) + 2  # every cluster once, then two second chains
    monkeypatch.setattr(promod3, "SPLIT_CAPS", {"train": cap, "valid": None, "test": None})
    stats = FilterStats()
    kept = assign_splits(chains, rep_of, stats)["train"]
    per_cluster = Counter(rep_of[c.id] for c in kept)
    assert len(kept) == cap and set(per_cluster) == train_clusters
    assert sorted(per_cluster.values()).count(2) == 2 and max(per_cluster.values()) == 2
    assert stats.dropped_by_cap["train"] == 3 * len(train_clusters) - cap
