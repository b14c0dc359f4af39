"""The `baton` command: the typer app, made of one module per sub-command group."""

from __future__ import annotations

import typer

from flows.cli import (
    db,
    drill,
    incidents,
    learning,
    ledger,
    plans,
    registers,
    roster,
    signals,
    stack,
    system,
    tasks,
    users,
)
from process_defs.cli import app as defs_app

app = typer.Typer(help="Baton: multi-department emergency response, every handoff accounted for.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command("worker")(system.worker)
app.command("serve")(system.serve)
app.command("demo")(system.demo)
for name, group in (("defs", defs_app), ("db", db.app), ("incident", incidents.app), ("task", tasks.app),
                    ("ledger", ledger.app), ("users", users.app), ("stack", stack.app), ("signals", signals.app),
                    ("learning", learning.app), ("plans", plans.app), ("drill", drill.app),
                    ("roster", roster.app), ("registers", registers.app)):
    app.add_typer(group, name=name)


def main() -> None:
    app()
