"""The bench's utilisation figures: FLOPs per residue, and the device's dense peak by name."""

from __future__ import annotations

import pytest
import torch

from p2t_screen.bench import shapes
from p2t_screen.bench.shapes import encoder_flops_per_residue, peak_flops, utilisation_note
from tests.conftest import tiny_model

CUDA = torch.device("cuda")


@pytest.mark.parametrize("name, tflops", [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0),
                                          ("NVIDIA H100 PCIe", 756.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                          ("NVIDIA L40S", 362.0), ("Mystery Accelerator 9000", None)])
def test_the_peak_is_looked_up_by_device_name(monkeypatch, name, tflops):
    monkeypatch.setattr(shapes.torch.cuda, "get_device_name", lambda _=None: name)
    assert peak_flops(CUDA) == (None if tflops is None else tflops * 1e12)
    assert peak_flops(torch.device("cpu")) is None


def test_flops_per_residue_follow_the_esm2_shape():
    # ESM2-650M at 300 residues: 33 x (24 x 1280^2 + 4 x 302 x 1280) = 1.35 GFLOP per residue
    assert encoder_flops_per_residue(33, 1280, 302) == pytest.approx(1.3486e9, rel=1e-3)


def test_the_note_gives_utilisation_only_where_a_peak_applies(monkeypatch):
    model = tiny_model()
    flops = encoder_flops_per_residue(2, 32, 102) * 1000
    assert "no utilisation figure off CUDA" in utilisation_note(model, 1000, 10, 1.0, "screen", torch.device("cpu"))
    monkeypatch.setattr(shapes.torch.cuda, "get_device_name", lambda _=None: "NVIDIA H200")
    assert "peaks are bf16/fp16; this ran in torch.float32" in utilisation_note(model, 1000, 10, 1.0, "screen", CUDA)
    note = utilisation_note(model.to(torch.bfloat16), 1000, 10, 1.0, "screen", CUDA)
    assert f"{flops / 1e12 / 989:.1%} of the 989 TFLOP/s" in note and "1,000 residues/s" in note
    monkeypatch.setattr(shapes.torch.cuda, "get_device_name", lambda _=None: "Mystery Accelerator 9000")
    assert "no known peak for Mystery Accelerator 9000" in utilisation_note(model.to(torch.bfloat16), 1000, 10, 1.0,
                                                                           "screen", CUDA)
