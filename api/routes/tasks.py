from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session

from api.deps import ActingUser, CurrentUser, Principal, SessionDep
from api.errors import ApiError
from api.schemas import CompleteIn, HandBackIn, TaskDetail, TaskPage, TaskPublic
from core.incidents import handoffs, reads
from core.incidents.models import DepartmentTask, Incident
from core.incidents.permissions import may_act
from core.plans.store import plan_for_version
from core.platform.input_policy import Offset

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


def public(session: Session, task: DepartmentTask) -> TaskPublic:
    incident = session.get(Incident, task.incident_id)
    title = None
    if incident is not None:
        title = plan_for_version(session, incident.plan_version_id).step(task.step_key).title.model_dump()
    return TaskPublic(id=task.id, incident_id=task.incident_id, incident_code=incident.code if incident else None,
                      step_key=task.step_key, title=title, stage=task.stage, department=task.department,
                      status=task.status, attempt=task.attempt, assigned_at=task.assigned_at, due_at=task.due_at,
                      acknowledged_at=task.acknowledged_at, completed_at=task.completed_at,
                      escalated_to=task.escalated_to, overdue=reads.is_overdue(task), outputs=task.outputs)


def _readable(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    return reads.get_task(session, task_id, None if principal.sees_all else principal.user.department)


def _actable(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    task = _readable(session, principal, task_id)
    if not may_act(principal.user, task):
        # Office and admin read every task but act only for the emergency office.
        raise ApiError(403, "forbidden", f"only {task.department} can act on this task")
    return task


@router.get("", response_model=TaskPage)
def inbox(principal: CurrentUser, session: SessionDep,
          status: Annotated[str | None, Query(pattern="^(pending|assigned|acknowledged|completed|handed_back|"
                                                     "escalated|cancelled|skipped)$")] = None,
          incident: Annotated[str | None, Query(max_length=64)] = None,
          department: Annotated[str | None, Query(max_length=64)] = None,
          open: bool = False,
          limit: Annotated[int, Query(ge=1, le=500)] = 100,
          offset: Offset = 0) -> TaskPage:
    """A department user's inbox; office, managers and admins see every department's (filter `department`)."""
    scope = department if principal.sees_all else principal.user.department
    incident_id = None
    if incident is not None:
        incident_id = reads.get_incident(session, incident, None if principal.sees_all else scope).id
    page = reads.list_tasks(session, department=scope, status=status, incident_id=incident_id, open_only=open,
                            limit=limit, offset=offset)
    reads.preload_incidents(session, {t.incident_id for t in page.items})
    return TaskPage(items=[public(session, t) for t in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/{task_id}", response_model=TaskDetail)
def detail(task_id: str, principal: CurrentUser, session: SessionDep) -> TaskDetail:
    """The task, the form to fill, and the inputs other departments' earlier steps share with it."""
    task = _readable(session, principal, task_id)
    view = reads.task_detail(session, task)
    return TaskDetail(**public(session, task).model_dump(), form=view["form"], checks=view["checks"],
                      inputs=view["inputs"], note=task.note)


@router.post("/{task_id}/acknowledge", response_model=TaskPublic)
def acknowledge(task_id: str, principal: ActingUser, session: SessionDep) -> TaskPublic:
    task = _actable(session, principal, task_id)
    return public(session, handoffs.acknowledge(session, task_id=task.id, actor=principal.actor))


@router.post("/{task_id}/complete", response_model=TaskPublic)
def complete(task_id: str, body: CompleteIn, principal: ActingUser, session: SessionDep) -> TaskPublic:
    """Complete with the form's values; 422 names every bad field, 409 if it is already done."""
    task = _actable(session, principal, task_id)
    return public(session, handoffs.complete(session, task_id=task.id, actor=principal.actor, by=principal.user,
                                             outputs=body.outputs, note=body.note, ordered_by=body.ordered_by))


@router.post("/{task_id}/hand-back", response_model=TaskPublic)
def hand_back(task_id: str, body: HandBackIn, principal: ActingUser, session: SessionDep) -> TaskPublic:
    task = _actable(session, principal, task_id)
    return public(session, handoffs.hand_back(session, task_id=task.id, actor=principal.actor, reason=body.reason))
