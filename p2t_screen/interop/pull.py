"""`p2t pull`: download an entry of the catalogue (`model/remote.py`) where p2t and fair-esm look:
ESM2 weights into the torch hub cache, Prot2Token checkpoints imported with `import_prot2token`
into `$P2T_HOME/models`. `from_dir` installs files carried in by hand (air-gapped clusters)
instead of downloading them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..model.esm_io import hub_checkpoint_path
from ..model.locations import p2t_home, user_models_dir
from ..model.remote import ESM2, Pullable
from .download import Fetched, TransferProgress, copy_in, fetch
from .prot2token import import_prot2token


def _get(entry: Pullable, path: str, dest: Path, from_dir: Path | None,
         progress: TransferProgress | None) -> Fetched:
    if from_dir is not None:  # the published tree, the dated folder, or the bare files
        parts = Path(path).parts
        found = [from_dir.joinpath(*parts[i:]) for i in range(len(parts)) if from_dir.joinpath(*parts[i:]).is_file()]
        return copy_in(found[0] if found else from_dir / path, dest)
    hint = (f"; set {entry.env} to a mirror, or carry the files in and use `p2t pull {entry.name} --from DIR`")
    return fetch(entry.url(path), dest, progress=progress, hint=hint)


def pull(entry: Pullable, from_dir: Path | None = None, progress: TransferProgress | None = None) -> dict:
    """Download (or copy in) one entry and install it; returns what was installed."""
    if entry.source == ESM2:
        target = hub_checkpoint_path(entry.name).parent
        got = [_get(entry, path, target / Path(path).name, from_dir, progress) for path in entry.files]
        return {"name": entry.name, "installed": str(target / f"{entry.name}.pt"), "files": _record(got)}
    out = user_models_dir() / entry.name
    if (out / "config.json").is_file():
        return {"name": entry.name, "installed": str(out), "files": [], "already": True}
    staging = p2t_home() / "downloads" / entry.name  # a cut transfer resumes from here
    got = [_get(entry, path, staging / path, from_dir, progress) for path in entry.files]
    import_prot2token(got[0].path, got[1].path, got[2].path, out, entry.name)
    _write_card(out, entry, got, from_dir)
    shutil.rmtree(staging, ignore_errors=True)  # the model directory now holds the weights
    return {"name": entry.name, "installed": str(out), "files": _record(got)}


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
