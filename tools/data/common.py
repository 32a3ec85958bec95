"""Helpers shared by the tools/data scripts (imported as a sibling: `from common import ...`).

Errors, command running and the scripts' entry point, hashing, wheel and .deb fetching, FASTA
(read by p2t_screen.io.fasta) and Parquet writing, sequence cleaning and the MMseqs2 clustering,
homology searches and split assignment; see FORMAT.md.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from p2t_screen.io.fasta import read_fasta
from p2t_screen.io.records import OnInvalid, ReadPolicy, Record

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"
ALLOWED = frozenset(STANDARD_AA + "X")
AMBIGUOUS_TO_X = {c: "X" for c in "UOBZJ"}
MIN_LEN, MAX_LEN = 30, 1022
SPLITS = ("train", "valid", "test")
MMSEQS_MISSING = "mmseqs not found: apt-get install -y mmseqs2"
HOMOLOGY_SEARCH = ["--threads", "1", "-e", "1e-3", "--format-output", "query,target,fident,qcov,tcov"]
# FASTA files read here are data, not a library to screen: every record whole, none dropped or cut.
AS_WRITTEN = ReadPolicy(on_invalid=OnInvalid.SKIP)

T = TypeVar("T")
# How a script words a failed command: (command line, finished process) -> PrepareError message.
Describe = Callable[[Sequence[str], subprocess.CompletedProcess[str]], str]


class PrepareError(Exception):
    """A user-facing failure reported without a traceback."""


class LetterCounts(Protocol):
    """The filter counters that clean_sequence updates."""

    mapped_to_x: Counter[str]
    sequences_with_mapped_letters: int


# --------------------------------------------------------------------------- commands


def run_process(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion with its text output captured; the exit status is not checked."""
    return subprocess.run(list(cmd), cwd=cwd, check=False, capture_output=True, text=True)


def output_tail(proc: subprocess.CompletedProcess[str], lines: int = 3) -> str:
    """The last lines of a finished command's stderr (stdout when stderr is empty), joined by ' | '."""
    return " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-lines:])


def failed_with_stderr(cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> str:
    """Failure text: the command line, its exit status and the last 2000 characters of its stderr."""
    return f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"


def failed_with_tail(cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> str:
    """Failure text: program and sub-command, exit status and the last three output lines."""
    return f"{' '.join(cmd[:2])} failed ({proc.returncode}): {output_tail(proc)}"


def run_command(cmd: Sequence[str], cwd: Path | None = None, describe: Describe = failed_with_stderr) -> str:
    """Run a command and return its stdout, raising PrepareError (worded by `describe`) on failure."""
    try:
        proc = run_process(cmd, cwd)
    except FileNotFoundError as err:
        raise PrepareError(f"command not found: {cmd[0]}") from err
    if proc.returncode != 0:
        raise PrepareError(describe(cmd, proc))
    return proc.stdout


def script_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], T],
                summary: Callable[[T], None] | None = None, argv: Sequence[str] | None = None) -> int:
    """A data script's entry point: parse `argv`, call `run(args)`, then `summary` on its result; exit status.
    A PrepareError, an OSError or a failed check on the data is one `error:` line and status 1, no traceback."""
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (PrepareError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AssertionError as exc:
        print(f"error: a check on the data failed: {exc}", file=sys.stderr)
        return 1
    if summary is not None:
        summary(result)
    return 0


def command_line(script: str) -> str:
    """How this run was started, for PROVENANCE files: `python tools/data/<script's file name> ARGS`."""
    return shlex.join(["python", f"tools/data/{Path(script).name}", *sys.argv[1:]])


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def sha_key(text: str) -> str:
    """Hex sha256 of a string (the deterministic ordering key)."""
    return hashlib.sha256(text.encode()).hexdigest()


def sha_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from the first 64 bits of the sha256 of `text`."""
    return int(sha_key(text)[:16], 16) / 2**64


def split_for(fraction: float, train: float, valid: float) -> str:
    """'train' below `train`, 'valid' below `train + valid`, else 'test'."""
    if fraction < train:
        return "train"
    return "valid" if fraction < train + valid else "test"


# --------------------------------------------------------------------------- fetch


def first_match(folder: Path, pattern: str) -> Path | None:
    """The first (by name) file in folder matching a glob pattern, if any."""
    found = sorted(folder.glob(pattern))
    return found[0] if found else None


def fetch_wheel(wheel_dir: Path, requirement: str, pattern: str) -> Path:
    """The cached wheel matching `pattern`, downloaded with `pip download --no-deps` when absent."""
    wheel = first_match(wheel_dir, pattern)
    if wheel is not None:
        return wheel
    wheel_dir.mkdir(parents=True, exist_ok=True)
    proc = run_process([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-d", str(wheel_dir), requirement])
    wheel = first_match(wheel_dir, pattern)
    if proc.returncode != 0 or wheel is None:
        raise PrepareError(f"could not download {requirement} into {wheel_dir}: "
                           + (output_tail(proc) or f"pip exited {proc.returncode}"))
    return wheel


def open_wheel(path: Path) -> zipfile.ZipFile:
    """Open a downloaded wheel, or a clear error asking to delete a broken one."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PrepareError(f"{path} is not a valid wheel; delete it and rerun") from None


def read_member(wheel: zipfile.ZipFile, name: str) -> bytes:
    """Bytes of one file inside the wheel, or a clear error naming it."""
    try:
        return wheel.read(name)
    except KeyError:
        raise PrepareError(f"{name} is missing from the wheel (wrong version?)") from None


def cached_debs(package: str, raw_dir: Path) -> list[Path]:
    """The package's .deb files already in raw_dir, sorted by name."""
    return sorted(raw_dir.glob(f"{package}_*.deb"))


def fetch_deb(package: str, raw_dir: Path, unpack_to: str, marker: Path) -> tuple[Path, Path]:
    """The package's .deb in raw_dir, fetched with `apt-get update` + `apt-get download` when absent
    (never installed), and unpacked into raw_dir / unpack_to with `dpkg -x` unless `marker` is
    already there; return (.deb, unpacked root)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    debs = cached_debs(package, raw_dir)
    if not debs:
        print(f"downloading {package} (apt-get update + download)", file=sys.stderr)
        run_command(["apt-get", "update", "-qq"])
        run_command(["apt-get", "download", package], cwd=raw_dir)
        debs = cached_debs(package, raw_dir)
    if len(debs) != 1:
        raise PrepareError(f"expected one {package} .deb in {raw_dir}, found {len(debs)}")
    root = raw_dir / unpack_to
    if not (root / marker).is_file():
        root.mkdir(parents=True, exist_ok=True)
        run_command(["dpkg", "-x", str(debs[0]), str(root)])
    return debs[0], root


def deb_version(deb: Path) -> str:
    """The Version field of a .deb, from `dpkg-deb -f`."""
    return run_command(["dpkg-deb", "-f", str(deb), "Version"]).strip()


# --------------------------------------------------------------------------- sequences and files


def clean_sequence(seq: str, filters: LetterCounts) -> str | None:
    """Strip, upper-case, map U/O/B/Z/J to X; None when other letters remain."""
    seq = seq.strip().upper()
    mapped = Counter(c for c in seq if c in AMBIGUOUS_TO_X)
    if mapped:
        filters.mapped_to_x.update(mapped)
        filters.sequences_with_mapped_letters += 1
        seq = "".join(AMBIGUOUS_TO_X.get(c, c) for c in seq)
    if not set(seq) <= ALLOWED:
        return None
    return seq


def fasta_records(path: Path) -> list[Record]:
    """Every record of a FASTA file (header and upper-cased sequence), read by p2t_screen.io.fasta."""
    return list(read_fasta(path, AS_WRITTEN))


def fasta_sequences(path: Path) -> list[str]:
    """The sequences of a FASTA file, upper-cased, in file order."""
    return [r.sequence for r in fasta_records(path)]


def write_fasta(path: Path, records: Iterable[tuple[str, str]], width: int | None = None) -> None:
    """Write (header, sequence) pairs as FASTA: each sequence on one line, or wrapped at `width` residues."""

    def body(seq: str) -> str:
        if width is None:
            return seq + "\n"
        return "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))

    path.write_text("".join(f">{header}\n{body(seq)}" for header, seq in records), encoding="utf-8")


def hashed_id(seq: str) -> str:
    """FASTA id of a bare sequence: 's' and the first 16 hex digits of its sha256."""
    return f"s{sha_key(seq)[:16]}"


def write_sequences(path: Path, sequences: Iterable[str]) -> None:
    """Write bare sequences as one-line FASTA under their hashed ids, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fasta(path, ((hashed_id(seq), seq) for seq in sequences))


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_parquet(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows atomically as data.parquet with string columns id, sequence, label, split."""
    schema = pa.schema([(c, pa.string()) for c in ("id", "sequence", "label", "split")])
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(path)


def task_sequences(tasks_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """(train, held-out, task names) over every task table."""
    train, held, names = [], [], []
    for table in sorted(tasks_dir.glob("*/data.parquet")):
        names.append(table.parent.name)
        data = pq.read_table(table, columns=["sequence", "split"]).to_pydict()
        for seq, split in zip(data["sequence"], data["split"]):
            (train if split == "train" else held).append(seq.upper())
    return train, held, names


# --------------------------------------------------------------------------- MMseqs2


def require_mmseqs(message: str = MMSEQS_MISSING) -> str:
    """Path of the mmseqs binary; PrepareError(message) when it is not on PATH."""
    exe = shutil.which("mmseqs")
    if exe is None:
        raise PrepareError(message)
    return exe


def read_clusters(tsv: Path) -> dict[str, str]:
    """Member id -> representative id from an MMseqs2 `*_cluster.tsv` table."""
    rep_of: dict[str, str] = {}
    for line in tsv.read_text().splitlines():
        rep, member = line.split("\t")
        rep_of[member] = rep
    return rep_of


def easy_cluster(records: Iterable[tuple[str, str]], work: Path, options: Sequence[str],
                 describe: Describe = failed_with_stderr) -> dict[str, str]:
    """Cluster (id, sequence) pairs with `mmseqs easy-cluster` in work; return member -> representative."""
    fasta = work / "in.fasta"
    write_fasta(fasta, records)
    run_command(["mmseqs", "easy-cluster", str(fasta), str(work / "out"), str(work / "tmp"), *options],
                describe=describe)
    return read_clusters(work / "out_cluster.tsv")


def train_homologs(rows: list[dict[str, str]], prefix: str, exe: str = "mmseqs") -> dict[str, Any]:
    """Valid/test rows with an MMseqs2 hit in train (30%/90% identity, 80% coverage both ways)."""
    split_of = {r["id"]: r["split"] for r in rows}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        write_fasta(work / "train.fa", [(r["id"], r["sequence"]) for r in rows if r["split"] == "train"])
        write_fasta(work / "query.fa", [(r["id"], r["sequence"]) for r in rows if r["split"] != "train"])
        run_command([exe, "easy-search", str(work / "query.fa"), str(work / "train.fa"), str(work / "hits.tsv"),
                     str(work / "tmp"), *HOMOLOGY_SEARCH], describe=failed_with_tail)
        hits = [line.split("\t") for line in (work / "hits.tsv").read_text().splitlines()]
    out: dict[str, Any] = {"search": "mmseqs easy-search (valid+test vs train) " + " ".join(HOMOLOGY_SEARCH[:4])}
    for ident in (0.3, 0.9):
        ids = {q for q, _t, fid, qc, tc in hits if float(fid) >= ident and min(float(qc), float(tc)) >= 0.8}
        out[f"identity>={ident},coverage>=0.8"] = {
            s: sorted(i for i in ids if split_of[i] == s) for s in ("valid", "test")}
    return out


def homologs_of(queries: list[str], targets: list[str], min_id: float, coverage: float,
                threads: int) -> set[str]:
    """Query sequences with an MMseqs2 hit in targets at >= min_id identity and >= coverage."""
    exe = require_mmseqs()
    with tempfile.TemporaryDirectory(prefix="p2t_corpus_") as tmp:
        work = Path(tmp)
        write_sequences(work / "q.fasta", queries)
        write_sequences(work / "t.fasta", targets)
        run_command([exe, "easy-search", str(work / "q.fasta"), str(work / "t.fasta"), str(work / "hits.m8"),
                     str(work / "tmp"), "--min-seq-id", str(min_id), "-c", str(coverage), "--threads", str(threads),
                     "-v", "1"])
        hit_ids = {line.split("\t")[0] for line in (work / "hits.m8").read_text().splitlines()}
    return {q for q in queries if hashed_id(q) in hit_ids}
