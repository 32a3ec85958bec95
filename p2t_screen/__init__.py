"""p2t: high-throughput protein screening with an ESM2 encoder and a Prot2Token task decoder.

Library first: load a model, screen records, get typed Arrow batches.

    >>> import p2t_screen as p2t
    >>> model = p2t.load_model()                      # the bundled default model
    >>> screener = p2t.Screener(model, model.config.select_tasks(["all"]))
    >>> records = p2t.records_from_sequences([("a", "MKTAYIAK")], p2t.ReadPolicy())
    >>> table = pyarrow.Table.from_batches(screener.screen(records))
"""

from .errors import InputError, ModelError, P2TError, UsageError
from .io.fasta import read_fasta
from .io.records import OnInvalid, OnLong, ReadPolicy, Record, Status, records_from_sequences
from .io.schema import SCHEMA
from .model.config import ModelConfig
from .model.model import P2TModel
from .model.store import load_model, save_model
from .screen.pipeline import RunSummary, ScreenRequest, screen_file
from .screen.screener import ScreenConfig, Screener
from .tasks import KINDS, TaskResult, TaskSpec
from .tasks.catalog import CATALOG
from .tasks.inputs import ModelInput
from .version import __version__

__all__ = [
    "CATALOG", "InputError", "KINDS", "ModelConfig", "ModelError", "ModelInput", "OnInvalid", "OnLong", "P2TError",
    "P2TModel", "ReadPolicy", "Record", "RunSummary", "SCHEMA", "ScreenConfig", "ScreenRequest",
    "Screener", "Status", "TaskResult", "TaskSpec", "UsageError", "load_model", "read_fasta",
    "records_from_sequences", "save_model", "screen_file", "__version__",
]
