"""Read-side queries for the API and pages, with the visibility rules applied in one place.

`department=None` means the reader sees everything (office, manager, admin); a department key limits the
reader to incidents its department is on and tasks its department holds. What is not visible reads as
missing (`NotFound`), so the existence of other records does not leak.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.attachments import service as attachments
from core.attachments.models import Attachment
from core.incidents.alerts import open_alerts
from core.incidents.engine import latest_tasks, shared_inputs
from core.incidents.models import (
    OPEN_STATUSES,
    DepartmentTask,
    Incident,
    LevelAuthorisation,
    LevelChange,
    TaskStatus,
)
from core.ledger.chain import read_chain, verify_incident
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.errors import NotFound
from core.platform.paging import Page, paged
from core.registers import service as registers
from core.users.models import User
from process_defs.schema import STAGES, reaches


def involved(session: Session, incident_id: str, department: str) -> bool:
    return session.exec(select(DepartmentTask.id).where(DepartmentTask.incident_id == incident_id,
                                                        DepartmentTask.department == department)
                        .limit(1)).first() is not None


def get_incident(session: Session, incident_id: str, department: str | None) -> Incident:
    incident = session.get(Incident, incident_id) or session.exec(
        select(Incident).where(Incident.code == incident_id)).first()
    if incident is None or (department is not None and not involved(session, incident.id, department)):
        raise NotFound(f"no incident '{incident_id}'")
    return incident


def list_incidents(session: Session, *, department: str | None, status: str | None = None,
                   type_key: str | None = None, level: str | None = None, stage: str | None = None,
                   limit: int = 50, offset: int = 0) -> Page:
    query = select(Incident)
    if department is not None:
        query = query.where(col(Incident.id).in_(
            select(DepartmentTask.incident_id).where(DepartmentTask.department == department)))
    for column, value in ((Incident.status, status), (Incident.type, type_key), (Incident.level, level),
                          (Incident.stage, stage)):
        if value is not None:
            query = query.where(col(column) == value)
    return paged(session, query, col(Incident.created_at).desc(), limit=limit, offset=offset)


def list_tasks(session: Session, *, department: str | None, status: str | None = None,
               incident_id: str | None = None, open_only: bool = False, limit: int = 100,
               offset: int = 0) -> Page:
    query = select(DepartmentTask).where(DepartmentTask.kind == "human")
    if department is not None:
        query = query.where(DepartmentTask.department == department)
    if status is not None:
        query = query.where(DepartmentTask.status == status)
    if open_only:
        query = query.where(col(DepartmentTask.status).in_(OPEN_STATUSES))
    if incident_id is not None:
        query = query.where(DepartmentTask.incident_id == incident_id)
    # Overdue first, then by due time: what a duty desk must do next is at the top.
    return paged(session, query, col(DepartmentTask.due_at).is_(None), col(DepartmentTask.due_at),
                 col(DepartmentTask.created_at), limit=limit, offset=offset)


def incident_heads(session: Session, incident_ids: set[str]) -> dict[str, tuple[str, int]]:
    """A page's incidents by id: their code and plan version, in one query of two columns (the plan itself comes
    from `plan_for_version`'s cache, parsed once per process)."""
    if not incident_ids:
        return {}
    rows = session.exec(select(Incident.id, Incident.code, Incident.plan_version_id)
                        .where(col(Incident.id).in_(incident_ids))).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def get_task(session: Session, task_id: str, department: str | None) -> DepartmentTask:
    return in_scope(session.get(DepartmentTask, task_id), task_id, department)


def in_scope(task: DepartmentTask | None, task_id: str, department: str | None) -> DepartmentTask:
    """The task, for a reader of `department` (None: every department's), or `NotFound` as if it did not exist."""
    if task is None or (department is not None and task.department != department):
        raise NotFound(f"no task '{task_id}'")
    return task


def readable_attachment(session: Session, attachment_id: str, *, reader: str | None, actor: str) -> Attachment:
    """A stored file, for a reader who may read the field of the task that names it (`Step.visible_outputs`, as
    the field's value itself; a department must also be on the incident), or for its sender while the task is
    not yet completed with it. Anyone else finds nothing (`NotFound`)."""
    row = session.get(Attachment, attachment_id)
    missing = NotFound(f"no attachment '{attachment_id}'")
    if row is None:
        raise missing
    if row.linked_at is None:
        if row.uploaded_by != actor:
            raise missing
        return row
    task = session.get(DepartmentTask, row.task_id)
    incident = session.get(Incident, row.incident_id)
    if task is None or incident is None:
        raise missing
    if reader is not None and reader != task.department and not involved(session, incident.id, reader):
        raise missing
    step = plan_for_version(session, incident.plan_version_id).step(task.step_key)
    visible = step.visible_outputs(reader, owner=task.department, outputs=task.outputs)
    if (row.field_key, row.id) not in attachments.references(step, visible):
        raise missing
    return row


def attempts(session: Session, task: DepartmentTask) -> list[DepartmentTask]:
    """Every attempt of the task's step, oldest first: who was meant to act on each and who acted."""
    return list(session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == task.incident_id,
                                                          DepartmentTask.step_key == task.step_key)
                             .order_by(col(DepartmentTask.attempt))).all())


def task_detail(session: Session, task: DepartmentTask, *, user: User | None = None) -> dict[str, Any]:
    """The task with its step's form and the inputs from earlier steps: what the plan hands the task's holder
    (`engine.shared_inputs`, as in the assignment's ledger entry and webhook), never more; with `user`, the
    register entries handed to the task as that user may read them, and the answers they pre-fill."""
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    plan = plan_for_version(session, incident.plan_version_id)
    step = plan.step(task.step_key)
    tasks = latest_tasks(session, incident.id)
    reg = registry()
    inputs = []
    for src_key, values in shared_inputs(plan, step, tasks, holder=task.department).items():
        source = tasks[src_key]
        src_step = plan.step(src_key)
        fields = []
        for k, v in values.items():
            form_field = src_step.field(k)
            fields.append({"key": k, "value": v, "unit": form_field.unit if form_field else None,
                           "label": form_field.label.model_dump() if form_field else {"zh": k, "en": k}})
        dept = reg.department(source.department)
        inputs.append({"step": src_key, "title": src_step.title.model_dump(), "department": source.department,
                       "department_name": dept.name.model_dump() if dept else None,
                       "completed_at": source.completed_at, "fields": fields})
    handed = registers.readable_handed(session, task.registers, user=user) if user is not None else None
    return {"task": task, "incident": incident, "step": step, "inputs": inputs, "registers": handed,
            "prefill": registers.prefill(step, handed),
            "form": [f.model_dump(mode="json") for f in step.form],
            "checks": [c.model_dump(mode="json") for c in step.checks]}


def is_overdue(task: DepartmentTask, now: datetime | None = None) -> bool:
    moment = now or utcnow()
    if task.due_at is None:
        return False
    end = task.completed_at if task.status == TaskStatus.completed else None
    return (end or moment) > task.due_at and task.status not in (TaskStatus.cancelled, TaskStatus.skipped)


def timeline(session: Session, incident: Incident) -> dict[str, Any]:
    """Stages and steps on a time axis: when each step was assigned, acknowledged, done, against its due."""
    plan = plan_for_version(session, incident.plan_version_id)
    chain = read_chain(session, incident.id)
    stages = []
    entered: dict[str, datetime] = {}
    for entry in chain:
        stage = entry.details.get("stage") if isinstance(entry.details, dict) else None
        if entry.kind == LedgerKind.stage_entered and stage:
            entered[stage] = entry.at
        elif entry.kind == LedgerKind.stage_left and stage:
            stages.append({"stage": stage, "entered_at": entered.get(stage), "left_at": entry.at})
    if incident.status == "open" and incident.stage in entered:
        stages.append({"stage": incident.stage, "entered_at": entered[incident.stage], "left_at": None})
    order = {key: i for i, (_, step) in enumerate(plan.steps()) for key in [step.key]}
    rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id)).all()
    steps = []
    for task in sorted(rows, key=lambda t: (STAGES.index(t.stage), order.get(t.step_key, 0), t.attempt)):
        step = plan.step(task.step_key)
        steps.append({"task_id": task.id, "step": task.step_key, "title": step.title.model_dump(),
                      "stage": task.stage, "department": task.department, "kind": task.kind,
                      "attempt": task.attempt, "status": task.status, "assigned_at": task.assigned_at,
                      "acknowledged_at": task.acknowledged_at, "completed_at": task.completed_at,
                      "due_at": task.due_at, "escalated_at": task.escalated_at, "escalated_to": task.escalated_to,
                      "overdue": is_overdue(task) if task.kind == "human" else False})
    changes = session.exec(select(LevelChange).where(LevelChange.incident_id == incident.id)
                           .order_by(col(LevelChange.at))).all()
    return {"incident_id": incident.id, "code": incident.code, "opened_at": incident.created_at,
            "closed_at": incident.closed_at, "stages": stages, "steps": steps,
            "level_changes": [{"from": c.from_level, "to": c.to_level, "actor": c.actor, "reason": c.reason,
                               "at": c.at} for c in changes]}


def deadlines_by_department(session: Session, incident: Incident) -> list[dict[str, Any]]:
    rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id,
                                                     DepartmentTask.kind == "human")).all()
    figures: dict[str, dict[str, int]] = {}
    for task in rows:
        if task.due_at is None or task.status in (TaskStatus.skipped, TaskStatus.cancelled):
            continue
        item = figures.setdefault(task.department, {"met": 0, "missed": 0, "open": 0})
        if task.status == TaskStatus.completed:
            item["met" if not is_overdue(task) else "missed"] += 1
        elif is_overdue(task):
            item["missed"] += 1
        else:
            item["open"] += 1
    return [{"department": k, **v} for k, v in sorted(figures.items())]


def ledger_view(session: Session, incident: Incident) -> dict[str, Any]:
    result = verify_incident(session, incident.id)
    return {"entries": read_chain(session, incident.id), "valid": result.valid, "count": result.entries,
            "first_bad_seq": result.first_bad_seq, "reason": result.reason}


def shared_steps(session: Session, incident: Incident, reader: str | None) -> list[dict[str, Any]]:
    """Completed department steps whose plan shares outputs, with the outputs `reader` may see (field by field:
    `Step.visible_outputs`) and their strictest classification, in the order they were done. A step of which the
    reader may see nothing is left out."""
    plan = plan_for_version(session, incident.plan_version_id)
    out = []
    for key, task in latest_tasks(session, incident.id).items():
        step = plan.step(key)
        if task.status != TaskStatus.completed or task.kind != "human" or not step.shares():
            continue
        outputs = step.visible_outputs(reader, owner=task.department, outputs=task.outputs)
        if not outputs and not reaches(reader, owner=task.department, share=step.share):
            continue
        classification = step.classification_of(outputs)
        out.append({"task": task, "step": step, "outputs": outputs,
                    "classification": classification.value if classification else None})
    return sorted(out, key=lambda item: item["task"].completed_at or utcnow())


def shared_with(session: Session, incident: Incident, department: str | None) -> list[dict[str, Any]]:
    """Completed outputs the plan shares with this department (all of them for office and managers)."""
    return [{"step": item["step"].key, "title": item["step"].title.model_dump(), "department": item["task"].department,
             "classification": item["classification"], "completed_at": item["task"].completed_at,
             "outputs": item["outputs"]} for item in shared_steps(session, incident, department)]


def duty_screen(session: Session, incident: Incident, now: datetime | None = None,
                deadlines: int = 5) -> dict[str, Any]:
    """What the duty officer reads at a glance on an incident: its stages (past ones done, the current one
    marked), the open people's tasks counted (waiting to be signed for, in progress, overdue, and `waiting_on_office`:
    those for the office to route, as its panel of alerts lists them, `alerts.open_alerts`), the current level
    with its reason and who set it, and the nearest open deadlines."""
    moment = now or utcnow()
    rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id,
                                                     DepartmentTask.kind == "human",
                                                     col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
    live = [t for t in rows if t.status != TaskStatus.pending]
    overdue = [t for t in live if is_overdue(t, moment)]
    upcoming = sorted((t for t in live if t.due_at is not None and not is_overdue(t, moment)),
                      key=lambda t: t.due_at or moment)[:deadlines]
    current = STAGES.index(incident.stage) if incident.stage in STAGES else 0
    closed = incident.status != "open"
    stages = [{"stage": s, "state": "done" if i < current or closed else "current" if i == current else "ahead"}
              for i, s in enumerate(STAGES)]
    # The tasks for the office to route: exactly what the office's panel beside the counter lists (its open
    # alerts: handed back, declined, meant for nobody able to act, overdue with nobody to escalate to).
    to_route = open_alerts(session, incident_id=incident.id)
    return {"now": moment, "stages": stages,
            "counts": {"waiting": sum(t.acknowledged_at is None for t in live),
                       "in_progress": sum(t.acknowledged_at is not None for t in live),
                       "overdue": len(overdue), "waiting_on_office": len(to_route)},
            "overdue": sorted(overdue, key=lambda t: t.due_at or moment),
            "level": current_level(session, incident),
            "deadlines": [{"task": t, "department": t.position or t.department, "due_at": t.due_at,
                           "remaining": (t.due_at - moment) if t.due_at else None} for t in upcoming]}


def current_level(session: Session, incident: Incident) -> dict[str, Any]:
    """The incident's level now, its reason and who set it (the latest level change, else the opening), and the
    commander on whose verbal order it was recorded, if it was."""
    change = session.exec(select(LevelChange).where(LevelChange.incident_id == incident.id)
                          .order_by(col(LevelChange.at).desc(), col(LevelChange.id).desc())).first()
    if change is None:
        return {"level": incident.level, "reason": None, "actor": incident.opened_by, "at": incident.created_at,
                "ordered_by": None}
    authorisation = session.exec(select(LevelAuthorisation).where(
        LevelAuthorisation.level_change_id == change.id)).first()
    ordered_by = authorisation.authorised_by if authorisation is not None and authorisation.verbal else None
    return {"level": change.to_level, "reason": change.reason, "actor": change.actor, "at": change.at,
            "ordered_by": f"user:{ordered_by}" if ordered_by else None}
