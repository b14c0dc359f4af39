"""`baton roster`: import a duty roster (CSV or XLSX), mark a person away, see who is on duty."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.console import console, report_import
from flows.cli.session import session_call

app = typer.Typer(help="Duty rosters: who holds each duty position per shift, and their stand-in (AB角).",
                  no_args_is_help=True)
CLI_ADMIN = "cli:admin"


@app.command("import")
def roster_import(file: Annotated[Path, typer.Argument(help="A .csv or .xlsx roster.", exists=True,
                                                       dir_okay=False, readable=True)]) -> None:
    """Import a roster: bad rows are refused (FILE:ROW:FIELD: why, on stderr, exit 1), the good rows kept;
    importing the same file again changes nothing."""
    from core.users import rosters

    data = file.read_bytes()
    result = session_call(lambda session: rosters.import_roster(
        session, rows=rosters.read_rows(file.name, data), source=file.name, actor=CLI_ADMIN))
    report_import(file, result, added="shifts added")


@app.command("away")
def roster_away(name: Annotated[str, typer.Argument(help="User name.")],
                starts: Annotated[datetime, typer.Option("--from", help="From (local time).")],
                ends: Annotated[datetime, typer.Option("--to", help="To (local time).")],
                reason: Annotated[str, typer.Option(help="Why (leave, sick, on assignment …).")]) -> None:
    """The person is away: their stand-in holds their duty positions meanwhile."""
    from zoneinfo import ZoneInfo

    from core.platform.settings import get_settings
    from core.users import rosters

    zone = ZoneInfo(get_settings().timezone)
    session_call(rosters.mark_away, username=name, starts_at=starts.replace(tzinfo=starts.tzinfo or zone),
                 ends_at=ends.replace(tzinfo=ends.tzinfo or zone), reason=reason, actor=CLI_ADMIN)
    console.print(f"{name} is away from {starts:%Y-%m-%d %H:%M} to {ends:%Y-%m-%d %H:%M}")


@app.command("show")
def roster_show(department: Annotated[str, typer.Argument(help="Department key.")]) -> None:
    """Who is on duty in the department now, and the next handover."""
    from zoneinfo import ZoneInfo

    from core.platform.clock import utcnow
    from core.platform.settings import get_settings
    from core.users import rosters

    zone = ZoneInfo(get_settings().timezone)
    desk = session_call(lambda session: rosters.desk(session, department=department, at=utcnow()))
    table = Table("position", "holder", "stand-in", "on duty", "until")
    for duty in desk.duty:
        table.add_row(duty.shift.position, duty.holder.username, duty.stand_in.username if duty.stand_in else "",
                      duty.acting.username if duty.acting else "(nobody)",
                      f"{duty.shift.ends_at.astimezone(zone):%Y-%m-%d %H:%M}")
    console.print(table)
    if desk.next_handover:
        console.print(f"next handover {desk.next_handover.astimezone(zone):%Y-%m-%d %H:%M}")
