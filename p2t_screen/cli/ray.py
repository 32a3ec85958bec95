"""`p2t screen-ray`: the `screen` command on a Ray cluster (or a local Ray), via Ray Data.

Register with `app.command("screen-ray")(screen_ray)`. Ray is imported only when the command
runs, so `p2t` starts as fast as before and works without Ray installed.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError, P2TError, UsageError
from ..io.fasta import check_fasta
from ..io.records import OnInvalid, OnLong, ReadPolicy
from ..model.locations import DEFAULT_MODEL
from ..screen.config import DEFAULT_MAX_TOKENS
from .common import EXIT_OK, EXIT_ROWS_NOT_OK, THRESHOLD_HELP, err, fail

# The library's Ray side (and torch) is imported when the command runs, not for `--help`.
DEFAULT_BATCH_SIZE = 512  # records per actor call (the default of `interop.ray.screen_parquet`)

_PARQUET_MAGIC = b"PAR1"




def is_parquet(path: str) -> bool:
    """Parquet input: a URI, a folder, a .parquet name, or a file starting with Parquet's magic."""
    if "://" in path:
        return True  # FASTA is read on the driver, so it has to be a local file
    local = Path(path).expanduser()
    if local.is_dir() or local.suffix == ".parquet":
        return True
    try:
        with local.open("rb") as fh:
            return fh.read(4) == _PARQUET_MAGIC
    except OSError:
        return False


def _staging_dir(output: str) -> str:
    """A hidden folder beside the output for the converted FASTA (shared storage if it is)."""
    from ..interop.ray_files import for_workers

    parent, _, name = for_workers(output).rstrip("/").rpartition("/")
    return f"{parent}/.{name}.p2t-input-{uuid.uuid4().hex[:8]}"


def _remove(path: str) -> None:
    if "://" in path:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(path)
        fs.delete_dir(root)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _connect(address: Optional[str]) -> bool:
    """Join the Ray cluster at `address`, or start a local Ray; True when this call started it."""
    from ..interop.ray import require_ray

    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init()
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise UsageError(f"cannot connect to {where}: {exc}") from None
    return True


def _check_local_cpus(concurrency: int, cpus_per_actor: float) -> None:
    """On a local Ray, refuse an actor pool that leaves no CPU for reading and writing (it hangs)."""
    from ..interop.ray import require_ray

    total = require_ray().cluster_resources().get("CPU", 0.0)
    if concurrency * cpus_per_actor > total - 1:
        raise UsageError(
            f"--concurrency {concurrency} x --cpus-per-actor {cpus_per_actor:g} leaves no CPU of the "
            f"{total:g} here for Ray's read and write tasks; lower one of them")


def _check_input(path: str, policy: ReadPolicy) -> bool:
    """Check the input before Ray starts; True for FASTA (converted first), False for Parquet."""
    from ..interop.ray_files import check_input_parquet

    if is_parquet(path):
        if "input_index" not in check_input_parquet(path).names:
            err.print("note: the input has no input_index column, so input_index counts rows "
                      "within each batch only (p2t's FASTA conversion writes global indices)",
                      highlight=False)
        return False
    fasta = Path(path).expanduser()
    if not fasta.is_file():
        raise InputError(f"input file not found: {path}")
    if policy.on_invalid is OnInvalid.ERROR or policy.on_long is OnLong.ERROR:
        check_fasta(fasta, policy)  # as `p2t screen` does: stop before any work is done
    return True


def _convert(fasta: str, staging: str) -> str:
    """The FASTA input as Parquet in the staging folder (for Ray Data); returns the folder."""
    from ..interop.ray_files import fasta_to_parquet

    records = fasta_to_parquet(Path(fasta).expanduser(), staging)
    err.print(f"converted {records} record(s) to Parquet for Ray", highlight=False)
    return staging


def _check_request(input: str, output: str, model: str | None, tasks: str, on_invalid: OnInvalid,
                   long: OnLong, overwrite: bool, threshold: list[str] | None
                   ) -> tuple[list[str], tuple[tuple[str, float], ...], ReadPolicy, bool]:
    """What is checked before Ray starts: tasks and thresholds against the model's config, the
    input under the read policy, the output folder. Returns (tasks, thresholds, policy, is FASTA)."""
    from ..interop.ray_files import prepare_output_dir
    from ..model.store import read_model_config
    from ..screen.run_record import parse_thresholds, with_thresholds

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise UsageError("--tasks: give at least one task name, or 'all'")
    config = read_model_config(model)
    thresholds = parse_thresholds(threshold)
    with_thresholds(config.select_tasks(names), thresholds)
    policy = ReadPolicy(on_invalid, long, config.encoder.max_residues)
    fasta = _check_input(input, policy)
    prepare_output_dir(output, overwrite)
    return names, thresholds, policy, fasta


def _print_summary(output: str, counts: dict[str, dict[str, int]]) -> None:
    err.print(f"wrote {output}", highlight=False)
    for task, by_status in counts.items():
        parts = ", ".join(f"{status} {n}" for status, n in sorted(by_status.items()))
        err.print(f"  {task}: {parts}", highlight=False)


def screen_ray(
    input: Annotated[str, typer.Argument(help="FASTA (.fasta/.fasta.gz, local) or Parquet file/folder/URI with a 'sequence' column")],
    output: Annotated[str, typer.Option("-o", "--output", help="output folder: a path every Ray node can reach, or a URI (s3://...)")] = "results",
    model: Annotated[Optional[str], typer.Option(help=f"model directory or bundled name [default: {DEFAULT_MODEL}]")] = None,
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or 'all'")] = "all",
    concurrency: Annotated[int, typer.Option(min=1, help="model actors (each holds one copy of the model)")] = 1,
    gpus_per_actor: Annotated[float, typer.Option(min=0.0, help="GPUs per actor (0: CPU; 0.5: two actors share a GPU)")] = 0.0,
    cpus_per_actor: Annotated[float, typer.Option(min=0.0, help="CPUs per actor (also its torch threads)")] = 1.0,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address ('auto' on a cluster node) [default: start a local Ray]")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="padded encoder tokens per batch")] = DEFAULT_MAX_TOKENS,
    batch_size: Annotated[int, typer.Option(min=1, help="records per actor call")] = DEFAULT_BATCH_SIZE,
    on_invalid: Annotated[OnInvalid, typer.Option(help="skip: row status 'invalid'; x: unknown letters -> X; error: stop (FASTA is checked before running)")] = OnInvalid.SKIP,
    long: Annotated[OnLong, typer.Option("--long", help="sequences over the encoder limit: truncate | skip | error")] = OnLong.TRUNCATE,
    overwrite: Annotated[bool, typer.Option(help="replace the contents of a non-empty output folder")] = False,
    threshold: Annotated[Optional[list[str]], typer.Option(help=THRESHOLD_HELP)] = None,
) -> None:
    """Screen a library with Ray Data actors: one typed Parquet row per (record, task)."""
    from ..interop.ray import require_ray, screen_parquet, user_error

    staging: str | None = None
    started = False
    try:
        names, thresholds, policy, fasta = _check_request(input, output, model, tasks, on_invalid, long,
                                                          overwrite, threshold)
        started = _connect(address)
        if started and not address:
            _check_local_cpus(concurrency, cpus_per_actor)
        staging = _staging_dir(output) if fasta else None
        source = _convert(input, staging) if staging else input
        counts = screen_parquet(
            source, output, model, names, overwrite=overwrite, concurrency=concurrency,
            num_gpus=gpus_per_actor, num_cpus=cpus_per_actor, batch_size=batch_size,
            max_tokens=max_tokens, on_invalid=policy.on_invalid, on_long=policy.on_long,
            thresholds=thresholds)
    except P2TError as exc:
        raise fail(exc) from None
    except Exception as exc:  # a failed Ray task: show p2t's own message when there is one
        cause = user_error(exc)
        raise exc if cause is None else fail(cause)
    finally:
        if staging is not None:
            _remove(staging)
        if started:
            require_ray().shutdown()
    _print_summary(output, counts)
    ok = all(set(by_status) <= {"ok"} for by_status in counts.values())
    raise typer.Exit(EXIT_OK if ok else EXIT_ROWS_NOT_OK)
