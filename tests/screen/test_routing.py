"""Tasks find their models: each requested task goes to an installed model that offers it, one run
screens every model it needs, and the rows say which model answered."""

from __future__ import annotations

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import tiny_model

from p2t_screen.errors import UsageError
from p2t_screen.io.schema import read_run_metadata
from p2t_screen.model.locations import user_models_dir
from p2t_screen.model.store import read_model_config, save_model
from p2t_screen.screen.pipeline import ScreenRequest, screen_file
from p2t_screen.screen.routing import route_tasks
from p2t_screen.tasks.spec import TaskSpec

ALPHA = [TaskSpec("stability", "regression", value_range=(-1.97, 3.4)),
         TaskSpec("kingdom", "class", labels=("archaea", "bacteria", "eukaryota"))]
BETA = [TaskSpec("fold", "class", labels=("a", "b", "c", "d")), TaskSpec("phospho", "sites", residues="STY"),
        TaskSpec("kingdom", "class", labels=("archaea", "bacteria", "eukaryota"))]
LIB = ">p1\nMKTAYIAKQRQISFVKSHFSRQ\n>p2\nMSTYKRNSTY\n>empty\n\n>p3\nGSHMLEDPVAAT\n"


@pytest.fixture
def installed():
    save_model(tiny_model(seed=1, tasks=ALPHA), user_models_dir() / "alpha")
    save_model(tiny_model(seed=2, tasks=BETA), user_models_dir() / "beta")


def screen(tmp_path, name, **kw):
    (tmp_path / "lib.fasta").write_text(LIB)
    summary = screen_file(ScreenRequest(input=tmp_path / "lib.fasta", output=tmp_path / name, device="cpu", **kw))
    return summary, ds.dataset(tmp_path / name).to_table().to_pylist()


def test_tasks_of_two_models_in_one_run_equal_each_model_alone(tmp_path, installed):
    summary, rows = screen(tmp_path, "both", tasks=("fold", "stability", "phospho"))
    assert [(r["input_index"], r["task"], r["model"]) for r in rows[:3]] == [
        (0, "fold", "beta"), (0, "stability", "alpha"), (0, "phospho", "beta")]
    assert summary.status_counts == {t: {"ok": 3, "empty": 1} for t in ("fold", "stability", "phospho")}
    _, alpha = screen(tmp_path, "alpha", tasks=("stability",), model="alpha")
    _, beta = screen(tmp_path, "beta", tasks=("fold", "phospho"), model="beta")
    alone = {(r["input_index"], r["task"]): r for r in alpha + beta}
    for r in rows:
        ref = alone[(r["input_index"], r["task"])]
        assert (r["value"], r["label"], r["sites"], r["status"]) == (ref["value"], ref["label"], ref["sites"], ref["status"])
    meta = read_run_metadata(pq.read_schema(next((tmp_path / "both").glob("part-*.parquet"))))
    assert [(m["path"].split("/")[-1], m["tasks"]) for m in meta["models"]] == [
        ("beta", ["fold", "phospho"]), ("alpha", ["stability"])]


def test_an_ambiguous_task_names_the_candidates_and_how_to_choose(installed):
    with pytest.raises(UsageError, match=r"'kingdom' is offered by several installed models \(alpha, beta\).*--model"):
        route_tasks(["kingdom"], None)
    [(path, _, names)] = route_tasks(["kingdom"], "beta")  # --model wins
    assert path.name == "beta" and names == ["kingdom"]


def test_a_task_no_model_offers_names_the_pull_that_provides_it(installed):
    with pytest.raises(UsageError, match="no installed model offers task 'melting_temperature'; "
                                         "`p2t pull prot2token-melting-temperature` provides it"):
        route_tasks(["stability", "melting_temperature"], None)


def test_the_default_model_keeps_the_tasks_it_offers(installed):
    # A task the default model offers, offered by another installed model too: not ambiguous.
    offered = read_model_config(None).tasks[0]
    save_model(tiny_model(seed=3, tasks=[offered]), user_models_dir() / "gamma")
    routes = route_tasks([offered.name, "stability"], None)
    assert [(p.name, names) for p, _, names in routes] == [("p2t-default", [offered.name]), ("alpha", ["stability"])]
