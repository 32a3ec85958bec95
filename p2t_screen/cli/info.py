"""`p2t tasks`, `p2t models`, `p2t columns`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import P2TError, P2TWarning
from ..io.schema import COLUMN_DOCS
from ..model.locations import DEFAULT_MODEL, installed_models, resolve_model_path, where_looked
from .app import app
from .common import LIST_EXIT_CODES, fail, print_entries


@app.command("tasks", epilog=LIST_EXIT_CODES)
def tasks_cmd(
    model: Annotated[Optional[str], typer.Option(help="list this model's tasks instead of the catalog")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The task catalog (or a model's tasks): name, kind, input, output columns."""
    from ..model.store import read_model_config
    from ..tasks.catalog import CATALOG

    try:
        specs = list(read_model_config(model).tasks) if model else list(CATALOG.values())
    except P2TError as exc:
        raise fail(exc) from None
    inputs = {"protein": "protein", "pair": "protein + partner (--partner)",
              "ligand": "protein + ligand (--ligand/--ligands)"}
    rows = [{"name": s.name, "kind": s.kind, "input": inputs[s.inputs], "token": s.token,
             "columns": list(s.task_kind.output_columns), "description": s.description,
             **({"encoding": s.encoding, "threshold": s.decision_threshold} if s.encoding else {})}
            for s in specs]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    listed = [(r["name"], [
        ("kind", r["kind"] + (f" ({r['encoding']}, threshold {r['threshold']:.2f})" if "encoding" in r else "")),
        ("input", r["input"]), ("columns", ", ".join(r["columns"])), ("about", r["description"])]) for r in rows]
    print_entries("tasks" if not model else f"tasks of {model}", listed)


@app.command("models", epilog=LIST_EXIT_CODES)
def models_cmd(
    paths: Annotated[Optional[list[str]], typer.Argument(help="model directories to describe as well")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Installed models (bundled, user, P2T_MODELS_DIR) and any paths given: encoder, size, tasks.
    Exits 2, saying where it looked, when there are none."""
    from ..model.store import describe_model

    found = [(m.path, m.origin) for m in installed_models()] + [(Path(p), "given") for p in paths or []]
    if not found:
        raise fail(f"no p2t models found; looked in: {where_looked()}. Install one with `p2t pull NAME` "
                   "(`p2t pull --list` shows them) or set P2T_MODELS_DIR")
    rows = []
    for path, origin in found:
        try:
            rows.append({**describe_model(resolve_model_path(path)), "origin": origin,
                         "default": path.name == DEFAULT_MODEL and origin != "given"})
        except P2TError as exc:
            if origin == "given":
                raise fail(exc) from None
            warnings.warn(f"installed model {path} ({origin}) skipped: {exc}", P2TWarning, stacklevel=1)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    listed = [(r["name"] + (" (default)" if r["default"] else ""), [
        ("origin", r["origin"]), ("encoder", f"{r['encoder']}, {r['parameters'] / 1e6:.1f}M parameters in all"),
        ("tasks", ", ".join(r["tasks"])),
        ("trust", f"calibrated: {', '.join(r['calibrated']) or 'none'}; domain index: "
                  f"{'yes' if r['domain_index'] else 'no'}"),
        ("path", r["path"])]) for r in rows]
    print_entries("models", listed)


@app.command("columns", epilog="Exit codes: 0 listed; 1 internal error.")
def columns_cmd() -> None:
    """The output columns and what they hold."""
    print_entries("output columns (one row per record and task)", [(name, [("", doc)]) for name, doc in COLUMN_DOCS.items()])
