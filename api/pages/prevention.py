"""The prevention page (汛前检查, 隐患排查, drills): what is overdue, which register entries were not checked this
season, and rectifications (整改) by department. A department sees its own; the office, managers and admins all.

An inspection or rectification has a page of its own, reached from the department's inbox: the department answers
an inspection (a hazard found or not, with a note), sends a rectification's evidence (a photo from the phone's
camera, or a PDF) and closes it with what was done. The same services and scope as `/api/prevention`."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.datastructures import UploadFile

from api.deps import PageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from api.routes.prevention import actable, reader_of
from core.platform.clock import as_utc, utcnow
from core.platform.errors import AttachmentEmpty, AttachmentRefused, AttachmentTooLarge, BatonError
from core.platform.settings import get_settings
from core.prevention import service
from core.prevention.campaigns import CAMPAIGNS
from core.prevention.models import PreventionTask

router = page_router()
DONE = ("answered", "opened", "evidence", "closed")


@router.get("/prevention")
def prevention(request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    reader = reader_of(principal)
    now = utcnow()
    return page(request, principal, "prevention.html",
                overdue=service.overdue(session, department=reader, now=now),
                unchecked=service.not_checked(session, department=reader),
                rectifications=service.rectifications_by_department(session, department=reader, now=now),
                open_tasks=service.list_tasks(session, department=reader, open_only=True, limit=300),
                campaigns=CAMPAIGNS)


def _task_page(request: Request, principal: Principal, session: Session, task: PreventionTask, *,
               errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
               status_code: int = 200) -> HTMLResponse:
    done = request.query_params.get("done")
    parent = service.get_task(session, task.parent_id, None) if task.parent_id else None
    return page(request, principal, "prevention_task.html", status_code, task=task, parent=parent,
                campaign=CAMPAIGNS.get(task.campaign), evidence=service.evidence_of(session, task.id),
                is_open=task.status in service.OPEN, overdue=task.status in service.OPEN
                and as_utc(task.due_at) < utcnow(),
                can_act=principal.acts_for == task.department, errors=errors or {}, values=values or {},
                done=done if done in DONE else None,
                attachment_limit=f"{get_settings().attachment_max_bytes / 1024 / 1024:g} MB")


def _field_errors(exc: BatonError, default: str) -> dict[str, str]:
    """A refusal as a message beside its field: the service's field, else `default`."""
    details: Any = exc.details
    if isinstance(details, list):
        found = {str(d.get("field", default)): str(d.get("code") or exc.code) for d in details if isinstance(d, dict)}
        if found:
            return found
    return {default: exc.code}


@router.get("/prevention/tasks/{task_id}")
def task_view(task_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return _task_page(request, principal, session, service.get_task(session, task_id, reader_of(principal)))


@router.post("/prevention/tasks/{task_id}/answer")
def answer(task_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    """The inspection's answer: `hazard` is `yes` or `no`; a hazard found needs what was found (`finding`)."""
    checked_form(principal, form)
    task = actable(session, principal, task_id)
    values = {"hazard": field(form, "hazard"), "finding": field(form, "finding")}
    if values["hazard"] not in ("yes", "no"):
        return _task_page(request, principal, session, task, errors={"hazard": "required"}, values=values,
                          status_code=422)
    try:
        opened = service.answer_inspection(session, task_id=task.id, actor=principal.actor,
                                           hazard_found=values["hazard"] == "yes", finding=values["finding"])
    except BatonError as exc:
        if exc.http_status != 422:
            raise
        session.rollback()
        return _task_page(request, principal, session, task, errors=_field_errors(exc, "finding"), values=values,
                          status_code=422)
    session.commit()
    if opened is not None:
        return redirect(f"/prevention/tasks/{opened.id}?done=opened")
    return redirect(f"/prevention/tasks/{task.id}?done=answered")


@router.post("/prevention/tasks/{task_id}/close")
def close(task_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    """A rectification's form: the file chosen (a photo from the camera, or a PDF) is stored as its evidence; then,
    unless only the file was sent (`action=upload`), it is closed with what was done (`measures`), refused with
    `evidence_required` beside the file field while it has no evidence."""
    checked_form(principal, form)
    task = actable(session, principal, task_id)
    values = {"measures": field(form, "measures")}
    upload = form.get("evidence_file")
    if isinstance(upload, UploadFile) and (upload.filename or upload.size):
        try:
            service.add_evidence(session, task_id=task.id, actor=principal.actor, filename=upload.filename,
                                 stream=upload.file)
        except (AttachmentRefused, AttachmentEmpty, AttachmentTooLarge) as exc:
            session.rollback()
            return _task_page(request, principal, session, task, errors={"evidence_file": exc.code}, values=values,
                              status_code=422)
        session.commit()  # the file is kept even if closing is refused below
    if field(form, "action") == "upload":
        return redirect(f"/prevention/tasks/{task.id}?done=evidence")
    try:
        service.close_rectification(session, task_id=task.id, actor=principal.actor, measures=values["measures"])
    except BatonError as exc:
        if exc.http_status != 422:
            raise
        session.rollback()
        return _task_page(request, principal, session, task, values=values, status_code=422,
                          errors={"evidence_file": exc.code} if exc.code == "evidence_required"
                          else _field_errors(exc, "measures"))
    session.commit()
    return redirect(f"/prevention/tasks/{task.id}?done=closed")
