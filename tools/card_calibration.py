"""The model card's calibration part: test-split calibration of each task's reported
probabilities at temperature 1 and at the task's fitted temperature (`p2t_screen.train.calibration`)."""

from __future__ import annotations

import math
from dataclasses import replace

from p2t_screen.train.calibration import calibration
from p2t_screen.train.evaluate import answers, predict_columns, score

# What each kind's reported probabilities state (TaskKind.reported_events), for the card's reader.
EVENTS = {"class": "`confidence`: the chosen class is right",
          "multilabel": "each `label_probs` entry: the protein has that label",
          "per_residue": "each `residue_probs` entry: that residue's label is right",
          "sites": "each `site_probs` entry: that position is a true site"}


def measure_task(model, spec, test) -> tuple[dict, dict | None]:
    """(metrics, calibration) on the test examples: metrics from the model's own spec; the
    calibration at temperature 1 ("before") and at the spec's temperature ("after"), checking
    that the choices are the same at both."""
    columns = predict_columns(model, spec, test)
    metrics = score(spec, test, answers(spec, test, columns))
    if spec.temperature is None:
        found = calibration(spec, test, columns)
        return metrics, found and {"temperature": None, "before": found, "after": None}
    plain = predict_columns(model, replace(spec, temperature=None), test)
    same = answers(spec, test, plain) == answers(spec, test, columns)
    return metrics, {"temperature": spec.temperature, "before": calibration(spec, test, plain),
                     "after": calibration(spec, test, columns), "choices_unchanged": same}


def number(v: float | None) -> str:
    """A card figure: 3 decimals, "-" for none or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _bins(found: dict | None) -> list[str]:
    return [f"{b['n']}: {number(b['confidence'])} / {number(b['accuracy'])}" if b["n"] else "0"
            for b in found["bins"]] if found else ["-"] * 10


def calibration_section(results: dict, fits: dict, poor: float = 0.0) -> str:
    """Markdown: ECE before and after per task, then the 10-bin reliability tables; `poor`: the
    validation ECE at T = 1 at or below which no temperature was fitted."""
    rows, tables = [], []
    for task, r in results.items():
        c = r.get("calibration")
        if not c:
            continue
        after = c["after"]
        fit = fits.get(task, {})
        rows.append(f"| {task} | {EVENTS.get(r['kind'], r['kind'])} | {c['before']['events']} | "
                    f"{number(c['before']['ece'])} | {number(c['temperature'])} | {number(after and after['ece'])} | "
                    f"{number(fit.get('validation_ece_before'))} -> {number(fit.get('validation_ece_after'))} | "
                    f"{'yes' if c.get('choices_unchanged', True) else '**no**'} |")
        for name, found in (("T = 1", c["before"]), (f"T = {number(c['temperature'])}", after)):
            if found:
                tables.append(f"| {task} | {name} | " + " | ".join(_bins(found)) + " |")
    if not rows:
        return ""
    head = " | ".join(f"{b / 10:.1f}-{(b + 1) / 10:.1f}" for b in range(10))
    return f"""
## Calibration of the reported probabilities
Each task's reported probabilities against how often the events they state come true, on its
test split: the expected calibration error (ECE, 10 equal-width bins; 0 is perfect). A per-task
temperature T divides the logits behind the reported probabilities only (the choices, and so
every metric above, are the same; checked on the test split); it was fitted on the validation
split (`tools/model_card.py --calibrate`: the T with the lowest log-loss of the reported
probabilities, found by screening the validation examples at each trial T), only where the
validation ECE at T = 1 is above {poor:g} (elsewhere T stays 1), and is stored in the task's spec
(`temperature` in `config.json`). A flags task's decision threshold still acts on
the untempered probability.

| task | reported probability: event | test events | test ECE at T = 1 | T | test ECE at T | validation ECE (T = 1 -> T) | choices unchanged |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Reliability on the test split: per bin of reported probability, "events: mean probability / share that came true".

| task | temperature | {head} |
|---|---|{'---|' * 10}
{chr(10).join(tables)}
"""
