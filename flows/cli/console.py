"""Where the `baton` commands write: results to stdout, errors and notices to stderr."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Protocol

import typer
from rich.console import Console
from rich.markup import escape

from core.platform.tabular import RowProblem

PIPED_WIDTH = 200


def page_width() -> int:
    """A terminal's own width (at least 100); piped (to grep, to a log) a wide page, so that ids and step names
    are never cut, whatever COLUMNS the parent process left behind."""
    stdout = sys.__stdout__
    if stdout is not None and stdout.isatty():
        return max(shutil.get_terminal_size((160, 40)).columns, 100)
    return PIPED_WIDTH


WIDTH = page_width()
console = Console(highlight=False, width=WIDTH)
err = Console(stderr=True, highlight=False, width=WIDTH)


class ImportOutcome(Protocol):
    rows: int
    added: int
    updated: int
    unchanged: int
    problems: list[RowProblem]


def report_import(file: Path, result: ImportOutcome, *, added: str = "added") -> None:
    """An import's refused rows on stderr (`file:row:field: code: why`), its counts on stdout, and exit status 1
    when any row was refused: one shape for every `… import` command."""
    for problem in result.problems:
        err.print(escape(problem.where(str(file))), highlight=False)
    console.print(f"{file.name}: {result.rows} rows, {result.added} {added}, {result.updated} updated, "
                  f"{result.unchanged} unchanged, {len(result.problems)} rows refused")
    if result.problems:
        raise typer.Exit(1)
