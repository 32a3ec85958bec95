"""What every command shares: exit codes, the error printer, option parsing helpers."""

from __future__ import annotations

import warnings

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import P2TError, P2TWarning

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_ROWS_NOT_OK, EXIT_NO_RECORDS = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
# Each command's epilog states its own exit codes.
EXIT_CODES_HELP = ("Exit codes: 0 all rows ok; 3 finished, some rows not ok; "
                   "4 the input held no records (an empty dataset was written); "
                   "2 usage, input or model error (nothing written); 1 internal error; "
                   "130/143 stopped by SIGINT/SIGTERM (rerun to resume).")
RAY_EXIT_CODES = ("Exit codes: 0 all rows ok; 3 finished, some rows not ok; 2 usage, input, model or Ray "
                  "error; 1 internal error. Reruns do not resume: a non-empty output folder needs --overwrite.")
TRAIN_EXIT_CODES = ("Exit codes: 0 trained, the model written; 2 usage, config or data error (the error names "
                    "the file and row); 1 internal error; 130 interrupted (rerun the same command to resume).")
PRETRAIN_EXIT_CODES = ("Exit codes: 0 finished, or the stage ended (--stage-hours; run it again to continue); "
                       "2 usage or data error; 1 internal error; 130 interrupted (rerun to resume).")
WRITE_EXIT_CODES = ("Exit codes: 0 written; 2 usage, input, data or model error (the model folder left as it "
                    "was); 1 internal error.")
PULL_EXIT_CODES = ("Exit codes: 0 installed (or listed); 2 unknown name, download or checksum failure "
                   "(nothing half-installed is left); 1 internal error.")
READ_EXIT_CODES = "Exit codes: 0 done; 2 usage, input, data or model error; 1 internal error."
LIST_EXIT_CODES = "Exit codes: 0 listed; 2 nothing to list or an unreadable model (the error says where); 1 internal error."


# Text is printed as written: no rich markup, so "[name]" or "[scenario]" in a message stays.
err = Console(stderr=True, soft_wrap=True, markup=False)  # log lines stay whole when stderr is a file
out = Console(markup=False)  # tables and figures on stdout


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


def print_entries(title: str, entries: list[tuple[str, list[tuple[str, str]]]], notes: list[str] = (),
                  width: int | None = None) -> None:
    """A listing that never cuts a name: each entry's name on its own line, whole, then its
    fields indented and wrapped to the terminal (80 columns when unknown), then any notes. Plain
    text on stdout: nothing in it is read as markup."""
    import shutil
    import textwrap

    width = width or shutil.get_terminal_size((80, 24)).columns
    lines = [title, ""]
    for name, fields in entries:
        lines.append(name)
        for key, value in fields:
            text = f"{key}: {value}" if key else str(value)
            lines += textwrap.wrap(text, width=max(width, 24), initial_indent="    ", subsequent_indent="      ",
                                   break_on_hyphens=False) or [f"    {text}"]
    if notes:
        lines.append("")
        for note in notes:
            lines += textwrap.wrap(note, width=max(width, 20), subsequent_indent="    ", break_on_hyphens=False)
    print("\n".join(lines))


def split_tasks(value: str) -> list[str]:
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("give at least one task name, or 'all'")
    return names
