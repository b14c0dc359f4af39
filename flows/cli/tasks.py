"""`baton task`: a department's tasks from a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.console import console, err
from flows.cli.session import session_call

app = typer.Typer(help="Department tasks: list, acknowledge, complete, hand back.", no_args_is_help=True)


@app.command("list")
def task_list(
    department: Annotated[str | None, typer.Option(help="Only this department's inbox.")] = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident (code or id).")] = None,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only open tasks.")] = True,
) -> None:
    from sqlmodel import col, select

    from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident
    from core.incidents.service import find_incident

    def load(session: Any) -> list[Any]:
        query = select(DepartmentTask, Incident.code).join(Incident, col(Incident.id) == DepartmentTask.incident_id)
        if department:
            query = query.where(DepartmentTask.department == department)
        if incident:
            query = query.where(DepartmentTask.incident_id == find_incident(session, incident).id)
        if open_only:
            query = query.where(col(DepartmentTask.status).in_(OPEN_STATUSES), DepartmentTask.kind == "human")
        return list(session.exec(query.order_by(col(DepartmentTask.created_at))).all())

    table = Table("task id", "incident", "step", "department", "status", "due (UTC)")
    for task, code in session_call(load):
        table.add_row(task.id, code, task.step_key, task.department, task.status,
                      task.due_at.strftime("%m-%d %H:%M") if task.due_at else "")
    console.print(table)


@app.command("ack")
def task_ack(task_id: str, actor: Annotated[str, typer.Option()] = "cli:department") -> None:
    from core.incidents.handoffs import acknowledge

    task = session_call(acknowledge, task_id=task_id, actor=actor)
    console.print(f"acknowledged {task.step_key} ({task.department})")


@app.command("complete")
def task_complete(
    task_id: str,
    outputs: Annotated[str, typer.Option(help="Form values as JSON, or @file.json.")] = "{}",
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:department",
) -> None:
    from core.incidents.handoffs import complete

    text = Path(outputs[1:]).read_text(encoding="utf-8") if outputs.startswith("@") else outputs
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error[/red] --outputs is not JSON: {exc}")
        raise typer.Exit(1) from None
    task = session_call(complete, task_id=task_id, actor=actor, outputs=values, note=note)
    console.print(f"completed {task.step_key} ({task.department})")


@app.command("hand-back")
def task_hand_back(task_id: str, reason: Annotated[str, typer.Option()],
                   actor: Annotated[str, typer.Option()] = "cli:department") -> None:
    from core.incidents.handoffs import hand_back

    task = session_call(hand_back, task_id=task_id, actor=actor, reason=reason)
    console.print(f"handed back {task.step_key} ({task.department})")

