"""One decode loop for all of a batch's tasks: a stacked decode gives what task-by-task decoding
gives, for every kind mixed (prompted sites, thresholds and temperatures among them), with and
without residue feedback, for proteins, pairs and ligands; the decoder runs once per step."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TASKS, tiny_model

from p2t_screen.model.molecule import SPECIALS, MoleculeConfig
from p2t_screen.screen.screener import Screener
from p2t_screen.tasks.inputs import ModelInput
from p2t_screen.tasks.spec import TaskSpec

pytestmark = pytest.mark.usefixtures("one_thread")

AA = "ACDEFGHIKLMNPQRSTVWY"
OPTIONS = {"residue_skip": True, "site_pointer": True, "pooled_memory": True, "task_every_step": True}
MIXED = [
    *TASKS,
    TaskSpec("phospho_prompted", "sites", residues="STY", prompt="candidates"),
    TaskSpec("ligands", "multilabel", labels=("ATP", "GTP", "zinc"), encoding="flags", threshold=0.3),
    TaskSpec("soluble", "class", labels=("no", "yes"), temperature=1.7),
    TaskSpec("disorder", "per_residue", labels=("ordered", "disordered")),
    TaskSpec("pair_sites", "sites", residues="ST", inputs="pair", prompt="candidates"),
    TaskSpec("pair_class", "class", labels=("binds", "not"), inputs="pair"),
    TaskSpec("affinity", "regression", value_range=(0.0, 12.0), inputs="ligand"),
    TaskSpec("ligand_class", "class", labels=("weak", "strong"), inputs="ligand"),
]
MOLECULES = MoleculeConfig(tokens=(*SPECIALS, "C", "N", "O", "c", "1", "(", ")", "="), dim=32, num_layers=1,
                           ffn_dim=64)


def proteins(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AA) for _ in range(rng.randint(4, 50))) for _ in range(n)]


def inputs(form: str, seed: int) -> list[ModelInput]:
    seqs = proteins(7, seed)
    if form == "pair":
        return [ModelInput(s, partner=p[:12]) for s, p in zip(seqs, proteins(7, seed + 1))]
    if form == "ligand":
        return [ModelInput(s, ligand=lig) for s, lig in zip(seqs, ["CCO", "c1ccccc1", "CC(=O)N", "N", "CCN",
                                                                   "OCC", "C=O"])]
    return [ModelInput(s) for s in seqs]


def agree(a, b, where: str = "") -> None:
    """Equal answers; floats (probabilities) equal up to float rounding."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for x, y in zip(a, b):
            agree(x, y, where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            agree(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, where


def same(stacked, alone):
    assert type(stacked) is type(alone)
    agree(vars(stacked), vars(alone))


@pytest.mark.parametrize("feedback", [True, False])
def test_stacked_decoding_equals_task_by_task(feedback):
    model = tiny_model(seed=11, tasks=MIXED, molecule=MOLECULES, residue_feedback=feedback, **OPTIONS)
    screener = Screener(model, list(MIXED))
    for seed, form in enumerate(("protein", "pair", "ligand")):
        batch = inputs(form, seed)
        specs = [t for t in MIXED if t.inputs == form]
        together = screener.predict(batch, specs)
        for spec in specs:
            alone = screener.predict(batch, [spec])[spec.name]
            for row, (a, b) in enumerate(zip(together[spec.name], alone)):
                assert a.__class__.__name__ != "Failure", (spec.name, row, a)
                same(a, b)


def test_decoder_runs_once_per_step_for_all_tasks(monkeypatch):
    """Decoder calls per batch: one prompt pass and one call per step of the longest task for the
    stacked tasks, one pass for the per-residue tasks that do not read back, not one per task."""
    model = tiny_model(seed=12, tasks=TASKS, residue_feedback=False, **OPTIONS)
    calls = []
    forward = model.decoder.forward
    monkeypatch.setattr(model.decoder, "forward", lambda *a, **k: calls.append(a[0].shape) or forward(*a, **k))
    screener = Screener(model, list(TASKS))
    seqs = proteins(5, seed=3)
    screener.predict(seqs)
    stacked, one_pass = [s for s in calls if s[0] == 5 * (len(TASKS) - 1)], [s for s in calls if s[0] == 5]
    assert len(one_pass) == 1 and one_pass[0][1] > 2  # ss3: <bos> <task> and a <pad> per residue
    # Prompt pass, then one-token steps for every task at once until the last one ends.
    assert stacked[0][1] == 2 and all(s[1] == 1 for s in calls[1:-1] if s not in one_pass)
    calls.clear()
    for spec in TASKS:
        screener.predict(seqs, [spec])
    assert len(calls) > 2 * (len(stacked) + 1)  # task by task: several loops where one sufficed


def test_short_tasks_leave_the_stack_when_their_grammar_ends(monkeypatch):
    """A class task (2 steps) stacked with a sites task: after step 2 the decoder sees only the
    sites rows, so the class rows cost no steps of the longer task."""
    specs = [TaskSpec("kingdom", "class", labels=("a", "b")), TaskSpec("positions_k", "sites")]
    model = tiny_model(seed=13, tasks=specs)
    rows = []
    forward = model.decoder.forward
    monkeypatch.setattr(model.decoder, "forward", lambda *a, **k: rows.append(a[0].shape[0]) or forward(*a, **k))
    Screener(model, specs).predict(proteins(4, seed=5))
    assert rows[0] == 8 and rows[1] == 8  # prompt, then the step after the class token
    assert set(rows[2:]) <= {4}


def test_kv_caches_that_grow_step_by_step_decode_alike(monkeypatch):
    """The caches start with room for CACHE_START positions and double when a step needs more
    (dropping the rows of blocks that left the stack): from room for 2, they grow five times
    over a 50-residue sites task, and every answer stays the same."""
    from p2t_screen.decode import cache

    model = tiny_model(seed=15, tasks=MIXED[:8], **OPTIONS)
    seqs = proteins(6, seed=8)
    roomy = Screener(model, list(MIXED[:8])).predict(seqs)
    sizes = []
    resized = cache.KVCache.resized
    monkeypatch.setattr(cache, "CACHE_START", 2)
    monkeypatch.setattr(cache.KVCache, "resized", lambda c, rows, n: sizes.append((rows, n)) or resized(c, rows, n))
    tight = Screener(model, list(MIXED[:8])).predict(seqs)
    assert len({n for _, n in sizes}) >= 4 and min(r for r, _ in sizes) < 6 * 8  # grew, left rows behind
    for name in roomy:
        for a, b in zip(tight[name], roomy[name]):
            same(a, b)


def test_compiled_step_decodes_like_the_eager_one():
    """`--compile`: the decoder step goes through torch.compile whole (fullgraph: no break inside a
    step, so it can be captured); its outputs equal the eager path's. The aot_eager backend traces
    exactly what inductor would compile, without a C++ build, so the suite stays fast."""
    from p2t_screen.screen.config import ScreenConfig

    model = tiny_model(seed=14, tasks=MIXED[:8], **OPTIONS)
    seqs = proteins(6, seed=7)
    eager = Screener(model, list(MIXED[:8])).predict(seqs)
    torch._dynamo.reset()
    screener = Screener(model, list(MIXED[:8]), ScreenConfig(compile=True, compile_backend="aot_eager"))
    compiled = screener.predict(seqs)
    for name in eager:
        for a, b in zip(compiled[name], eager[name]):
            same(a, b)
