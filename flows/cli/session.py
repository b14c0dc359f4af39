"""How a command reaches the database: one transaction per command, on a schema it does not change.

Only the commands that start Baton (`serve`, `worker`, `demo`, `drill run`, `stack up`) or are asked to
(`db upgrade`) migrate the database, and they say so. Every other command checks that the schema is the one
this Baton expects and otherwise stops, naming `baton db upgrade`: a command that lists users must not change a
production database's schema as a side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from core.platform.errors import BatonError
from flows.cli.console import err

T = TypeVar("T")


def require_current_schema() -> None:
    """Stop (exit 1) unless the database is at the latest schema revision."""
    from core.platform.migrate import schema_state

    state = schema_state()
    if state.at_head:
        return
    if state.current is None:
        problem = "has no Baton schema yet"
    elif not state.known:
        problem = f"is at schema revision {state.current}, which this Baton does not know (a newer Baton's?)"
    else:
        problem = f"is at schema revision {state.current}, this Baton needs {state.head}"
    err.print(f"[red]error[/red] the database {escape(state.where)} {escape(problem)}; "
              "run `baton db upgrade` first")
    raise typer.Exit(1)


def migrate() -> None:
    """Bring the database to the latest schema and say so (the commands that start Baton)."""
    from core.platform.migrate import schema_state, upgrade

    before = schema_state()
    if before.at_head:
        err.print(f"database schema up to date (revision {before.head})")
        return
    err.print(f"migrating the database {escape(before.where)} from revision {before.current or '(empty)'} "
              f"to {before.head}")
    upgrade()


def session_call(fn: Callable[..., T], **kwargs: Any) -> T:
    """Run a service in one transaction; domain errors become a clear message and exit code 1."""
    from core.platform.db import session_scope

    require_current_schema()
    try:
        with session_scope() as session:
            return fn(session, **kwargs)
    except BatonError as exc:
        # Escaped: the code in brackets and the message are text, not rich markup.
        err.print(f"[red]error[/red] {escape(f'[{exc.code}]')} {escape(exc.message)}")
        details = exc.details
        if isinstance(details, dict):  # {"reason": code} is for programs and pages; the message says it here
            details = [f"{k}: {v}" for k, v in details.items() if k != "reason"]
        if details:
            for item in details if isinstance(details, list) else [details]:
                err.print(f"  - {escape(str(item))}")
        raise typer.Exit(1) from None
