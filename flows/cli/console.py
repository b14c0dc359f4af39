"""Where the `baton` commands write: results to stdout, errors and notices to stderr."""

from __future__ import annotations

import shutil

from rich.console import Console

# Tables stay readable when piped (to grep, to a log): no terminal means a wide page, not 80 columns.
WIDTH = max(shutil.get_terminal_size((160, 40)).columns, 100)
console = Console(highlight=False, width=WIDTH)
err = Console(stderr=True, highlight=False, width=WIDTH)
