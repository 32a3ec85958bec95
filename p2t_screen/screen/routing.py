"""Which model answers which task: `--model` when given; otherwise each requested task goes to an
installed model that offers it (the default model first), so `p2t screen --tasks stability,binding`
runs every model it needs."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError, UsageError
from ..model.config import ModelConfig
from ..model.locations import DEFAULT_MODEL, installed_models, resolve_model_path
from ..model.remote import providers
from ..model.store import read_model_config


def route_tasks(names: list[str], model: str | None) -> list[tuple[Path, ModelConfig, list[str]]]:
    """(model directory, its config, the task names it answers), in the order the tasks were asked.

    With `model`, or with no task names (or 'all'), one model answers every task: the given one or
    the default. Otherwise a task offered by the default model stays with it; a task offered by
    exactly one other installed model goes there; several candidates, or none, are a UsageError that
    says how to choose or which `p2t pull` provides the task."""
    if model is not None or not names or names == ["all"]:
        path = resolve_model_path(model)
        return [(path, read_model_config(path), names or ["all"])]
    offers = _offers()
    routes: dict[Path, list[str]] = {}
    for name in dict.fromkeys(names):
        routes.setdefault(_choose(name, offers), []).append(name)
    return [(path, offers[path], tasks) for path, tasks in routes.items()]


def _offers() -> dict[Path, ModelConfig]:
    found = {}
    for m in installed_models():
        try:
            found[m.path] = read_model_config(m.path)
        except ModelError:
            continue  # an unreadable model offers nothing; naming it explicitly shows why
    return found


def _choose(task: str, offers: dict[Path, ModelConfig]) -> Path:
    candidates = [p for p, cfg in offers.items() if task in {t.name for t in cfg.tasks}]
    default = [p for p in candidates if p.name == DEFAULT_MODEL]
    if default:
        return default[0]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise UsageError(f"task '{task}' is offered by several installed models ({names}): choose one with "
                         f"--model NAME, or run one screen per model")
    pulls = [p.name for p in providers(task)]
    hint = (f"`p2t pull {pulls[0]}` provides it" if pulls else "`p2t pull --list` shows what can be installed")
    raise UsageError(f"no installed model offers task '{task}'; {hint} (installed: "
                     f"{', '.join(p.name for p in offers) or 'none'})")
