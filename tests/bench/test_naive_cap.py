"""The naive reference path is capped by time: it stops after the sequence that passes the cap,
times the sequences it did, and says so; without a cap it does them all."""

from __future__ import annotations

import pytest
from conftest import tiny_model

from p2t_screen.bench.screen import time_naive

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_capped_naive_path_times_the_sequences_it_did_and_says_so():
    model = tiny_model()
    spec = [t for t in model.config.tasks if t.name == "kingdom"]
    seqs = ["MKTAYIAKQR", "MSTNPKPQRKTK", "MAHHHHHHVDE"]
    lines = []
    timing, outputs = time_naive(model, seqs, spec, cap=1e-9, log=lines.append)
    assert timing.sequences == len(outputs) == 1 and timing.residues == len(seqs[0])
    assert any("capped" in line and "1 of 3" in line for line in lines)
    whole, every = time_naive(model, seqs, spec, cap=0.0)
    assert whole.sequences == 3 and every[0] == outputs[0]
