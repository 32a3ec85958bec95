"""Predicted 3Di structure states as input for a Foldseek structure search, without structures.

Foldseek searches a database of amino acids and 3Di states side by side. `foldseek createdb` on
a FASTA file makes an amino-acid database only (it computes 3Di from structures), so predicted
3Di goes in through `foldseek tsv2db`, once for each of the three parts a Foldseek database has:
the amino acids (`DB`), the 3Di states (`DB_ss`) and the headers (`DB_h`), keyed alike (the
method ProstT5's authors give for their predicted 3Di). The folder written here holds those three
TSV files, a 3Di FASTA beside them, and a README with the commands.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError, UsageError
from ..tasks.catalog import THREE_DI
from .cells import safe_text
from .dataset import Results
from .residues import tracks
from .sequences import InputSequences

STATES = frozenset(THREE_DI)
README = """Predicted 3Di states of {n} proteins (p2t task {task!r}), for Foldseek.

Make a Foldseek database of amino acids + 3Di from them (no structures needed):

    foldseek tsv2db aa.tsv p2tDB --output-dbtype 0
    foldseek tsv2db 3di.tsv p2tDB_ss --output-dbtype 0
    foldseek tsv2db header.tsv p2tDB_h --output-dbtype 12

then search it like any Foldseek database, for example against a structure database you have:

    foldseek search p2tDB targetDB aln tmp
    foldseek convertalis p2tDB targetDB aln aln.m8

aa.tsv, 3di.tsv and header.tsv share their first column (the key); 3di.fasta holds the same
3Di strings as FASTA, the protein's id as header. In header.tsv a header that starts with =, +,
-, @ has a leading ' (so no spreadsheet runs it as a formula), and tabs become spaces. A protein
cut to fit the encoder appears with the residues that were screened.
"""


def foldseek_task(results: Results, tasks: list[str] | None) -> str:
    """The run's task whose residue codes are 3Di states: the one given, else the only candidate."""
    per_residue = [name for name, spec in results.specs.items()
                   if spec.task_kind.residue_tracks and set(spec.codes or "") == STATES]
    if tasks:
        if len(tasks) > 1:
            raise UsageError("--format foldseek writes one task's 3Di states: give one --task")
        if tasks[0] not in per_residue:
            raise UsageError(f"task {tasks[0]!r} does not write 3Di states (20 per-residue states coded "
                             f"A..Y; such tasks here: {', '.join(per_residue) or 'none'})")
        return tasks[0]
    if len(per_residue) != 1:
        raise UsageError(f"--format foldseek needs the 3Di task: give --task "
                         f"({'candidates: ' + ', '.join(per_residue) if per_residue else 'none of these results has one'})")
    return per_residue[0]


def write_foldseek(results: Results, sequences: InputSequences, task: str, out: Path) -> int:
    """Write the folder (atomically: a finished folder or none); returns the proteins written."""
    if out.exists() and not out.is_dir() or out.is_symlink():
        raise OutputError(f"cannot write the Foldseek folder {out}: a file of that name is in the way")
    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        n = _write_parts(results, sequences, task, tmp)
        (tmp / "README.txt").write_text(README.format(n=n, task=task), encoding="utf-8")
        if out.exists():  # the previous export steps aside until the new one is in place
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n


def _one_field(text: str) -> str:
    """A header as one TSV field: a tab inside it would start a new column."""
    return text.replace("\t", " ")


def _write_parts(results: Results, sequences: InputSequences, task: str, folder: Path) -> int:
    names = ("aa.tsv", "3di.tsv", "header.tsv", "3di.fasta")
    files = [(folder / name).open("w", encoding="utf-8") for name in names]
    aa, states, headers, fasta = files
    n = 0
    try:
        for row, sequence, track in tracks(results, sequences, [task]):
            if row.get("partner_id") or row.get("ligand_id"):
                raise UsageError(f"task {task!r} reads a partner or ligand: 3Di states are one protein's")
            if len(track.codes) != len(sequence):
                raise UsageError(f"record {row['seq_id']!r}: {len(track.codes)} 3Di states for "
                                 f"{len(sequence)} residues")
            n += 1
            aa.write(f"{n}\t{sequence}\n")
            states.write(f"{n}\t{track.codes}\n")
            headers.write(f"{n}\t{safe_text(_one_field(row['header'] or row['seq_id']))}\n")
            fasta.write(f">{row['seq_id']}\n{track.codes}\n")
    finally:
        for fh in files:
            fh.close()
    return n
