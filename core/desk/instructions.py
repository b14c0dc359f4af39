"""Leaders' instructions (领导批示): a leader's instruction on an incident becomes one tracked task for each
department it names (落实); each department reports what it did; the instruction is closed (办结) only when none
of its tasks is open. Each step is an entry in the incident's ledger.

A task reaches its department as an incident task does: in its inbox, and in its own system through the outbox
(on assignment, and once when it is overdue). The periodic sweep (`flows.maintenance`) flags a task past its time
limit once (`overdue_at`), ledgered from the department to the office, which chases it (督办).

The tasks are not the plan's steps (`DepartmentTask` is one attempt of a plan step, run by the engine), so they
are kept beside them; who may act on one is the one rule for a department's work (`permissions.may_act`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.desk.models import Instruction, InstructionStatus, InstructionTask
from core.incidents.authority import require_position
from core.incidents.models import Incident, IncidentStatus
from core.incidents.service import COMMAND, SYSTEM, lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import queue as outbox
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import as_utc, utcnow
from core.platform.errors import BatonError, IncidentClosed, InputInvalid, NotFound, TaskStateConflict
from core.platform.input_policy import Refusals, Violation
from core.users.models import Role, User

# The posts whose holders give instructions themselves (the office records those given to it by others).
LEADER_POSITIONS = ["principal_leader", "commander", "deputy_commander", "secretary_general", "bureau_director",
                    "deputy_director", "duty_leader"]
MAX_DEPARTMENTS = 30


class InstructionTasksOpen(BatonError):
    """An instruction is closed only when every department's task on it is done; `details.open` names them."""

    code = "instruction_tasks_open"
    http_status = 409


class InstructionClosed(BatonError):
    code = "instruction_closed"
    http_status = 409


def _departments(value: list[str]) -> list[str]:
    reg = registry()
    clean: list[str] = []
    for key in value:
        if not isinstance(key, str) or reg.department(key.strip()) is None:
            raise Violation("unknown_department", f"'{str(key)[:64]}' is not a department")
        if key.strip() not in clean:
            clean.append(key.strip())
    if not clean:
        raise Violation("required", "name at least one department to carry it out")
    if len(clean) > MAX_DEPARTMENTS:
        raise Violation("too_many", f"at most {MAX_DEPARTMENTS} departments")
    return clean


def _due(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    checked = policy.moment(value)
    if checked <= now:
        raise Violation("in_past", "the time limit must lie ahead")
    if (checked - now).days > 366:
        raise Violation("too_far", "the time limit must lie within a year")
    return checked


def who_gives(session: Session, user: User, leader: str | None) -> str:
    """Who gave the instruction: the office records one given by a leader it names; a leader records their own
    (PositionRequired, 403 `position_required`, for anyone else)."""
    if user.role in (Role.office, Role.admin):
        name = policy.checked("leader", policy.text, leader or "", max_length=100).strip()
        if not name:
            raise policy_required("leader", "name the leader who gave the instruction")
        return name
    require_position(session, user=user, needs=LEADER_POSITIONS, act="instruct",
                     what=("作出批示须由领导职务作出", "giving an instruction needs a leader's position"))
    return f"user:{user.username}"


def policy_required(field: str, message: str) -> BatonError:
    return InputInvalid(f"the input is not accepted: {field}: {message}",
                        details=[{"field": field, "reason": "required", "message": message}])


def record(session: Session, *, incident_id: str, user: User, leader: str | None, text: str,
           departments: list[str], due_at: datetime | None = None) -> Instruction:
    """Record the instruction and a task for each department it names; ledgered on the incident."""
    given_by = who_gives(session, user, leader)
    now = utcnow()
    refusals = Refusals()
    clean = refusals.check("text", policy.text, text, max_length=5000, multiline=True).strip()
    if not clean:
        refusals.problems.append({"field": "text", "reason": "required", "message": "the instruction's text"})
    chosen = refusals.check("departments", _departments, departments)
    due = refusals.check("due_at", _due, due_at, now=now)
    refusals.raise_any()
    incident = lock_incident(session, incident_id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    actor = f"user:{user.username}"
    row = Instruction(incident_id=incident.id, leader=given_by, text=clean, recorded_by=actor, recorded_at=now,
                      due_at=due)
    session.add(row)
    session.flush()
    tasks = [InstructionTask(instruction_id=row.id, incident_id=incident.id, department=department,
                             created_at=now, due_at=due) for department in chosen]
    session.add_all(tasks)
    session.flush()
    for task in tasks:
        _tell(session, incident=incident, instruction=row, task=task, purpose="assignment", now=now)
    ledger.append(session, incident=incident, kind=LedgerKind.instruction_recorded, actor=actor,
                  from_party=given_by[:100], to_party=COMMAND, idempotency_key=f"{row.id}:recorded",
                  handed_over={"text": clean, "departments": chosen},
                  details={"instruction_id": row.id, "leader": given_by, "departments": chosen,
                           "due_at": due.isoformat() if due else None}, at=now)
    return row


def _tell(session: Session, *, incident: Incident, instruction: Instruction, task: InstructionTask, purpose: str,
          now: datetime) -> None:
    """A message to the task's department's own system (when it has one), as an incident task's assignment and
    escalation go: through the outbox, once per task and purpose. The incident's flow sends it, so it is woken;
    only the department named gets it (its own part, and the instruction it was given)."""
    if not outbox.has_endpoint(task.department):
        return
    outbox.queue(session, incident=incident, key=f"instruction:{task.id}:{purpose}", purpose=purpose,
                 target=task.department,
                 payload={"instruction_task": {
                     "id": task.id, "instruction_id": instruction.id, "department": task.department,
                     "leader": instruction.leader, "text": instruction.text,
                     "due_at": as_utc(task.due_at).isoformat() if task.due_at else None}})
    wake(incident, now)
    session.add(incident)


def is_overdue(task: InstructionTask, now: datetime) -> bool:
    """Open and past its time limit, by the clock (whether or not the sweep has flagged it yet)."""
    return task.status == "open" and task.due_at is not None and as_utc(task.due_at) <= now


def get_instruction(session: Session, instruction_id: str) -> Instruction:
    row = session.get(Instruction, instruction_id)
    if row is None:
        raise NotFound(f"no instruction '{instruction_id}'")
    return row


def get_task(session: Session, task_id: str) -> InstructionTask:
    row = session.get(InstructionTask, task_id)
    if row is None:
        raise NotFound(f"no instruction task '{task_id}'")
    return row


def tasks_of(session: Session, instruction_ids: list[str]) -> dict[str, list[InstructionTask]]:
    out: dict[str, list[InstructionTask]] = {i: [] for i in instruction_ids}
    if instruction_ids:
        for task in session.exec(select(InstructionTask).where(col(InstructionTask.instruction_id).in_(
                instruction_ids)).order_by(col(InstructionTask.department))).all():
            out[task.instruction_id].append(task)
    return out


def party_to(session: Session, instruction: Instruction, department: str | None) -> bool:
    """Whether a reader may read the instruction: the office, managers, admins (None), or a department it names."""
    return department is None or session.exec(select(InstructionTask.id).where(
        InstructionTask.instruction_id == instruction.id, InstructionTask.department == department)).first() is not None


def of_incident(session: Session, incident_id: str, department: str | None = None) -> list[dict[str, Any]]:
    """The incident's instructions (those naming `department`, for a department), newest first, with their
    tasks."""
    query = select(Instruction).where(Instruction.incident_id == incident_id)
    if department is not None:
        query = query.where(col(Instruction.id).in_(select(InstructionTask.instruction_id).where(
            InstructionTask.department == department)))
    rows = list(session.exec(query.order_by(col(Instruction.recorded_at).desc())).all())
    tasks = tasks_of(session, [r.id for r in rows])
    return [view(r, tasks[r.id]) for r in rows]


def view(row: Instruction, tasks: list[InstructionTask], now: datetime | None = None) -> dict[str, Any]:
    """The instruction and its tasks; `late`: the ids of those overdue."""
    moment = now or utcnow()
    open_count = sum(t.status == "open" for t in tasks)
    return {"instruction": row, "tasks": tasks, "open": open_count, "done": len(tasks) - open_count,
            "late": {t.id for t in tasks if is_overdue(t, moment)}}


def for_department(session: Session, department: str, *, open_only: bool = True) -> list[InstructionTask]:
    query = select(InstructionTask).where(InstructionTask.department == department)
    if open_only:
        query = query.where(InstructionTask.status == "open")
    return list(session.exec(query.order_by(col(InstructionTask.created_at))).all())


def inbox(session: Session, *, department: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """The department's open tasks for its inbox, each with its instruction, its incident's code and title and
    whether it is overdue; soonest due first (those without a time limit last). Only `department`'s."""
    moment = now or utcnow()
    tasks = for_department(session, department)
    if not tasks:
        return []
    given = {r.id: r for r in session.exec(select(Instruction).where(col(Instruction.id).in_(
        {t.instruction_id for t in tasks}))).all()}
    incidents = {row[0]: (row[1], row[2]) for row in session.exec(
        select(Incident.id, Incident.code, Incident.title).where(col(Incident.id).in_(
            {t.incident_id for t in tasks}))).all()}
    tasks.sort(key=lambda t: (t.due_at is None, as_utc(t.due_at) if t.due_at else moment, as_utc(t.created_at)))
    return [{"task": t, "instruction": given[t.instruction_id], "code": incidents[t.incident_id][0],
             "title": incidents[t.incident_id][1], "late": is_overdue(t, moment)} for t in tasks]


def complete_task(session: Session, *, task_id: str, actor: str, reply: str) -> InstructionTask:
    """The department reports what it did (落实情况); the task is done. Who may: `permissions.may_act`, checked
    by the caller as for every department's work."""
    clean = policy.checked("reply", policy.text, reply, max_length=5000, multiline=True).strip()
    if not clean:
        raise policy_required("reply", "say what was done")
    task = get_task(session, task_id)
    incident = lock_incident(session, task.incident_id)
    session.refresh(task)
    if task.status != "open":
        raise TaskStateConflict("this department's part of the instruction is done already")
    now = utcnow()
    task.status, task.done_at, task.done_by, task.reply = "done", now, actor, clean
    session.add(task)
    ledger.append(session, incident=incident, kind=LedgerKind.instruction_task_done, actor=actor,
                  from_party=task.department, to_party=COMMAND, idempotency_key=f"{task.id}:done",
                  handed_over={"reply": clean},
                  details={"instruction_id": task.instruction_id, "task_id": task.id, "department": task.department},
                  at=now)
    return task


def close(session: Session, *, instruction_id: str, actor: str, note: str = "") -> Instruction:
    """Close the instruction (办结): refused (409 `instruction_tasks_open`, naming them) while a task is open."""
    clean = policy.checked("note", policy.text, note, max_length=2000, multiline=True).strip()
    row = get_instruction(session, instruction_id)
    incident: Incident = lock_incident(session, row.incident_id)
    session.refresh(row)
    if row.status != InstructionStatus.open:
        raise InstructionClosed("this instruction is closed already")
    still = [t.department for t in tasks_of(session, [row.id])[row.id] if t.status == "open"]
    if still:
        raise InstructionTasksOpen(f"the instruction is still being carried out by: {', '.join(still)}",
                                   details={"open": still})
    now = utcnow()
    row.status, row.closed_at, row.closed_by, row.closing_note = InstructionStatus.closed, now, actor, clean or None
    session.add(row)
    ledger.append(session, incident=incident, kind=LedgerKind.instruction_closed, actor=actor, from_party=COMMAND,
                  to_party=COMMAND, idempotency_key=f"{row.id}:closed", handed_over={"note": clean},
                  details={"instruction_id": row.id}, at=now)
    return row


# -- overdue: the periodic sweep -----------------------------------------------------------------------------------


def overdue_unflagged(session: Session, *, now: datetime) -> list[str]:
    """Open tasks of open incidents past their time limit that the sweep has not flagged yet, soonest due first."""
    return list(session.exec(
        select(InstructionTask.id).join(Incident, col(Incident.id) == InstructionTask.incident_id)
        .where(InstructionTask.status == "open", col(InstructionTask.due_at).is_not(None),
               col(InstructionTask.due_at) <= now, col(InstructionTask.overdue_at).is_(None),
               Incident.status == IncidentStatus.open)
        .order_by(col(InstructionTask.due_at))).all())


def flag_overdue(session: Session, *, task_id: str, now: datetime | None = None) -> bool:
    """Flag the task overdue and tell the office (a ledger entry from the department to the command) and the
    department's own system; whether it was flagged now. Once only: a task flagged, done, or of a closed incident
    is left alone, so two sweeps (or two workers) never escalate it twice."""
    moment = now or utcnow()
    task = get_task(session, task_id)
    incident = lock_incident(session, task.incident_id)
    session.refresh(task)
    if incident.status != IncidentStatus.open or task.overdue_at is not None or not is_overdue(task, moment):
        return False
    assert task.due_at is not None
    instruction = get_instruction(session, task.instruction_id)
    task.overdue_at = moment
    session.add(task)
    ledger.append(session, incident=incident, kind=LedgerKind.instruction_task_overdue, actor=SYSTEM,
                  from_party=task.department, to_party=COMMAND, idempotency_key=f"{task.id}:overdue",
                  details={"instruction_id": task.instruction_id, "task_id": task.id, "department": task.department,
                           "due_at": as_utc(task.due_at).isoformat()}, at=moment)
    _tell(session, incident=incident, instruction=instruction, task=task, purpose="overdue", now=moment)
    return True
