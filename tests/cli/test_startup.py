"""`p2t --help`, `p2t --version` and every command's `--help` answer without importing torch (or
any of the library's heavy modules): they start in a fraction of a second. The time itself is
measured by `p2t bench --startup`, not here."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = ["screen", "screen-ray", "calibrate", "train", "eval", "pretrain", "export", "report", "bench", "pull",
            "models", "tasks", "columns", "import-prot2token"]

PROBE = """
import sys
from typer.testing import CliRunner
from p2t_screen.cli import app
for args in [["--help"], ["--version"], *[[c, "--help"] for c in {commands!r}]]:
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, (args, done.output)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "esm", "ray", "sklearn"))
print(",".join(heavy))
"""


def test_help_and_version_never_import_torch():
    done = subprocess.run([sys.executable, "-c", PROBE.format(commands=COMMANDS)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported for --help: {done.stdout.strip()}"


def test_every_command_is_probed():
    from p2t_screen.cli import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == set(COMMANDS), names ^ set(COMMANDS)


def test_the_cli_and_the_library_agree_on_ray_batches():
    from p2t_screen.cli import ray as cli_ray
    from p2t_screen.interop import ray as lib_ray

    assert cli_ray.DEFAULT_BATCH_SIZE == lib_ray.DEFAULT_BATCH_SIZE
