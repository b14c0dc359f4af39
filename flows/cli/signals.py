"""`baton signals`: the monitoring sources that post signals."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.console import console
from flows.cli.session import session_call

app = typer.Typer(help="Monitoring sources that post signals.", no_args_is_help=True)


@app.command("add-source")
def signals_add_source(name: Annotated[str, typer.Argument(help="Source name, e.g. hydrology_network.")]) -> None:
    """Register a monitoring source and print its API key (shown once; only a digest is stored)."""
    from core.signals.intake import add_source

    key = session_call(add_source, name=name, actor="cli:admin")
    console.print(f"source {name} added; its API key (send as X-Api-Key): {key}")

