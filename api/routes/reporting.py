"""Upward reports (信息报送): the reporting department edits and sends them, a leader signs them off, reviewers
read them with their lateness. Office, managers and administrators read every report; a department's user reads
its own department's; only who acts for the reporting department edits, signs off and sends."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from api.deps import CurrentUser, Principal, SessionDep
from api.errors import ApiError
from core.incidents import reads as incident_reads
from core.outbox.models import OutboundDelivery
from core.outbox.service import public as delivery_public
from core.reporting import documents, reads, service
from core.reporting.models import CasualtyFigures, ReportStatus, UpwardReport, UpwardReportArchive

router = APIRouter(tags=["upward reports"])


class ReportEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=service.MAX_TEXT)
    casualties: dict[str, int] | None = None
    casualty_reason: str | None = Field(default=None, max_length=2000,
                                        description="Why a figure is lower than the checked one (核减).")


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="Whom the report was phoned to.")


def _reader(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def _acting(session: Session, principal: Principal, report_id: str) -> UpwardReport:
    report = service.get_report(session, report_id, _reader(principal))
    if principal.acts_for != report.department:
        raise ApiError(403, "forbidden", f"only {report.department} writes, signs off and sends this report")
    return report


def detail(session: Session, report: UpwardReport) -> dict[str, Any]:
    deliveries = session.exec(select(OutboundDelivery).where(
        col(OutboundDelivery.idempotency_key).startswith(f"{report.id}:"),
        OutboundDelivery.incident_id == report.incident_id)).all()
    out: dict[str, Any] = jsonable_encoder({**reads.view(report), "content": report.content,
                                            "deliveries": [delivery_public(d) for d in deliveries
                                                           if d.purpose != "report_assignment"]})
    return out


@router.get("/api/upward-reports")
def inbox(principal: CurrentUser, session: SessionDep, open: bool = False,
          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """The reports the reader's department owes (office, managers and admins: every department's)."""
    query = select(UpwardReport)
    if not principal.sees_all:
        query = query.where(UpwardReport.department == (principal.user.department or ""))
    if open:
        query = query.where(col(UpwardReport.status) != ReportStatus.sent)
    rows = session.exec(query.order_by(col(UpwardReport.due_at)).limit(limit)).all()
    return {"items": jsonable_encoder([reads.view(r) for r in rows])}


@router.get("/api/incidents/{incident_id}/upward-reports")
def for_incident(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The incident's reports with their lateness (迟报), and its checked casualty figures."""
    reader = _reader(principal)
    incident = incident_reads.get_incident(session, incident_id, reader)
    items = [v for v in reads.views(session, incident.id) if reader is None or v["department"] == reader]
    answer: dict[str, Any] = jsonable_encoder({
        "incident_id": incident.id, "items": items,
        "casualties": service.casualty_view(session.get(CasualtyFigures, incident.id))})
    return answer


@router.get("/api/incidents/{incident_id}/casualties")
def casualties(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The incident's one checked set of casualty figures, as its sent reports made it."""
    incident = incident_reads.get_incident(session, incident_id, _reader(principal))
    answer: dict[str, Any] = jsonable_encoder(service.casualty_view(session.get(CasualtyFigures, incident.id)))
    return answer


@router.get("/api/upward-reports/{report_id}")
def get(report_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return detail(session, service.get_report(session, report_id, _reader(principal)))


@router.patch("/api/upward-reports/{report_id}")
def edit(report_id: str, body: ReportEdit, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Edit the draft: its text and casualty figures. A figure lower than the checked one needs
    `casualty_reason` (422 `casualty_decrease_needs_reason`); a signed report is not edited (409)."""
    report = _acting(session, principal, report_id)
    return detail(session, service.edit_report(session, report_id=report.id, actor=principal.actor,
                                               text=body.text, casualties=body.casualties,
                                               casualty_reason=body.casualty_reason))


@router.post("/api/upward-reports/{report_id}/phone")
def phone(report_id: str, body: PhoneIn, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Record the report by phone that comes before the written initial report."""
    report = _acting(session, principal, report_id)
    return detail(session, service.record_phone(session, report_id=report.id, actor=principal.actor, note=body.note))


@router.post("/api/upward-reports/{report_id}/sign-off")
def sign_off(report_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """A leader signs the report off (签发); not the person who wrote the draft (409 `signer_is_drafter`)."""
    report = _acting(session, principal, report_id)
    return detail(session, service.sign_off(session, report_id=report.id, signer=principal.user))


@router.post("/api/upward-reports/{report_id}/send")
def send(report_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Deliver the report to its recipients' systems and mailboxes and archive it. Unsigned where the plan asks
    for sign-off: 409 `report_not_signed`."""
    report = _acting(session, principal, report_id)
    return detail(session, service.send_report(session, report_id=report.id, actor=principal.actor))


def _document(session: Session, report: UpwardReport) -> tuple[str, bytes]:
    """The archived document of a sent report, else a preview of the draft as it stands."""
    archived = session.get(UpwardReportArchive, report.id)
    if archived is not None:
        return archived.html, archived.docx
    document = documents.view(report, service.recipients_at(session, report, str(report.content["level"])), None)
    return documents.render_html(document), documents.render_docx(document)


@router.get("/api/upward-reports/{report_id}/document.docx", response_class=Response,
            responses={200: {"content": {documents.DOCX_MEDIA_TYPE: {}}}})
def docx(report_id: str, principal: CurrentUser, session: SessionDep) -> Response:
    """The report as a Word document: as sent (archived), or a preview before it is."""
    report = service.get_report(session, report_id, _reader(principal))
    _, data = _document(session, report)
    name = f"{report.incident_id[:8]}-{report.kind}-{report.number}.docx"
    return Response(data, media_type=documents.DOCX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/api/upward-reports/{report_id}/document.html", response_class=Response,
            responses={200: {"content": {"text/html": {}}}})
def html(report_id: str, principal: CurrentUser, session: SessionDep) -> Response:
    report = service.get_report(session, report_id, _reader(principal))
    text, _ = _document(session, report)
    # The document carries its own styles (it is e-mailed and archived standalone): allow them, and nothing else.
    return Response(text, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                        "frame-ancestors 'none'"})
