"""Pages of resources in incidents: the requests a department made or was asked (the office: all) with the
reserves under their safety stock, and one request with the step its reader may take next (approve all or part,
refuse, dispatch, confirm receipt, return); and an incident's requests with the form that asks for reserves on it,
for whoever the API lets ask (one who acts for a department the incident involves, or the office). They call the
same services as /api/resource-requests; a refused step re-shows the page with its reason and a 4xx status, a
refused request each field's reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from api.deps import PageUser, Principal, SessionDep, first_of_a_race, idempotency_digest
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect, zone
from api.refusals import refusal_said
from core.incidents import reads as incident_reads
from core.incidents.models import Incident
from core.platform.db import new_id
from core.platform.errors import BatonError, NotFound
from core.registers.models import MaterialReserve
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


# What the request form keeps of what was typed, to show it again when a field is refused.
ASKED = ("reserve_id", "category", "supplier", "quantity", "needed_by", "destination", "description")


def _local_moment(text: str) -> str:
    """A `datetime-local` value (no offset) in Baton's time zone, with its offset, for the service's check; any
    other text is left as typed for the service to refuse."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone())).isoformat(timespec="seconds")


def _incident_page(request: Request, principal: Principal, session: Session, incident: Incident, *,
                   errors: list[dict[str, Any]] | None = None, problem: BatonError | None = None,
                   asked: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    reader = service.reader_of(principal.user)
    rows = [service.view(session, r) for r in service.list_requests(session, reader=reader, incident_id=incident.id)]
    reserves = list(session.exec(select(MaterialReserve).order_by(col(MaterialReserve.organisation),
                                                                  col(MaterialReserve.code)).limit(500)).all())
    return page(request, principal, "incident_resources.html", status_code, incident=incident, requests=rows,
                can_request=principal.acts_for is not None and incident.status == "open", reserves=reserves,
                suppliers=sorted({r.organisation for r in reserves}), errors=errors or [], problem=problem,
                problem_text=refusal_said(problem, principal.user.lang) if problem is not None else "",
                asked={**dict.fromkeys(ASKED, ""), **(asked or {})}, idempotency=new_id())


@router.get("/incidents/{incident_id}/resources")
def incident_resources(incident_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    incident = incident_reads.get_incident(session, incident_id, service.reader_of(principal.user))
    return _incident_page(request, principal, session, incident)


@router.post("/incidents/{incident_id}/resources")
def request_resources(incident_id: str, request: Request, principal: PageUser, session: SessionDep,
                      form: Form) -> Response:
    """Ask for reserves on the incident, as `POST /api/incidents/{id}/resource-requests` does (the same service,
    the same checks; the form's one-time key makes a second press of the button answer with the first request)."""
    checked_form(principal, form)
    incident = incident_reads.get_incident(session, incident_id, service.reader_of(principal.user))
    if principal.acts_for is None:
        from api.errors import ApiError

        raise ApiError(403, "forbidden", "only who acts for a department requests resources")
    asked = {name: field(form, name) for name in ASKED}
    given = field(form, "idempotency").strip()
    key = idempotency_digest(principal.user.id, f"page:{given}") if given else None

    def ask() -> tuple[ResourceRequest, bool]:
        return service.request_resources(
            session, incident_id=incident.id, user=principal.user, actor=principal.actor,
            quantity=asked["quantity"], needed_by=_local_moment(asked["needed_by"]),
            destination=asked["destination"], category=asked["category"].strip() or None,
            reserve_id=asked["reserve_id"].strip() or None, supplier=asked["supplier"].strip() or None,
            description=asked["description"], idempotency_key=key)

    try:
        made, _ = first_of_a_race(session, ask, retry=key is not None)
    except BatonError as refused:
        if refused.http_status not in (409, 422):
            raise
        session.rollback()
        details = refused.details if isinstance(refused.details, list) else []
        errors = [d for d in details if isinstance(d, dict)]
        if not errors and isinstance(refused.details, dict) and refused.details.get("field"):
            errors = [{"field": refused.details["field"], "reason": refused.code,
                       "message": refusal_said(refused, principal.user.lang)}]
        return _incident_page(request, principal, session, incident, errors=errors, problem=refused, asked=asked,
                              status_code=refused.http_status)
    session.commit()
    return redirect(f"/resources/{made.id}")


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
                             problem=exc.code, problem_text=refusal_said(exc, principal.user.lang),
                             status_code=exc.http_status)
    session.commit()
    return redirect(f"/resources/{found.id}?done={step}")
