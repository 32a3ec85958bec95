"""What every command shares: exit codes, the error printer, option parsing helpers."""

from __future__ import annotations

import warnings

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import P2TError, P2TWarning

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_ROWS_NOT_OK, EXIT_NO_RECORDS = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
EXIT_CODES_HELP = ("Exit codes: 0 all rows ok; 3 finished, some rows not ok; "
                   "4 the input held no records (an empty dataset was written); "
                   "2 usage, input or model error (nothing written); 1 internal error; "
                   "130/143 stopped by SIGINT/SIGTERM (rerun to resume).")


err = Console(stderr=True, soft_wrap=True)  # log lines stay whole when stderr is a file


def fail(error: P2TError | str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `error` as one red "error:" line and return the Exit to raise. The message is
    escaped: text such as "[on_invalid=error, on_long=truncate]" must not read as rich markup."""
    err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def show_warnings() -> None:
    """p2t's own warnings print as one "warning:" line on stderr; other warnings as Python prints them."""
    previous = warnings.showwarning
    if getattr(previous, "p2t", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, P2TWarning):
            err.print(f"warning: {message}", markup=False, highlight=False)
        else:
            previous(message, category, filename, lineno, file, line)

    show.p2t = True
    warnings.showwarning = show


MAX_TOKENS_HELP = ("padded encoder tokens per batch, or auto: on CUDA the largest that fits the device's "
                   "free memory (measured before the first batch, 15% kept aside), on CPU 16384")


def parse_max_tokens(value: str) -> int | None:
    """`--max-tokens`: a positive number, or 'auto' (None: the run measures it)."""
    if value.strip().lower() == "auto":
        return None
    try:
        tokens = int(value)
    except ValueError:
        raise typer.BadParameter(f"give a number of tokens or 'auto', got {value!r}") from None
    if tokens < 1:
        raise typer.BadParameter(f"must be at least 1, got {tokens}")
    return tokens


THRESHOLD_HELP = ("TASK=P: emit a label of multi-label 'flags' task TASK at probability >= P "
                  "(default: the model's; repeatable)")


COVERAGE_HELP = ("coverage of the conformal intervals and label sets in the rows (value_lo/value_hi, label_set, "
                 "site_set, residue_sets): one of the levels stored at calibration time, 0.8 | 0.9 | 0.95")


def parse_coverage(value: str) -> float:
    """`--coverage`: one of the levels a calibration stores."""
    from ..tasks.conformal import check_level

    try:
        return check_level(float(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc) if "level" in str(exc) else f"not a number: {value!r}") from None


def split_tasks(value: str) -> list[str]:
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("give at least one task name, or 'all'")
    return names
