"""Decoding: KV cache and batching change nothing; grammars make every output parse."""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import FLAGS, flags_model, greedy_decode, tiny_model, uncached_decode

from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.model.encoder import tokenize
from p2t_screen.decode.choice import choose
from p2t_screen.model.stacking import RowInput, SideInputs
from p2t_screen.screen.screener import ScreenConfig, Screener
from p2t_screen.tasks.grammar import flags_grammar
from p2t_screen.tasks.kind import KINDS
from p2t_screen.tasks.spec import ABSENT, TaskResult
from p2t_screen.tasks.vocab import Vocab

AA = "ACDEFGHIKLMNPQRSTVWY"


def random_sequences(n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AA) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def cached_equals_full(model, spec, seqs, kv, keep, prompt, side=None):
    """Greedy tokens of the KV-cached path, after checking a full re-forward per step agrees."""
    out = {}
    for cache, decode in ((True, greedy_decode), (False, uncached_decode)):
        grammar = KINDS[spec.kind].grammar(spec, model.vocab, seqs, model.config.max_output_steps, "cpu")
        out[cache] = decode(model.decoder, kv, keep, prompt, grammar, model.vocab.eos_id, side=side).tokens
    assert torch.equal(*padded_alike(out[True], out[False]))
    return out[True]


def padded_alike(a, b):
    """Two (B, S) token tensors padded with <pad> to one width (decoders may stop early)."""
    width = max(a.shape[1], b.shape[1])
    return (torch.nn.functional.pad(a, (0, width - a.shape[1])),
            torch.nn.functional.pad(b, (0, width - b.shape[1])))


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def decode_all(model, sequences, use_cache):
    memory, keep = model.encode(tokenize(sequences))
    kv = model.decoder.memory_kv(memory)
    out = {}
    for spec in model.config.tasks:
        grammar = KINDS[spec.kind].grammar(spec, model.vocab, sequences, model.config.max_output_steps,
                                           torch.device("cpu"))
        decode = greedy_decode if use_cache else uncached_decode
        out[spec.name] = decode(model.decoder, kv, keep, model.prompt(spec, len(sequences), "cpu"),
                                grammar, model.vocab.eos_id)
    return out


def test_cached_and_uncached_decoding_give_identical_tokens(model):
    seqs = random_sequences(6, 5, 40, seed=1)
    cached, plain = decode_all(model, seqs, True), decode_all(model, seqs, False)
    for name in cached:
        a, b = cached[name], plain[name]
        width = min(a.tokens.shape[1], b.tokens.shape[1])
        assert torch.equal(a.tokens[:, :width], b.tokens[:, :width]), name
        assert (a.tokens[:, width:] == 0).all() and (b.tokens[:, width:] == 0).all()
        torch.testing.assert_close(a.probs[:, :width], b.probs[:, :width], atol=1e-5, rtol=1e-4)


def test_batch_equals_one_at_a_time(model):
    seqs = random_sequences(9, 3, 60, seed=2)
    screener = Screener(model, list(model.config.tasks))
    batched = screener.predict(seqs)
    for i, seq in enumerate(seqs):
        single = screener.predict([seq])
        for name, outcomes in batched.items():
            a, b = outcomes[i], single[name][0]
            assert (a.value, a.label, a.labels, a.sites, a.residue_labels) == \
                   (b.value, b.label, b.labels, b.sites, b.residue_labels), (name, seq)
            assert a.confidence == pytest.approx(b.confidence, rel=1e-4, abs=1e-6)


def test_screen_output_independent_of_token_budget(model):
    seqs = random_sequences(20, 1, 50, seed=5)
    records = list(records_from_sequences(seqs, ReadPolicy(max_residues=64)))
    tables = []
    for budget in (60, 400, 100_000):
        batches = Screener(model, list(model.config.tasks), ScreenConfig(max_tokens=budget)).screen(records)
        tables.append([b.drop_columns(["confidence", "label_probs", "site_probs", "residue_probs"])
                       for b in batches])
    assert tables[0][0].equals(tables[1][0]) and tables[1][0].equals(tables[2][0])


@pytest.mark.parametrize("seed", range(6))
def test_every_output_parses_on_random_weights(seed):
    model = tiny_model(seed=100 + seed, max_residues=48)
    with torch.no_grad():  # flatten the output layer so random models wander through the grammar
        model.decoder.output.weight.mul_(0.05)
    seqs = random_sequences(8, 1, 48, seed=seed)
    results = Screener(model, list(model.config.tasks)).predict(seqs)
    for name, outcomes in results.items():
        spec = model.config.task(name)
        for seq, res in zip(seqs, outcomes):
            assert isinstance(res, TaskResult), (name, res)
            check_result(spec, seq, res)


def check_result(spec, seq, res: TaskResult) -> None:
    if spec.kind == "regression":
        lo, hi = spec.value_range
        assert lo - 1e-3 <= res.value <= hi + 1e-3
    elif spec.kind == "class":
        assert res.label in spec.labels
        assert sum(p for _, p in res.label_probs) == pytest.approx(1.0, abs=1e-4)
        assert dict(res.label_probs)[res.label] == pytest.approx(res.confidence)
    elif spec.kind == "multilabel":
        ranks = [spec.labels.index(lab) for lab in res.labels]
        assert ranks == sorted(set(ranks))
    elif spec.kind == "sites":
        assert res.sites == sorted(set(res.sites))
        assert all(1 <= p <= len(seq) for p in res.sites)
        if spec.residues:
            assert all(seq[p - 1] in spec.residues for p in res.sites)
        assert len(res.site_probs) == len(res.sites)
    elif spec.kind == "per_residue":
        assert len(res.residue_labels) == len(seq)
        assert set(res.residue_labels) <= set(spec.labels)
        assert len(res.residue_probs) == len(seq)
    assert res.confidence is None or 0.0 <= res.confidence <= 1.0 + 1e-6


def test_sites_stop_within_the_decoder_budget():
    model = tiny_model(seed=7, max_residues=40)
    seq = "S" * 40
    spec = model.config.task("positions_k")
    grammar = KINDS["sites"].grammar(spec, model.vocab, [seq], 5, torch.device("cpu"))
    assert grammar.max_steps == 5  # budget smaller than the 40 candidates
    assert grammar.allowed(4).nonzero()[:, 1].tolist() == [model.vocab.eos_id]


def test_decoding_does_not_sync_per_token(model, monkeypatch):
    """A fixed-length grammar decodes without any host sync inside the loop."""
    calls = {"n": 0}
    real = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return real(self)

    seqs = random_sequences(4, 10, 20, seed=9)
    memory, keep = model.encode(tokenize(seqs))
    kv = model.decoder.memory_kv(memory)
    spec = model.config.task("stability")
    grammar = KINDS["regression"].grammar(spec, model.vocab, seqs, 100, torch.device("cpu"))
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    greedy_decode(model.decoder, kv, keep, model.prompt(spec, 4, "cpu"), grammar, model.vocab.eos_id)
    assert calls["n"] == 0


def test_residue_skip_adds_memory_row_j_at_input_j_and_caches_consistently():
    """With `residue_skip`, per-residue decoding reads memory row j at step j: the KV-cached
    batched path equals a full re-forward per step, and the outputs differ from the same
    weights without the skip (the rows really enter)."""
    from conftest import tiny_model

    from p2t_screen.model.encoder import tokenize
    from p2t_screen.tasks.kind import KINDS

    model = tiny_model(seed=4, residue_skip=True)
    spec = model.config.task("ss3")
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPV", "ACDEFGHIKLMNPQRSTVWYACDEF"]
    memory, keep = model.encode(tokenize(seqs))
    kv = model.decoder.memory_kv(memory)
    out = {}
    for cache, decode in ((True, greedy_decode), (False, uncached_decode)):
        grammar = KINDS[spec.kind].grammar(spec, model.vocab, seqs, model.config.max_output_steps, memory.device)
        out[cache] = decode(model.decoder, kv, keep, model.prompt(spec, 3, memory.device), grammar,
                            model.vocab.eos_id, side=SideInputs(residue=RowInput(memory))).tokens
    assert torch.equal(*padded_alike(out[True], out[False]))
    grammar = KINDS[spec.kind].grammar(spec, model.vocab, seqs, model.config.max_output_steps, memory.device)
    plain = greedy_decode(model.decoder, kv, keep, model.prompt(spec, 3, memory.device), grammar,
                          model.vocab.eos_id).tokens
    assert not torch.equal(plain, out[True])
    # The screener applies it to per-residue tasks of such a model.
    from p2t_screen.screen.screener import Screener

    got = Screener(model, [spec]).predict(seqs)[spec.name]
    labels = [[model.vocab.tokens[t] for t in row if t != model.vocab.eos_id and t != 0] for row in out[True].tolist()]
    assert [r.residue_labels for r in got] == labels


def test_site_pointer_scores_position_p_from_memory_row_p(tmp_path):
    """With `site_pointer`, the logit of position token p gains (W h)·m_p/√D from memory row p:
    zero-initialised it changes nothing; trained, it changes exactly the position logits, the
    cached path equals a full re-forward, the screener uses it for site tasks only, and it
    survives save and load."""
    from p2t_screen.model.store import load_model, save_model

    model = tiny_model(seed=5, site_pointer=True, memory_positions=66)
    spec = model.config.task("positions_k")
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVK", "ACDEFGHIKLMNPQRSTVWYACDEFK"]
    memory, keep = model.encode(tokenize(seqs))
    kv = model.decoder.memory_kv(memory)
    prompt = model.prompt(spec, 3, "cpu")
    plain = model.decoder(prompt, kv, keep)
    assert torch.equal(plain, model.decoder(prompt, kv, keep, side=SideInputs(pointer=RowInput(memory))))  # zero init
    with torch.no_grad():
        model.decoder.pointer.weight.normal_(std=1.0)
    pointed = model.decoder(prompt, kv, keep, side=SideInputs(pointer=RowInput(memory)))
    changed = (pointed != plain).any(dim=(0, 1)).nonzero().flatten().tolist()
    assert set(changed) <= {model.vocab.id(str(p)) for p in range(1, 65)}
    p = 7  # by hand for one row, step and position
    h = model.decoder.final_norm  # the state the output layer reads: recompute it through a hook
    seen = {}
    hook = h.register_forward_hook(lambda m, i, o: seen.update(x=o))
    model.decoder(prompt, kv, keep, side=SideInputs(pointer=RowInput(memory)))
    hook.remove()
    x = seen["x"][1, -1]
    want = plain[1, -1, model.vocab.id(str(p))] + (model.decoder.pointer(x) @ memory[1, p]) / 32 ** 0.5
    assert torch.allclose(pointed[1, -1, model.vocab.id(str(p))], want, atol=1e-5)

    tokens = cached_equals_full(model, spec, seqs, kv, keep, prompt, side=SideInputs(pointer=RowInput(memory)))
    assert not torch.equal(tokens, cached_equals_full(model, spec, seqs, kv, keep, prompt))
    sites = [[int(model.vocab.tokens[t]) for t in row if t not in (0, model.vocab.eos_id)]
             for row in tokens.tolist()]
    got = Screener(model, [spec, model.config.task("ss3")]).predict(seqs)
    assert [r.sites for r in got[spec.name]] == sites
    assert model.side_inputs(memory, model.prompt(model.config.task("ss3"), 3, "cpu")[:, 1]).pointer is None
    save_model(model, tmp_path / "m")
    again = Screener(load_model(tmp_path / "m"), [spec]).predict(seqs)
    assert [r.sites for r in again[spec.name]] == sites


def test_pooled_memory_adds_the_masked_mean_and_keeps_batching_exact():
    """With `pooled_memory`, class/multi-label/regression rows get the mean of their own
    (unpadded) memory rows: outputs change against the same weights without it, and a padded
    batch gives what each sequence gives alone."""
    seqs = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "GSHM", "ACDEFGHIKLMNPQRSTVWY"]
    pooled = tiny_model(seed=6, pooled_memory=True)
    plain = tiny_model(seed=6)  # the option adds no weights: same seed, same weights
    memory, keep = pooled.encode(tokenize(seqs))
    task = pooled.prompt(pooled.config.task("kingdom"), 3, "cpu")[:, 1]
    side = pooled.side_inputs(memory, task, keep)
    assert side.residue is None and side.pointer is None
    assert torch.allclose(side.pooled.value[1], memory[1, :6].mean(0), atol=1e-6)  # <cls> GSHM <eos>
    ss3 = pooled.prompt(pooled.config.task("ss3"), 3, "cpu")[:, 1]
    assert pooled.side_inputs(memory, ss3, keep).pooled is None
    specs = [pooled.config.task(n) for n in ("kingdom", "stability", "location")]
    together = Screener(pooled, specs).predict(seqs)
    without = Screener(plain, specs).predict(seqs)
    assert [o.label_probs for o in together["kingdom"]] != [o.label_probs for o in without["kingdom"]]
    for i, seq in enumerate(seqs):
        alone = Screener(pooled, specs).predict([seq])
        for spec in specs:
            a, b = alone[spec.name][0], together[spec.name][i]
            assert (a.label, a.labels, a.value) == (b.label, b.labels, b.value)


def test_memory_window_starts_as_none_mixes_neighbours_and_keeps_batching_exact():
    """`memory_window` starts at zero (the memory of the same weights without it); trained, memory
    row j mixes rows j-w/2..j+w/2 of its own protein only: a padded batch gives what each
    sequence gives alone, memory and screened outputs alike."""
    seqs = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "GSHM", "ACDEFGHIKLMNPQRSTVWY"]
    windowed, plain = tiny_model(seed=6, memory_window=5), tiny_model(seed=6)
    windowed.load_state_dict(plain.state_dict(), strict=False)
    tokens = tokenize(seqs)
    assert torch.equal(windowed.encode(tokens)[0], plain.encode(tokens)[0])
    torch.manual_seed(3)
    with torch.no_grad():
        windowed.decoder.window.weight.normal_(std=0.3)
    memory, keep = windowed.encode(tokens)
    base = plain.encode(tokens)[0]
    changed = (memory - base).abs().amax(-1)  # (B, S)
    assert bool((changed[keep] > 1e-3).all())
    lone = tokenize([seqs[1]])  # <cls> GSHM <eos>: 6 rows; row 5 reads rows 3..7, the last 2 padding
    assert torch.allclose(windowed.encode(lone)[0][0], memory[1, :6], atol=1e-5)
    specs = [windowed.config.task(n) for n in ("ss3", "kingdom", "location")]
    together = Screener(windowed, specs).predict(seqs)
    for i, seq in enumerate(seqs):
        alone = Screener(windowed, specs).predict([seq])
        for spec in specs:
            a, b = alone[spec.name][0], together[spec.name][i]
            assert (a.label, a.labels, a.value, a.residue_labels) == (b.label, b.labels, b.value, b.residue_labels)
    with pytest.raises(ValueError, match="odd"):
        tiny_model(memory_window=4)


def test_task_every_step_adds_the_task_embedding_to_every_input():
    """With `task_every_step`, every decoder input gets the task token's embedding: logits equal
    a plain decoder whose position table has that embedding added, cached decoding equals a full
    re-forward, and the screener passes it."""
    model = tiny_model(seed=7, task_every_step=True)
    spec = model.config.task("ss3")
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPV"]
    memory, keep = model.encode(tokenize(seqs))
    kv = model.decoder.memory_kv(memory)
    prompt = model.prompt(spec, 2, "cpu")
    task = prompt[:, 1]
    tokens = torch.cat([prompt, torch.full((2, 3), model.vocab.id("H"))], dim=1)
    got = model.decoder(tokens, kv, keep, side=SideInputs(task=task))
    with torch.no_grad():
        saved = model.decoder.pos_embed.clone()
        model.decoder.pos_embed += model.decoder.embedding.weight[task[0]]
        want = model.decoder(tokens, kv, keep)
        model.decoder.pos_embed.copy_(saved)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, model.decoder(tokens, kv, keep), atol=1e-3)
    tokens = cached_equals_full(model, spec, seqs, kv, keep, prompt, side=SideInputs(task=task))
    labels = [[model.vocab.tokens[t] for t in row if t not in (0, model.vocab.eos_id)] for row in tokens.tolist()]
    assert [r.residue_labels for r in Screener(model, [spec]).predict(seqs)[spec.name]] == labels


def test_without_residue_feedback_labels_never_feed_back():
    """With `residue_feedback=False` a per-residue task never reads its previous labels, in
    decoding and in training: changing the label tokens' input embeddings changes nothing, while
    other tasks still read theirs; batched equals one at a time."""
    from p2t_screen.train.examples import collate, make_example
    from p2t_screen.train.steps import loss_on

    model = tiny_model(seed=8, residue_skip=True, residue_feedback=False)
    ss3, sites = model.config.task("ss3"), model.config.task("positions_k")
    assert not model.feeds_back(ss3) and model.feeds_back(sites)
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVK", "ACDEFGHIKLMNPQRSTVWYACDEFK"]
    gen = torch.Generator().manual_seed(0)
    batch = collate([make_example(model, "ss3", s, "H" * len(s)) for s in seqs], 0.0, gen)
    before = Screener(model, [ss3, sites]).predict(seqs)
    with torch.no_grad():
        loss_before = loss_on(model, batch).item()
        for tok in ("H", "E", "C", *[str(p) for p in range(1, 65)]):
            model.decoder.embedding.weight[model.vocab.id(tok)] += 3.0 * torch.randn(32, generator=gen)
        loss_after = loss_on(model, batch).item()
    after = Screener(model, [ss3, sites]).predict(seqs)
    assert [r.residue_labels for r in after["ss3"]] == [r.residue_labels for r in before["ss3"]]
    for a, b in zip(after["ss3"], before["ss3"]):
        assert a.residue_probs == pytest.approx(b.residue_probs, abs=1e-6)
    assert loss_after == pytest.approx(loss_before, rel=1e-6)
    assert [r.sites for r in after["positions_k"]] != [r.sites for r in before["positions_k"]]
    for i, seq in enumerate(seqs):
        alone = Screener(model, [ss3]).predict([seq])["ss3"][0]
        assert alone.residue_labels == after["ss3"][i].residue_labels
        assert len(alone.residue_labels) == len(seq)


def test_bench_naive_path_follows_the_decoder_options():
    """`p2t bench`'s naive path (batch 1, full re-forward per token) gives the screener's outputs
    on a model with every decoder option on, so its speed ratio compares like with like."""
    from p2t_screen.bench.checks import same_outputs
    from p2t_screen.bench.screen import naive_predict

    model = tiny_model(seed=9, memory_positions=66, residue_skip=True, site_pointer=True,
                       pooled_memory=True, task_every_step=True, residue_feedback=False)
    with torch.no_grad():
        model.decoder.pointer.weight.normal_(std=1.0)
    seqs = random_sequences(4, 5, 30, seed=9)
    tasks = list(model.config.tasks)
    naive = [[naive_predict(model, s, spec) for spec in tasks] for s in seqs]
    assert same_outputs(model, seqs, tasks, naive)


def test_flags_threshold_moves_the_choice_not_the_reported_probability():
    vocab = Vocab.build([FLAGS.token], KINDS["multilabel"].label_tokens(FLAGS, 0))
    logits = torch.full((1, len(vocab)), -5.0)
    logits[0, vocab.id("ATP")], logits[0, vocab.id(ABSENT)] = math.log(0.4), math.log(0.6)
    done = torch.zeros(1, dtype=torch.bool)
    for threshold, chosen, prob in ((0.3, "ATP", 0.4), (0.39, "ATP", 0.4), (0.41, ABSENT, 0.6),
                                    (0.5, ABSENT, 0.6)):
        grammar = flags_grammar(vocab, FLAGS.labels, ABSENT, 1, torch.device("cpu"), threshold)
        token, p, _ = choose(logits, grammar.allowed(0), done, vocab.pad_id, grammar.bias(0))
        assert vocab.tokens[int(token)] == chosen and float(p) == pytest.approx(prob)
    assert grammar.bias(0) is None  # 0.5 is plain greedy
    assert [vocab.tokens[i] for i in grammar.allowed(5)[0].nonzero().flatten()] == ["<eos>"]


def test_flags_decoding_emits_exactly_the_labels_at_or_above_the_threshold():
    """Through the screener, on an unsharpened random model (probabilities far from 0 and 1):
    at every threshold the labels emitted are those whose reported probability reaches it, and
    the bench's naive path makes the same choices."""
    from dataclasses import replace

    from p2t_screen.bench.checks import same_outputs
    from p2t_screen.bench.screen import naive_predict

    model = flags_model(pooled_memory=True)
    seqs = random_sequences(12, 5, 40, seed=4)
    seen = []
    for threshold in (0.2, 0.5, 0.8):
        spec = replace(FLAGS, threshold=threshold)
        results = Screener(model, [spec]).predict(seqs)["ligands"]
        for r in results:
            assert r.labels == [lab for lab, q in r.label_probs if q >= threshold]
            assert [lab for lab, _ in r.label_probs] == list(FLAGS.labels)
        naive = [[naive_predict(model, s, spec)] for s in seqs]
        assert same_outputs(model, seqs, [spec], naive)
        seen.append([r.labels for r in results])
    assert seen[0] != seen[1] != seen[2]  # the threshold decides something on this data
    assert sum(map(len, seen[0])) > sum(map(len, seen[2]))


def test_bench_times_per_residue_feedback_on_a_model_without_it(tmp_path):
    """`p2t bench` on a model trained without residue feedback adds a row timing the same
    weights decoding per-residue tasks step by step."""
    from typer.testing import CliRunner

    from p2t_screen.cli import app
    from p2t_screen.model.store import save_model

    path = save_model(tiny_model(seed=2, residue_skip=True, residue_feedback=False), tmp_path / "m")
    args = ["bench", "--model", str(path), "--n", "8", "--min-len", "5", "--max-len", "40",
            "--naive-n", "2", "--device", "cpu"]
    result = CliRunner().invoke(app, args + ["--tasks", "ss3,kingdom"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "residue feedback on" in text and "timed only, its outputs mean nothing here" in text
    assert "naive and screen outputs identical on the naive sample: True" in text
    result = CliRunner().invoke(app, args + ["--tasks", "kingdom"])  # no per-residue task: no row
    assert result.exit_code == 0 and "feedback" not in result.output
