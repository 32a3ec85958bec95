"""Helpers shared by the tools/data scripts (imported as a sibling: `from common import ...`).

Errors, command running, hashing, wheel and .deb fetching, FASTA/Parquet writing, sequence
cleaning and the MMseqs2 clustering, homology searches and split assignment; see FORMAT.md.
"""

from __future__ import annotations

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
from Bio import SeqIO

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"
ALLOWED = frozenset(STANDARD_AA + "X")
AMBIGUOUS_TO_X = {c: "X" for c in "UOBZJ"}
MIN_LEN, MAX_LEN = 30, 1022
SPLITS = ("train", "valid", "test")
MMSEQS_MISSING = "mmseqs not found: apt-get install -y mmseqs2"
HOMOLOGY_SEARCH = ["--threads", "1", "-e", "1e-3", "--format-output", "query,target,fident,qcov,tcov"]

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


def report_errors(run: Callable[[], T]) -> T | None:
    """Call run(); on PrepareError, OSError or a failed layout assertion print one error line, return None."""
    try:
        return run()
    except (PrepareError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except AssertionError as exc:
        print(f"error: the source data failed a layout check: {exc}", file=sys.stderr)
    return None


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


def cached_debs(package: str, raw_dir: Path, suffix: str = ".deb") -> list[Path]:
    """The package's .deb files already in raw_dir, sorted by name."""
    return sorted(raw_dir.glob(f"{package}_*{suffix}"))


def apt_download(package: str, raw_dir: Path, suffix: str = ".deb",
                 describe: Describe = failed_with_stderr) -> list[Path]:
    """Fetch the package's .deb into raw_dir with `apt-get download` (never installed); return cached_debs."""
    run_command(["apt-get", "download", package], cwd=raw_dir, describe=describe)
    return cached_debs(package, raw_dir, suffix)


def extract_deb(deb: Path, root: Path, marker: Path, describe: Describe = failed_with_stderr) -> None:
    """Unpack a .deb into root with `dpkg -x` unless root / marker is already there."""
    if not (root / marker).is_file():
        root.mkdir(parents=True, exist_ok=True)
        run_command(["dpkg", "-x", str(deb), str(root)], describe=describe)


def deb_version(deb: Path, describe: Describe = failed_with_stderr) -> str:
    """The Version field of a .deb, from `dpkg-deb -f`."""
    return run_command(["dpkg-deb", "-f", str(deb), "Version"], describe=describe).strip()


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


def read_fasta(path: Path) -> list[str]:
    """Upper-cased sequences of a FASTA file."""
    return [str(r.seq).upper() for r in SeqIO.parse(path, "fasta")]


def write_fasta(path: Path, records: Iterable[tuple[str, str]]) -> None:
    """Write (id, sequence) pairs as one-line FASTA."""
    path.write_text("".join(f">{i}\n{s}\n" for i, s in records), encoding="ascii")


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
    """Query sequences with an MMseqs2 hit in targets at >= min_id identity (exits if mmseqs is missing)."""
    if shutil.which("mmseqs") is None:
        sys.exit(MMSEQS_MISSING)
    with tempfile.TemporaryDirectory(prefix="p2t_corpus_") as tmp:
        work = Path(tmp)
        write_sequences(work / "q.fasta", queries)
        write_sequences(work / "t.fasta", targets)
        subprocess.run(["mmseqs", "easy-search", str(work / "q.fasta"), str(work / "t.fasta"),
                        str(work / "hits.m8"), str(work / "tmp"), "--min-seq-id", str(min_id),
                        "-c", str(coverage), "--threads", str(threads), "-v", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        hit_ids = {line.split("\t")[0] for line in (work / "hits.m8").read_text().splitlines()}
    return {q for q in queries if hashed_id(q) in hit_ids}
