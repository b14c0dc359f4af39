"""Where the `baton` commands write: results to stdout, errors and notices to stderr."""

from __future__ import annotations

import shutil
import sys

from rich.console import Console

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
