"""`import_prot2token`: a synthetic checkpoint in the published layout imports, and p2t's
predictions equal a plain reimplementation of the reference's forward pass and greedy loop."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
import yaml
from conftest import greedy_decode
from prot2token_reference import RefProt2Token

from p2t_screen.errors import ModelError
from p2t_screen.interop.prot2token import import_prot2token
from p2t_screen.io.records import ReadPolicy, records_from_sequences
from p2t_screen.model.encoder import tokenize
from p2t_screen.model.store import load_model
from p2t_screen.screen.screener import ScreenConfig, Screener
from p2t_screen.tasks.kind import KINDS
from p2t_screen.tasks.spec import TaskResult

# nn.TransformerDecoder warns about a float causal mask next to a bool padding mask: the reference does that.
pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask"),
              pytest.mark.usefixtures("one_thread")]

VOCAB = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<task_stability>": 3,
         **{str(d): 4 + d for d in range(10)}, ".": 14}
BOS, EOS, TASK, ZERO, DOT = 1, 2, 3, 4, 14
DIGITS = list(range(4, 14))
SIZES = dict(esm_layers=2, width=32, esm_heads=4, dim=16, heads=2, layers=2, ffn=32, max_len=12)



class NeedsCode:
    """Stands for the pickled objects (configs, schedulers) some checkpoints carry."""


def random_sequences(n: int, low: int, high: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(low, high)))
            for _ in range(n)]


@torch.no_grad()
def favour_grammar(ref: RefProt2Token, seed: int, noise: float = 1.5, gap: float = 8.0) -> None:
    """Random weights rarely write `0 . d[ddd] <eos>`. Make positions dominate the decoder input and
    solve the output layer so that, at the mean hidden state of each position, the logits prefer
    the grammar (`0`, `.`, a digit, digits or `<eos>`, `<eos>`), plus a random readout of the
    deviation from that mean: which digits, and when `<eos>` comes, depend on the protein."""
    gen = torch.Generator().manual_seed(seed)
    dec = ref.decoder
    dec.embedding.weight.mul_(0.1)
    dec.decoder_pos_embed.copy_(torch.randn(dec.decoder_pos_embed.shape, generator=gen))
    length = dec.max_len - 1
    rng = random.Random(seed)
    hidden = torch.stack([
        dec.hidden(ref.memory(seq), torch.tensor([[BOS, TASK, ZERO, DOT, *rng.choices(DIGITS, k=length - 4)]]))[0]
        for seq in random_sequences(12, 5, 60, seed)])  # (N, L, D)
    mean = hidden.mean(0)
    readout = torch.randn(len(VOCAB), mean.shape[1], generator=gen)
    readout *= noise / torch.einsum("vd,nld->nlv", readout, hidden - mean).std()
    target = torch.full((length, len(VOCAB)), -gap)
    target[1, ZERO] = target[2, DOT] = gap
    target[3, DIGITS] = 0.0
    for p in (4, 5, 6):
        target[p, DIGITS] = 0.0
        target[p, EOS] = 0.5
    target[7:, EOS] = gap
    design = torch.cat([mean, torch.ones(length, 1)], dim=1)
    solution = torch.linalg.lstsq(design, target - mean @ readout.T).solution  # (D + 1, V)
    dec.output.weight.copy_(solution[:-1].T + readout)
    dec.output.bias.copy_(solution[-1])


def build_reference(encoder_max_len: int, fp16_rotary: bool, seed: int = 0,
                    vocab_size: int = len(VOCAB)) -> RefProt2Token:
    torch.manual_seed(seed)
    s = SIZES
    ref = RefProt2Token(s["esm_layers"], s["width"], s["esm_heads"], vocab_size, s["dim"], s["heads"],
                        s["layers"], s["ffn"], s["max_len"], encoder_max_len)
    if fp16_rotary:  # as in the HF ESM2 weights: inv_freq went through fp16 during ESM2's training
        for layer in ref.esm.layers:
            layer.self_attn.rot_emb.inv_freq.copy_(layer.self_attn.rot_emb.inv_freq.half().float())
    if vocab_size == len(VOCAB):
        favour_grammar(ref, seed)
    return ref.eval()


def write_files(folder, ref: RefProt2Token, vocab=VOCAB, state=None, compiled=False, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    state = ref.published_state_dict() if state is None else state
    if compiled:  # torch.compile'd training runs save keys under `_orig_mod.`
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    ckpt = folder / "best_valid_stability_spearman.pth"
    torch.save({"model_state_dict": state, "epoch": 3,
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
                **(extra or {})}, ckpt)
    s = SIZES
    config = {"fix_seed": 0, "prot2token_model": {
        "compile_model": compiled, "positional_encoding_type": "learned",
        "protein_encoder": {"model_name": "facebook/esm2_t2_tiny_test", "max_len": ref.encoder_max_len,
                            "drop_positional_encoding": True, "quantization_4_bit": False},
        "molecule_encoder": {"enable": False, "model_name": "gayane/BARTSmiles", "max_len": 128},
        "decoder": {"dimension": s["dim"], "dim_feedforward": s["ffn"], "num_heads": s["heads"],
                    "num_layers": s["layers"], "max_len": s["max_len"], "activation_function": "gelu"}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "decoder_tokenizer.yaml").write_text(yaml.safe_dump(vocab))  # keys sorted, as published
    return ckpt, folder / "config.yaml", folder / "decoder_tokenizer.yaml"


def grammatical(tokens: list[int]) -> bool:
    return (len(tokens) >= 4 and tokens[:2] == [ZERO, DOT] and tokens[-1] == EOS
            and 1 <= len(tokens) - 3 <= 4 and all(t in DIGITS for t in tokens[2:-1]))


@torch.no_grad()
def p2t_tokens(model, sequences, layout=None) -> list[list[int]]:
    """The tokens p2t's Screener decodes (same calls as Screener.predict), up to `<eos>`."""
    spec = model.config.tasks[0]
    mem, keep = model.encode(tokenize(sequences), layout)
    grammar = KINDS[spec.kind].grammar(spec, model.vocab, sequences, model.config.max_output_steps, mem.device)
    out = greedy_decode(model.decoder, model.decoder.memory_kv(mem), keep,
                        model.prompt(spec, len(sequences), mem.device), grammar, EOS)
    rows = out.tokens.tolist()
    return [row[: row.index(EOS) + 1] if EOS in row else row for row in rows]


def reference_value(tokens: list[int]) -> float:
    text = "".join(next(k for k, v in VOCAB.items() if v == t) for t in tokens[:-1])
    lo, hi = -1.97, 3.4
    return (float(text) - 0.0001) / 0.9998 * (hi - lo) + lo


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(reference, model directory) for the full 1024-token encoder and for a 64-token one."""
    made = {}
    for max_len, fp16_rotary in ((1024, True), (64, False)):
        ref = build_reference(max_len, fp16_rotary)
        folder = tmp_path_factory.mktemp(f"p2t-{max_len}")
        files = write_files(folder / "published", ref, compiled=(max_len == 1024))
        made[max_len] = ref, import_prot2token(*files, folder / "model", None)
    return made


@pytest.mark.parametrize("max_len", [1024, 64])
def test_imported_model_decodes_like_the_reference(imported, max_len):
    ref, path = imported[max_len]
    model = load_model(path)
    cfg = model.config
    assert cfg.memory_layout == "padded" and cfg.decoder.norm_first is False and cfg.encoder.source == "bundled"
    assert (cfg.encoder.num_layers, cfg.encoder.embed_dim, cfg.encoder.attention_heads) == (2, 32, 4)
    assert cfg.encoder.max_residues == max_len - 2 and cfg.decoder.memory_positions == max_len
    assert (cfg.decoder.dim, cfg.decoder.num_heads, cfg.decoder.ffn_dim, cfg.decoder.max_len) == (16, 2, 32, 11)
    assert [t.name for t in cfg.tasks] == ["stability"] and cfg.tasks[0].value_range == (-1.97, 3.4)
    assert cfg.vocab.tokens == tuple(sorted(VOCAB, key=VOCAB.get))
    assert (cfg.encoder.rotary_inv_freq is not None) == (max_len == 1024)  # kept only when it differs
    meta = model.metadata["imported_from"]
    assert "protein_encoder.model.pooler.dense.weight" in meta["dropped_tensors"]
    assert "protein_encoder.model.embeddings.position_embeddings.weight" in meta["dropped_tensors"]

    seqs = random_sequences(24, 5, 60, seed=max_len)
    expected = [ref.greedy(s, BOS, TASK, EOS) for s in seqs]
    ok = [i for i, toks in enumerate(expected) if grammatical(toks)]
    assert len(ok) >= 18 and len({tuple(expected[i]) for i in ok}) >= 4  # a real comparison
    got = p2t_tokens(model, seqs)
    for i in ok:
        assert got[i] == expected[i], (seqs[i], got[i], expected[i])
    outcomes = Screener(model, list(cfg.tasks)).predict(seqs)["stability"]
    for i in ok:
        assert isinstance(outcomes[i], TaskResult)
        assert outcomes[i].value == pytest.approx(reference_value(expected[i]), abs=1e-9)

    # The numbers behind the tokens: memory and teacher-forced logits on the reference's path.
    with torch.no_grad():
        memory, keep = model.encode(tokenize(seqs[:4]))
        assert keep is None and memory.shape[1] == max_len
        for row, seq in enumerate(seqs[:4]):
            ref_memory = ref.memory(seq)
            torch.testing.assert_close(memory[row:row + 1], ref_memory + ref.decoder.protein_encoder_pos_embed,
                                       atol=2e-5, rtol=1e-4)
            prefix = torch.tensor([[BOS, TASK, *expected[row][:-1]]])
            ours = model.decoder(prefix, model.decoder.memory_kv(memory[row:row + 1]), None)
            torch.testing.assert_close(ours, ref.decoder(ref_memory, prefix), atol=1e-4, rtol=1e-4)


def test_stored_rotary_frequencies_matter(imported):
    """HF ESM2 weights carry inv_freq rounded through fp16; recomputing it would drift."""
    ref, path = imported[1024]
    model = load_model(path)
    seq = random_sequences(1, 40, 40, seed=3)[0]
    with torch.no_grad():
        kept = model.encode(tokenize([seq]))[0]
        object.__setattr__(model.config.encoder, "rotary_inv_freq", None)
        recomputed = model.encode(tokenize([seq]))[0]
    want = ref.memory(seq) + ref.decoder.protein_encoder_pos_embed
    torch.testing.assert_close(kept, want, atol=2e-5, rtol=1e-4)
    assert (recomputed - want).abs().max() > 1e-4


def test_masked_memory_override_runs_and_drift_is_measurable(imported):
    ref, path = imported[1024]
    model = load_model(path)
    seqs = random_sequences(16, 5, 60, seed=11)
    padded = Screener(model, list(model.config.tasks)).predict(seqs)["stability"]
    fast = Screener(model, list(model.config.tasks), ScreenConfig(fast_memory=True)).predict(seqs)["stability"]
    assert all(isinstance(o, TaskResult) for o in padded + fast)
    with torch.no_grad():
        prompt = model.prompt(model.config.tasks[0], len(seqs), torch.device("cpu"))
        logits = {}
        for mode in ("padded", "masked"):
            mem, keep = model.encode(tokenize(seqs), mode)
            logits[mode] = model.decoder(prompt, model.decoder.memory_kv(mem), keep)[:, -1]
    drift = (logits["padded"] - logits["masked"]).abs().max().item()
    value_drift = max(abs(a.value - b.value) for a, b in zip(padded, fast))
    print(f"masked-memory drift: max |logit| {drift:.3g}, max |value| {value_drift:.3g}")
    assert drift > 1e-3  # not what the checkpoint was trained with: measurably different


def test_padded_memory_batches_by_full_width(imported):
    ref, path = imported[64]
    model = load_model(path)
    seqs = random_sequences(10, 3, 30, seed=4)
    records = list(records_from_sequences(seqs, ReadPolicy(max_residues=62)))
    sizes = {}
    for memory in (None, "masked"):
        seen: list[int] = []
        config = ScreenConfig(max_tokens=3 * 64, fast_memory=memory == "masked")
        list(Screener(model, list(model.config.tasks), config, memory_guard=lambda b: seen.append(len(b)))
             .screen(records))
        sizes[memory] = seen
    assert sizes[None] == [3, 3, 3, 1]  # every sequence costs 64 tokens when padded
    assert max(sizes["masked"]) > 3


def test_config_without_memory_field_loads_as_masked(imported, tmp_path):
    _, path = imported[64]
    copy = tmp_path / "old"
    shutil.copytree(path, copy)
    doc = json.loads((copy / "config.json").read_text())
    assert doc["memory"] == "padded"
    del doc["memory"]
    (copy / "config.json").write_text(json.dumps(doc))
    assert load_model(copy).config.memory_layout == "masked"


# ------------------------------------------------------------------ refusals

@pytest.fixture(scope="module")
def small_ref():
    return build_reference(64, False, seed=1)


def _import_error(tmp_path, ref, **kwargs) -> str:
    files = write_files(tmp_path / "published", ref, **kwargs)
    with pytest.raises(ModelError) as err:
        import_prot2token(*files, tmp_path / "model", None)
    assert not (tmp_path / "model").exists()
    return str(err.value)


def test_missing_tensor_is_named(tmp_path, small_ref):
    state = small_ref.published_state_dict()
    del state["decoder.decoder.layers.1.linear2.bias"]
    assert "decoder.decoder.layers.1.linear2.bias" in _import_error(tmp_path, small_ref, state=state)


def test_unexpected_tensor_is_named(tmp_path, small_ref):
    state = small_ref.published_state_dict()
    state["decoder.extra_head.weight"] = torch.zeros(3, 3)
    message = _import_error(tmp_path, small_ref, state=state)
    assert "unexpected decoder.extra_head.weight" in message


def test_wrong_shape_is_named(tmp_path, small_ref):
    state = small_ref.published_state_dict()
    state["decoder.decoder.layers.0.linear1.weight"] = torch.zeros(33, 16)
    message = _import_error(tmp_path, small_ref, state=state)
    assert "decoder.decoder.layers.0.linear1.weight" in message and "(33, 16)" in message


def test_pickled_code_is_refused_without_running_it(tmp_path, small_ref):
    message = _import_error(tmp_path, small_ref, extra={"configs": NeedsCode()})
    assert "needs pickled code" in message and "will not execute" in message
    assert "NeedsCode" in message


def test_corrupt_file_is_refused(tmp_path, small_ref):
    files = write_files(tmp_path / "published", small_ref)
    files[0].write_bytes(files[0].read_bytes()[:200])
    with pytest.raises(ModelError, match="cannot read Prot2Token checkpoint"):
        import_prot2token(*files, tmp_path / "model", None)


def test_unknown_tasks_are_listed_unless_skipped(tmp_path):
    ref = build_reference(64, False, seed=2, vocab_size=len(VOCAB) + 1)
    vocab = {**VOCAB, "<task_fold>": 15}
    files = write_files(tmp_path / "published", ref, vocab=vocab)
    with pytest.raises(ModelError, match="<task_fold>.*--skip-unknown-tasks"):
        import_prot2token(*files, tmp_path / "model", None)
    out = import_prot2token(*files, tmp_path / "model", "stab", skip_unknown_tasks=True)
    model = load_model(out)
    assert model.config.name == "stab" and [t.name for t in model.config.tasks] == ["stability"]
    assert model.metadata["imported_from"]["skipped_tasks"] == ["<task_fold>"]
    with pytest.raises(ModelError, match="already holds a model"):
        import_prot2token(*files, out, None, skip_unknown_tasks=True)


def test_unsupported_decoder_settings_are_refused(tmp_path, small_ref):
    ckpt, config, tok = write_files(tmp_path / "published", small_ref)
    doc = yaml.safe_load(config.read_text())
    doc["prot2token_model"]["decoder"]["activation_function"] = "relu"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelError, match="activation_function 'relu'"):
        import_prot2token(ckpt, config, tok, tmp_path / "model", None)



def test_bench_times_an_imported_model_with_and_without_fast_memory(imported):
    """`p2t bench` on an imported (padded-memory) model adds the --fast-memory row and its drift."""
    from typer.testing import CliRunner

    from p2t_screen.cli import app

    _, path = imported[64]
    result = CliRunner().invoke(app, ["bench", "--model", str(path), "--n", "12", "--min-len", "5",
                                      "--max-len", "60", "--naive-n", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "--fast-me" in result.output and "identical to the faithful padded memory" in result.output
    assert "naive and screen outputs identical on the naive sample: True" in result.output


def test_an_imported_checkpoint_is_calibrated_from_a_csv_and_screens_with_intervals(imported, tmp_path):
    """`p2t calibrate` on a Prot2Token-layout import: its stability task gains intervals and the
    model a domain index, from a CSV the user brings."""
    from p2t_screen.train.conformal import run_calibrate

    model_dir = tmp_path / "model"
    shutil.copytree(imported[64][1], model_dir)
    rng = random.Random(2)
    seqs = random_sequences(60, 8, 40, seed=9)
    csv = tmp_path / "stability.csv"
    csv.write_text("id,sequence,label,split\n" + "".join(
        f"s{i},{s},{rng.uniform(-1.5, 3.0):.3f},{'train' if i < 30 else 'calibration'}\n" for i, s in enumerate(seqs)))
    found = run_calibrate(str(model_dir), [f"stability={csv}"], device="cpu")
    assert found["tasks"]["stability"]["calibration"]["examples"] == 30
    assert found["tasks"]["stability"]["calibration"]["source"]["split"] == "calibration"
    model = load_model(model_dir)
    assert model.domain is not None and set(model.calibrations) == {"stability"}
    records = records_from_sequences([(f"q{i}", s) for i, s in enumerate(random_sequences(6, 8, 40, seed=4))],
                                     ReadPolicy(max_residues=62))
    rows = [r for b in Screener(model, list(model.config.tasks), ScreenConfig()).screen(records) for r in b.to_pylist()]
    assert rows and all(r["value_lo"] <= r["value"] <= r["value_hi"] for r in rows if r["status"] == "ok")
    assert all(r["in_domain"] is not None for r in rows if r["status"] == "ok")
