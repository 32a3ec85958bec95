"""`p2t pull`: download an entry of the catalogue (`model/remote.py`) where p2t and fair-esm look:
ESM2 weights into the torch hub cache, Prot2Token checkpoints imported with `import_prot2token`
into `$P2T_HOME/models`. `from_dir` installs files carried in by hand (air-gapped clusters)
instead of downloading them.

fair-esm publishes no digests, so each ESM2 file gets a record beside it (`<file>.p2t.json`: its
source, bytes, sha256 and install date); a file that still matches its record is not downloaded
again. Two pulls of one thing take turns on a lock (`download.locked`).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ..model.esm_io import hub_checkpoint_path
from ..model.locations import p2t_home, user_models_dir
from ..model.remote import ESM2, Pullable
from .download import DownloadError, Fetched, TransferProgress, copy_in, fetch, locked, sha256_of
from .file_checks import ContentError, EsmCheckpoint, check_content
from .prot2token import import_prot2token


def _get(entry: Pullable, path: str, dest: Path, from_dir: Path | None,
         progress: TransferProgress | None, expect: EsmCheckpoint | None = None) -> Fetched:
    if from_dir is not None:  # the published tree, the dated folder, or the bare files
        parts = Path(path).parts
        found = [from_dir.joinpath(*parts[i:]) for i in range(len(parts)) if from_dir.joinpath(*parts[i:]).is_file()]
        return copy_in(found[0] if found else from_dir / path, dest, expect=expect)
    hint = (f"; set {entry.env} to a mirror, or carry the files in and use `p2t pull {entry.name} --from DIR`")
    return fetch(entry.url(path), dest, expect=expect, progress=progress, hint=hint)


def pull(entry: Pullable, from_dir: Path | None = None, progress: TransferProgress | None = None) -> dict:
    """Download (or copy in) one entry and install it; returns what was installed."""
    if entry.source == ESM2:
        return _pull_esm2(entry, from_dir, progress)
    return _pull_prot2token(entry, from_dir, progress)


def _pull_esm2(entry: Pullable, from_dir: Path | None, progress: TransferProgress | None) -> dict:
    """Each file into the torch hub cache under its own lock, with its install record beside it."""
    target = hub_checkpoint_path(entry.name).parent
    got, fresh = [], False
    for path in entry.files:
        dest = target / Path(path).name
        expect = _expect(entry, path)
        with locked(dest):  # a pull that waited here finds the file installed by the one before
            fetched = _installed(dest, expect)
            if fetched is None:
                fetched = _get(entry, path, dest, from_dir, progress, expect)
                _write_install_record(fetched)
                fresh = True
        got.append(fetched)
    done = {"name": entry.name, "installed": str(target / f"{entry.name}.pt"), "files": _record(got)}
    return done if fresh else {**done, "already": True}


def _pull_prot2token(entry: Pullable, from_dir: Path | None, progress: TransferProgress | None) -> dict:
    """The three published files into a staging folder, imported into the user models folder;
    one lock covers both, since the import must not run twice either."""
    out = user_models_dir() / entry.name
    staging = p2t_home() / "downloads" / entry.name  # a cut transfer resumes from here
    with locked(staging):
        if (out / "config.json").is_file():
            return {"name": entry.name, "installed": str(out), "files": [], "already": True}
        got = [_get(entry, path, staging / path, from_dir, progress) for path in entry.files]
        import_prot2token(got[0].path, got[1].path, got[2].path, out, entry.name)
        _write_card(out, entry, got, from_dir)
        shutil.rmtree(staging, ignore_errors=True)  # the model directory now holds the weights
    return {"name": entry.name, "installed": str(out), "files": _record(got)}


def _expect(entry: Pullable, path: str) -> EsmCheckpoint | None:
    """The model checkpoint of an ESM2 entry must hold the layers and width the entry names."""
    if Path(path).name != f"{entry.name}.pt" or entry.layers is None or entry.width is None:
        return None
    return EsmCheckpoint(entry.name, entry.layers, entry.width)


def install_record_path(installed: Path) -> Path:
    """Where the record of an installed ESM2 file lies: beside it, `<file>.p2t.json`."""
    return installed.with_name(installed.name + ".p2t.json")


def _installed(dest: Path, expect: EsmCheckpoint | None) -> Fetched | None:
    """`dest` as recorded at its install, if it is still those bytes and passes its checks; else
    None (it is downloaded again: a file without a record may be anything)."""
    try:
        record = json.loads(install_record_path(dest).read_text())
        if not dest.is_file() or dest.stat().st_size != record["bytes"] or sha256_of(dest) != record["sha256"]:
            return None
        check_content(dest, dest.name, expect)
    except (ContentError, OSError, ValueError, TypeError, KeyError):  # a failed check, no record, a bad one
        return None
    return Fetched(dest, record["bytes"], record["sha256"], record.get("source", ""))


def _write_install_record(got: Fetched) -> None:
    record = {"source": got.source, "bytes": got.size, "sha256": got.sha256,
              "installed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = install_record_path(got.path)
    try:
        path.write_text(json.dumps(record, indent=2) + "\n")
    except OSError as exc:
        raise DownloadError(f"{got.path} is installed but its record {path} cannot be written "
                            f"({exc.strerror or exc}); the next pull will download it again") from None


def _record(got: list[Fetched]) -> list[dict]:
    return [{"file": f.path.name, "bytes": f.size, "sha256": f.sha256} for f in got]


def _write_card(out: Path, entry: Pullable, got: list[Fetched], from_dir: Path | None) -> None:
    where = f"copied from {from_dir}" if from_dir else f"downloaded from {entry.url('')}"
    lines = [f"# {entry.name}", "", f"{entry.provides}.", "", f"Licence: {entry.licence}.", "",
             f"Files ({where}):", ""]
    lines += [f"- `{p}`: {f.size} bytes, sha256 {f.sha256}" for p, f in zip(entry.files, got)]
    lines += ["", f"Imported with `p2t pull {entry.name}` (`p2t import-prot2token`); the import record is "
              "in config.json (`imported_from`).", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))
    (out / "PULLED.json").write_text(json.dumps({"name": entry.name, "licence": entry.licence,
                                                 "files": _record(got)}, indent=2) + "\n")
