"""The model card's verdict part: each task's margin over the better of its two baselines, the
table rows, and withdrawing the offered tasks that do not clear the bar (`--withdraw`)."""

from __future__ import annotations

from pathlib import Path

from card_calibration import number

from p2t_screen.tasks.kind import KINDS
from p2t_screen.train.thresholds import withdraw_tasks

MARGIN = 0.02  # how far above the better baseline "beats both" means


def verdict(r: dict) -> tuple[float, str]:
    """(margin, verdict): the model's primary metric minus the better baseline's."""
    primary = KINDS[r["kind"]].primary_metric
    scores = [r["baseline"]["metrics"]] + ([r["classical"]["metrics"]] if r.get("classical") else [])
    best = max(m.get(primary) or 0.0 for m in scores)
    margin = (r["model"].get(primary) or 0.0) - best
    if margin > MARGIN:
        return margin, "yes"
    return margin, "**no**: below" if margin < 0 else f"**no**: within {MARGIN}"


def metrics_text(keys: tuple[str, ...], found: dict | None) -> str:
    if found is None:
        return "none for this kind"
    m = found.get("metrics", found)
    text = ", ".join(f"{k} {number(m.get(k))}" for k in keys if k in m)
    return f"{found['name']}: {text}" if "name" in found else text


def task_rows(results: dict) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Table rows of offered and auxiliary tasks, and offered task names by verdict."""
    rows, aux_rows, verdicts = [], [], {}
    for task, r in results.items():
        keys = KINDS[r["kind"]].report_metrics
        margin, says = verdict(r)
        offered = not (r.get("auxiliary") or r.get("withdrawn"))
        if offered:
            verdicts.setdefault(says.split(":")[0].strip("*"), []).append(task)
        (rows if offered else aux_rows).append(
            f"| {task} | {r['kind']} | {r['test_examples']} | {metrics_text(keys, r['model'])} | "
            f"{metrics_text(keys, r['baseline'])} | {metrics_text(keys, r.get('classical'))} | "
            f"{margin:+.3f} {KINDS[r['kind']].primary_metric} | {says} |")
    return rows, aux_rows, verdicts


def aux_section(aux_rows: list[str], results: dict) -> str:
    """Tasks trained but not offered (auxiliary in the config, or withdrawn after measuring)."""
    if not aux_rows:
        return ""
    names = lambda key: ", ".join(f"`{t}`" for t, r in results.items() if r.get(key)) or "none"  # noqa: E731
    return (f"""
Trained but not offered: their data shaped the shared weights, but the saved model has no spec
for them, so `p2t screen` cannot run them. Auxiliary from the start (`auxiliary = true` in the
config): {names("auxiliary")}. Withdrawn after this measurement because they did not beat both
baselines by more than {MARGIN} (`tools/model_card.py --withdraw`; the spec is kept in the
training record, `withdrawn` in `config.json`): {names("withdrawn")}. Scored here with their spec
put back:

| task | kind | test n | model | trivial baseline | classical baseline | margin | beats both |
|---|---|---|---|---|---|---|---|
""" + "\n".join(aux_rows) + "\n")


def withdraw_failing(model_dir: Path, results: dict) -> None:
    """Take every offered task whose verdict is not "yes" out of the saved model (`withdraw_tasks`)."""
    failing = {}
    for task, r in results.items():
        margin, says = verdict(r)
        if not (r.get("auxiliary") or r.get("withdrawn")) and says != "yes":
            failing[task] = (f"{margin:+.3f} {KINDS[r['kind']].primary_metric} against the better baseline "
                             f"on {r['test_examples']} test examples ({says.strip('*')})")
            r["withdrawn"] = True
    if failing:
        withdraw_tasks(model_dir, failing)
        print("withdrawn:", ", ".join(failing), flush=True)
