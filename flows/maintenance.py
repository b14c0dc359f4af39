"""Maintenance flows that `deploy/prefect.yaml` deploys to the `baton-maintenance` process work pool.

They work on Baton's database only and never touch an incident's own flow run:

* `deadline-sweep` (every minute) wakes incidents with a reminder or deadline that passed while the worker
  holding them was busy, by bumping `incident.woken_at` (the signal workers poll). The incident's flow then
  reminds or escalates as usual; the sweep itself writes no ledger entry.
* `ledger-audit` (nightly) verifies every incident's hash chain and fails its flow run if any is broken.

Each database write or read here is a short transaction of its own: on SQLite every transaction holds the
write lock, and on PostgreSQL one-row transactions cannot deadlock with the workers' multi-row lease updates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from sqlalchemy import update
from sqlmodel import col, or_, select

from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.ledger.chain import verify_incident
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings

# Only tasks in these states have deadlines the engine acts on (see `core.incidents.engine._Advancer.deadlines`).
WITH_DEADLINES = [TaskStatus.assigned.value, TaskStatus.acknowledged.value]


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called through `.fn` or from a plain script
        return logging.getLogger("baton.maintenance")


def passed_moments(now: datetime, reminder_before: float) -> dict[str, datetime]:
    """For each open incident, the latest reminder or deadline of its tasks that has passed and that the
    engine has not acted on yet (an unsent reminder, or a due time whose task is not escalated)."""
    query = (select(DepartmentTask.incident_id, DepartmentTask.assigned_at, DepartmentTask.due_at,
                    DepartmentTask.reminded_at)
             .join(Incident, col(Incident.id) == DepartmentTask.incident_id)
             .where(col(Incident.status) == IncidentStatus.open, col(DepartmentTask.kind) == "human",
                    col(DepartmentTask.status).in_(WITH_DEADLINES), col(DepartmentTask.due_at).is_not(None),
                    col(DepartmentTask.assigned_at).is_not(None),
                    or_(col(DepartmentTask.due_at) <= now, col(DepartmentTask.reminded_at).is_(None))))
    moments: dict[str, datetime] = {}
    with session_scope() as session:
        rows = session.exec(query).all()
    for incident_id, assigned_at, due_at, reminded_at in rows:
        assert assigned_at is not None and due_at is not None
        if due_at <= now:
            moment = due_at
        else:
            remind_at = due_at - (due_at - assigned_at) * reminder_before
            if reminded_at is not None or remind_at > now:
                continue
            moment = remind_at
        if incident_id not in moments or moment > moments[incident_id]:
            moments[incident_id] = moment
    return moments


def sweep_deadlines(now: datetime | None = None) -> list[str]:
    """Wake every open incident with a passed, unhandled reminder or deadline that has not been woken
    since; returns their ids. Waking twice is harmless (the flow re-reads everything), so a sweep that
    races the incident's own timer costs one extra reconciliation at most."""
    moment = now or utcnow()
    woken: list[str] = []
    for incident_id, passed in sorted(passed_moments(moment, get_settings().reminder_before).items()):
        with session_scope() as session:
            result = session.execute(
                update(Incident)
                .where(col(Incident.id) == incident_id, col(Incident.status) == IncidentStatus.open,
                       col(Incident.woken_at) < passed)
                .values(woken_at=moment)
                .execution_options(synchronize_session=False))
            if result.rowcount:  # type: ignore[attr-defined]
                woken.append(incident_id)
    return woken


@flow(name="deadline-sweep")
def deadline_sweep() -> dict[str, Any]:
    """Wake incidents whose reminder or deadline passed while their worker was busy."""
    woken = sweep_deadlines()
    if woken:
        _logger().info("woke %d incident(s) with a passed reminder or deadline: %s", len(woken), ", ".join(woken))
    return {"woken": woken}


@dataclass(frozen=True)
class BrokenChain:
    code: str
    incident_id: str
    first_bad_seq: int | None
    reason: str | None

    def __str__(self) -> str:
        return f"{self.code} ({self.incident_id}): first bad entry {self.first_bad_seq} ({self.reason})"


class LedgerBroken(RuntimeError):
    """At least one incident's ledger no longer verifies: it was edited, cut short or reordered."""

    def __init__(self, broken: list[BrokenChain], checked: int) -> None:
        self.broken = broken
        lines = "\n".join(f"  - {item}" for item in broken)
        super().__init__(f"{len(broken)} of {checked} incident ledger(s) are broken:\n{lines}")


def audit_ledgers() -> tuple[int, list[BrokenChain]]:
    """Verify every incident's chain (open and closed), one short transaction per incident."""
    with session_scope() as session:
        incidents = [(row[0], row[1]) for row in
                     session.exec(select(Incident.id, Incident.code).order_by(col(Incident.created_at))).all()]
    broken: list[BrokenChain] = []
    for incident_id, code in incidents:
        with session_scope() as session:
            result = verify_incident(session, incident_id)
        if not result.valid:
            broken.append(BrokenChain(code, incident_id, result.first_bad_seq, result.reason))
    return len(incidents), broken


@flow(name="ledger-audit")
def ledger_audit() -> dict[str, Any]:
    """Verify every incident's ledger; the flow run fails, naming each broken chain, if any does not verify."""
    checked, broken = audit_ledgers()
    if broken:
        raise LedgerBroken(broken, checked)
    _logger().info("all %d incident ledger(s) verify", checked)
    return {"checked": checked, "broken": 0}
