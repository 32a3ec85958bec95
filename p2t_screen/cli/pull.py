"""`p2t pull`: download ESM2 weights and published Prot2Token checkpoints, on request only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import P2TError
from .app import app
from .common import PULL_EXIT_CODES, err, fail, print_entries
from .progress import LogTransfer, RichTransfer


@app.command("pull", epilog=PULL_EXIT_CODES)
def pull_cmd(
    names: Annotated[Optional[list[str]], typer.Argument(help="what to pull (see --list)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="show what can be pulled: sizes, licences, what each provides")] = False,
    from_dir: Annotated[Optional[Path], typer.Option("--from", help="install files carried in by hand from this folder instead of downloading")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Download (or, with --from, copy in) ESM2 weights into the torch hub cache and published
    Prot2Token checkpoints, imported into the user models folder. The only p2t command that uses
    the network. Base URLs: P2T_ESM_URL (fair-esm), HF_ENDPOINT (Hugging Face)."""
    from ..interop.pull import pull
    from ..model.remote import CATALOGUE, lookup

    if list_ or not names:
        _print_catalogue(list(CATALOGUE.values()), as_json)
        if not names:
            return
    try:
        entries = lookup(list(names))
        progress = RichTransfer(err) if err.is_terminal else LogTransfer()
        done = []
        for entry in entries:
            if entry.licence.startswith("research only"):
                err.print(f"{entry.name}: {entry.licence}", highlight=False)
            done.append(pull(entry, from_dir, progress))
    except P2TError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps(done, indent=2))
        return
    for item in done:
        note = "already installed" if item.get("already") else "installed"
        err.print(f"{item['name']}: {note} at {item['installed']}", highlight=False)
        for f in item["files"]:
            err.print(f"  {f['file']}: {f['bytes']} bytes, sha256 {f['sha256']}", highlight=False)


def _print_catalogue(entries: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"name": e.name, "source": e.source, "provides": e.provides, "size": e.size,
                           "licence": e.licence, "files": [e.url(f) for f in e.files]} for e in entries], indent=2))
        return
    licences: list[str] = []  # a long licence is printed once, as a numbered note

    def licence(text: str) -> str:
        if len(text) <= 60:
            return text
        if text not in licences:
            licences.append(text)
        return f"see note [{licences.index(text) + 1}]"

    listed = [(e.name, [("provides", e.provides), ("size", e.size), ("licence", licence(e.licence))]) for e in entries]
    print_entries("p2t pull: what can be downloaded (p2t pull NAME)", listed,
                  [f"[{i}] {text}" for i, text in enumerate(licences, 1)])
