from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from sqlmodel import Session

from api.deps import ActingUser, CurrentUser, OfficeUser, Principal, SessionDep
from api.errors import ApiError
from api.routes.prevention import task_out as prevention_task_out
from api.schemas import (
    AlertOut,
    AskLeaderIn,
    AttachmentOut,
    CompleteIn,
    DeclineIn,
    HandBackIn,
    ReassignIn,
    TakeOverIn,
    TaskDetail,
    TaskPage,
    TaskPublic,
)
from core.attachments import service as attachments
from core.attachments.models import Attachment
from core.incidents import alerts, handoffs, reads
from core.incidents.models import DepartmentTask, Incident, OfficeAlert
from core.incidents.permissions import held_for, may_act
from core.incidents.service import LockedTask, lock_task
from core.plans.store import plan_for_version
from core.platform.errors import ReasonRequired
from core.platform.input_policy import Offset
from core.prevention import service as prevention

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


def public(session: Session, task: DepartmentTask, head: tuple[str, int] | None = None) -> TaskPublic:
    """The task as the API shows it; `head`: its incident's code and plan version when the caller read them."""
    if head is None:
        incident = session.get(Incident, task.incident_id)
        head = (incident.code, incident.plan_version_id) if incident is not None else None
    title = None
    if head is not None:
        title = plan_for_version(session, head[1]).step(task.step_key).title.model_dump()
    return TaskPublic(id=task.id, incident_id=task.incident_id, incident_code=head[0] if head else None,
                      step_key=task.step_key, title=title, stage=task.stage, department=task.department,
                      status=task.status, attempt=task.attempt, assigned_at=task.assigned_at, due_at=task.due_at,
                      acknowledged_at=task.acknowledged_at, completed_at=task.completed_at,
                      escalated_to=task.escalated_to, overdue=reads.is_overdue(task), outputs=task.outputs,
                      position=task.position)


def alert_out(session: Session, alert: OfficeAlert) -> AlertOut:
    incident = session.get(Incident, alert.incident_id)
    title = None
    if incident is not None:
        title = plan_for_version(session, incident.plan_version_id).step(alert.step_key).title.model_dump()
    return AlertOut(id=alert.id, incident_id=alert.incident_id, incident_code=incident.code if incident else None,
                    task_id=alert.task_id, step_key=alert.step_key, title=title, department=alert.department,
                    kind=alert.kind, reason=alert.reason, raised_by=alert.raised_by, raised_at=alert.raised_at,
                    resolved_at=alert.resolved_at, resolved_by=alert.resolved_by, resolution=alert.resolution,
                    target=alert.target, resolution_reason=alert.resolution_reason,
                    routed_task_id=alert.routed_task_id, reason_code=alert.reason_code,
                    route_due_at=alerts.route_due(alert, incident.clock_speed if incident else 1.0),
                    escalated_at=alert.escalated_at)


def _scope(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def _readable(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    return reads.get_task(session, task_id, _scope(principal))


def _may_act(session: Session, principal: Principal, task: DepartmentTask) -> None:
    if not may_act(principal.user, task, held_for(session, principal.user, task)):
        # Office and admin read every task but act only for the emergency office.
        raise ApiError(403, "forbidden", f"only {task.department} can act on this task")


def _actable(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    task = _readable(session, principal, task_id)
    _may_act(session, principal, task)
    return task


def _locked_actable(session: Session, principal: Principal, task_id: str) -> LockedTask:
    """The task and its incident locked, as the handoff holds them (read once, not before and again under the
    lock), for a principal who may read and act on it; else 404 or 403 as `_actable`."""
    incident, task = lock_task(session, task_id)
    _may_act(session, principal, reads.in_scope(task, task_id, _scope(principal)))
    return incident, task


def _handed(session: Session, task: DepartmentTask, locked: LockedTask) -> TaskPublic:
    return public(session, task, (locked[0].code, locked[0].plan_version_id))


@router.get("", response_model=TaskPage, responses={304: {"description": "Not changed since the ETag sent"}})
def inbox(request: Request, principal: CurrentUser, session: SessionDep,
          status: Annotated[str | None, Query(pattern="^(pending|assigned|acknowledged|completed|handed_back|"
                                                     "escalated|cancelled|skipped)$")] = None,
          incident: Annotated[str | None, Query(max_length=64)] = None,
          department: Annotated[str | None, Query(max_length=64)] = None,
          open: bool = False,
          limit: Annotated[int, Query(ge=1, le=500)] = 100,
          offset: Offset = 0) -> Response:
    """A department user's inbox; office, managers and admins see every department's (filter `department`).
    Answered with an `ETag`: a desk that refreshes sends it back as `If-None-Match` and gets 304, no body, while
    its inbox is as it was (what it reads, overdue marks included, is the same)."""
    scope = department if principal.sees_all else principal.user.department
    incident_id = None
    if incident is not None:
        incident_id = reads.get_incident(session, incident, None if principal.sees_all else scope).id
    page = reads.list_tasks(session, department=scope, status=status, incident_id=incident_id, open_only=open,
                            limit=limit, offset=offset)
    heads = reads.incident_heads(session, {t.incident_id for t in page.items})
    found = [] if incident_id is not None or offset else [
        row for row in prevention.list_tasks(session, department=scope, open_only=open, limit=limit)
        if status is None or row.status == status]
    body = TaskPage(items=[public(session, t, heads.get(t.incident_id)) for t in page.items], total=page.total,
                    limit=limit, offset=offset,
                    prevention=[prevention_task_out(session, row) for row in found]).model_dump_json().encode()
    tag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache", "Vary": "Authorization, Cookie"}
    if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/{task_id}", response_model=TaskDetail)
def detail(task_id: str, principal: CurrentUser, session: SessionDep) -> TaskDetail:
    """The task, the form to fill, and the inputs other departments' earlier steps share with it."""
    task = _readable(session, principal, task_id)
    view = reads.task_detail(session, task, user=principal.user)
    return TaskDetail(**public(session, task).model_dump(), form=view["form"], checks=view["checks"],
                      inputs=view["inputs"], note=task.note, registers=view["registers"], prefill=view["prefill"])


@router.post("/{task_id}/acknowledge", response_model=TaskPublic)
def acknowledge(task_id: str, principal: ActingUser, session: SessionDep) -> TaskPublic:
    locked = _locked_actable(session, principal, task_id)
    return _handed(session, handoffs.acknowledge(session, task_id=task_id, actor=principal.actor, locked=locked),
                   locked)


@router.post("/{task_id}/complete", response_model=TaskPublic)
def complete(task_id: str, body: CompleteIn, principal: ActingUser, session: SessionDep) -> TaskPublic:
    """Complete with the form's values; 422 names every bad field, 409 if it is already done."""
    locked = _locked_actable(session, principal, task_id)
    if body.confirm_open_work and not body.open_work_reason:
        raise ReasonRequired("confirming that open tasks are cancelled needs a reason (open_work_reason)")
    return _handed(session, handoffs.complete(session, task_id=task_id, actor=principal.actor, by=principal.user,
                                              outputs=body.outputs, note=body.note, ordered_by=body.ordered_by,
                                              check_open_work=True, open_work_reason=body.open_work_reason
                                              if body.confirm_open_work else None, locked=locked), locked)


def attachment_out(row: Attachment) -> AttachmentOut:
    return AttachmentOut(id=row.id, reference=attachments.reference(row.id), task_id=row.task_id,
                         incident_id=row.incident_id, filename=row.filename, content_type=row.content_type,
                         size=row.size, sha256=row.sha256, created_at=row.created_at)


@router.post("/{task_id}/attachments", response_model=AttachmentOut, status_code=201)
def upload_attachment(task_id: str, file: Annotated[UploadFile, File(description="A photo or a PDF")],
                      principal: ActingUser, session: SessionDep) -> AttachmentOut:
    """Attach a file to an open task whose form has an attachment field (multipart, field `file`): a photo
    (JPEG, PNG, WebP, HEIC) or a PDF, judged by its bytes (415 `attachment_type_refused`), at most
    `BATON_ATTACHMENT_MAX_BYTES` (413 `attachment_too_large`). Name it in the completion's outputs by its
    `reference`; until then only its sender may read it (`GET /api/attachments/{id}`)."""
    task = _actable(session, principal, task_id)
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    step = plan_for_version(session, incident.plan_version_id).step(task.step_key)
    return attachment_out(attachments.store(session, task=task, step=step, uploaded_by=principal.actor,
                                            filename=file.filename, stream=file.file))


@router.post("/{task_id}/hand-back", response_model=TaskPublic)
def hand_back(task_id: str, body: HandBackIn, principal: ActingUser, session: SessionDep) -> TaskPublic:
    locked = _locked_actable(session, principal, task_id)
    return _handed(session, handoffs.hand_back(session, task_id=task_id, actor=principal.actor, reason=body.reason,
                                               locked=locked), locked)


@router.post("/{task_id}/decline", response_model=TaskPublic)
def decline(task_id: str, body: DeclineIn, principal: ActingUser, session: SessionDep) -> TaskPublic:
    """Decline the task as not the department's own (退单), with a reason code and text: the office is alerted and
    must route it within `decline_route_minutes` (else the alert escalates)."""
    locked = _locked_actable(session, principal, task_id)
    return _handed(session, handoffs.decline(session, task_id=task_id, actor=principal.actor,
                                             code=body.reason_code, reason=body.reason, locked=locked), locked)


# -- the office's choices on a hand-back alert -----------------------------------------------------------------


@router.post("/{task_id}/reassign", response_model=AlertOut)
def reassign(task_id: str, body: ReassignIn, principal: OfficeUser, session: SessionDep) -> AlertOut:
    """The office sends a handed-back (or unstaffed) task to another department, which must have somebody active
    able to act (409 `department_unstaffed`); 409 `alert_resolved` if the office already chose. The engine assigns
    the next attempt there."""
    task = reads.get_task(session, task_id, None)
    return alert_out(session, alerts.reassign(session, task_id=task.id, department=body.department,
                                              actor=principal.actor, reason=body.reason))


@router.post("/{task_id}/take-over", response_model=AlertOut)
def take_over(task_id: str, body: TakeOverIn, principal: OfficeUser, session: SessionDep) -> AlertOut:
    """The office does the task itself: the next attempt is the emergency office's."""
    task = reads.get_task(session, task_id, None)
    return alert_out(session, alerts.take_over(session, task_id=task.id, actor=principal.actor, reason=body.reason))


@router.post("/{task_id}/ask-leader", response_model=AlertOut)
def ask_leader(task_id: str, body: AskLeaderIn, principal: OfficeUser, session: SessionDep) -> AlertOut:
    """The office refers the task to a command position held by somebody active (409 `position_unheld`);
    whoever holds it acts on the next attempt."""
    task = reads.get_task(session, task_id, None)
    return alert_out(session, alerts.ask_leader(session, task_id=task.id, position=body.position,
                                                actor=principal.actor, reason=body.reason))
