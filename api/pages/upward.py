"""Pages of upward reporting (信息报送): the reports a department owes, and one report to edit, record by phone,
sign off (签发) and send. They call the same services as /api/upward-reports; a refused action re-shows the page
with its reason and a 4xx status."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from api.deps import PageUser, Principal, SessionDep
from api.errors import ApiError
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from api.routes.reporting import detail
from core.incidents.models import Incident
from core.platform.errors import BatonError
from core.reporting import reads, service
from core.reporting.models import CasualtyFigures, ReportStatus, UpwardReport
from process_defs.schema import CASUALTY_KINDS, CASUALTY_NAMES

router = page_router()
DONE = ("edited", "phoned", "signed", "sent")


def _reader(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def _readable(session: Session, principal: Principal, report_id: str) -> UpwardReport:
    return service.get_report(session, report_id, _reader(principal))


def _actable(session: Session, principal: Principal, report_id: str) -> UpwardReport:
    report = _readable(session, principal, report_id)
    if principal.acts_for != report.department:
        raise ApiError(403, "forbidden", f"only {report.department} writes, signs off and sends this report")
    return report


def _report_page(request: Request, principal: Principal, session: Session, report: UpwardReport, *,
                 problem: str | None = None, done: str | None = None, values: dict[str, Any] | None = None,
                 status_code: int = 200) -> HTMLResponse:
    content = report.content
    may_act = principal.acts_for == report.department
    defaults = {"text": content.get("text") or "", "casualty_reason": content.get("casualty_reason") or "",
                **{f"c_{k}": content["casualties"][k] for k in CASUALTY_KINDS}}
    return page(request, principal, "upward_report.html", status_code, report=report, view=detail(session, report),
                incident=session.get(Incident, report.incident_id), content=content,
                checked=service.casualty_view(session.get(CasualtyFigures, report.incident_id)),
                kinds=CASUALTY_KINDS, names=CASUALTY_NAMES,
                can_edit=may_act and report.status == ReportStatus.drafting,
                can_phone=may_act and report.phone_due_at is not None and report.phoned_at is None,
                can_sign=may_act and report.status == ReportStatus.drafting,
                can_send=may_act and report.status != ReportStatus.sent,
                problem=problem, done=done if done in DONE else None, values={**defaults, **(values or {})})


@router.get("/upward-reports")
def upward_reports(request: Request, principal: PageUser, session: SessionDep,
                   incident: str | None = None) -> HTMLResponse:
    """Open reports first (the late ones at the top), then the sent ones; of one incident with `incident`."""
    query = select(UpwardReport)
    reader = _reader(principal)
    if reader is not None:
        query = query.where(UpwardReport.department == reader)
    if incident:
        query = query.where(UpwardReport.incident_id == incident[:64])
    rows = session.exec(query.order_by(col(UpwardReport.due_at).desc()).limit(300)).all()
    views = sorted((reads.view(r) for r in rows), key=lambda v: (not v["open"], not v["late"], v["due_at"]))
    ids = {v["incident_id"] for v in views}
    incidents = {i.id: i for i in session.exec(select(Incident).where(col(Incident.id).in_(ids))).all()} if ids else {}
    return page(request, principal, "upward_reports.html", reports=views, incidents=incidents)


@router.get("/upward-reports/{report_id}")
def upward_report(report_id: str, request: Request, principal: PageUser, session: SessionDep,
                  done: str | None = None) -> HTMLResponse:
    return _report_page(request, principal, session, _readable(session, principal, report_id), done=done)


def _act(request: Request, principal: Principal, session: Session, report: UpwardReport, done: str,
         action: Any, values: dict[str, Any] | None = None) -> Response:
    try:
        action()
    except BatonError as exc:
        session.rollback()
        return _report_page(request, principal, session, _readable(session, principal, report.id), problem=exc.code,
                            values=values, status_code=exc.http_status)
    session.commit()
    return redirect(f"/upward-reports/{report.id}?done={done}")


@router.post("/upward-reports/{report_id}/edit")
def edit(report_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    report = _actable(session, principal, report_id)
    values = {"text": field(form, "text"), "casualty_reason": field(form, "casualty_reason"),
              **{f"c_{k}": field(form, f"c_{k}") for k in CASUALTY_KINDS}}
    figures: dict[str, Any] = {}
    for kind in CASUALTY_KINDS:
        raw = values[f"c_{kind}"].strip()
        figures[kind] = int(raw) if raw.isdigit() else raw  # anything else is refused by the service, by name
    return _act(request, principal, session, report, "edited",
                lambda: service.edit_report(session, report_id=report.id, actor=principal.actor,
                                            text=values["text"], casualties=figures,
                                            casualty_reason=values["casualty_reason"]), values)


@router.post("/upward-reports/{report_id}/phone")
def phone(report_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    report = _actable(session, principal, report_id)
    return _act(request, principal, session, report, "phoned",
                lambda: service.record_phone(session, report_id=report.id, actor=principal.actor,
                                             note=field(form, "note")[:2000]))


@router.post("/upward-reports/{report_id}/sign-off")
def sign_off(report_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    report = _actable(session, principal, report_id)
    return _act(request, principal, session, report, "signed",
                lambda: service.sign_off(session, report_id=report.id, signer=principal.user))


@router.post("/upward-reports/{report_id}/send")
def send(report_id: str, request: Request, principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    report = _actable(session, principal, report_id)
    return _act(request, principal, session, report, "sent",
                lambda: service.send_report(session, report_id=report.id, actor=principal.actor))
