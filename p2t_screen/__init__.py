"""p2t: high-throughput protein screening with an ESM2 encoder and a Prot2Token task decoder.

Library first: load a model, screen records, get typed Arrow batches.

    >>> import p2t_screen as p2t
    >>> model = p2t.load_model()                      # the bundled default model
    >>> screener = p2t.Screener(model, model.config.select_tasks(["all"]))
    >>> records = p2t.records_from_sequences([("a", "MKTAYIAK")], p2t.ReadPolicy())
    >>> table = pyarrow.Table.from_batches(screener.screen(records))
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__ as __version__

# Each public name and the module that defines it, imported on first use: `import p2t_screen`
# (and `p2t --help`) does not pay for torch until something needs it.
_EXPORTS = {
    "InputError": ".errors", "ModelError": ".errors", "P2TError": ".errors", "UsageError": ".errors",
    "read_fasta": ".io.fasta",
    "OnInvalid": ".io.records", "OnLong": ".io.records", "ReadPolicy": ".io.records", "Record": ".io.records",
    "Status": ".io.records", "records_from_sequences": ".io.records",
    "SCHEMA": ".io.schema",
    "ModelConfig": ".model.config",
    "P2TModel": ".model.model",
    "load_model": ".model.store", "save_model": ".model.store",
    "RunSummary": ".screen.pipeline", "ScreenRequest": ".screen.pipeline", "screen_file": ".screen.pipeline",
    "ScreenConfig": ".screen.screener", "Screener": ".screen.screener",
    "KINDS": ".tasks", "TaskResult": ".tasks", "TaskSpec": ".tasks",
    "CATALOG": ".tasks.catalog",
    "ModelInput": ".tasks.inputs",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
