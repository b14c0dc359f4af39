"""Leaders' instructions (批示) on an incident's page of their own: the office records one given by a leader (a
leader their own), the departments it names report on their part, the office closes it when all are done. The
board and the manager's review show them too (`instruction_context`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import ActingPageUser, OfficePageUser, PageUser, Principal, SessionDep
from api.errors import ApiError
from api.pages import desk
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect, zone
from core.desk import instructions
from core.incidents import reads
from core.incidents.models import Incident
from core.incidents.permissions import may_act
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.errors import BatonError, NotFound
from core.platform.input_policy import Violation

router = page_router()


def instruction_context(session: Session, incident: Incident, department: str | None) -> dict[str, Any]:
    """What the board and the review show: the incident's instructions (those naming `department`)."""
    return {"instructions": instructions.of_incident(session, incident.id, department)}


def _department(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def _incident(session: Session, principal: Principal, incident_id: str) -> Incident:
    department = _department(principal)
    try:
        return reads.get_incident(session, incident_id, department)
    except NotFound:
        incident = reads.get_incident(session, incident_id, None)
        if department is not None and instructions.of_incident(session, incident.id, department):
            return incident
        raise


def _page(request: Request, principal: Principal, session: Session, incident: Incident, *,
          errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    return page(request, principal, "instructions.html", status_code, incident=incident,
                departments=[d.key for d in registry().departments if d.kind != "headquarters"],
                errors=errors or {}, can_record=principal.acts_for is not None,
                **instruction_context(session, incident, _department(principal)))


@router.get("/incidents/{incident_id}/instructions")
def instructions_page(incident_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return _page(request, principal, session, _incident(session, principal, incident_id))


@router.post("/incidents/{incident_id}/instructions")
def record(incident_id: str, request: Request, principal: ActingPageUser, session: SessionDep,
           form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, _department(principal))
    due = None
    try:
        if field(form, "due_at").strip():
            due = policy.moment_text(field(form, "due_at"), local=zone())
        instructions.record(session, incident_id=incident.id, user=principal.user, leader=field(form, "leader"),
                            text=field(form, "text"),
                            departments=[v for v in form.getlist("departments") if isinstance(v, str)], due_at=due)
    except Violation as exc:
        return _page(request, principal, session, incident, errors={"due_at": exc.reason}, status_code=422)
    except BatonError as exc:
        if exc.http_status != 422:
            raise
        session.rollback()
        return _page(request, principal, session, incident, errors=desk.problems(exc), status_code=422)
    session.commit()
    return redirect(f"/incidents/{incident.id}/instructions")


@router.post("/instruction-tasks/{task_id}/complete")
def complete(task_id: str, request: Request, principal: ActingPageUser, session: SessionDep,
             form: Form) -> Response:
    checked_form(principal, form)
    task = instructions.get_task(session, task_id)
    department = _department(principal)
    if department is not None and task.department != department:
        raise NotFound(f"no instruction task '{task_id}'")
    if not may_act(principal.user, task):
        raise ApiError(403, "forbidden", f"only {task.department} reports on its part")
    instructions.complete_task(session, task_id=task.id, actor=principal.actor, reply=field(form, "reply"))
    session.commit()
    if field(form, "back") == "inbox":  # reported from the department's inbox: back there
        return redirect("/inbox?done=instruction#instruction-tasks")
    return redirect(f"/incidents/{task.incident_id}/instructions")


@router.post("/instructions/{instruction_id}/close")
def close(instruction_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
          form: Form) -> Response:
    checked_form(principal, form)
    row = instructions.get_instruction(session, instruction_id)
    instructions.close(session, instruction_id=row.id, actor=principal.actor, note=field(form, "note"))
    session.commit()
    return redirect(f"/incidents/{row.incident_id}/instructions")
