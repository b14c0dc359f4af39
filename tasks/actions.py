"""The automated steps a plan can name (see `process_defs.actions`), as Prefect tasks that take IDs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import Task, task
from sqlmodel import Session

from core.incidents.cascade import open_linked
from core.incidents.engine import finish_action, latest_tasks
from core.incidents.models import DepartmentTask, Incident, TaskStatus
from core.incidents.scope import covers
from core.incidents.service import lock_task
from core.outbox import queue as outbox
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.db import in_transaction
from core.registers.service import warning_area
from core.sharing.answers import Reach
from core.sharing.warnings import draft
from process_defs.actions import (
    NotifyDepartmentParams,
    OpenLinkedIncidentParams,
    PublishWarningParams,
    SituationSummaryParams,
)


def _context(session: Session, task_id: str) -> tuple[DepartmentTask, Incident, Any]:
    # Lock first, write after: every writer of an incident takes its lock before anything else.
    incident, row = lock_task(session, task_id)
    step = plan_for_version(session, incident.plan_version_id).step(row.step_key)
    return row, incident, step


def _notify(session: Session, *, task_id: str) -> dict[str, Any]:
    row, incident, step = _context(session, task_id)
    if row.status != TaskStatus.pending:
        return {"skipped": True}
    params = NotifyDepartmentParams.model_validate(step.params)
    target = params.target or step.department
    # A notice to a sub-district or community goes only where the warnings in force reach (issue 18: notification
    # steps reach the communities inside the warning area), by the rule 叫应 follows: its area (辖区) meets theirs;
    # no warning area, or no area on file for it, and it is notified as before.
    area, _ = warning_area(session, incident_id=incident.id, now=utcnow())
    if not Reach(session, area).organisation(target):
        finish_action(session, task_id=task_id, locked=(incident, row),
                      outputs={"delivery_id": None, "target": target, "outside_warning_area": True})
        return {"delivery_id": None, "outside_warning_area": True}
    delivery = outbox.queue(session, incident=incident, key=f"{incident.id}:{step.key}:notify",
                            purpose="notice", target=target,
                            payload={"step": step.key, "message": params.message.model_dump()})
    finish_action(session, task_id=task_id, locked=(incident, row),
                  outputs={"delivery_id": delivery.id, "target": target})
    return {"delivery_id": delivery.id}


def _publish(session: Session, *, task_id: str) -> dict[str, Any]:
    row, incident, step = _context(session, task_id)
    if row.status != TaskStatus.pending:
        return {"skipped": True}
    params = PublishWarningParams.model_validate(step.params)
    # The step drafts the warning for its department, the issuing agency; nothing is public until the office has
    # reviewed it and a leader has signed it off (core.sharing.warnings). The draft is ledgered on its own.
    alert = draft(session, incident_id=incident.id, params=params, department=step.department, actor="baton",
                  key=f"{incident.id}:{step.key}:cap", step_key=step.key)
    if alert is None:  # an all-clear of a warning never released: its drafts were withdrawn
        finish_action(session, task_id=task_id, locked=(incident, row),
                      outputs={"drafted": False, "published": False, "msg_type": params.msg_type})
        return {"identifier": None}
    finish_action(session, task_id=task_id, locked=(incident, row),
                  outputs={"identifier": alert.identifier, "drafted": True, "state": alert.state,
                           "published": alert.published, "msg_type": alert.msg_type, "status": alert.status,
                           "colour": alert.colour})
    return {"identifier": alert.identifier}


def _summarise(session: Session, *, task_id: str) -> dict[str, Any]:
    row, incident, step = _context(session, task_id)
    if row.status != TaskStatus.pending:
        return {"skipped": True}
    SituationSummaryParams.model_validate(step.params)
    plan = plan_for_version(session, incident.plan_version_id)
    reg = registry()
    entries = []
    for key, item in sorted(latest_tasks(session, incident.id).items(),
                            key=lambda kv: kv[1].completed_at or datetime.max.replace(tzinfo=UTC)):
        source = plan.step(key)
        if item.status != TaskStatus.completed or item.kind != "human" or not source.shares():
            continue
        # Only what every reader of the summary may read already: restricted outputs stay with the departments
        # named, and an output shared with a few departments is not copied to the summary's wider audience.
        outputs = {name: value for name, value in (item.outputs or {}).items()
                   if covers(source.field_share(name), owner=item.department, audience=step.share,
                             audience_owner=row.department)}
        if not outputs:
            continue
        classification = source.classification_of(outputs)
        dept = reg.department(item.department)
        entries.append({"step": key, "title": source.title.model_dump(), "department": item.department,
                        "department_name": dept.name.model_dump() if dept else None,
                        "completed_at": item.completed_at.isoformat() if item.completed_at else None,
                        "outputs": outputs, "classification": classification.value if classification else None})
    summary = {"incident": incident.code, "level": incident.level, "stage": incident.stage,
               "compiled_at": utcnow().isoformat(), "entries": entries}
    finish_action(session, task_id=task_id, locked=(incident, row),
                  outputs={"summary": summary, "entries": len(entries)})
    return {"entries": len(entries)}


def _cascade(session: Session, *, task_id: str) -> dict[str, Any]:
    row, incident, step = _context(session, task_id)
    if row.status != TaskStatus.pending:
        return {"skipped": True}
    params = OpenLinkedIncidentParams.model_validate(step.params)
    child = open_linked(session, parent_id=incident.id, type_key=params.type, level=params.level, actor="baton",
                        reason=f"{params.reason.zh} / {params.reason.en}", key=step.key)
    finish_action(session, task_id=task_id, locked=(incident, row),
                  outputs={"child_id": child.id, "child_code": child.code, "type": params.type})
    return {"child": child.code}


@task(name="open_linked_incident", retries=3, retry_delay_seconds=[1, 5, 20])
async def open_linked_incident(task_id: str) -> dict[str, Any]:
    return await in_transaction(_cascade, task_id=task_id)


@task(name="notify_department", retries=3, retry_delay_seconds=[1, 5, 20])
async def notify_department(task_id: str) -> dict[str, Any]:
    return await in_transaction(_notify, task_id=task_id)


@task(name="publish_warning", retries=3, retry_delay_seconds=[1, 5, 20])
async def publish_warning(task_id: str) -> dict[str, Any]:
    return await in_transaction(_publish, task_id=task_id)


@task(name="compile_situation_summary", retries=3, retry_delay_seconds=[1, 5, 20])
async def compile_situation_summary(task_id: str) -> dict[str, Any]:
    return await in_transaction(_summarise, task_id=task_id)


ACTION_TASKS: dict[str, Task[..., Any]] = {
    "notify_department": notify_department,
    "publish_warning": publish_warning,
    "compile_situation_summary": compile_situation_summary,
    "open_linked_incident": open_linked_incident,
}
