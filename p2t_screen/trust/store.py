"""Calibrations stored with a model: `calibration.json` in the model directory, written whole
and atomically (a temporary file, then a rename), so a model never holds half a calibration.

Per task: the conformal constants at every level of `tasks.conformal.LEVELS`, how many labelled
proteins they came from, the file they came from (path and sha256), the date, and the task's
temperature and decision threshold at calibration time. A task whose temperature or threshold
has changed since (a refitted temperature, `--threshold` on a run) no longer matches its
calibration: its conformal columns stay null rather than state a coverage they were not fitted
for; so does a calibration made for another method (an older p2t). The domain index's own
constants sit beside the tasks (`domain`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..tasks.conformal import check_level, level_key
from ..tasks.spec import TaskSpec

CALIBRATION_FILE = "calibration.json"
FORMAT = "p2t-calibration"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TaskCalibration:
    """One task's conformal constants at every stored level, and where they came from."""

    kind: str
    method: str
    examples: int  # labelled proteins scored (failed rows left out)
    levels: dict[str, dict[str, Any]]  # level_key -> the kind's constants
    temperature: float | None  # the task's at calibration time
    threshold: float | None
    source: dict[str, Any] = field(default_factory=dict)  # file, sha256, split
    created: str = ""

    def params(self, level: float) -> dict[str, Any]:
        """The constants for coverage `level` (one of the stored levels)."""
        return self.levels[level_key(check_level(level))]

    def fits(self, spec: TaskSpec) -> bool:
        """Whether the task still reports what it reported when calibrated, and its kind still
        makes its answers the way these constants were fitted for."""
        return ((spec.kind, spec.task_kind.conformal_method) == (self.kind, self.method)
                and spec.temperature == self.temperature
                and (not spec.has_threshold or spec.decision_threshold == self.threshold))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    """The date a calibration records (UTC, to the second)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_calibration(model_dir: Path) -> dict[str, Any]:
    """The model directory's calibration document ({} when it has none); a damaged file is an
    error naming it, never a silent absence."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    return doc


def task_calibrations(model_dir: Path) -> dict[str, TaskCalibration]:
    """Each calibrated task's constants, by task name."""
    doc = read_calibration(model_dir)
    return {name: TaskCalibration(**entry) for name, entry in doc.get("tasks", {}).items()}


def write_calibration(model_dir: Path, tasks: dict[str, TaskCalibration] | None = None,
                      domain: dict[str, Any] | None = None) -> Path:
    """Add or replace tasks' calibrations (and the domain entry) in the model directory's
    calibration file, atomically; other tasks' entries are kept."""
    path = Path(model_dir) / CALIBRATION_FILE
    doc = read_calibration(model_dir) or {"format": FORMAT, "format_version": FORMAT_VERSION, "tasks": {}}
    doc["tasks"].update({name: c.to_dict() for name, c in (tasks or {}).items()})
    if domain is not None:
        doc["domain"] = domain
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
