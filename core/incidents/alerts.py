"""A hand-back cannot vanish: the emergency office's alerts on tasks it must route, and its three choices.

A task is handed back with a reason, or meant for a department nobody active can act for (at assignment, at
escalation, or when its last user is disabled): an `OfficeAlert` is raised for the office, with the reason, and
stays open (shown on the office's pages, `GET /api/incidents/{id}/alerts`) until the office chooses:

- **reassign** it to another department with somebody able to act;
- **take it over**: the office does it itself;
- **ask a leader**: refer it to a command position (总指挥 …); whoever holds the position acts.

Each choice is ledgered with who, when and why, and wakes the incident; the engine (never the API) then
assigns the task's next attempt where the choice says (`route`), ledgered as `task.reassigned`, so the new
holder finds it in its inbox. The attempts of a step keep who was meant to act and who acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.incidents.models import (
    AlertKind,
    AlertResolution,
    DepartmentTask,
    Incident,
    IncidentStatus,
    OfficeAlert,
    TaskStatus,
)
from core.incidents.permissions import able_to_act, position_holders, unstaffed
from core.incidents.service import COMMAND, SYSTEM, lock_incident, lock_task, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.errors import (
    AlertResolved,
    BatonError,
    DepartmentUnstaffed,
    IncidentClosed,
    OpenWork,
    ReasonRequired,
)
from core.platform.settings import get_settings
from core.users import service as users
from core.users.models import Role, User, UserPosition
from process_defs.law_rules import position_ref_problem
from process_defs.schema import DepartmentKind, IncidentType

ROUTES = (AlertResolution.reassign, AlertResolution.take_over, AlertResolution.ask_leader)


class PositionUnheld(BatonError):
    """The position asked names no post, or nobody active holds it."""

    code = "position_unheld"
    http_status = 409


class TargetInvalid(BatonError):
    """The department named is not one a task can go to (unknown, or a body one level up)."""

    code = "target_invalid"
    http_status = 422


class SystemReason(StrEnum):
    """Why the system (not a department) raised an alert: its code, kept in `OfficeAlert.reason_code` (where a
    decline keeps its `DeclineCode`). The office's pages word each in the reader's language, naming the
    department or post (`pages/_handback_alerts.html`); `reason` keeps the English sentence for the ledger and the
    API. Alerts raised before these codes have none, and show their reason as stored."""

    dept_unstaffed = "dept_unstaffed"  # nobody active in the task's department can act on it (at assignment)
    dept_emptied = "dept_emptied"  # the same, because its last active user was disabled
    post_unheld = "post_unheld"  # nobody holds the task's post now
    post_away = "post_away"  # the post's holder on duty is away, with no stand-in (argument: their user name)
    overdue_post = "overdue_post"  # a post's task is overdue: the office is told rather than escalating it
    overdue = "overdue"  # overdue, and the department it escalates to has nobody able to act (argument: it)


REASON_CODE_LENGTH = 32  # OfficeAlert.reason_code's column


def system_code(code: SystemReason, argument: str | None = None) -> str:
    """The code stored for a system alert: `code:argument` (`overdue:city_government`) when that fits the column,
    else the code alone (the page then words it without the argument)."""
    full = f"{code.value}:{argument}" if argument else code.value
    return full if len(full) <= REASON_CODE_LENGTH else code.value


def raise_alert(session: Session, *, incident: Incident, task: DepartmentTask, kind: AlertKind, reason: str,
                actor: str, at: datetime, reason_code: str | None = None) -> OfficeAlert:
    """The office's alert on `task` (one per task attempt; raising it again returns it, an open one takes the
    newer kind and reason). Unstaffed and overdue alerts are ledgered here; a hand-back or decline has its own
    entry."""
    alert = session.exec(select(OfficeAlert).where(OfficeAlert.task_id == task.id)).first()
    if alert is not None:
        if alert.resolved_at is None and alert.kind != kind:
            alert.kind, alert.reason, alert.raised_by, alert.raised_at = kind, reason, actor, at
            alert.reason_code = reason_code
            session.add(alert)
        return alert
    alert = OfficeAlert(incident_id=incident.id, task_id=task.id, step_key=task.step_key,
                        department=task.position or task.department, kind=kind, reason=reason, raised_by=actor,
                        raised_at=at, reason_code=reason_code)
    session.add(alert)
    session.flush()
    if kind not in (AlertKind.handed_back, AlertKind.declined):
        ledger.append(session, incident=incident, kind=LedgerKind.task_unstaffed, actor=actor,
                      from_party=task.department, to_party=COMMAND, step_key=task.step_key,
                      idempotency_key=f"{task.id}:alert:{kind}", handed_over={"reason": reason},
                      details={"alert_id": alert.id, "alert": str(kind), "department": task.department,
                               "attempt": task.attempt}, at=at)
    return alert


def open_alerts(session: Session, *, incident_id: str | None = None) -> list[OfficeAlert]:
    """Open alerts, oldest first (of one incident, or of every open incident)."""
    query = select(OfficeAlert).where(col(OfficeAlert.resolved_at).is_(None))
    if incident_id is not None:
        query = query.where(OfficeAlert.incident_id == incident_id)
    return list(session.exec(query.order_by(col(OfficeAlert.raised_at))).all())


def alerts_of(session: Session, incident_id: str) -> list[OfficeAlert]:
    """Every alert of the incident, open and resolved, oldest first."""
    return list(session.exec(select(OfficeAlert).where(OfficeAlert.incident_id == incident_id)
                             .order_by(col(OfficeAlert.raised_at))).all())


def alert_of_task(session: Session, task_id: str) -> OfficeAlert | None:
    return session.exec(select(OfficeAlert).where(OfficeAlert.task_id == task_id)).first()


def settle(session: Session, *, task: DepartmentTask, actor: str, at: datetime) -> None:
    """The task ended otherwise (completed, cancelled with its stage or level): its open alert is moot."""
    alert = alert_of_task(session, task.id)
    if alert is not None and alert.resolved_at is None:
        alert.resolved_at, alert.resolved_by, alert.resolution = at, actor, AlertResolution.moot
        alert.resolution_reason = task.status
        session.add(alert)


def leader_positions(session: Session, incident: Incident) -> list[str]:
    """The command positions the plan names at the incident's level (who may start, raise or lower it): the
    leaders the office may ask."""
    plan = plan_for_version(session, incident.plan_version_id)
    found: list[str] = []
    for act in ("start", "raise", "lower"):
        for ref in plan.positions_for(act, incident.level) or []:
            if ref not in found:
                found.append(ref)
    return found


@dataclass(frozen=True)
class Leader:
    """A position the office may refer a handed-back task to, and who holds it now (their names, not codes)."""

    ref: str
    holders: tuple[str, ...]
    named_by_plan: bool


def leaders_to_ask(session: Session, incident: Incident) -> list[Leader]:
    """The leaders the office's "ask a leader" offers: the positions the plan names at the incident's level
    that somebody holds, then every other position somebody holds. A position nobody holds is not offered
    (`ask_leader` would refuse it), so the office never has to type a position's code."""
    named = leader_positions(session, incident)
    rows = session.exec(select(UserPosition.position, UserPosition.organisation).distinct()
                        .join(User, col(UserPosition.user_id) == col(User.id))
                        .where(col(User.active).is_(True), User.role != Role.manager.value)).all()
    held = sorted({f"{position}@{organisation}" if organisation else position for position, organisation in rows}
                  - set(named))
    found: list[Leader] = []
    for ref, by_plan in [(ref, True) for ref in named] + [(ref, False) for ref in held]:
        # Who holds it now (by the roster where the position is rostered), as `ask_leader` will check.
        holders = position_holders(session, ref)
        if holders:
            found.append(Leader(ref, tuple(sorted(u.display_name or u.username for u in holders)), by_plan))
    return found


def unstaffed_plan_departments(session: Session, plan: IncidentType) -> list[str]:
    """The departments the plan gives people's tasks to that nobody active can act for (`baton plans staffing`,
    and the warning when a plan version is accepted): each of their tasks would raise an `unstaffed` alert."""
    return unstaffed(session, {s.department for _, s in plan.steps() if s.kind == "human"} - {COMMAND})


def departments_to_route(session: Session) -> list[str]:
    """The departments a task may be reassigned to: every one with somebody able to act (not bodies above)."""
    return [d.key for d in registry().departments
            if d.kind is not DepartmentKind.superior and d.key != COMMAND and able_to_act(session, d.key)]


@dataclass(frozen=True)
class Choice:
    resolution: AlertResolution
    target: str | None  # the department, or the position
    kind: LedgerKind


def _decide(session: Session, *, task_id: str, actor: str, reason: str, choice: Choice) -> OfficeAlert:
    if not reason.strip():
        raise ReasonRequired("the office's choice on a hand-back needs a reason")
    incident, task = lock_task(session, task_id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    alert = alert_of_task(session, task.id)
    if alert is None or alert.resolved_at is not None:
        raise AlertResolved(f"task {task.step_key} has no open alert for the office to decide",
                            details={"task_id": task.id})
    if not (TaskStatus(task.status).is_open or task.status == TaskStatus.handed_back):
        raise AlertResolved(f"task {task.step_key} is {task.status}", details={"task_id": task.id})
    now = utcnow()
    if task.status != TaskStatus.handed_back:
        # Meant for nobody (or overdue with nobody to escalate to): the office takes it from its department.
        task.status = TaskStatus.handed_back
        task.handed_back_at, task.handed_back_by, task.hand_back_reason = now, actor, reason
        session.add(task)
    alert.resolved_at, alert.resolved_by = now, actor
    alert.resolution, alert.target, alert.resolution_reason = choice.resolution, choice.target, reason
    session.add(alert)
    to_party = COMMAND if choice.resolution != AlertResolution.reassign else str(choice.target)
    ledger.append(session, incident=incident, kind=choice.kind, actor=actor, from_party=alert.department,
                  to_party=to_party, step_key=task.step_key, idempotency_key=f"{alert.id}:decided",
                  handed_over={"reason": reason},
                  details={"alert_id": alert.id, "alert": alert.kind, "meant": alert.department,
                           "attempt": task.attempt, "choice": str(choice.resolution), "target": choice.target,
                           "reason": reason, "alert_reason": alert.reason}, at=now)
    wake(incident, now)
    session.add(incident)
    return alert


def reassign(session: Session, *, task_id: str, department: str, actor: str, reason: str) -> OfficeAlert:
    """Send the task to `department`, which must have somebody active able to act (else DepartmentUnstaffed)."""
    dept = registry().department(department)
    if dept is None or dept.kind is DepartmentKind.superior:
        raise TargetInvalid(f"'{department}' is not a department a task can go to",
                            details={"department": department})
    if not able_to_act(session, department):
        raise DepartmentUnstaffed(f"nobody active in {department} can act on the task; choose another department, "
                                  "take it over, or ask a leader", details={"department": department})
    choice = Choice(AlertResolution.take_over if department == COMMAND else AlertResolution.reassign, department,
                    LedgerKind.task_taken_over if department == COMMAND else LedgerKind.task_reassign_ordered)
    return _decide(session, task_id=task_id, actor=actor, reason=reason, choice=choice)


def take_over(session: Session, *, task_id: str, actor: str, reason: str) -> OfficeAlert:
    """The office does the task itself: its next attempt is the emergency office's."""
    return _decide(session, task_id=task_id, actor=actor, reason=reason,
                   choice=Choice(AlertResolution.take_over, COMMAND, LedgerKind.task_taken_over))


def ask_leader(session: Session, *, task_id: str, position: str, actor: str, reason: str) -> OfficeAlert:
    """Refer the task to a command position (`commander@flood_control_hq`): whoever holds it acts on it."""
    why = position_ref_problem(position, registry())
    if why is not None:
        raise PositionUnheld(why, details={"position": position, "reason": "unknown"})
    if not position_holders(session, position):
        raise PositionUnheld(f"nobody active holds {position}", details={"position": position, "reason": "unheld"})
    return _decide(session, task_id=task_id, actor=actor, reason=reason,
                   choice=Choice(AlertResolution.ask_leader, position, LedgerKind.task_referred_to_leader))


def open_work_of(work: list[DepartmentTask], titles: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Open tasks as the `open_work` refusal lists them, each with its step's title (a page names the step, not
    its key) when `titles` (step key -> {zh, en}) are given."""
    return [{"task_id": t.id, "step": t.step_key, "title": (titles or {}).get(t.step_key),
             "department": t.position or t.department, "status": t.status, "required": t.required,
             "stage": t.stage} for t in sorted(work, key=lambda t: t.step_key)]


def confirm_open_work(session: Session, *, incident: Incident, work: list[DepartmentTask], actor: str,
                      reason: str | None, check: bool, why: str, at: datetime) -> None:
    """Leaving open work behind: refused (OpenWork, listing it) unless confirmed with a reason, which is
    ledgered with the list. `check` False (simulated departments, drills) records a given reason only."""
    if not work:
        return
    plan = plan_for_version(session, incident.plan_version_id)
    listed = open_work_of(work, {t.step_key: plan.step(t.step_key).title.model_dump() for t in work})
    if reason is None or not reason.strip():
        if check:
            raise OpenWork(f"{len(work)} open task(s) would be cancelled: "
                           f"{', '.join(str(t['step']) for t in listed)}; confirm with a reason",
                           details={"open": listed, "why": why})
        return
    ledger.append(session, incident=incident, kind=LedgerKind.open_work_confirmed, actor=actor, from_party=actor,
                  to_party=COMMAND, idempotency_key=f"{incident.id}:open-work:{incident.ledger_head_seq + 1}",
                  handed_over={"reason": reason},
                  details={"open": listed, "why": why, "reason": reason, "stage": incident.stage}, at=at)


def route_of(alert: OfficeAlert) -> tuple[str, str | None] | None:
    """Where the office's choice sends the task's next attempt: (department, position), or None (not routed)."""
    if alert.resolved_at is None or alert.resolution not in ROUTES or alert.routed_task_id is not None:
        return None
    if alert.resolution == AlertResolution.reassign:
        return str(alert.target), None
    if alert.resolution == AlertResolution.ask_leader:
        return COMMAND, alert.target
    return COMMAND, None


def department_unstaffed(session: Session, *, department: str, actor: str) -> list[OfficeAlert]:
    """The department's last active user is gone: an alert for each of its open tasks on open incidents, and
    one ledger entry per incident. The alerts raised (empty: it has no open work, or somebody can still act)."""
    if department == COMMAND or able_to_act(session, department):
        return []
    open_tasks = session.exec(select(DepartmentTask).where(
        DepartmentTask.department == department, DepartmentTask.kind == "human",
        col(DepartmentTask.position).is_(None),
        col(DepartmentTask.status).in_([s.value for s in TaskStatus if s.is_open]))).all()
    raised: list[OfficeAlert] = []
    now = utcnow()
    by_incident: dict[str, list[DepartmentTask]] = {}
    for task in open_tasks:
        by_incident.setdefault(task.incident_id, []).append(task)
    for incident_id, tasks in sorted(by_incident.items()):
        incident = lock_incident(session, incident_id)
        if incident.status != IncidentStatus.open:
            continue
        ledger.append(session, incident=incident, kind=LedgerKind.department_unstaffed, actor=actor,
                      from_party=department, to_party=COMMAND,
                      idempotency_key=f"{incident.id}:unstaffed:{department}:{incident.ledger_head_seq + 1}",
                      details={"department": department, "tasks": sorted(t.step_key for t in tasks)}, at=now)
        for task in tasks:
            raised.append(raise_alert(session, incident=incident, task=task, kind=AlertKind.unstaffed,
                                      reason=f"nobody active in {department} can act (its last user was disabled)",
                                      actor=actor, at=now, reason_code=system_code(SystemReason.dept_emptied)))
        wake(incident, now)
        session.add(incident)
    return raised


@dataclass(frozen=True)
class Disabled:
    """A user disabled: how many of their tokens and page sessions ended, and the office's alerts raised on the
    open tasks of a department they left with nobody able to act."""

    user: User
    revoked: int
    raised: list[OfficeAlert]


def disable_user(session: Session, *, user_id: str, actor: str, reason: str | None = None) -> Disabled:
    """Disable a user (`core.users.service.disable_user`: no more logins, every token and session ended) and, if
    that leaves their department with nobody able to act, alert the office on its open tasks
    (`department_unstaffed`). Every way of disabling a user goes through here: the API, the admin page and
    `baton users disable` (core.users cannot: this domain imports it). Disabling a user already disabled alerts
    nobody again."""
    user = users.get_user(session, user_id=user_id)
    was_active = user.active
    revoked = users.disable_user(session, user_id=user_id, actor=actor, reason=reason)  # the same row, now disabled
    raised = department_unstaffed(session, department=user.department, actor=actor) \
        if was_active and user.role == Role.department and user.department is not None else []
    return Disabled(user, revoked, raised)


# -- a declined task's deadline, and the time tasks had no owner ------------------------------------------------
OWNERLESS_KINDS = (AlertKind.handed_back.value, AlertKind.declined.value)


def route_due(alert: OfficeAlert, clock_speed: float = 1.0) -> datetime | None:
    """When the office must have routed the alert's task by: a declined task's, `decline_route_minutes` after
    the decline (on a drill's compressed clock, sooner); None for other alerts."""
    if alert.kind != AlertKind.declined:
        return None
    return alert.raised_at + timedelta(minutes=get_settings().decline_route_minutes) / clock_speed


# The open declines not yet escalated (the only alerts with a routing limit), of the incident bound as
# `incident_id`: asked on every wake, so built once, and usually answered with no row to load.
_UNESCALATED_DECLINES = select(OfficeAlert).where(
    OfficeAlert.incident_id == bindparam("incident_id"), col(OfficeAlert.resolved_at).is_(None),
    OfficeAlert.kind == AlertKind.declined.value, col(OfficeAlert.escalated_at).is_(None),
).order_by(col(OfficeAlert.raised_at))


def escalate_overdue(session: Session, *, incident: Incident, at: datetime) -> datetime | None:
    """Escalate the incident's open alerts the office did not route in time (ledgered once each, shown red);
    the next such deadline, for the flow to wake at."""
    following: datetime | None = None
    for alert in session.exec(_UNESCALATED_DECLINES, params={"incident_id": incident.id}).all():
        due = route_due(alert, incident.clock_speed)
        if due is None:
            continue
        if at < due:
            following = due if following is None else min(following, due)
            continue
        alert.escalated_at = at
        session.add(alert)
        ledger.append(session, incident=incident, kind=LedgerKind.alert_escalated, actor=SYSTEM,
                      from_party=COMMAND, to_party=COMMAND, step_key=alert.step_key,
                      idempotency_key=f"{alert.id}:escalated",
                      details={"alert_id": alert.id, "alert": alert.kind, "reason_code": alert.reason_code,
                               "raised_at": alert.raised_at.isoformat(), "due_at": due.isoformat(),
                               "meant": alert.department}, at=at)
    return following


def ownerless_minutes(session: Session, incident: Incident, *, now: datetime | None = None) -> float:
    """The minutes the incident's tasks had no owner, added up over its tasks: from each hand-back or decline
    until the office routed it (reassigned, took it over, asked a leader) or the task ended; one still waiting
    counts until now (or the incident's close). The one computation for the review and the analytics."""
    return ownerless_of(alerts_of(session, incident.id), until=incident.closed_at or now or utcnow())


def ownerless_of(found: list[OfficeAlert], *, until: datetime) -> float:
    total = 0.0
    for alert in found:
        if alert.kind not in OWNERLESS_KINDS:
            continue
        end = alert.resolved_at or until
        total += max(0.0, (end - alert.raised_at).total_seconds()) / 60
    return round(total, 1)
