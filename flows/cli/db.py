"""`baton db`: the application database."""

from __future__ import annotations

import typer

from core.platform.settings import get_settings
from flows.cli.console import console
from flows.cli.session import migrate

app = typer.Typer(help="The application database.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the latest schema.

    The commands that start Baton migrate it too; the others only check that it is at the latest schema."""
    from core.platform.migrate import current_revision

    migrate()
    console.print(f"database at revision {current_revision()}: {get_settings().resolved_database_url()}")

