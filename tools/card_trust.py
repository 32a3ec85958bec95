"""The model card's trust section: what the model's conformal calibration and domain index are,
and how they fared on the held-out test splits, written into MODEL_CARD.md between markers
(replaced on every run, the rest of the card untouched).

    p2t calibrate models/p2t-default TASK=FILE ...      # first: calibration.json, domain.safetensors
    python tools/card_trust.py examples/train.toml models/p2t-default

Coverage comes from `p2t eval` (`p2t_screen.train.conformal.coverage_report`): each task's test
split screened once, its answers made at every stored level, compared with the truth, overall
and split by `in_domain`. The figures are also written to `<model>/coverage_test.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from p2t_screen.model.store import load_model
from p2t_screen.train.config import load_config
from p2t_screen.train.conformal import coverage_report, predict_results
from p2t_screen.train.run import load_labelled
from p2t_screen.trust.store import read_calibration

BEGIN, END = "<!-- trust:begin -->", "<!-- trust:end -->"
TOLERANCE = 0.02  # the card says whether each coverage is within 2 points of nominal


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, help="the training config naming each task's data file")
    p.add_argument("model", type=Path)
    p.add_argument("--split", default="test")
    return p


def pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def num(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def measure(cfg, model, split: str) -> dict:
    """Each calibrated task's coverage report on `split`, with the time it took."""
    out = {}
    for entry in cfg.tasks:
        name = entry.spec.name
        found = model.calibrations.get(name)
        specs = {s.name: s for s in model.config.tasks}
        if found is None or name not in specs or not found.fits(specs[name]):
            continue
        examples = load_labelled(cfg, entry)[split]
        started = time.perf_counter()
        results = predict_results(model, specs[name], examples)
        out[name] = {"examples": len(examples), "coverage": coverage_report(specs[name], found, examples, results),
                     "seconds": round(time.perf_counter() - started, 1)}
    return out


def section(model_dir: Path, measured: dict, split: str) -> str:
    doc = read_calibration(model_dir)
    lines = [BEGIN, "## How far to trust an answer: conformal coverage and applicability domain", "",
             "Every answer comes with a conformal set (`residue_sets`, `set_size`) at the run's `--coverage` "
             "and a domain flag (`domain_score`, `in_domain`); see the README. Calibration "
             f"(`{model_dir.name}/calibration.json`):", "",
             "| task | method | calibration proteins | rows used | file sha256 | date |", "|---|---|---|---|---|---|"]
    for name, c in doc.get("tasks", {}).items():
        src = c.get("source", {})
        lines.append(f"| {name} | {c['method']} | {c['examples']:,} | {src.get('split', '-')} of "
                     f"`{Path(src.get('file', '-')).name}` | {src.get('sha256', '-')[:12]} | {c['created'][:10]} |")
    d = doc.get("domain")
    if d:
        lines += ["", f"Domain index (`domain.safetensors`): {d['proteins']:,} training proteins (of "
                      f"{d['training_proteins']:,} distinct), {d['dims']} PCA dimensions, int8; `domain_score` = mean "
                      f"cosine similarity to the {d['neighbours']} nearest; `in_domain` threshold {d['threshold']:.4f}, "
                      f"passed by 95% of the {d['held_out']:,} held-out (validation) proteins."]
    lines += ["", f"Measured on the {split} splits (`python tools/card_trust.py`; residues for per-residue "
                  f"tasks; within {int(TOLERANCE * 100)} points of nominal: yes/**no**):", "",
              "| task | level | coverage | within | mean set size | in domain: coverage (proteins) | "
              "out of domain: coverage (proteins) |", "|---|---|---|---|---|---|---|"]
    for name, m in measured.items():
        for level, found in m["coverage"].items():
            a, i, o = found["all"], found.get("in_domain", {}), found.get("out_of_domain", {})
            ok = abs(a["coverage"] - float(level)) <= TOLERANCE
            lines.append(f"| {name} | {level} | {pct(a['coverage'])} | {'yes' if ok else '**no**'} | "
                         f"{num(a['mean_size'])} | {pct(i.get('coverage'))} ({i.get('proteins', 0)}) | "
                         f"{pct(o.get('coverage'))} ({o.get('proteins', 0)}) |")
    lines += ["", "The guarantee holds on average over proteins like the calibration ones; the out-of-domain "
                  "column shows how it holds for proteins unlike the training data.", END]
    return "\n".join(lines)


def write_section(card: Path, text: str) -> None:
    """Replace the marked section of the card, or add it before `## Limits` (else at the end)."""
    old = card.read_text() if card.is_file() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    elif "\n## Limits" in old:
        at = old.index("\n## Limits")
        new = old[:at] + "\n" + text + "\n" + old[at:]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    card.write_text(new)


def main(argv: list[str] | None = None) -> None:
    args = create_parser().parse_args(argv)
    cfg = load_config(args.config)
    model = load_model(args.model)
    measured = measure(cfg, model, args.split)
    (args.model / "coverage_test.json").write_text(json.dumps(measured, indent=2, default=float) + "\n")
    write_section(args.model / "MODEL_CARD.md", section(args.model, measured, args.split))
    for name, m in measured.items():
        print(name, {lvl: round(f["all"]["coverage"], 4) for lvl, f in m["coverage"].items()}, f"{m['seconds']} s")


if __name__ == "__main__":
    main()
