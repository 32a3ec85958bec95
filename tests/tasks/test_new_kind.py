"""A task kind defined here, in the test file only, trains, screens, evaluates and writes through
the unchanged library: adding a kind is adding one class."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from p2t_screen.io.schema import SCHEMA
from p2t_screen.model.store import load_model
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.tasks.grammar import class_grammar
from p2t_screen.tasks.kind import KINDS, TaskKind, register_kind
from p2t_screen.results.export import ExportRequest, Format, Layout, export
from p2t_screen.results.report import ReportRequest, write_report
from p2t_screen.tasks.metrics import class_metrics
from p2t_screen.tasks.readout import Chart, TaskSummary, WideColumn
from p2t_screen.tasks.spec import TaskResult
from p2t_screen.train.config import load_config
from p2t_screen.train.evaluate import run_eval
from p2t_screen.train.run import run_training

YES, NO = "<yes>", "<no>"


class YesNoKind(TaskKind):
    """A yes/no question about a protein, answered as a Python bool."""

    name = "yes_no"
    output_columns = ("label", "confidence")
    answer_column = "label"
    primary_metric = "accuracy"
    report_metrics = ("accuracy",)
    scalar = True

    def label_tokens(self, spec, max_residues):
        return [YES, NO]

    def encode(self, spec, label, protein):
        return [YES if label else NO]

    def grammar(self, spec, vocab, proteins, max_steps, device):
        return class_grammar(vocab, [YES, NO], len(proteins), device)

    def read_label(self, spec, text):
        word = str(text).strip().lower()
        if word not in ("yes", "no"):
            raise ValueError(f"expected yes or no, got {text!r}")
        return word == "yes"

    def parse(self, spec, tokens, probs, first_probs):
        return TaskResult(label="yes" if tokens[0] == YES else "no", confidence=probs[0])

    def answer(self, columns):
        return columns["label"] == "yes"

    def empty_answer(self, spec, protein):
        return None

    def score(self, spec, proteins, truth, preds):
        return class_metrics([str(t) for t in truth], [str(p) for p in preds])

    def baseline(self, spec, train, test):
        top = sum(label for _, label in train) * 2 >= len(train)
        return f"always {top}", self.score(spec, [], [lab for _, lab in test], [top] * len(test))

    def wide_columns(self, spec):
        return (WideColumn("", pa.string(), "yes or no"),)

    def wide_values(self, spec, row):
        return (row["label"],)

    def summary(self, spec):
        return YesShare(spec.name)


@dataclass
class YesShare(TaskSummary):
    yes: int = 0

    def add_answers(self, rows, sequences):
        self.yes += rows.column("label").to_pylist().count("yes")

    def headline(self):
        return f"yes {self.yes / self.rows:.0%}"

    def answer_charts(self):
        return [Chart(f"{self.task}: answers", "bars", ["yes", "no"], {"proteins": [self.yes, self.rows - self.yes]})]


@pytest.fixture
def yes_no():
    kind = register_kind(YesNoKind())
    yield kind
    del KINDS[kind.name]


CONFIG = """
name = "yes-no"
output = "model"
seed = 1
encoder = {num_layers = 1, embed_dim = 16, attention_heads = 2, max_residues = 40}
decoder = {dim = 16, num_layers = 1, num_heads = 2, ffn_dim = 32, memory_positions = 48}
train = {epochs = 4, lr = 3e-3, warmup = 5, max_tokens = 512}
tasks = [{name = "has_cys", kind = "yes_no", data = "cys.csv"}]
"""


def test_a_kind_defined_outside_the_library_trains_screens_evaluates_and_writes(tmp_path, yes_no):
    rng = random.Random(0)
    seqs = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(8, 30))) for _ in range(160)]
    rows = [f"p{i},{s},{'yes' if 'C' in s else 'no'},{'test' if i % 5 == 0 else 'train'}"
            for i, s in enumerate(seqs)]
    (tmp_path / "cys.csv").write_text("id,sequence,label,split\n" + "\n".join(rows) + "\n")
    (tmp_path / "t.toml").write_text(CONFIG)

    summary = run_training(load_config(tmp_path / "t.toml", base=tmp_path), torch.device("cpu"))
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    model = load_model(tmp_path / "model")
    assert model.config.task("has_cys").kind == "yes_no"

    (tmp_path / "lib.fasta").write_text(">a\nMKCW\n>b\nMKTW\n>c\n\n")
    result = screen_file(ScreenRequest(input=tmp_path / "lib.fasta", output=tmp_path / "out",
                                       model=str(tmp_path / "model"), device="cpu"))
    table = ds.dataset(tmp_path / "out").to_table().sort_by("input_index")
    assert table.schema.remove_metadata() == SCHEMA
    assert table.column("status").to_pylist() == ["ok", "ok", "empty"]
    assert set(table.column("label").to_pylist()[:2]) <= {"yes", "no"}
    assert result.status_counts == {"has_cys": {"ok": 2, "empty": 1}}
    wide = pq.read_table(export(ExportRequest(tmp_path / "out", Format.PARQUET, Layout.WIDE)).path).to_pylist()
    assert [(r["id"], r["status"]) for r in wide] == [("a", "ok"), ("b", "ok"), ("c", "empty")]
    assert wide[0]["has_cys"] == table.column("label")[0].as_py() and wide[2]["has_cys"] is None
    page = write_report(ReportRequest(tmp_path / "out")).path.read_text()
    assert "has_cys" in page and "yes_no" in page and "has_cys: answers" in page

    report = run_eval(str(tmp_path / "model"), [f"has_cys={tmp_path / 'cys.csv'}"], "test", True, "cpu", 512)
    entry = report["tasks"]["has_cys"]
    assert entry["kind"] == "yes_no" and entry["examples"] == 32
    assert 0.0 <= entry["metrics"]["accuracy"] <= 1.0 and entry["metrics"]["n"] == 32
    assert entry["baseline"]["name"].startswith("always")
