"""What a newcomer reads at an 80-column terminal: every command's help with its own exit codes
and help for every option, text in brackets intact, and listings whose names are never cut."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.cli.common import EXIT_CODES_HELP
from p2t_screen.model.remote import CATALOGUE
from p2t_screen.io.schema import COLUMN_DOCS
from p2t_screen.tasks.catalog import CATALOG

COMMANDS = sorted(typer.main.get_command(app).commands)


def run(*args: str):
    done = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"}, terminal_width=80)
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_states_its_own_exit_codes(command):
    text = " ".join(run(command, "--help").split())
    assert "Exit codes: 0" in text
    assert text.count("Exit codes:") == 1, "two exit-code blocks"
    if command != "screen":
        assert " ".join(EXIT_CODES_HELP.split()) not in text, "the screen's exit codes under another command"


def test_every_option_and_argument_has_help():
    missing = [f"{name} {p.name}" for name, sub in typer.main.get_command(app).commands.items()
               for p in sub.params if not (p.help or "").strip()]
    assert not missing, missing


def test_text_in_brackets_survives_in_help():
    text = " ".join(run("screen", "--help").split())
    assert "SMILES [name] per line" in text
    for command in COMMANDS:  # a pair of brackets in help text may only be click's own [default: ...], [required]...
        for inner in re.findall(r"\[([^\]]*)\]", run(command, "--help")):
            assert inner.strip(), f"{command}: an empty [] left where markup was eaten"


def test_pull_list_shows_whole_names_and_each_licence_once():
    text = run("pull", "--list")
    lines = text.splitlines()
    for entry in CATALOGUE.values():
        assert entry.name in lines, entry.name  # alone on its line, whole
    long = {e.licence for e in CATALOGUE.values() if len(e.licence) > 60}
    for licence in long:
        assert " ".join(text.split()).count(" ".join(licence.split())) == 1
    assert all(len(line) <= 80 for line in lines if line not in CATALOGUE)


def test_tasks_models_and_columns_show_whole_names():
    lines = run("tasks").splitlines()
    assert all(name in lines for name in CATALOG)
    assert "p2t-default (default)" in run("models").splitlines()
    assert all(name in run("columns").splitlines() for name in COLUMN_DOCS)
