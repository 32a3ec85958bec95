"""A run's inputs, checked before any weights load: the records of the library (one shard of
it, optionally), the partner proteins of pair tasks and the ligands of protein-ligand tasks."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OutputError, UsageError
from ..io.fasta import read_fasta, scan_fasta
from ..io.ligands import Ligand, check_smiles, read_ligands
from ..io.records import OnInvalid, ReadPolicy, Record
from ..tasks.inputs import LIGAND, PAIR
from ..tasks.spec import TaskSpec
from .expansion import Pairing


def parse_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """'i/N' -> (i, N); without text, SLURM array variables give the default (else no sharding)."""
    env = os.environ if env is None else env
    if text is None:
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return None
        task, count, first = (_env_int(env, name, default) for name, default in (
            ("SLURM_ARRAY_TASK_ID", None), ("SLURM_ARRAY_TASK_COUNT", None), ("SLURM_ARRAY_TASK_MIN", "0")))
        if not (count >= 1 and 0 <= task - first < count):
            raise UsageError(f"SLURM_ARRAY_TASK_ID={task} (SLURM_ARRAY_TASK_MIN={first}) is not one of the "
                             f"SLURM_ARRAY_TASK_COUNT={count} shards; pass --shard i/N")
        return task - first, count
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/N (e.g. 0/8), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text}: need 0 <= i < N")
    return i, n


def _env_int(env: dict[str, str], name: str, default: str | None) -> int:
    text = env.get(name, default)
    try:
        return int(str(text))
    except ValueError:
        raise UsageError(f"environment variable {name}={text!r} is not a whole number; fix it or pass --shard i/N") from None


def in_shard(record: Record, shard: tuple[int, int] | None) -> bool:
    """Deterministic by sequence hash, so identical sequences always share a shard."""
    return shard is None or int(record.seq_hash[:16], 16) % shard[1] == shard[0]


def library_records(path: Path, policy: ReadPolicy, shard: tuple[int, int] | None) -> Iterator[Record]:
    """The library's records, one shard of them when `shard` is given."""
    return (r for r in read_fasta(path, policy) if in_shard(r, shard))


NUCLEOTIDES = "ACGTUN"
NUCLEOTIDE_SHARE = 0.9  # above this share of A/C/G/T/U/N, a library looks like DNA or RNA
_NOT_NUCLEOTIDE = str.maketrans("", "", NUCLEOTIDES)  # deletes them: what is left is not nucleotide


@dataclass(frozen=True)
class Library:
    """What one pass over the library found, before any weights load."""

    records: int  # records of the shard (of the file, unsharded)
    residues: int  # residues the encoder reads of them (after truncation)
    nucleotide_share: float  # share of A/C/G/T/U/N among those residues
    sha256: str  # of the whole file's bytes as stored (gzip: compressed): the run fingerprint's input
    longest: int = 0  # residues of the longest record the encoder reads (after truncation): `--max-tokens auto`


def survey_library(path: Path, policy: ReadPolicy, shard: tuple[int, int] | None) -> Library:
    """Read the library once: check every record of the file under the read policy (an
    InputError names each one it rejects), count the shard's records and residues, hash the bytes."""
    digest = hashlib.sha256()
    records = residues = nucleotides = longest = 0
    for record in scan_fasta(path, policy, digest):
        if in_shard(record, shard):
            records += 1
            residues += record.residues_used
            nucleotides += record.residues_used - len(record.used_sequence.translate(_NOT_NUCLEOTIDE))
            longest = max(longest, record.residues_used)
    return Library(records, residues, nucleotides / residues if residues else 0.0, digest.hexdigest(), longest)


def check_protein_library(path: Path, share: float, allow_nucleotide: bool) -> None:
    """Refuse a library that looks like nucleotides, saying what was seen."""
    if share > NUCLEOTIDE_SHARE and not allow_nucleotide:
        raise InputError(f"{path} looks like nucleotide sequences: {share:.0%} of its residues are A, C, G, T, U "
                         "or N; p2t screens proteins (translate them first), or pass --allow-nucleotide")


def load_pairing(partner: Path | None, pair_by_id: bool, tasks: Sequence[TaskSpec],
                 policy: ReadPolicy) -> Pairing | None:
    """Partner proteins for pair tasks, checked before any weights load."""
    pair_tasks = [t.name for t in tasks if t.inputs == PAIR]
    if partner is None:
        if pair_tasks:
            raise UsageError(f"task(s) {', '.join(pair_tasks)} read protein pairs: give the partner "
                             "proteins with --partner FASTA (or choose other --tasks)")
        return None
    if not pair_tasks:
        raise UsageError("--partner was given, but none of the selected tasks reads protein pairs")
    if not partner.is_file():
        raise InputError(f"partner file not found: {partner}")
    # Every partner must be usable: a bad one would silently drop rows of every record.
    strict = ReadPolicy(OnInvalid.ERROR, policy.on_long, policy.max_residues)
    partners = tuple(read_fasta(partner, strict))
    bad = [p for p in partners if p.status.value != "ok"]
    if bad:
        raise InputError(f"{partner}: partner {bad[0].seq_id!r} is {bad[0].status.value} "
                         f"({bad[0].error}); every partner must be a valid protein")
    if not partners:
        raise InputError(f"{partner}: no partner proteins")
    if pair_by_id:
        ids = Counter(p.seq_id for p in partners)
        dupes = sorted(i for i, n in ids.items() if n > 1)
        if dupes:
            raise InputError(f"{partner}: partner ids must be unique to pair by id; repeated: "
                             f"{dupes[:5]}")
    return Pairing(partners, pair_by_id)


def load_ligands(smiles: Sequence[str], path: Path | None, tasks: Sequence[TaskSpec]) -> list[Ligand] | None:
    """Ligands of protein-ligand tasks, checked before any weights load. A --ligand given on
    the command line must be valid; a file's invalid SMILES become rows with status invalid."""
    ligand_tasks = [t.name for t in tasks if t.inputs == LIGAND]
    if not smiles and path is None:
        if ligand_tasks:
            raise UsageError(f"task(s) {', '.join(ligand_tasks)} read a ligand besides each protein: "
                             "give --ligand SMILES or --ligands FILE.smi (or choose other --tasks)")
        return None
    if not ligand_tasks:
        raise UsageError("--ligand/--ligands was given, but none of the selected tasks reads ligands")
    out = []
    for i, text in enumerate(smiles, start=1):
        try:
            check_smiles(text)
        except ValueError as exc:
            raise UsageError(f"--ligand {text!r}: invalid SMILES: {exc}") from None
        out.append(Ligand(f"ligand{i}", text))
    if path is not None:
        out += read_ligands(path)
    names = [lig.id for lig in out]
    if len(set(names)) != len(names):
        raise UsageError(f"ligand names repeat across --ligand and --ligands: {names}")
    return out


def is_stream(path: Path) -> bool:
    """`-`, `/dev/stdin`, a FIFO or a process substitution (`<(...)`): input that can be read once."""
    if str(path) == "-":
        return True
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@contextmanager
def readable_input(path: Path, near: Path) -> Iterator[Path]:
    """A path p2t can read as often as it needs: `path` itself, or a stream (`is_stream`) copied
    once to a temporary file beside `near` (removed afterwards). The run then fingerprints the
    bytes as read, so rerunning with the same bytes on the stream resumes exactly."""
    if not is_stream(path):
        yield path
        return
    try:
        near.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{near.name}.p2t-input-", dir=near.parent))
    except OSError as exc:
        raise OutputError(f"cannot keep a copy of the input stream beside {near}: {exc.strerror or exc}") from None
    try:
        spooled = folder / "input"
        try:
            with (sys.stdin.buffer if str(path) == "-" else path.open("rb")) as src, spooled.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as exc:
            raise OutputError(f"cannot keep a copy of the input stream {path} beside {near}: "
                              f"{exc.strerror or exc}") from None
        yield spooled
    finally:
        shutil.rmtree(folder, ignore_errors=True)
