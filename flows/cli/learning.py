"""`baton learning`: lessons from incidents and their follow-ups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.console import console, err
from flows.cli.session import session_call

app = typer.Typer(help="Lessons from incidents and the follow-ups they turn into.", no_args_is_help=True)


def _due(text: str) -> Any:
    """An ISO date (due at the end of that day, Baton's time zone) or date and time."""
    from datetime import datetime, time

    try:
        if len(text) == 10:
            return datetime.combine(datetime.fromisoformat(text).date(), time(23, 59, 59))
        return datetime.fromisoformat(text)
    except ValueError:
        err.print(f"[red]error[/red] --due must be a date (2026-12-31) or date and time, not '{text}'")
        raise typer.Exit(2) from None


@app.command("lesson")
def learning_lesson(
    ref: Annotated[str, typer.Argument(help="Incident code or id.")],
    text: Annotated[str, typer.Option(help="The lesson (or @file.txt).")],
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Record a lesson on an incident (ledgered on it)."""
    from core.incidents.service import find_incident
    from core.learning.service import record_lesson

    body = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    lesson = session_call(lambda s: record_lesson(s, incident_id=find_incident(s, ref).id, text=body, actor=actor))
    console.print(f"lesson {lesson.id} recorded")


@app.command("lessons")
def learning_lessons(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents.service import find_incident
    from core.learning.service import list_follow_ups, list_lessons

    def load(session: Any) -> list[tuple[Any, list[Any]]]:
        lessons = list_lessons(session, find_incident(session, ref).id)
        return [(x, list_follow_ups(session, department=None, lesson_id=x.id, limit=500).items) for x in lessons]

    table = Table("lesson id", "recorded (UTC)", "by", "lesson", "follow-ups")
    for lesson, follow_ups in session_call(load):
        table.add_row(lesson.id, lesson.created_at.strftime("%Y-%m-%d %H:%M"), lesson.author, lesson.text,
                      "\n".join(f"{f.department}: {f.title} ({f.status})" for f in follow_ups))
    console.print(table)


@app.command("follow-up")
def learning_follow_up(
    lesson_id: Annotated[str, typer.Argument(help="The lesson it comes from.")],
    department: Annotated[str, typer.Option(help="Department key it is assigned to.")],
    title: Annotated[str, typer.Option(help="What is to be done.")],
    due: Annotated[str, typer.Option(help="Due date (2026-12-31) or date and time.")],
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Assign a follow-up of a lesson to a department (ledgered on the lesson's incident)."""
    from core.learning.service import assign_follow_up

    follow_up = session_call(assign_follow_up, lesson_id=lesson_id, department=department, title=title,
                              due_at=_due(due), actor=actor, note=note)
    console.print(f"follow-up {follow_up.id} assigned to {follow_up.department}, due {follow_up.due_at:%Y-%m-%d %H:%M}")


@app.command("follow-ups")
def learning_follow_ups(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only open follow-ups.")] = True,
    overdue: Annotated[bool, typer.Option(help="Only overdue ones.")] = False,
) -> None:
    from core.learning.service import is_overdue, list_follow_ups

    page = session_call(lambda s: list_follow_ups(s, department=department, status="open" if open_only else None,
                                                   overdue=overdue, limit=500))
    table = Table("follow-up id", "department", "title", "due (UTC)", "status")
    for row in page.items:
        late = is_overdue(row)
        table.add_row(row.id, row.department, row.title, row.due_at.strftime("%Y-%m-%d %H:%M"),
                      f"[red]{row.status}, overdue[/red]" if late and row.status == "open" else row.status)
    console.print(table)


@app.command("complete")
def learning_complete(
    follow_up_id: str,
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:department",
) -> None:
    """Report a follow-up done (ledgered on its incident)."""
    from core.learning.service import complete_follow_up

    row = session_call(complete_follow_up, follow_up_id=follow_up_id, actor=actor, note=note)
    console.print(f"follow-up {row.id} done ({row.department})")

