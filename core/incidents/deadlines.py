"""A task's reminder and deadline: when the reminder is due, and which open incidents have a reminder or deadline
that passed with nobody acting on it.

The engine (`core.incidents.engine`) sends the reminder and escalates at these moments; the deadline sweep
(`flows.maintenance`) wakes the incidents whose worker missed one. Both read them here, so they never disagree.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, or_, select

from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.platform.settings import get_settings

# Only tasks in these states have a reminder and deadline the engine acts on: an escalated task has been
# escalated already, and a finished one is finished.
WITH_DEADLINES = (TaskStatus.assigned, TaskStatus.acknowledged)


def reminder_at(assigned_at: datetime, due_at: datetime, reminder_before: float | None = None) -> datetime:
    """When a task's reminder goes out: when `reminder_before` (a share, 0.2 = 20 %; by default the
    `reminder_before` setting) of the time it was given is left."""
    share = get_settings().reminder_before if reminder_before is None else reminder_before
    return due_at - (due_at - assigned_at) * share


def passed_unhandled(session: Session, *, now: datetime, reminder_before: float | None = None
                     ) -> dict[str, datetime]:
    """For each open incident, the latest reminder or deadline of its tasks that has passed and that the
    engine has not acted on yet (an unsent reminder, or a due time whose task is not escalated)."""
    rows = session.exec(
        select(DepartmentTask.incident_id, DepartmentTask.assigned_at, DepartmentTask.due_at,
               DepartmentTask.reminded_at)
        .join(Incident, col(Incident.id) == DepartmentTask.incident_id)
        .where(col(Incident.status) == IncidentStatus.open, col(DepartmentTask.kind) == "human",
               col(DepartmentTask.status).in_([s.value for s in WITH_DEADLINES]),
               col(DepartmentTask.due_at).is_not(None), col(DepartmentTask.assigned_at).is_not(None),
               or_(col(DepartmentTask.due_at) <= now, col(DepartmentTask.reminded_at).is_(None)))).all()
    moments: dict[str, datetime] = {}
    for incident_id, assigned_at, due_at, reminded_at in rows:
        assert assigned_at is not None and due_at is not None
        if due_at <= now:
            moment = due_at
        else:
            remind_at = reminder_at(assigned_at, due_at, reminder_before)
            if reminded_at is not None or remind_at > now:
                continue
            moment = remind_at
        if incident_id not in moments or moment > moments[incident_id]:
            moments[incident_id] = moment
    return moments
