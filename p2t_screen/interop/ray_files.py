"""Files of the Ray engine, local or behind a URI: FASTA converted to Parquet for Ray Data, the
input and output folders checked before Ray starts, and the rows of a written output counted."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import InputError, UsageError
from ..io.fasta import read_fasta
from ..io.records import OnInvalid, OnLong, ReadPolicy, Record
from ..screen.run_record import StatusCounts

DEFAULT_ROWS_PER_FILE = 100_000
INPUT_SCHEMA = pa.schema([
    pa.field("input_index", pa.int64(), nullable=False),
    pa.field("seq_id", pa.string(), nullable=False),
    pa.field("header", pa.string(), nullable=False),
    pa.field("sequence", pa.string(), nullable=False),
])
_ROW_GROUP_ROWS = 8192
_ROW_GROUP_CHARS = 32 << 20  # bounds the conversion buffer even for very long sequences


def filesystem(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or a URI such as s3://bucket/key."""
    text = os.fspath(path)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise UsageError(f"unsupported location {text!r}: {exc}") from exc
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def for_workers(path: str | os.PathLike) -> str:
    """Absolute form of a local path (workers do not share the driver's cwd); URIs unchanged."""
    text = os.fspath(path)
    return text if "://" in text else str(Path(text).expanduser().resolve())


def list_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{root} exists and is not a folder")
    return fs.get_file_info(pafs.FileSelector(root, recursive=False))


def fasta_to_parquet(fasta: str | os.PathLike, out_path: str | os.PathLike,
                     rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> int:
    """Stream a FASTA file into Parquet parts (input_index, seq_id, header, sequence); returns
    the record count. `out_path` is a new or empty folder (local path or URI)."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be positive, got {rows_per_file}")
    if not Path(fasta).is_file():
        raise InputError(f"input file not found: {fasta}")
    fs, root = filesystem(out_path)
    if any(f.base_name.endswith(".parquet") for f in list_files(fs, root)):
        raise UsageError(f"{out_path} already holds Parquet files; give a new or empty folder")
    fs.create_dir(root, recursive=True)
    # Every record is kept: validation happens in the actors under the run's own policy. With
    # skip/truncate, `Record.sequence` is the full normalised sequence, whatever its status.
    permissive = ReadPolicy(OnInvalid.SKIP, OnLong.TRUNCATE)
    writer: pq.ParquetWriter | None = None
    parts = count = in_file = 0
    buffer: list[Record] = []
    chars = 0

    def flush() -> None:
        nonlocal writer, parts, in_file, chars
        if writer is None:
            writer = pq.ParquetWriter(f"{root}/part-{parts:05d}.parquet", INPUT_SCHEMA, filesystem=fs)
            parts += 1
        writer.write_table(pa.table({
            "input_index": [r.input_index for r in buffer], "seq_id": [r.seq_id for r in buffer],
            "header": [r.header for r in buffer], "sequence": [r.sequence for r in buffer],
        }, schema=INPUT_SCHEMA))
        in_file += len(buffer)
        buffer.clear()
        chars = 0
        if in_file >= rows_per_file:
            writer.close()
            writer, in_file = None, 0

    try:
        for record in read_fasta(fasta, permissive):
            buffer.append(record)
            count += 1
            chars += len(record.sequence) + len(record.header)
            if (len(buffer) >= min(_ROW_GROUP_ROWS, rows_per_file - in_file)
                    or chars >= _ROW_GROUP_CHARS):
                flush()
        if buffer or parts == 0:  # an empty library still gets one (empty) file with the schema
            flush()
    finally:
        if writer is not None:
            writer.close()
    return count


def check_input_parquet(input_path: str | os.PathLike) -> pa.Schema:
    """The input's schema; fails early, naming the columns found, without a `sequence` column."""
    fs, root = filesystem(input_path)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        raise InputError(f"input not found: {input_path}")
    try:
        schema = pads.dataset(root, filesystem=fs, format="parquet").schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{input_path}: not readable as Parquet: {exc}") from exc
    if "sequence" not in schema.names:
        raise InputError(f"{input_path}: no 'sequence' column (columns: {', '.join(schema.names)})")
    return schema


def prepare_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> str:
    """Ray's write mode for `output_dir`; refuses a folder that already holds files."""
    fs, root = filesystem(output_dir)
    if list_files(fs, root) and not overwrite:
        raise UsageError(f"output folder {output_dir} is not empty; choose another or pass overwrite")
    # Ray's own 'error' mode also refuses an existing empty folder; 'append' into an empty one
    # is the same as creating it.
    return "overwrite" if overwrite else "append"


def status_counts(output_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Rows per task and status in a written output folder (streamed, two columns only)."""
    fs, root = filesystem(output_dir)
    counts = StatusCounts()
    for batch in pads.dataset(root, filesystem=fs, format="parquet").scanner(columns=["task", "status"]).to_batches():
        counts.add(batch)
    return dict(sorted(counts.as_dict().items()))
