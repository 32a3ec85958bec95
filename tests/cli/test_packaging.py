"""What a user gets from `pip install`: a p2t that screens with the bundled default model from
any folder, knows its version, and says where it looked when it finds no models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pyarrow.dataset as ds
from typer.testing import CliRunner

from p2t_screen import __version__
from p2t_screen.cli import EXIT_USAGE, app
from p2t_screen.model.store import read_model_config

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the source tree (the checkout itself stays untouched)."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.train", "local")
    for folder in ("p2t_screen", "models"):
        shutil.copytree(ROOT / folder, src / folder, ignore=skip)
    # A recipe's output in models/local/ (git-ignored) is never packaged.
    shutil.copytree(ROOT / "models" / "p2t-selfsup-tiny", src / "models" / "local" / "mine")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    return next((tmp_path / "dist").glob("p2t_screen-*.whl"))


def test_a_wheel_install_screens_with_the_bundled_model_from_another_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(m for m in (ROOT / "models").iterdir() if (m / "config.json").is_file())
    assert "p2t-default" in [m.name for m in shipped]
    files = {f"p2t_screen/bundled_models/{m.name}/{f.name}" for m in shipped for f in m.iterdir() if f.is_file()}
    assert files <= set(names), sorted(files - set(names))  # every file of every bundled model
    assert not any(n.startswith(("tests/", "tools/", "models/")) or "/local/" in n or ".train/" in n for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # The dependencies (torch, fair-esm, ...) come from this environment; p2t from the wheel.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lib.fasta").write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nMSTYKRNACDE\n")
    p2t = str(venv / "bin" / "p2t")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import p2t_screen; print(p2t_screen.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    version = subprocess.run([p2t, "--version"], cwd=elsewhere, capture_output=True, text=True)
    assert version.stdout.strip() == f"p2t {__version__}"
    listed = subprocess.run([p2t, "models", "--json"], cwd=elsewhere, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    bundled = [Path(m["path"]) for m in json.loads(listed.stdout) if m["origin"] == "bundled"]
    assert [p.name for p in bundled] == [m.name for m in shipped]  # p2t-default among them, nothing from local/
    assert {p.parent for p in bundled} == {Path(where.strip()).parent / "bundled_models"}  # inside the install
    run = subprocess.run([p2t, "screen", "lib.fasta", "-o", "out", "--device", "cpu", "-q"], cwd=elsewhere,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    table = ds.dataset(elsewhere / "out").to_table()
    offered = len(read_model_config(None).tasks)  # the default model's tasks, each a row per protein
    assert set(table.column("status").to_pylist()) == {"ok"} and table.num_rows == 2 * offered


def test_models_lists_user_models_and_says_where_it_looked_when_there_are_none(tmp_path, monkeypatch,
                                                                               tiny_model_dir):
    from p2t_screen.model import locations

    monkeypatch.setattr(locations, "BUNDLED_DIR", tmp_path / "no-bundled")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == EXIT_USAGE
    text = " ".join(result.output.split())
    assert "no p2t models found" in text and str(locations.user_models_dir()) in text and "p2t pull" in text
    shutil.copytree(tiny_model_dir, locations.user_models_dir() / "mine")
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert [(m["name"], m["origin"]) for m in json.loads(result.output)] == [("tiny", "user")]
    assert locations.resolve_model_path("mine") == locations.user_models_dir() / "mine"


def test_version_option():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"p2t {__version__}"
