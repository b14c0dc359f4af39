"""Incidents: open one, lock it for a write, change its level. Services never commit; callers do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlmodel import Session, col, select

from core.incidents import authority
from core.incidents import leases as _leases  # noqa: F401  (its hooks notify wakes on PostgreSQL)
from core.incidents.models import (
    DepartmentTask,
    Incident,
    IncidentStatus,
    LevelChange,
    LevelProposal,
    ProposalStatus,
    TaskStatus,
)
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_for_version, snapshot_current
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.errors import IncidentClosed, InvalidLevel, NotFound, ReasonRequired
from core.platform.failpoints import failpoint
from core.platform.input_policy import Refusals
from core.platform.settings import get_settings
from core.users.models import User
from process_defs.schema import LEVELS, level_rank

SYSTEM = "baton"
COMMAND = "emergency_office"


def lock_incident(session: Session, incident_id: str) -> Incident:
    """Read the incident for writing; concurrent writers to the same incident queue behind this one.

    On PostgreSQL this is a row lock; on SQLite every write transaction already holds the database's
    write lock (BEGIN IMMEDIATE), which serialises them.
    """
    query = _LOCK_INCIDENT_PG if is_postgres(session) else _LOCK_INCIDENT
    incident = session.exec(query, params={"incident_id": incident_id}).first()
    if incident is None:
        raise NotFound(f"no incident '{incident_id}'")
    return incident


# The locking reads, built once (every completion and every wake takes one; issue 19). On PostgreSQL FOR NO KEY
# UPDATE: compatible with the KEY SHARE locks that inserting rows referencing the incident takes, so a transaction
# that inserted first and locks second cannot deadlock another.
_LOCK_INCIDENT = select(Incident).where(Incident.id == bindparam("incident_id")).execution_options(
    populate_existing=True)
_LOCK_INCIDENT_PG = _LOCK_INCIDENT.with_for_update(key_share=True)
_TASK_OWNER = select(DepartmentTask.incident_id).where(DepartmentTask.id == bindparam("task_id")).scalar_subquery()
_LOCK_TASK_INCIDENT = select(Incident).where(Incident.id == _TASK_OWNER).execution_options(populate_existing=True)
_LOCK_TASK_INCIDENT_PG = _LOCK_TASK_INCIDENT.with_for_update(key_share=True)


LockedTask = tuple[Incident, DepartmentTask]


def lock_task(session: Session, task_id: str, *, held: LockedTask | None = None) -> LockedTask:
    """A task and its incident, the incident locked first (as every writer of an incident takes it) and the task
    read after the lock, so that what it says is what the writers before this one left. Two statements: the
    incident found through the task in the locking one, then the task. `held`: the pair as the caller already
    locked it in this transaction, taken as it is (the rows are not read twice)."""
    if held is not None:
        return held
    query = _LOCK_TASK_INCIDENT_PG if is_postgres(session) else _LOCK_TASK_INCIDENT
    incident = session.exec(query, params={"task_id": task_id}).first()
    task = session.get(DepartmentTask, task_id, populate_existing=True) if incident is not None else None
    if incident is None or task is None:
        raise NotFound(f"no task '{task_id}'")
    return incident, task


def find_incident(session: Session, ref: str) -> Incident:
    """An incident by id or by code (e.g. FLD-2026-0007)."""
    incident = session.get(Incident, ref) or session.exec(select(Incident).where(Incident.code == ref)).first()
    if incident is None:
        raise NotFound(f"no incident '{ref}'")
    return incident


def wake(incident: Incident, now: datetime | None = None) -> None:
    """Mark the incident so the worker holding it re-evaluates its flow promptly (the rule: `Incident.wake`)."""
    incident.wake(now)


def wake_unless_woken_since(session: Session, *, incident_id: str, since: datetime,
                            now: datetime | None = None) -> bool:
    """Wake the incident if it is open and has not been woken since `since`; whether it was woken.

    For whoever notices a moment that passed (the deadline sweep): an incident woken after that moment has
    been re-evaluated already, or will be, so it is left alone."""
    incident = lock_incident(session, incident_id)
    if incident.status != IncidentStatus.open or incident.woken_at >= since:
        return False
    wake(incident, now)
    session.add(incident)
    return True


def next_code(session: Session, prefix: str, moment: datetime) -> str:
    """The next number of `prefix` in the year of `moment` (Baton's time zone): `FLD-2026-0007`, `JL-2026-0001`."""
    return _next_code(session, prefix, moment)


def _next_code(session: Session, prefix: str, moment: datetime) -> str:
    year = moment.astimezone(ZoneInfo(get_settings().timezone)).year
    session.execute(text("INSERT INTO incident_counter (prefix, year, last) VALUES (:p, :y, 0) ON CONFLICT DO NOTHING"),
                    {"p": prefix, "y": year})
    number = session.execute(
        text("UPDATE incident_counter SET last = last + 1 WHERE prefix = :p AND year = :y RETURNING last"),
        {"p": prefix, "y": year},
    ).scalar_one()
    return f"{prefix}-{year}-{number:04d}"


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise InvalidLevel(f"level must be one of {', '.join(LEVELS)} (IV least severe, I most), not '{level}'")
    return level


@dataclass
class Opened:
    incident: Incident
    created: bool


def open_incident(
    session: Session,
    *,
    type_key: str,
    title: str,
    actor: str,
    level: str | None = None,
    description: str | None = None,
    location_name: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    drill: bool = False,
    idempotency_key: str | None = None,
    clock_speed: float = 1.0,
) -> Opened:
    if idempotency_key:
        existing = session.exec(select(Incident).where(Incident.idempotency_key == idempotency_key)).first()
        if existing is not None:
            return Opened(existing, created=False)
    # Whatever opens it (the API, a page, the CLI, a signal, a cascade, a drill), an incident's texts are
    # published in CAP alerts and the public feed: the input policy holds here for every path.
    refusals = Refusals()
    title = refusals.check("title", policy.text, title, max_length=200)
    if description is not None:
        description = refusals.check("description", policy.text, description, max_length=10_000, multiline=True)
    if location_name is not None:
        location_name = refusals.check("location_name", policy.text, location_name, max_length=200)
    if lat is not None:
        lat = refusals.check("lat", policy.number, lat, low=-90, high=90)
    if lon is not None:
        lon = refusals.check("lon", policy.number, lon, low=-180, high=180)
    refusals.raise_any()
    version_row, plan = snapshot_current(session, type_key)
    level = check_level(level or plan.default_level)
    if clock_speed != 1.0 and not drill:
        raise InvalidLevel("only a drill can run on a compressed clock")
    if not 1.0 <= clock_speed <= 100_000:
        raise InvalidLevel("the clock speed must be between 1 and 100000")
    now = utcnow()
    assert version_row.id is not None
    incident = Incident(
        code=_next_code(session, plan.code_prefix, now),
        type=type_key,
        plan_version_id=version_row.id,
        plan_version=plan.version,
        level=level,
        title=title,
        description=description,
        location_name=location_name,
        lat=lat,
        lon=lon,
        drill=drill,
        clock_speed=clock_speed,
        opened_by=actor,
        idempotency_key=idempotency_key,
        stage="warning",
        created_at=now,
        updated_at=now,
        woken_at=now,
    )
    session.add(incident)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.incident_opened, actor=actor, from_party=actor,
                  to_party=COMMAND, idempotency_key=f"{incident.id}:opened",
                  handed_over={"type": type_key, "level": level, "title": title, "drill": drill},
                  details={"level": level, "plan_version": plan.version, "drill": drill}, at=now)
    ledger.append(session, incident=incident, kind=LedgerKind.stage_entered, actor=SYSTEM, from_party=COMMAND,
                  to_party=COMMAND, idempotency_key=f"{incident.id}:stage:warning:entered",
                  details={"stage": "warning"}, at=now)
    failpoint("incident.opened")
    return Opened(incident, created=True)


def change_level(session: Session, *, incident_id: str, level: str, by: User, reason: str,
                 ordered_by: str | None = None, proposal_id: str | None = None, check_open_work: bool = False,
                 confirm_open_work: bool = False) -> Incident:
    """Raise or lower the level, by a person with the position the plan names for it (or the office on that
    person's verbal order, flagged until confirmed): tighten open deadlines on a raise, cancel unstarted steps
    that no longer apply on a lowering. Steps the new level activates are assigned by the flow when it wakes.
    Open grading proposals at or below the new level become moot. `check_open_work` (people's requests): a
    lowering that would cancel open tasks is refused (`open_work`, listing them) unless `confirm_open_work`,
    ledgered with the change's reason."""
    from core.incidents import alerts  # alerts builds on this module


    check_level(level)
    if not reason.strip():
        raise ReasonRequired("a level change needs a reason")
    incident = lock_incident(session, incident_id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    if incident.level == level:
        return incident
    plan = plan_for_version(session, incident.plan_version_id)
    previous = incident.level
    raising = level_rank(level) > level_rank(previous)
    # Raising needs the authority of the level reached; lowering, that of the level left.
    authorised = authority.authorise(session, plan=plan, act="raise" if raising else "lower",
                                     level=level if raising else previous, user=by, ordered_by=ordered_by)
    actor = authorised.recorded_by
    now = utcnow()
    change = LevelChange(incident_id=incident.id, from_level=previous, to_level=level, actor=actor,
                         reason=reason, at=now)
    session.add(change)
    session.flush()
    authority.record(session, incident=incident, authorised=authorised, at=now, level_change_id=change.id)
    incident.level = level
    ledger.append(session, incident=incident, kind=LedgerKind.level_changed, actor=actor, from_party=actor,
                  to_party=COMMAND, idempotency_key=f"{incident.id}:level:{incident.ledger_head_seq + 1}:{level}",
                  handed_over={"from": previous, "to": level, "reason": reason},
                  details={"from": previous, "to": level, "reason": reason, "authority": authorised.details()}
                  | ({"proposal_id": proposal_id} if proposal_id else {}), at=now)
    for moot in session.exec(select(LevelProposal).where(LevelProposal.incident_id == incident.id,
                                                         LevelProposal.status == ProposalStatus.open)).all():
        if level_rank(moot.level) <= level_rank(level):
            moot.status, moot.decided_at = ProposalStatus.superseded, now
            session.add(moot)
    open_tasks = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id,
                                                           col(DepartmentTask.status).in_(
                                                               [s.value for s in TaskStatus if s.is_open]))).all()
    raised = level_rank(level) > level_rank(previous)
    cancelled = [t for t in open_tasks if not raised and not plan.step(t.step_key).active_at(level)
                 and t.status in (TaskStatus.pending, TaskStatus.assigned)]
    alerts.confirm_open_work(session, incident=incident, work=[t for t in cancelled if t.kind == "human"],
                             actor=actor, reason=reason if confirm_open_work else None, check=check_open_work,
                             why=f"level:{previous}->{level}", at=now)
    for task in open_tasks:
        step = plan.step(task.step_key)
        if raised:
            deadline = step.deadline_for(level)
            if deadline is not None and task.assigned_at is not None and task.due_at is not None:
                tighter = task.assigned_at + deadline / incident.clock_speed
                if tighter < task.due_at:
                    task.due_at = tighter
                    session.add(task)
        elif not step.active_at(level) and task.status in (TaskStatus.pending, TaskStatus.assigned):
            task.status = TaskStatus.cancelled
            task.cancelled_at = now
            task.cancel_reason = f"level lowered to {level}"
            session.add(task)
            ledger.append(session, incident=incident, kind=LedgerKind.task_cancelled, actor=actor,
                          from_party=task.department, to_party=COMMAND, step_key=task.step_key,
                          idempotency_key=f"{task.id}:cancelled", details={"reason": task.cancel_reason}, at=now)
            alerts.settle(session, task=task, actor=actor, at=now)
    wake(incident, now)
    session.add(incident)
    return incident
