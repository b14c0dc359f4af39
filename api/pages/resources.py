"""Pages of resources in incidents: the requests a department made or was asked (the office: all) with the
reserves under their safety stock, and one request with the step its reader may take next (approve all or part,
refuse, dispatch, confirm receipt, return). They call the same services as /api/resource-requests; a refused step
re-shows the page with its reason and a 4xx status."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import PageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from core.incidents.models import Incident
from core.platform.errors import BatonError, NotFound
from core.resources import service
from core.resources.models import RequestStatus, ResourceRequest

router = page_router()
STEPS = ("approve", "refuse", "dispatch", "receive", "return")


def _readable(session: Session, principal: Principal, request_id: str) -> ResourceRequest:
    return service.get_request(session, request_id, service.reader_of(principal.user))


def _steps(principal: Principal, request: ResourceRequest) -> list[str]:
    """The steps the reader may take on the request now."""
    status = RequestStatus(request.status)
    supplier, receiver = service.may_supply(principal.user, request), service.may_receive(principal.user, request)
    return [step for step, allowed in (("approve", supplier and status == RequestStatus.requested),
                                       ("refuse", supplier and status == RequestStatus.requested),
                                       ("dispatch", supplier and status == RequestStatus.approved),
                                       ("receive", receiver and status == RequestStatus.dispatched),
                                       ("return", receiver and status == RequestStatus.received)) if allowed]


def _request_page(request: Request, principal: Principal, session: Session, found: ResourceRequest, *,
                  problem: str | None = None, problem_text: str | None = None, done: str | None = None,
                  status_code: int = 200) -> HTMLResponse:
    return page(request, principal, "resource_request.html", status_code, r=service.view(session, found),
                incident=session.get(Incident, found.incident_id), steps=_steps(principal, found),
                problem=problem, problem_text=problem_text, done=done if done in STEPS else None)


@router.get("/resources")
def resources(request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    reader = service.reader_of(principal.user)
    rows = [service.view(session, r) for r in service.list_requests(session, reader=reader)]
    incidents = {i.id: i for i in (session.get(Incident, r["incident_id"]) for r in rows) if i is not None}
    low = [service.replenishment_view(session, r) for r in service.replenishments(session, reader=reader)]
    return page(request, principal, "resources.html", requests=rows, incidents=incidents, replenishments=low)


@router.get("/resources/{request_id}")
def resource_request(request_id: str, request: Request, principal: PageUser, session: SessionDep,
                     done: str | None = None) -> HTMLResponse:
    return _request_page(request, principal, session, _readable(session, principal, request_id), done=done)


@router.post("/resources/{request_id}/act")
def act(request_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    """One step, named by the form's `step`; a step the reader may not take is 403 (as on the API)."""
    checked_form(principal, form)
    found = _readable(session, principal, request_id)
    step = field(form, "step")
    if step not in STEPS:
        raise NotFound(f"no step '{step[:40]}'")
    supplying = step in ("approve", "refuse", "dispatch")
    if not (service.may_supply if supplying else service.may_receive)(principal.user, found):
        from api.errors import ApiError

        raise ApiError(403, "forbidden", "this step is the other department's")
    quantity: Any = field(form, "quantity").strip() or None
    actions = {
        "approve": lambda: service.approve(session, request_id=found.id, actor=principal.actor, quantity=quantity),
        "refuse": lambda: service.refuse(session, request_id=found.id, actor=principal.actor,
                                         reason=field(form, "reason")),
        "dispatch": lambda: service.dispatch(session, request_id=found.id, actor=principal.actor,
                                             note=field(form, "note")),
        "receive": lambda: service.receive(session, request_id=found.id, actor=principal.actor, quantity=quantity),
        "return": lambda: service.return_unused(session, request_id=found.id, actor=principal.actor,
                                                quantity=quantity if quantity is not None else "0"),
    }
    try:
        actions[step]()
    except BatonError as exc:
        session.rollback()
        return _request_page(request, principal, session, _readable(session, principal, request_id),
                             problem=exc.code, problem_text=exc.message, status_code=exc.http_status)
    session.commit()
    return redirect(f"/resources/{found.id}?done={step}")
