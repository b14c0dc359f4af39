"""The `baton` command: plans, the database, workers, the embedded system, and the office's and departments'
actions from a terminal. One module per sub-command group; main.py builds the app (`baton = "flows.cli:main"`).
"""

from __future__ import annotations

from flows.cli.main import app, main

__all__ = ["app", "main"]
