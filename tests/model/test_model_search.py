"""The model search path never crashes: an unreadable, missing or non-folder entry in
P2T_MODELS_DIR (or a broken model in it) is skipped with one warning naming it, and a screen that
does not need it runs. Permissions mean nothing to root, so the commands run as an unprivileged
user (`setpriv`, uid 65534) when the tests run as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from p2t_screen.errors import P2TWarning
from p2t_screen.model.locations import installed_models

NOBODY = 65534


def _as_unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no way to run as a user that permissions apply to")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def search_path(tiny_model_dir):
    """P2T_MODELS_DIR = an unreadable folder, a missing one, a file, a folder holding a broken
    model beside a good one; all in a folder an unprivileged user can reach."""
    root = Path(tempfile.mkdtemp(prefix="p2t-search-"))
    try:
        root.chmod(0o755)
        locked, good = root / "locked", root / "good"
        (locked / "secret-model").mkdir(parents=True)
        shutil.copytree(tiny_model_dir, good / "tiny")
        (good / "broken").mkdir()
        (good / "broken" / "config.json").write_text("{not json")
        (root / "a-file").write_text("not a folder")
        (root / "home").mkdir()
        (root / "lib.fasta").write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        locked.chmod(0o000)
        entries = [locked, root / "missing", root / "a-file", good]
        yield root, os.pathsep.join(map(str, entries))
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def _p2t(root: Path, models_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "P2T_MODELS_DIR": models_dir, "P2T_HOME": str(root / "home"), "HOME": str(root / "home")}
    return subprocess.run([*_as_unprivileged(), sys.executable, "-m", "p2t_screen", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)


def _warned(stderr: str, root: Path) -> None:
    text = " ".join(stderr.split())
    assert f"warning: models folder {root / 'locked'} (P2T_MODELS_DIR) skipped: Permission denied" in text
    assert f"models folder {root / 'missing'} (P2T_MODELS_DIR) skipped: it does not exist" in text
    assert f"models folder {root / 'a-file'} (P2T_MODELS_DIR) skipped: it is not a folder" in text
    assert text.count(str(root / "locked")) == 1  # one warning, not one per lookup
    assert "Traceback" not in stderr


def test_models_lists_what_it_can_read_and_names_what_it_skipped(search_path):
    root, models_dir = search_path
    done = _p2t(root, models_dir, "models", "--json")
    assert done.returncode == 0, done.stderr
    _warned(done.stderr, root)
    listed = {m["name"]: m["origin"] for m in json.loads(done.stdout)}
    assert listed["tiny"] == "P2T_MODELS_DIR" and listed["p2t-default"] == "bundled" and "broken" not in listed
    assert f"installed model {root / 'good' / 'broken'} (P2T_MODELS_DIR) skipped: cannot read" in " ".join(
        done.stderr.split())


def test_a_screen_that_does_not_need_the_broken_entries_runs(search_path):
    root, models_dir = search_path
    done = _p2t(root, models_dir, "screen", "lib.fasta", "--tasks", "kingdom", "-o", "out", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr
    _warned(done.stderr, root)
    assert (root / "out" / "_SUCCESS").is_file()


def test_in_process_the_skips_are_warnings(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("P2T_MODELS_DIR", os.pathsep.join([str(tmp_path / "file"), str(tmp_path / "nowhere")]))
    with pytest.warns(P2TWarning) as caught:
        names = [m.name for m in installed_models()]
    assert "p2t-default" in names
    assert sorted(str(w.message).split(" (")[0] for w in caught) == [
        f"models folder {tmp_path / 'file'}", f"models folder {tmp_path / 'nowhere'}"]
