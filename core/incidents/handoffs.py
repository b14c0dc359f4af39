"""What a department does with a task: acknowledge it, complete it, hand it back, or decline it (退单).

Each action is one transaction with its ledger entry and a wake-up for the incident's flow; acting twice
is a `TaskStateConflict`, never a second handoff. A hand-back raises the office's alert (`core.incidents.alerts`);
a gate's decision that would cancel the stage's open tasks needs a confirmation with a reason (`open_work`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from core.attachments import service as attachments
from core.incidents import alerts, authority
from core.incidents.engine import latest_tasks
from core.incidents.models import AlertKind, DeclineCode, DepartmentTask, Incident, TaskStatus
from core.incidents.scope import recipients
from core.incidents.service import COMMAND, LockedTask, lock_task, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import queue as outbox
from core.plans.forms import check_decision, validate_outputs
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.platform.errors import InputInvalid, ReasonRequired, TaskStateConflict
from core.platform.failpoints import failpoint
from core.users.models import User
from process_defs.schema import IncidentType

# Each action takes the task and its incident locked (`lock_task`), or as the caller locked them in this transaction
# (`locked`: the API locks before it checks who may act). Who may act on it is the caller's check
# (`permissions.may_act`).


def acknowledge(session: Session, *, task_id: str, actor: str, locked: LockedTask | None = None) -> DepartmentTask:
    incident, task = lock_task(session, task_id, held=locked)
    if task.kind != "human" or task.status not in (TaskStatus.assigned, TaskStatus.escalated) \
            or task.acknowledged_at is not None:
        raise TaskStateConflict(f"task {task.step_key} is {task.status} and cannot be acknowledged")
    now = utcnow()
    task.acknowledged_at = now
    task.acknowledged_by = actor
    if task.status == TaskStatus.assigned:
        task.status = TaskStatus.acknowledged
    session.add(task)
    ledger.append(session, incident=incident, kind=LedgerKind.task_acknowledged, actor=actor,
                  from_party=COMMAND, to_party=task.department, step_key=task.step_key,
                  idempotency_key=f"{task.id}:acknowledged", at=now, fresh=True)  # acknowledged once (above)
    wake(incident, now)
    session.add(incident)
    return task


def left_open_by_gate(session: Session, *, incident: Incident, plan: IncidentType,
                      task: DepartmentTask) -> list[DepartmentTask]:
    """The open (or handed-back) tasks that completing `task`, the stage's gate, would cancel with its stage."""
    if plan.stages.get(task.stage).gate != task.step_key or incident.stage != task.stage:
        return []
    return [t for t in latest_tasks(session, incident.id).values()
            if t.id != task.id and t.stage == task.stage and t.kind == "human"
            and (TaskStatus(t.status).is_open or t.status == TaskStatus.handed_back)]


def complete(
    session: Session,
    *,
    task_id: str,
    actor: str,
    outputs: Any,
    note: str | None = None,
    by: User | None = None,
    ordered_by: str | None = None,
    check_open_work: bool = False,
    open_work_reason: str | None = None,
    locked: LockedTask | None = None,
) -> DepartmentTask:
    """Complete a task with its form's outputs. `by`: the person completing it (None: a simulated department,
    demo and drills), whose positions authorise a decision that needs one; `ordered_by`: the commander on
    whose verbal order the office records it. `check_open_work` (people's requests: the API, pages, CLI): a
    gate's decision that would cancel the stage's open tasks is refused (`open_work`) unless `open_work_reason`
    confirms it. `locked`: the task and its incident as the caller locked them in this transaction."""
    incident, task = lock_task(session, task_id, held=locked)
    if task.kind != "human" or task.status not in (TaskStatus.assigned, TaskStatus.acknowledged,
                                                   TaskStatus.escalated):
        raise TaskStateConflict(f"task {task.step_key} is {task.status} and cannot be completed")
    plan = plan_for_version(session, incident.plan_version_id)
    step = plan.step(task.step_key)
    now = utcnow()
    clean = validate_outputs(step, outputs, now=now)  # "not in the past" as of the completion's own time
    check_decision(plan, step, clean)
    files = attachments.link(session, task=task, step=step, outputs=clean, at=now)
    decided = authority.for_decision(session, plan=plan, step_key=step.key, outputs=clean, level=incident.level,
                                     by=by, ordered_by=ordered_by, actor=actor)
    alerts.confirm_open_work(session, incident=incident, work=left_open_by_gate(session, incident=incident, plan=plan,
                                                                         task=task),
                      actor=actor, reason=open_work_reason, check=check_open_work, why=f"gate:{task.step_key}",
                      at=now)
    task.status = TaskStatus.completed
    task.completed_at = now
    task.completed_by = actor
    task.outputs = clean
    task.note = note
    session.add(task)
    # Woken with the ledger's new head, so the incident row is written once.
    wake(incident, now)
    session.add(incident)
    ledger.append(session, incident=incident, kind=LedgerKind.task_completed, actor=actor,
                  from_party=task.department, to_party=COMMAND, step_key=task.step_key,
                  idempotency_key=f"{task.id}:completed",
                  handed_over={"outputs": clean, "note": note} | ({"files": files} if files else {}),
                  details={"on_time": task.due_at is None or now <= task.due_at}
                  | ({"authority": decided.details()} if decided else {})
                  | ({"position": task.position, "meant": task.meant, "acted": actor} if task.position else {})
                  | ({"files": files} if files else {}),
                  at=now, fresh=True)  # the status check above: a task is completed once
    if decided is not None:
        authority.record(session, incident=incident, authorised=decided, at=now)
    alerts.settle(session, task=task, actor=actor, at=now)
    shares = step.shares()
    planned = {s.department for _, s in plan.steps() if s.active_at(incident.level)}
    for target in (recipients(session, incident.id, owner=task.department, shares=shares, planned=planned)
                   if shares and outbox.sends_anywhere() else []):
        if outbox.has_endpoint(target):
            # Each department gets the fields it may read (a field may be shared wider or narrower than its step).
            visible = step.visible_outputs(target, owner=task.department, outputs=clean)
            classification = step.classification_of(visible)
            outbox.queue(session, incident=incident, key=f"{task.id}:shared:{target}", purpose="shared",
                         target=target,
                         payload={"shared": {"step": step.key, "title": step.title.model_dump(),
                                             "department": task.department,
                                             "classification": classification.value if classification else None,
                                             "outputs": visible}})
    failpoint("task.completed")
    return task


def hand_back(session: Session, *, task_id: str, actor: str, reason: str, locked: LockedTask | None = None
              ) -> DepartmentTask:
    if not reason.strip():
        raise ReasonRequired("handing a task back needs a reason")
    return _give_back(session, task_id=task_id, actor=actor, reason=reason, code=None, locked=locked)


def decline(session: Session, *, task_id: str, actor: str, code: str, reason: str, locked: LockedTask | None = None
            ) -> DepartmentTask:
    """The department declines the task as not its own (退单), with a reason code (`DeclineCode`) and text: the
    office is alerted with both and must route it within `decline_route_minutes`, or the alert escalates."""
    if code not in {c.value for c in DeclineCode}:
        raise InputInvalid(f"reason_code is one of {', '.join(c.value for c in DeclineCode)}",
                           details=[{"field": "reason_code", "reason": "not_a_choice"}])
    if not reason.strip():
        raise ReasonRequired("declining a task needs a reason")
    return _give_back(session, task_id=task_id, actor=actor, reason=reason, code=DeclineCode(code), locked=locked)


def _give_back(session: Session, *, task_id: str, actor: str, reason: str, code: DeclineCode | None,
               locked: LockedTask | None) -> DepartmentTask:
    incident, task = lock_task(session, task_id, held=locked)
    verb = "handed back" if code is None else "declined"
    if task.kind != "human" or task.status not in (TaskStatus.assigned, TaskStatus.acknowledged,
                                                   TaskStatus.escalated):
        raise TaskStateConflict(f"task {task.step_key} is {task.status} and cannot be {verb}")
    now = utcnow()
    task.status = TaskStatus.handed_back
    task.handed_back_at = now
    task.handed_back_by = actor
    task.hand_back_reason = reason
    task.decline_code = code.value if code else None
    session.add(task)
    if code is None:
        ledger.append(session, incident=incident, kind=LedgerKind.task_handed_back, actor=actor,
                      from_party=task.department, to_party=COMMAND, step_key=task.step_key,
                      idempotency_key=f"{task.id}:handed_back", handed_over={"reason": reason}, at=now)
    else:
        ledger.append(session, incident=incident, kind=LedgerKind.task_declined, actor=actor,
                      from_party=task.position or task.department, to_party=COMMAND, step_key=task.step_key,
                      idempotency_key=f"{task.id}:declined", handed_over={"reason": reason, "reason_code": code.value},
                      details={"reason_code": code.value, "attempt": task.attempt}, at=now)
    # The office is alerted with the reason and chooses where the task goes (never silently elsewhere).
    alerts.raise_alert(session, incident=incident, task=task,
                       kind=AlertKind.handed_back if code is None else AlertKind.declined, reason=reason,
                       actor=actor, at=now, reason_code=code.value if code else None)
    wake(incident, now)
    session.add(incident)
    return task
