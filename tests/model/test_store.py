"""Model directories: exact round trips, loud failures, never random weights."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file

from p2t_screen.errors import ModelError, UsageError
from p2t_screen.model.store import DEFAULT_MODEL, bundled_models, load_model, read_model_config, save_model
from p2t_screen.screen.screener import Screener

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTYKRN", "GGGSSSTTTYYY"]


def test_saved_model_predicts_exactly_like_the_original(tiny_model_dir):
    original = tiny_model()
    loaded = load_model(tiny_model_dir)
    a = Screener(original, list(original.config.tasks)).predict(SEQS)
    b = Screener(loaded, list(loaded.config.tasks)).predict(SEQS)
    assert a == b
    assert len(loaded.checksum) == 64


def test_model_with_encoder_from_a_fair_esm_checkpoint(tmp_path, esm_checkpoint):
    model = tiny_model(source=str(esm_checkpoint))
    from p2t_screen.model.esm_io import load_esm2

    _, encoder = load_esm2(str(esm_checkpoint))
    model.encoder.load_state_dict(encoder.state_dict())
    save_model(model, tmp_path / "m")
    assert not (tmp_path / "m" / "encoder.safetensors").exists()  # referenced, not copied
    loaded = load_model(tmp_path / "m")
    for key, value in encoder.state_dict().items():
        if key.startswith("contact_head."):  # unused by p2t, not loaded
            continue
        torch.testing.assert_close(loaded.encoder.state_dict()[key], value)


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_decoder_tensor_is_named(tmp_path, tiny_model_dir):
    path = copy_model(tiny_model_dir, tmp_path / "m")
    state = load_file(str(path / "decoder.safetensors"))
    del state["layers.1.linear1.weight"]
    save_file(state, str(path / "decoder.safetensors"))
    with pytest.raises(ModelError, match=r"missing \['layers.1.linear1.weight'\]"):
        load_model(path)


def test_missing_encoder_tensor_is_named(tmp_path, tiny_model_dir):
    path = copy_model(tiny_model_dir, tmp_path / "m")
    state = load_file(str(path / "encoder.safetensors"))
    del state["layers.0.fc2.bias"]
    save_file(state, str(path / "encoder.safetensors"))
    with pytest.raises(ModelError, match=r"layers.0.fc2.bias"):
        load_model(path)


def test_missing_weight_file_and_bad_config_fail_clearly(tmp_path, tiny_model_dir):
    path = copy_model(tiny_model_dir, tmp_path / "m")
    (path / "decoder.safetensors").unlink()
    with pytest.raises(ModelError, match="model file missing"):
        load_model(path)
    path = copy_model(tiny_model_dir, tmp_path / "m2")
    doc = json.loads((path / "config.json").read_text())
    doc["decoder"]["dim"] = 48
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="wrong shape|invalid model config"):
        load_model(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(path)
    with pytest.raises(ModelError, match="no p2t model"):
        load_model(tmp_path / "nowhere")


def test_unknown_task_is_a_usage_error_listing_the_tasks(tiny_model_dir):
    config = read_model_config(tiny_model_dir)
    with pytest.raises(UsageError, match="has no task 'stabilty'; it has: stability, kingdom"):
        config.select_tasks(["stabilty"])
    assert [t.name for t in config.select_tasks(["all"])] == [t.name for t in config.tasks]
    assert [t.name for t in config.select_tasks(["ss3", "ss3", "kingdom"])] == ["ss3", "kingdom"]


def test_the_default_model_is_bundled():
    assert DEFAULT_MODEL in [p.name for p in bundled_models()]


@pytest.mark.parametrize("path", bundled_models(), ids=lambda p: p.name)
def test_bundled_model_screens_the_example_library(path):
    """Every bundled model loads (weights match its config), has a model card, and gives a
    well-formed answer for every task on real library proteins."""
    from p2t_screen.io.fasta import read_fasta
    from p2t_screen.io.records import ReadPolicy

    model = load_model(path)
    assert (path / "MODEL_CARD.md").is_file()
    records = list(read_fasta(Path(__file__).parents[2] / "examples" / "library.fasta",
                              ReadPolicy()))[:4]
    seqs = [r.sequence for r in records]
    out = Screener(model, list(model.config.tasks)).predict(seqs)
    for spec in model.config.tasks:
        for seq, result in zip(seqs, out[spec.name], strict=True):
            if spec.kind == "per_residue":
                assert len(result.residue_labels) == len(seq)
                assert set(result.residue_labels) <= set(spec.labels)
            elif spec.kind == "sites":
                assert result.sites == sorted(set(result.sites))
                assert all(1 <= p <= len(seq) for p in result.sites)
            elif spec.kind == "class":
                assert result.label in spec.labels
            elif spec.kind == "multilabel":
                assert set(result.labels) <= set(spec.labels)
            else:
                assert spec.value_range[0] <= result.value <= spec.value_range[1]


def test_saving_over_a_model_is_atomic_and_keeps_its_card(tmp_path, monkeypatch):
    """A save that fails part-way leaves the previous model whole; a save that succeeds replaces
    the weights and keeps files that are not model files (a model card)."""
    from p2t_screen.model import store

    path = save_model(tiny_model(seed=1), tmp_path / "m")
    (path / "MODEL_CARD.md").write_text("card\n")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    calls = []

    def failing(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(store, "save_file", failing)
    with pytest.raises(OSError, match="No space left"):
        save_model(tiny_model(seed=2), path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left behind
    monkeypatch.undo()
    save_model(tiny_model(seed=2), path)
    assert (path / "MODEL_CARD.md").read_text() == "card\n"
    assert (path / "decoder.safetensors").read_bytes() != before["decoder.safetensors"]
    reloaded = Screener(load_model(path), list(tiny_model().config.tasks)).predict(SEQS)
    fresh = Screener(tiny_model(seed=2), list(tiny_model().config.tasks)).predict(SEQS)
    assert [r.value for r in reloaded["stability"]] == [r.value for r in fresh["stability"]]


def test_save_without_replace_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not empty"):
        save_model(tiny_model(), tmp_path / "m", replace=False)
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("change, message", [
    (lambda d: [d], "expected a JSON object, got list"),
    (lambda d: {**d, "encoder": {**d["encoder"], "num_layers": "four"}}, "num_layers must be a whole number, got 'four'"),
    (lambda d: {**d, "encoder": {**d["encoder"], "attention_heads": 0}}, "attention_heads must be positive, got 0"),
    (lambda d: {**d, "decoder": {**d["decoder"], "ffn_dim": -3}}, "ffn_dim must be positive, got -3"),
    (lambda d: {**d, "encoder": {**d["encoder"], "embed_dim": 10**9}}, "embed_dim = 1000000000 is beyond"),
    (lambda d: {**d, "decoder": {**d["decoder"], "max_len": 10**9}}, "max_len = 1000000000 is beyond"),
    (lambda d: {**d, "decoder": {**d["decoder"], "dim": "32"}}, "dim must be a whole number, got '32'"),
    (lambda d: {**d, "encoder": {**d["encoder"], "num_layers": 400, "embed_dim": 16384, "attention_heads": 16}},
     "beyond p2t's sanity limit of 100B"),
])
def test_model_configs_are_checked_before_anything_is_allocated(tmp_path, tiny_model_dir, change, message):
    path = tmp_path / "m"
    shutil.copytree(tiny_model_dir, path)
    doc = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(change(doc)))
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model(path)


def test_a_relative_encoder_path_is_the_model_directorys_own_and_stays_inside(tmp_path, esm_checkpoint,
                                                                              monkeypatch):
    from p2t_screen.model.encoder import EncoderConfig
    from p2t_screen.model.model import create_model
    from p2t_screen.tasks.spec import TaskSpec

    folder = tmp_path / "m"
    (folder / "weights").mkdir(parents=True)
    shutil.copy(esm_checkpoint, folder / "weights" / "enc.pt")
    shutil.copy(esm_checkpoint.with_name(esm_checkpoint.stem + "-contact-regression.pt"), folder / "weights")
    enc = EncoderConfig(source="weights/enc.pt", num_layers=2, embed_dim=32, attention_heads=4)
    save_model(create_model("rel", enc, [TaskSpec("k", "class", labels=("a", "b"))], dim=16, num_layers=1,
                            num_heads=2, ffn_dim=32), folder)
    monkeypatch.chdir(tmp_path / "weights" if (tmp_path / "weights").exists() else tmp_path)  # not the model dir
    assert load_model(folder).config.encoder.source == "weights/enc.pt"
    doc = json.loads((folder / "config.json").read_text())
    doc["encoder"]["source"] = "../outside.pt"
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="points outside the model directory"):
        load_model(folder)
