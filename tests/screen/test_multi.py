"""Several models in one pass: encoders that share their bottom layers (published-layout
checkpoints fine-tuned from one ESM2 in their top layers) run that trunk once per batch, and the
outputs equal, token for token, those of each model screened alone."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest
import torch
from prot2token_reference import RefProt2Token, write_published

from p2t_screen.interop.prot2token import import_prot2token
from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.io.schema import SCHEMA
from p2t_screen.model.store import load_model
from p2t_screen.model.trunk import shared_depth
from p2t_screen.screen.multi import MultiScreener
from p2t_screen.screen.screener import ScreenConfig, Screener

DIGITS = {str(d): 4 + d for d in range(10)}
SIZES = dict(dim=16, heads=2, layers=1, ffn=32, max_len=12)
ESM_LAYERS = 3


def vocab(task: str) -> dict[str, int]:
    return {"<pad>": 0, "<bos>": 1, "<eos>": 2, f"<task_{task}>": 3, **DIGITS, ".": 14}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two imported checkpoints: the same ESM2 except its top layer, different decoders."""
    tmp = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    a = RefProt2Token(ESM_LAYERS, 32, 4, 15, 16, 2, 1, 32, 12, 64)
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.esm.layers[-1].parameters():
            p.add_(torch.randn_like(p) * 0.2)
        for p in b.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    paths = []
    for ref, task in ((a, "stability"), (b, "fluorescence")):
        files = write_published(tmp / task, ref, vocab(task), **SIZES)
        paths.append(import_prot2token(*files, tmp / f"model-{task}", None))
    return [load_model(p) for p in paths]


def records(n: int = 24):
    rng = torch.Generator().manual_seed(1)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    seqs = ["".join(aa[i] for i in torch.randint(20, (int(torch.randint(5, 50, (1,), generator=rng)),),
                                                 generator=rng)) for _ in range(n)]
    return list(records_from_sequences(seqs, ReadPolicy(max_residues=62)))


def calls(module: torch.nn.Module) -> list[int]:
    seen = []
    module.register_forward_hook(lambda m, i, o: seen.append(1))
    return seen


def test_shared_bottom_layers_run_once_and_change_nothing(models):
    a, b = models
    assert shared_depth([a, b]) == ESM_LAYERS - 1  # the top layer differs
    assert shared_depth([a, a]) == ESM_LAYERS
    config = ScreenConfig(max_tokens=5 * 64)  # several batches
    alone = [pa.Table.from_batches(list(Screener(m, list(m.config.tasks), config).screen(records())))
             for m in (a, b)]
    a_bottom, b_bottom, b_top = calls(a.encoder.layers[0].fc1), calls(b.encoder.layers[0].fc1), \
        calls(b.encoder.layers[-1].fc1)
    multi = MultiScreener([Screener(m, list(m.config.tasks), config) for m in (a, b)], SCHEMA)
    together = pa.Table.from_batches(list(multi.screen(records())))
    assert multi.depth == ESM_LAYERS - 1
    assert multi.trunk.trunk_runs == len(a_bottom) == len(b_top) > 1 and b_bottom == []
    for task, table in (("stability", alone[0]), ("fluorescence", alone[1])):
        got = together.filter(pa.compute.equal(together.column("task"), task))
        assert got.column("value").to_pylist() == table.column("value").to_pylist()
        assert got.column("confidence").to_pylist() == table.column("confidence").to_pylist()
    assert together.column("task").to_pylist()[:2] == ["stability", "fluorescence"]  # by record, then task
    unshared = MultiScreener([Screener(m, list(m.config.tasks), config) for m in (a, b)], SCHEMA, share=False)
    assert unshared.trunk is None
    assert pa.Table.from_batches(list(unshared.screen(records()))).equals(together)


def test_bench_times_models_together_and_apart_with_the_same_rows(models):
    from p2t_screen.bench.multi import time_models_together

    seqs = [r.sequence for r in records(12)]
    timings, same, depth = time_models_together(list(models), seqs, 5 * 64)
    assert same and depth == ESM_LAYERS - 1
    assert [t.name for t in timings] == ["2 models, one after another",
                                         f"together, trunk of {ESM_LAYERS - 1} layers run once", "together, no sharing"]
