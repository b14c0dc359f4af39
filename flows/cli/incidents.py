"""`baton incident`: open, list and show incidents; change their level."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.console import console
from flows.cli.session import session_call

app = typer.Typer(help="Open, list, show incidents; change their level.", no_args_is_help=True)


@app.command("open")
def incident_open(
    type_key: Annotated[str, typer.Argument(metavar="TYPE", help="Incident type, e.g. flood.")],
    title: Annotated[str, typer.Option(help="Short title.")],
    level: Annotated[str | None, typer.Option(help="IV, III, II or I (default: the plan's).")] = None,
    location: Annotated[str | None, typer.Option(help="Place name.")] = None,
    drill: Annotated[bool, typer.Option(help="Open as a drill.")] = False,
    actor: Annotated[str, typer.Option(help="Who opens it.")] = "cli:office",
) -> None:
    """Open an incident; a running worker starts its flow."""
    from core.incidents.service import open_incident

    opened = session_call(open_incident, type_key=type_key, title=title, level=level, location_name=location,
                           drill=drill, actor=actor)
    console.print(f"opened {opened.incident.code} ({opened.incident.id}) at level {opened.incident.level}")


@app.command("list")
def incident_list() -> None:
    from sqlmodel import col, select

    from core.incidents.models import Incident

    rows = session_call(lambda s: list(s.exec(select(Incident).order_by(col(Incident.created_at).desc())
                                               .limit(200)).all()))
    table = Table("code", "type", "level", "stage", "status", "drill", "flow run", "title")
    for row in rows:
        table.add_row(row.code, row.type, row.level, row.stage, row.status, "yes" if row.drill else "",
                      row.flow_run_id or "-", row.title)
    console.print(table)


@app.command("show")
def incident_show(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents.engine import latest_tasks
    from core.incidents.service import find_incident

    def load(session: Any) -> tuple[Any, list[Any]]:
        incident = find_incident(session, ref)
        tasks = sorted(latest_tasks(session, incident.id).values(), key=lambda t: t.created_at)
        return incident, tasks

    incident, tasks = session_call(load)
    console.print(f"[bold]{incident.code}[/bold] {incident.title} type={incident.type} level={incident.level} "
                  f"stage={incident.stage} status={incident.status} flow_run={incident.flow_run_id}")
    table = Table("task id", "stage", "step", "department", "kind", "status", "due (UTC)")
    for task in tasks:
        table.add_row(task.id, task.stage, task.step_key, task.department, task.kind, task.status,
                      task.due_at.strftime("%m-%d %H:%M") if task.due_at else "")
    console.print(table)


@app.command("level")
def incident_level(
    ref: Annotated[str, typer.Argument(help="Incident code or id.")],
    level: Annotated[str, typer.Argument(help="New level: IV, III, II or I.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    as_user: Annotated[str, typer.Option("--as", help="The Baton user deciding it: they need a position the "
                                                     "plan names for the level.")],
    ordered_by: Annotated[str | None, typer.Option(help="The office records it on this commander's verbal "
                                                        "order (user name); flagged until confirmed.")] = None,
) -> None:
    """Raise or lower an incident's level, as a person with the authority for it."""
    from core.incidents.service import change_level, find_incident
    from core.users.service import user_named

    incident = session_call(lambda s: change_level(s, incident_id=find_incident(s, ref).id, level=level,
                                                   by=user_named(s, username=as_user), reason=reason,
                                                   ordered_by=ordered_by))
    console.print(f"{incident.code} is now at level {incident.level}")

