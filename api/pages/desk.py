"""The duty desk's pages (值班台): record a phone, 12345 or app report as an event record sheet, the duty leader's
review of it (open an incident, merge, file, return), the shift's duty log with its notes and handover, and the
log's print page. The office's and administrators' (the print page also the managers')."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.datastructures import FormData

from api.deps import OfficePageUser, Principal, ReviewerPageUser, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect, zone
from core.desk import logs, sheets
from core.desk.models import EventSheet, SheetSource, SheetStatus
from core.incidents import reads
from core.maps import layers
from core.plans.store import current_plans
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import Violation
from process_defs.schema import LEVELS

router = page_router()
SHEET_FIELDS = ("source", "caller", "callback", "place", "lat", "lon", "occurred_at", "what", *sheets.CASUALTIES)


def problems(exc: BatonError) -> dict[str, str]:
    """A refusal's reason codes by field (`_` for one that names none): the pages say each in the reader's
    language (`_desk.html`'s `problem`); the services' messages are English, for the API and the logs."""
    details = exc.details if isinstance(exc.details, list) else []
    found = {str(d.get("field", "_")): str(d.get("reason") or exc.code) for d in details if isinstance(d, dict)}
    return found or {"_": exc.code}


def _number(text: str) -> Any:
    """A form's number: an int or float when it reads as one, else the text (the service refuses it by name)."""
    text = text.strip()
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _given(form: FormData) -> tuple[sheets.SheetInput | None, dict[str, str]]:
    errors: dict[str, str] = {}
    when = field(form, "occurred_at")
    occurred = None
    try:
        occurred = policy.moment_text(when, local=zone())
    except Violation as exc:
        errors["occurred_at"] = exc.reason
    counts = {name: _number(field(form, name)) for name in sheets.CASUALTIES}
    lat, lon = _number(field(form, "lat")), _number(field(form, "lon"))
    if occurred is None:
        return None, errors
    given = sheets.SheetInput(source=field(form, "source"), caller=field(form, "caller"),
                              callback=field(form, "callback"), place=field(form, "place"), occurred_at=occurred,
                              what=field(form, "what"), lat=lat, lon=lon,
                              **{k: (0 if v is None else v) for k, v in counts.items()})
    return given, errors


def _values(form: FormData | None, sheet: EventSheet | None = None) -> dict[str, str]:
    if form is not None:
        return {name: field(form, name) for name in SHEET_FIELDS}
    if sheet is not None:
        return {"source": sheet.source, "caller": sheet.caller, "callback": sheet.callback, "place": sheet.place,
                "lat": "" if sheet.lat is None else str(sheet.lat), "lon": "" if sheet.lon is None else str(sheet.lon),
                "occurred_at": sheet.occurred_at.astimezone(zone()).strftime("%Y-%m-%dT%H:%M"), "what": sheet.what,
                **{name: str(getattr(sheet, name)) for name in sheets.CASUALTIES}}
    now = utcnow().astimezone(zone()).strftime("%Y-%m-%dT%H:%M")
    return {**{name: "" for name in SHEET_FIELDS}, "source": "phone", "occurred_at": now,
            **{name: "0" for name in sheets.CASUALTIES}}


def _desk(request: Request, principal: Principal, session: Session, *, values: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, log_errors: dict[str, str] | None = None,
          status_code: int = 200) -> HTMLResponse:
    log = logs.current(session)
    everything = sheets.list_sheets(session, limit=100)
    return page(request, principal, "desk.html", status_code, values=values or _values(None), errors=errors or {},
                log_errors=log_errors or {},
                sources=[s.value for s in SheetSource], waiting=[s for s in everything if s.status == "submitted"],
                returned=[s for s in everything if s.status == "returned"],
                reviewed=[s for s in everything if SheetStatus(s.status).reviewed][:20],
                overdue=sheets.is_overdue, limit_minutes=int(sheets.review_limit().total_seconds() // 60),
                log=log, entries=logs.entries(session, log) if log else [], recent_logs=logs.recent(session, 10),
                handed_from=logs.handed_from(session, log) if log else None, map_base=layers.base())


@router.get("/desk")
def desk(request: Request, principal: OfficePageUser, session: SessionDep) -> HTMLResponse:
    return _desk(request, principal, session)


@router.post("/desk/sheets")
def record(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    given, errors = _given(form)
    if given is not None and not errors:
        try:
            sheet = sheets.record(session, given=given, actor=principal.actor)
        except BatonError as exc:
            errors = problems(exc)
        else:
            session.commit()
            return redirect(f"/desk/sheets/{sheet.id}?done=recorded")
    session.rollback()
    return _desk(request, principal, session, values=_values(form), errors=errors, status_code=422)


def _sheet_page(request: Request, principal: Principal, session: Session, sheet: EventSheet, *,
                errors: dict[str, str] | None = None, amend_errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    plans, _ = current_plans()
    incident = reads.get_incident(session, sheet.incident_id, None) if sheet.incident_id else None
    open_incidents = reads.list_incidents(session, department=None, status="open", limit=100).items
    done = request.query_params.get("done")
    return page(request, principal, "desk_sheet.html", status_code, sheet=sheet, incident=incident,
                history=sheets.history(session, sheet), overdue=sheets.is_overdue(sheet), plans=plans,
                levels=LEVELS, open_incidents=open_incidents, errors=errors or {},
                amend_errors=amend_errors or {}, sources=[s.value for s in SheetSource],
                values=values or _values(None, sheet), done=done if done in ("recorded", "amended") else None,
                map_base=layers.base() if sheet.status == SheetStatus.returned else None)  # the amend form's map


@router.get("/desk/sheets/{sheet_id}")
def sheet_page(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep) -> HTMLResponse:
    return _sheet_page(request, principal, session, sheets.get_sheet(session, sheet_id))


def _decide(request: Request, principal: Principal, session: Session, sheet_id: str, form: FormData,
            act: str) -> Response:
    checked_form(principal, form)
    sheet = sheets.get_sheet(session, sheet_id)
    try:
        if act == "open":
            _, incident = sheets.open_from(session, sheet_id=sheet.id, user=principal.user,
                                           type_key=field(form, "type"), level=field(form, "level") or None,
                                           title=field(form, "title") or None)
            session.commit()
            return redirect(f"/office/incidents/{incident.id}?done=opened")
        if act == "merge":
            sheets.merge(session, sheet_id=sheet.id, user=principal.user, incident_id=field(form, "incident_id"),
                         note=field(form, "note"))
        elif act == "file":
            sheets.file_sheet(session, sheet_id=sheet.id, user=principal.user, reason=field(form, "reason"))
        else:
            sheets.return_(session, sheet_id=sheet.id, user=principal.user, reason=field(form, "reason"))
    except BatonError as exc:
        if exc.http_status not in (400, 422):
            raise
        session.rollback()
        return _sheet_page(request, principal, session, sheets.get_sheet(session, sheet_id),
                           errors=problems(exc), status_code=422)
    session.commit()
    return redirect(f"/desk/sheets/{sheet.id}")


@router.post("/desk/sheets/{sheet_id}/open")
def open_incident(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                  form: Form) -> Response:
    return _decide(request, principal, session, sheet_id, form, "open")


@router.post("/desk/sheets/{sheet_id}/merge")
def merge(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    return _decide(request, principal, session, sheet_id, form, "merge")


@router.post("/desk/sheets/{sheet_id}/file")
def file_sheet(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
               form: Form) -> Response:
    return _decide(request, principal, session, sheet_id, form, "file")


@router.post("/desk/sheets/{sheet_id}/return")
def return_sheet(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                 form: Form) -> Response:
    return _decide(request, principal, session, sheet_id, form, "return")


@router.post("/desk/sheets/{sheet_id}/amend")
def amend(sheet_id: str, request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    sheet = sheets.get_sheet(session, sheet_id)
    given, errors = _given(form)
    if given is not None and not errors:
        try:
            sheets.amend(session, sheet_id=sheet.id, given=given, actor=principal.actor)
        except BatonError as exc:
            if exc.http_status not in (400, 422):
                raise
            errors = problems(exc)
        else:
            session.commit()
            return redirect(f"/desk/sheets/{sheet.id}?done=amended")
    session.rollback()
    return _sheet_page(request, principal, session, sheets.get_sheet(session, sheet_id), values=_values(form),
                       amend_errors=errors, status_code=422)


def _log_action(request: Request, principal: Principal, session: Session, form: FormData, action: Any) -> Response:
    checked_form(principal, form)
    try:
        action()
    except BatonError as exc:
        if exc.http_status not in (400, 422):
            raise
        session.rollback()
        return _desk(request, principal, session, log_errors=problems(exc), status_code=422)
    session.commit()
    return redirect("/desk#duty-log")


@router.post("/desk/logs")
def start_log(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    return _log_action(request, principal, session, form, lambda: logs.start(
        session, officer=field(form, "officer") or principal.user.username, actor=principal.actor))


@router.post("/desk/logs/{log_id}/notes")
def add_note(log_id: str, request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    log = logs.get_log(session, log_id)
    return _log_action(request, principal, session, form, lambda: logs.add_note(
        session, log_id=log.id, text=field(form, "text"), actor=principal.actor))


@router.post("/desk/logs/{log_id}/handover")
def handover(log_id: str, request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    log = logs.get_log(session, log_id)
    return _log_action(request, principal, session, form, lambda: logs.handover(
        session, log_id=log.id, incoming=field(form, "incoming"), note=field(form, "note"), actor=principal.actor))


@router.get("/desk/logs/{log_id}/print")
def print_log(log_id: str, request: Request, principal: ReviewerPageUser, session: SessionDep) -> HTMLResponse:
    """The shift's duty log on paper: its officer and times, every entry, the handover signed by both officers."""
    log = logs.get_log(session, log_id)
    return page(request, principal, "desk_log_print.html", log=log, entries=logs.entries(session, log),
                printed_at=utcnow())
