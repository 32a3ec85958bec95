"""The Typer application and the console-script entry point."""

from __future__ import annotations

import sys

import typer

from .common import EXIT_CODES_HELP, err

app = typer.Typer(help=f"p2t: protein screening with ESM2 + Prot2Token decoders. {EXIT_CODES_HELP}",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _register_ray() -> None:
    from .ray import screen_ray  # Ray itself is imported only when the command runs

    app.command("screen-ray", epilog=EXIT_CODES_HELP)(screen_ray)


_register_ray()


def main() -> None:
    """Console-script entry point; turns unexpected crashes into exit code 1."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
