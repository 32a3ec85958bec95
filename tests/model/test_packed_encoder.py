"""The packed encoder (real tokens only, jagged attention) equals the padded one, and a screen
on it gives the same answers."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TINY_ENCODER, tiny_model

from p2t_screen.model.encoder import EncoderConfig, esm2_forward, esm2_forward_packed, tokenize
from p2t_screen.screen.screener import ScreenConfig, Screener
from p2t_screen.tasks.inputs import ModelInput

pytestmark = pytest.mark.usefixtures("one_thread")


def sequences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(3, 40))) for _ in range(n)]


@torch.inference_mode()
def test_packed_forward_equals_padded_at_every_real_position():
    torch.manual_seed(2)
    encoder = EncoderConfig(source="x", **TINY_ENCODER).build().eval()
    tokens = tokenize(sequences(6, seed=1))
    tokens[1, 3] = encoder.mask_idx  # token dropout rescales per protein: packed must too
    keep = tokens.ne(encoder.padding_idx)
    padded, packed = esm2_forward(encoder, tokens), esm2_forward_packed(encoder, tokens)
    assert not keep.all()  # the batch really has padding
    torch.testing.assert_close(packed[keep], padded[keep], atol=1e-5, rtol=1e-5)
    assert packed[~keep].abs().max() == 0


def test_screen_on_the_packed_encoder_gives_the_padded_answers():
    model = tiny_model(seed=5, pooled_memory=True, residue_skip=True)
    items = [ModelInput(s) for s in sequences(7, seed=2)]
    padded = Screener(model, list(model.config.tasks), ScreenConfig(packed_encoder=False)).predict(items)
    packed = Screener(model, list(model.config.tasks), ScreenConfig(packed_encoder=True)).predict(items)
    for name in padded:
        for a, b in zip(packed[name], padded[name]):
            assert (a.value, a.label, a.labels, a.sites, a.residue_labels) == \
                (b.value, b.label, b.labels, b.sites, b.residue_labels), name
            assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
