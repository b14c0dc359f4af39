"""The duty roster page (值班表): each department's duty positions now (holder, stand-in, who holds it) and the
next handover, and for the office a form to import a roster file (CSV or XLSX, as the API and the CLI import it)
and one to mark someone away (their stand-in takes over). A department reads its own roster only."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import OfficePageUser, PageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, chosen_file, field, page, page_router, redirect, zone
from api.refusals import field_said, refusal_said
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import Violation
from core.platform.tabular import FileUnreadable
from core.users import rosters
from core.users.models import Role

router = page_router()


def _page(request: Request, principal: Principal, session: Session, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None, status_code: int = 200, imported: rosters.ImportResult | None = None,
          unreadable: FileUnreadable | None = None, no_file: bool = False) -> HTMLResponse:
    now = utcnow()
    if principal.user.role == Role.department and principal.user.department:
        departments = [principal.user.department]
    else:
        departments = sorted({s.department for s in rosters.shifts(session, at=now)})
        order = [d.key for d in registry().departments]
        departments.sort(key=lambda key: order.index(key) if key in order else len(order))
    desks = [rosters.desk(session, department=d, at=now) for d in departments]
    return page(request, principal, "roster.html", status_code, desks=desks, errors=errors or {},
                values=values or {"username": "", "starts_at": _local(now), "ends_at": "", "reason": ""},
                can_mark=principal.user.role in (Role.office, Role.admin),
                done=request.query_params.get("done") == "away", imported=imported, unreadable=unreadable,
                no_file=no_file)


def _local(moment: datetime) -> str:
    return moment.astimezone(zone()).strftime("%Y-%m-%dT%H:%M")


@router.get("/roster")
def roster(request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return _page(request, principal, session)


@router.post("/roster/away")
def mark_away(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {name: field(form, name) for name in ("username", "starts_at", "ends_at", "reason")}
    errors: dict[str, str] = {}
    moments: dict[str, datetime] = {}
    for name in ("starts_at", "ends_at"):
        try:
            moments[name] = policy.moment_text(values[name], local=zone())
        except Violation as exc:
            errors[name] = field_said({"code": exc.reason}, principal.user.lang)
    if not errors:
        try:
            rosters.mark_away(session, username=values["username"].strip(), starts_at=moments["starts_at"],
                              ends_at=moments["ends_at"], reason=values["reason"], actor=principal.actor)
        except BatonError as exc:
            if exc.http_status != 422:
                raise
            where = exc.details.get("field", "_") if isinstance(exc.details, dict) else "_"
            errors[str(where)] = refusal_said(exc, principal.user.lang)
    if errors:
        session.rollback()
        return _page(request, principal, session, errors=errors, values=values, status_code=422)
    session.commit()
    return redirect("/roster?done=away")


@router.post("/roster/import")
def import_roster(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    """The roster file chosen (CSV or XLSX) imported as `POST /api/rosters/import` imports it, and the page shown
    with what came of it: the rows kept, each refused row with its number, field and why. Shown at once rather
    than after a redirect, since the refusals are nowhere else to read; sending the form again is harmless, as
    importing the same roster again changes nothing. A file that cannot be read keeps nothing."""
    checked_form(principal, form)
    try:
        chosen = chosen_file(form, "roster_file")
        if chosen is None:
            return _page(request, principal, session, no_file=True, status_code=422)
        filename, data = chosen
        rows = rosters.read_rows(filename, data)
    except FileUnreadable as exc:
        return _page(request, principal, session, unreadable=exc, status_code=422)
    result = rosters.import_roster(session, rows=rows, source=filename, actor=principal.actor)
    session.commit()
    return _page(request, principal, session, imported=result)
