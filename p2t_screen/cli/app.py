"""The Typer application and the console-script entry point."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..version import __version__
from .common import RAY_EXIT_CODES, err, show_warnings

app = typer.Typer(help="p2t: protein screening with ESM2 + Prot2Token decoders. Each command's --help "
                       "ends with its exit codes.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)  # help text as written: no markup eats "[name]"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"p2t {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="print p2t's version and exit")] = False) -> None:
    """p2t: protein screening with ESM2 + Prot2Token decoders."""
    show_warnings()


def _register_ray() -> None:
    from .ray import screen_ray  # Ray itself is imported only when the command runs

    app.command("screen-ray", epilog=RAY_EXIT_CODES)(screen_ray)


_register_ray()


def main() -> None:
    """Console-script entry point; turns unexpected crashes into exit code 1."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
