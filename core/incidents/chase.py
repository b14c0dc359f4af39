"""The office chases up an overdue task (催办): ledgered, sent to the department's system where it has one (the
outbox, purpose `chase_up`), and shown on the task's page to the department ("应急办于 14:05 催办").

Only an open task past its due time is chased up; the route checks the reader is the office. Chasing twice in
the same minute (a double click) is one chase-up.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from core.incidents.models import DepartmentTask, IncidentStatus, TaskStatus
from core.incidents.reads import is_overdue
from core.incidents.service import COMMAND, lock_task
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.outbox import queue as outbox
from core.platform.clock import utcnow
from core.platform.errors import BatonError, IncidentClosed


class TaskNotOverdue(BatonError):
    """Only an open task past its due time is chased up."""

    code = "task_not_overdue"
    http_status = 409


def chase_up(session: Session, *, task_id: str, actor: str, now: datetime | None = None) -> LedgerEntry:
    """Chase up the overdue task `task_id`: the ledger entry (from the office to the task's department), and a
    message to the department's system if it has one. Returns the entry (the same one for a repeat within the
    minute)."""
    incident, task = lock_task(session, task_id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    moment = now or utcnow()
    if task.kind != "human" or not TaskStatus(task.status).is_open or not is_overdue(task, moment):
        raise TaskNotOverdue(f"task {task.step_key} is {task.status} and not overdue",
                             details={"task_id": task.id, "status": task.status})
    holder = task.position or task.department
    key = f"{task.id}:chased:{moment:%Y%m%d%H%M}"
    entry = ledger.append(session, incident=incident, kind=LedgerKind.task_chased_up, actor=actor,
                          from_party=COMMAND, to_party=holder, step_key=task.step_key, idempotency_key=key,
                          details={"task_id": task.id, "attempt": task.attempt, "department": task.department,
                                   "due_at": task.due_at.isoformat() if task.due_at else None}, at=moment)
    session.flush()  # the entry is returned with its id
    if task.position is None and outbox.has_endpoint(task.department):
        outbox.queue(session, incident=incident, key=key, purpose="chase_up", target=task.department,
                     payload={"task": {"id": task.id, "step": task.step_key, "stage": task.stage,
                                       "due_at": task.due_at.isoformat() if task.due_at else None},
                              "chased_at": moment.isoformat(), "by": COMMAND})
    return entry


def chase_ups(session: Session, task: DepartmentTask) -> list[datetime]:
    """When the office chased up this task, oldest first."""
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == task.incident_id,
                                                     LedgerEntry.kind == LedgerKind.task_chased_up,
                                                     LedgerEntry.step_key == task.step_key)
                           .order_by(col(LedgerEntry.seq))).all()
    return [e.at for e in entries if isinstance(e.details, dict) and e.details.get("task_id") == task.id]
