"""Optional Ray Data engine: screen a library across the actors of a Ray cluster.

Ray does the scheduling, the actor pool and the Parquet I/O; p2t only contributes a callable
class (`ScreenActor`) that loads a model once per actor and turns Arrow batches of sequences
into rows of `SCHEMA` with the same `Screener` and read policy as `p2t screen`.

Ray is imported inside functions, so this module (and the rest of p2t) imports without it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import P2TError, UsageError
from ..io.records import OnInvalid, OnLong, ReadPolicy, Record, _checked, records_from_sequences
from ..io.schema import SCHEMA, schema_with_metadata
from ..io.writer import SUCCESS_FILE
from ..model.runtime import resolve_device, resolve_dtype
from ..model.store import CONFIG_FILE, load_model, read_model_config, resolve_model_path
from ..screen.config import DEFAULT_MAX_TOKENS, ScreenConfig
from ..screen.run_record import run_metadata, with_thresholds
from ..screen.screener import Screener
from .ray_files import check_input_parquet, filesystem, for_workers, list_files, prepare_output_dir, status_counts

if TYPE_CHECKING:
    import ray.data

INSTALL_HINT = "pip install 'p2t-screen[ray]'"
DEFAULT_BATCH_SIZE = 512
_P2T_ERROR_RE = re.compile(r"p2t_screen\.errors\.(\w+): (.+)")


def require_ray() -> ModuleType:
    """The `ray` module with Ray Data loaded, or a UsageError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data extra is what p2t needs)
    except ImportError as exc:
        raise UsageError(f"the Ray engine needs Ray Data ({exc}); install it with: {INSTALL_HINT}") from exc
    return ray


# ---------------------------------------------------------------- the actor
class ScreenActor:
    """Callable class for `Dataset.map_batches`: loads a model once, screens Arrow tables.

    Input columns: `sequence` (required), `seq_id` or `id`, `header`, `input_index` (optional).
    Without `input_index` the rows are numbered within the batch only; `fasta_to_parquet`
    writes global indices. Output: one row per (record, task) in `SCHEMA`, with run metadata.
    """

    def __init__(self, model: str | os.PathLike | None = None, tasks: Sequence[str] | None = None, *,
                 device: str = "auto", dtype: str = "auto", max_tokens: int = DEFAULT_MAX_TOKENS,
                 on_invalid: OnInvalid | str = OnInvalid.SKIP,
                 on_long: OnLong | str = OnLong.TRUNCATE,
                 thresholds: Sequence[tuple[str, float]] = ()) -> None:
        path = resolve_model_path(model)
        config = read_model_config(path)
        self.tasks = with_thresholds(config.select_tasks(list(tasks) if tasks else None), thresholds)
        self.policy = ReadPolicy(on_invalid, on_long, config.encoder.max_residues)
        screen_config = ScreenConfig(max_tokens=max_tokens)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        loaded = load_model(path, torch_device, torch_dtype, config=config)
        # Only facts every actor shares, so that all output files carry the same metadata.
        run = {**run_metadata(config, path, loaded.checksum, self.tasks, torch_device.type, torch_dtype,
                              self.policy, max_tokens), "engine": "ray"}
        self.schema = schema_with_metadata(run)
        self.screener = Screener(loaded, self.tasks, screen_config, self.schema)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Rows for every (record, task) of one batch, in input order."""
        records = batch_records(batch, self.policy)
        return pa.Table.from_batches(list(self.screener.screen(records)), schema=self.schema)


def _column(batch: pa.Table, *names: str) -> list[Any] | None:
    for name in names:
        if name in batch.column_names:
            return batch.column(name).to_pylist()
    return None


def batch_records(batch: pa.Table, policy: ReadPolicy) -> Iterator[Record]:
    """Records from an Arrow table of sequences, normalised and checked as `p2t screen` does."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    sequences = _column(batch, "sequence")
    if sequences is None:
        raise ValueError(f"input needs a 'sequence' column; got columns {batch.column_names}")
    n = batch.num_rows
    indices = _column(batch, "input_index") or list(range(n))
    if None in indices:
        raise ValueError("input_index must not be null")
    ids = _column(batch, "seq_id", "id") or [None] * n
    headers = _column(batch, "header") or [None] * n
    names = [str(i) if i is not None else f"seq{k + 1}" for i, k in zip(ids, indices)]
    # 'error' and 'skip' build identical records (they differ only in whether the run stops),
    # so build leniently and check once the global index is in place: the error then names
    # the record's position in the whole library, not in this batch.
    lenient = replace(
        policy, on_invalid=OnInvalid.SKIP if policy.on_invalid is OnInvalid.ERROR else policy.on_invalid,
        on_long=OnLong.SKIP if policy.on_long is OnLong.ERROR else policy.on_long)
    built = records_from_sequences(zip(names, (s or "" for s in sequences)), lenient)
    placed = (replace(r, input_index=int(index), header=r.header if header is None else str(header))
              for r, index, header in zip(built, indices, headers))
    yield from _checked(placed, policy, "input")


# ---------------------------------------------------------------- Ray wiring
def _actor_kwargs(model: str | os.PathLike | None, tasks: Sequence[str] | None, num_gpus: float,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments for the actors, checked on the driver so mistakes fail before Ray runs."""
    local = model is not None and (Path(model).expanduser() / CONFIG_FILE).is_file()
    # A bundled model name is resolved by each worker's own p2t install, a directory by path.
    kwargs = {"model": for_workers(model) if local else model, "tasks": list(tasks) if tasks else None,
              **extra}
    # Without GPUs reserved for it, an actor must not pick up a GPU that Ray gave to another.
    kwargs.setdefault("device", "auto" if num_gpus > 0 else "cpu")
    try:
        inspect.signature(ScreenActor).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"invalid ScreenActor options {sorted(extra)}: {exc}") from None
    config = read_model_config(kwargs["model"])
    with_thresholds(config.select_tasks(kwargs["tasks"]), kwargs.get("thresholds", ()))
    ReadPolicy(kwargs.get("on_invalid", OnInvalid.SKIP), kwargs.get("on_long", OnLong.TRUNCATE))
    ScreenConfig(max_tokens=kwargs.get("max_tokens", DEFAULT_MAX_TOKENS))
    return kwargs


def screen_dataset(ds: ray.data.Dataset, model: str | os.PathLike | None = None,
                   tasks: Sequence[str] | None = None, *, concurrency: int = 1, num_gpus: float = 0.0,
                   num_cpus: float = 1.0, batch_size: int = DEFAULT_BATCH_SIZE,
                   **actor_kwargs: Any) -> ray.data.Dataset:
    """A lazy Dataset of screening rows (`SCHEMA`) from a Dataset with a `sequence` column.

    `concurrency` actors each hold one model and reserve `num_cpus` CPUs and `num_gpus` GPUs;
    `actor_kwargs` go to `ScreenActor` (device, dtype, max_tokens, on_invalid, on_long).
    Leave CPUs free for Ray's read and write tasks: a pool holding every CPU waits forever.
    """
    if concurrency < 1 or batch_size < 1:
        raise UsageError(f"concurrency and batch_size must be at least 1, got {concurrency}, {batch_size}")
    if num_gpus < 0 or num_cpus < 0:
        raise UsageError(f"num_gpus and num_cpus must not be negative, got {num_gpus}, {num_cpus}")
    ray = require_ray()
    kwargs = _actor_kwargs(model, tasks, num_gpus, actor_kwargs)
    # Small blocks let every actor take work even when the input is one file (one read block).
    blocks = ds.repartition(target_num_rows_per_block=batch_size)
    resources = {"num_gpus": num_gpus} if num_gpus > 0 else {}
    return blocks.map_batches(
        ScreenActor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, **resources)


def screen_parquet(input_path: str | os.PathLike, output_dir: str | os.PathLike,
                   model: str | os.PathLike | None = None, tasks: Sequence[str] | None = None, *,
                   overwrite: bool = False, concurrency: int = 1, num_gpus: float = 0.0,
                   num_cpus: float = 1.0, batch_size: int = DEFAULT_BATCH_SIZE,
                   **actor_kwargs: Any) -> dict[str, dict[str, int]]:
    """Screen Parquet file(s) with a `sequence` column into a Parquet folder; returns the rows
    per task and status. Paths may be URIs (s3://...); on a cluster every node must reach them."""
    ray = require_ray()
    check_input_parquet(input_path)
    mode = prepare_output_dir(output_dir, overwrite)
    ds = ray.data.read_parquet(for_workers(input_path))
    rows = screen_dataset(ds, model, tasks, concurrency=concurrency, num_gpus=num_gpus,
                          num_cpus=num_cpus, batch_size=batch_size, **actor_kwargs)
    rows.write_parquet(for_workers(output_dir), mode=mode)
    fs, root = filesystem(output_dir)
    if not any(f.base_name.endswith(".parquet") for f in list_files(fs, root)):
        # Ray writes no file (not even the folder) for zero rows; keep the output a readable
        # dataset with the p2t columns.
        fs.create_dir(root, recursive=True)
        pq.write_table(SCHEMA.empty_table(), f"{root}/empty.parquet", filesystem=fs)
    counts = status_counts(output_dir)
    summary = {"engine": "ray", "rows": sum(sum(c.values()) for c in counts.values()),
               "status_counts": counts}
    # `_SUCCESS` marks a finished folder as `p2t screen` does; readers skip '_' names.
    with fs.open_output_stream(f"{root}/{SUCCESS_FILE}") as fh:
        fh.write((json.dumps(summary, indent=2) + "\n").encode())
    return counts


def user_error(exc: BaseException) -> P2TError | None:
    """The p2t error behind a Ray task failure (Ray re-raises it wrapped, often only as text)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, P2TError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    match = _P2T_ERROR_RE.search(str(exc))
    if match is None:
        return None
    kinds = {cls.__name__: cls for cls in (P2TError, *P2TError.__subclasses__())}
    return kinds.get(match.group(1), P2TError)(match.group(2).strip())
