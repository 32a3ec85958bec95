"""Hostile input never crashes a screen or corrupts output: a clear error or a per-row status."""

from __future__ import annotations

import gzip
import random

import pyarrow.dataset as ds
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from p2t_screen.cli import EXIT_NO_RECORDS, EXIT_ROWS_NOT_OK, EXIT_USAGE, app
from p2t_screen.tasks.kind import KINDS
from p2t_screen.tasks.spec import TaskSpec
from p2t_screen.tasks.vocab import Vocab

runner = CliRunner()


def screen(tmp_path, model_dir, data: bytes, *extra: str):
    src = tmp_path / "lib.fasta"
    src.write_bytes(data)
    out = tmp_path / "out"
    result = runner.invoke(app, ["screen", str(src), "--model", str(model_dir), "-o", str(out),
                                 "--device", "cpu", "--tasks", "kingdom,ss3", *extra])
    return result, out


def test_binary_garbage_is_a_clear_usage_error(tmp_path, tiny_model_dir):
    result, out = screen(tmp_path, tiny_model_dir, bytes(random.Random(0).randrange(256) for _ in range(5000)))
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output
    assert not out.exists()


def test_truncated_gzip_is_a_clear_error(tmp_path, tiny_model_dir):
    data = gzip.compress(b">a\nMKTAYIAK\n" * 200)[:-40]
    result, _ = screen(tmp_path, tiny_model_dir, data, "--on-invalid", "skip")
    assert result.exit_code == EXIT_USAGE
    assert "truncated or corrupt" in " ".join(result.output.split())


def test_junk_records_become_rows_with_statuses(tmp_path, tiny_model_dir):
    data = (b">ok one\r\nMKTAYIAK\r\n\r\n>bin \xff\xfe header\nMK\x00TA\n>dup\nMKV\n>dup\nMKV\n"
            b">huge\n" + b"M" * 100_000 + b"\n>empty\n\n>\nACDE*\n")
    result, out = screen(tmp_path, tiny_model_dir, data, "--on-invalid", "skip")
    assert result.exit_code == EXIT_ROWS_NOT_OK, result.output
    rows = ds.dataset(out).to_table().sort_by([("input_index", "ascending"), ("task", "ascending")])
    status = {(r["input_index"], r["task"]): r for r in rows.to_pylist()}
    assert len(status) == 7 * 2
    assert status[(1, "kingdom")]["status"] == "invalid" and "\\x00" in status[(1, "kingdom")]["error"]
    assert "\ufffd" in status[(1, "kingdom")]["header"]
    huge = status[(4, "ss3")]
    assert huge["truncated"] and huge["length"] == 100_000 and len(huge["residue_labels"]) == 64
    assert status[(5, "ss3")]["status"] == "empty" and status[(6, "ss3")]["status"] == "ok"


def test_empty_and_blank_files_give_empty_datasets(tmp_path, tiny_model_dir):
    """An input with no records has its own exit code and message; the dataset is still readable."""
    for i, data in enumerate([b"", b"\n\n  \n"]):
        (tmp_path / str(i)).mkdir()
        result, out = screen(tmp_path / str(i), tiny_model_dir, data)
        assert result.exit_code == EXIT_NO_RECORDS, result.output
        assert "holds no FASTA records" in result.output
        assert ds.dataset(out).to_table().num_rows == 0


AA = "ACDEFGHIKLMNPQRSTVWY"
SPECS = [TaskSpec("r", "regression", value_range=(-2.0, 5.0)), TaskSpec("c", "class", labels=("x", "y", "z")),
         TaskSpec("m", "multilabel", labels=("a", "b", "c", "d")), TaskSpec("s", "sites", residues="STY"),
         TaskSpec("p", "sites"), TaskSpec("q", "per_residue", labels=("H", "E", "C"))]
VOCAB = Vocab.build([s.token for s in SPECS],
                    [t for s in SPECS for t in KINDS[s.kind].label_tokens(s, 40)])


@settings(max_examples=60, deadline=None)
@given(seqs=st.lists(st.text(AA, min_size=1, max_size=40), min_size=1, max_size=4),
       seed=st.integers(0, 2**31 - 1))
def test_any_path_through_a_grammar_parses(seqs, seed):
    """Random choices among the legal tokens always end in a parseable, valid output."""
    gen = torch.Generator().manual_seed(seed)
    for spec in SPECS:
        kind = KINDS[spec.kind]
        grammar = kind.grammar(spec, VOCAB, seqs, 60, torch.device("cpu"))
        out = [[] for _ in seqs]
        done = torch.zeros(len(seqs), dtype=torch.bool)
        for step in range(grammar.max_steps):
            allowed = grammar.allowed(step)
            assert allowed.any(dim=1).all()  # never a dead end
            scores = torch.rand(allowed.shape, generator=gen).masked_fill(~allowed, -1.0)
            token = torch.where(done, torch.zeros_like(done, dtype=torch.long), scores.argmax(1))
            grammar.advance(token)
            for i, t in enumerate(token.tolist()):
                if not done[i] and t != VOCAB.eos_id:
                    out[i].append(VOCAB.tokens[t])
            done |= token.eq(VOCAB.eos_id)
        assert done.all(), spec.name
        for seq, tokens in zip(seqs, out):
            res = kind.parse(spec, tokens, [0.5] * len(tokens), {lab: 1 / 3 for lab in spec.labels})
            if spec.kind == "sites":
                assert res.sites == sorted(set(res.sites)) and all(1 <= p <= len(seq) for p in res.sites)
                assert spec.residues is None or all(seq[p - 1] in spec.residues for p in res.sites)
            elif spec.kind == "per_residue":
                assert len(res.residue_labels) == len(seq)
            elif spec.kind == "regression":
                assert -2.0 - 1e-3 <= res.value <= 5.0 + 1e-3
            elif spec.kind == "multilabel":
                assert res.labels == [lab for lab in spec.labels if lab in res.labels]
