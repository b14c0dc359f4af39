"""The `baton` command."""

from __future__ import annotations

import typer

from process_defs.cli import app as defs_app

app = typer.Typer(help="Baton: multi-department emergency response, every handoff accounted for.",
                  no_args_is_help=True)
app.add_typer(defs_app, name="defs")


def main() -> None:
    app()
