"""ESM2 encoders: the fast forward equals fair-esm's, and every loading path fails clearly."""

from __future__ import annotations

import esm
import pytest
import torch
from conftest import TINY_ENCODER

from p2t_screen.errors import ModelError
from p2t_screen.model.encoder import EncoderConfig, esm2_forward, tokenize
from p2t_screen.model.esm_io import hub_checkpoint_path, load_esm2, read_esm_checkpoint


def test_tokenize_matches_fair_esm_batch_converter():
    seqs = ["MKTAYIAK", "ACDXBUZO", "M"]
    _, _, expected = esm.Alphabet.from_architecture("ESM-1b").get_batch_converter()(
        [(str(i), s) for i, s in enumerate(seqs)])
    assert torch.equal(tokenize(seqs), expected)


def test_fast_forward_matches_fair_esm_with_padding():
    torch.manual_seed(0)
    model = EncoderConfig(source="x", **TINY_ENCODER).build().eval()
    tokens = tokenize(["MKTAYIAKQRQISFVKSHFSRQ", "MSTY", "ACDEFGHIKLMNPQ"])
    with torch.no_grad():
        ours = esm2_forward(model, tokens)
        theirs = model(tokens, repr_layers=[model.num_layers])["representations"][model.num_layers]
    real = tokens.ne(model.padding_idx)
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)


def test_fast_forward_ignores_padding():
    torch.manual_seed(0)
    model = EncoderConfig(source="x", **TINY_ENCODER).build().eval()
    with torch.no_grad():
        alone = esm2_forward(model, tokenize(["MSTY"]))
        padded = esm2_forward(model, tokenize(["MSTY", "MKTAYIAKQRQISFVKSH"]))
    torch.testing.assert_close(padded[0, :6], alone[0], atol=1e-5, rtol=1e-4)


def test_checkpoint_in_fair_esm_layout_loads_with_fair_esm_and_with_p2t(esm_checkpoint):
    fair_model, _ = esm.pretrained.load_model_and_alphabet_core(
        "esm2_tiny", *_fair_esm_files(esm_checkpoint))
    config, ours = load_esm2(str(esm_checkpoint))
    assert (config.num_layers, config.embed_dim, config.attention_heads) == (2, 32, 4)
    for key, value in fair_model.state_dict().items():
        if key.startswith("contact_head."):  # p2t never uses the contact head
            continue
        torch.testing.assert_close(ours.state_dict()[key], value)


def _fair_esm_files(path):
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        model_data = torch.load(path, weights_only=True)
        regression = torch.load(path.with_name(path.stem + "-contact-regression.pt"), weights_only=True)
    return model_data, regression


def test_missing_hub_weights_name_the_file_and_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError) as err:
        load_esm2("esm2_t33_650M_UR50D")
    message = str(err.value)
    assert str(hub_checkpoint_path("esm2_t33_650M_UR50D")) in message
    assert f"TORCH_HOME={tmp_path}" in message


def test_hub_cache_is_used_when_present(tmp_path, monkeypatch, esm_checkpoint):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = hub_checkpoint_path("esm2_t2_tiny")
    target.parent.mkdir(parents=True)
    target.write_bytes(esm_checkpoint.read_bytes())
    config, _ = load_esm2("esm2_t2_tiny")
    assert config.num_layers == 2


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path, esm_checkpoint):
    with pytest.raises(ModelError, match="not found"):
        load_esm2(str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read ESM2 checkpoint"):
        load_esm2(str(bad))
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": {}}, wrong)
    with pytest.raises(ModelError, match="not a fair-esm ESM2 checkpoint"):
        load_esm2(str(wrong))


def test_missing_and_unexpected_keys_are_named(tmp_path, esm_checkpoint):
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(esm_checkpoint, weights_only=True)
    del data["model"]["encoder.sentence_encoder.layers.1.fc1.weight"]
    data["model"]["encoder.sentence_encoder.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "esm2_broken.pt"
    torch.save(data, broken)
    with pytest.raises(ModelError) as err:
        load_esm2(str(broken))
    assert "layers.1.fc1.weight" in str(err.value) and "extra.weight" in str(err.value)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"cfg": Evil(), "model": {}}, path)
    with pytest.raises(ModelError, match="cannot read"):
        read_esm_checkpoint(path)
