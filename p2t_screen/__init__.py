"""p2t: high-throughput protein screening with an ESM2 encoder and a Prot2Token task decoder.

Library first: load a model, screen records, get typed Arrow batches.

    >>> import p2t_screen as p2t
    >>> model = p2t.load_model()                      # the bundled default model
    >>> screener = p2t.Screener(model, model.config.select_tasks(["all"]))
    >>> records = p2t.records_from_sequences([("a", "MKTAYIAK")], p2t.ReadPolicy())
    >>> table = pyarrow.Table.from_batches(screener.screen(records))
"""

__version__ = "0.1.0"

from .errors import InputError, ModelError, P2TError, UsageError  # noqa: E402
from .io.fasta import read_fasta  # noqa: E402
from .io.records import OnInvalid, OnLong, ReadPolicy, Record, Status, records_from_sequences  # noqa: E402
from .io.schema import SCHEMA  # noqa: E402
from .model.config import ModelConfig  # noqa: E402
from .model.model import P2TModel  # noqa: E402
from .model.store import load_model, save_model  # noqa: E402
from .screen.pipeline import RunSummary, ScreenRequest, screen_file  # noqa: E402
from .screen.screener import ScreenConfig, Screener  # noqa: E402
from .tasks import KINDS, TaskResult, TaskSpec  # noqa: E402
from .tasks.catalog import CATALOG  # noqa: E402
from .tasks.inputs import ModelInput  # noqa: E402

__all__ = [
    "CATALOG", "InputError", "KINDS", "ModelConfig", "ModelError", "ModelInput", "OnInvalid", "OnLong", "P2TError",
    "P2TModel", "ReadPolicy", "Record", "RunSummary", "SCHEMA", "ScreenConfig", "ScreenRequest",
    "Screener", "Status", "TaskResult", "TaskSpec", "UsageError", "load_model", "read_fasta",
    "records_from_sequences", "save_model", "screen_file",
]
