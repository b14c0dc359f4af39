"""Prevention on schedules (core.prevention): the inspections a campaign's slot created, their answers, and the
rectifications (整改) findings opened, closed with evidence. A department reads and acts on its own; the office,
managers and admins read all (what is not visible reads as missing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import FileResponse
from sqlmodel import Session

from api.deps import ActingUser, CurrentUser, Principal, SessionDep
from api.errors import ApiError
from api.routes.attachments import FILE_CSP, disposition
from api.schemas import EvidenceOut, InspectionAnswerIn, PreventionTaskOut, RectificationCloseIn
from core.attachments import service as attachments
from core.platform.clock import as_utc, utcnow
from core.platform.errors import NotFound
from core.prevention import service
from core.prevention.models import PreventionEvidence, PreventionTask

router = APIRouter(prefix="/api/prevention", tags=["prevention"])


def reader_of(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def task_out(session: Session, task: PreventionTask) -> PreventionTaskOut:
    due = as_utc(task.due_at)
    return PreventionTaskOut(
        id=task.id, kind=task.kind, campaign=task.campaign, register_kind=task.register_kind, entry_id=task.entry_id,
        entry_code=task.entry_code, entry_name_zh=task.entry_name_zh, entry_name_en=task.entry_name_en,
        department=task.department, status=task.status, parent_id=task.parent_id, assigned_at=task.assigned_at,
        due_at=task.due_at, overdue=task.status in service.OPEN and due < utcnow(), reminded_at=task.reminded_at,
        escalated_at=task.escalated_at, escalated_to=task.escalated_to, completed_at=task.completed_at,
        completed_by=task.completed_by, hazard_found=task.hazard_found, finding=task.finding, measures=task.measures,
        evidence=[e.id for e in service.evidence_of(session, task.id)] if task.kind == "rectification" else [])


def actable(session: Session, principal: Principal, task_id: str) -> PreventionTask:
    """The task, for the department that answers and rectifies it (the pages' rule too)."""
    task = service.get_task(session, task_id, reader_of(principal))
    if principal.acts_for != task.department:
        raise ApiError(403, "forbidden", f"only {task.department} answers and rectifies this")
    return task


def evidence_out(row: PreventionEvidence) -> EvidenceOut:
    return EvidenceOut(id=row.id, task_id=row.task_id, filename=row.filename, content_type=row.content_type,
                       size=row.size, sha256=row.sha256, created_at=row.created_at)


@router.get("/tasks", response_model=list[PreventionTaskOut])
def list_tasks(principal: CurrentUser, session: SessionDep, open_only: bool = False,
               kind: str | None = None) -> list[PreventionTaskOut]:
    """Inspections and rectifications, soonest due first: a department's own; all for the office and managers."""
    rows = service.list_tasks(session, department=reader_of(principal), open_only=open_only,
                              kind=kind[:16] if kind else None)
    return [task_out(session, row) for row in rows]


@router.get("/tasks/{task_id}", response_model=PreventionTaskOut)
def get_task(task_id: str, principal: CurrentUser, session: SessionDep) -> PreventionTaskOut:
    return task_out(session, service.get_task(session, task_id, reader_of(principal)))


@router.post("/tasks/{task_id}/answer", response_model=PreventionTaskOut)
def answer(task_id: str, body: InspectionAnswerIn, principal: ActingUser, session: SessionDep) -> PreventionTaskOut:
    """The inspector's answer; a hazard found (with `finding`) opens a rectification, which is returned."""
    task = actable(session, principal, task_id)
    opened = service.answer_inspection(session, task_id=task.id, actor=principal.actor,
                                       hazard_found=body.hazard_found, finding=body.finding)
    return task_out(session, opened or task)


@router.post("/tasks/{task_id}/evidence", response_model=EvidenceOut, status_code=201)
def add_evidence(task_id: str, file: Annotated[UploadFile, File(description="A photo or a PDF")],
                 principal: ActingUser, session: SessionDep) -> EvidenceOut:
    """A photo or document for an open rectification (judged by its bytes, as a form's attachments are)."""
    task = actable(session, principal, task_id)
    row = service.add_evidence(session, task_id=task.id, actor=principal.actor, filename=file.filename,
                               stream=file.file)
    return evidence_out(row)


@router.post("/tasks/{task_id}/close", response_model=PreventionTaskOut)
def close(task_id: str, body: RectificationCloseIn, principal: ActingUser, session: SessionDep) -> PreventionTaskOut:
    """Close a rectification with what was done: 422 `evidence_required` until a photo or document was sent."""
    task = actable(session, principal, task_id)
    return task_out(session, service.close_rectification(session, task_id=task.id, actor=principal.actor,
                                                         measures=body.measures))


@router.get("/evidence/{evidence_id}", response_class=FileResponse,
            responses={200: {"description": "The file (a photo or a PDF)",
                             "content": {t: {} for t in attachments.ALLOWED}}})
def evidence(evidence_id: str, principal: CurrentUser, session: SessionDep) -> FileResponse:
    """A rectification's evidence, for whoever reads the rectification."""
    row = service.readable_evidence(session, evidence_id, reader=reader_of(principal))
    path = attachments.path_for_id(row.id)
    if not path.is_file():
        raise NotFound(f"no evidence '{evidence_id[:64]}'")
    kind = "inline" if row.content_type in attachments.INLINE else "attachment"
    return FileResponse(path, media_type=row.content_type,
                        headers={"Content-Disposition": disposition(kind, row.filename),
                                 "X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP})
