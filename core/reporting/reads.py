"""Reading upward reports: each with its lateness (迟报) judged at a moment, for the API, the pages, the board,
the review and the after-action report. Late means sent after its limit, or not sent and past it; a report by
phone is judged against its own limit the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.platform.clock import as_utc, utcnow
from core.reporting.models import ReportStatus, UpwardReport
from core.reporting.schedule import reports_of
from process_defs.schema import REPORT_KIND_NAMES


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def late_by(due: datetime | None, done: datetime | None, now: datetime) -> float | None:
    """Seconds past `due` when done (or, not done, by `now`); None when not late."""
    due, done = _utc(due), _utc(done)
    if due is None:
        return None
    end = done or _utc(now)
    assert end is not None
    return (end - due).total_seconds() if end > due else None


def view(report: UpwardReport, now: datetime | None = None) -> dict[str, Any]:
    moment = now or utcnow()
    written = late_by(report.due_at, report.sent_at, moment)
    phone = late_by(report.phone_due_at, report.phoned_at, moment) if report.phone_due_at else None
    return {"id": report.id, "incident_id": report.incident_id, "kind": report.kind, "number": report.number,
            "kind_name": REPORT_KIND_NAMES[report.kind], "title": report.content.get("title"),
            "reason": report.reason, "department": report.department, "status": report.status,
            "sign_off_required": report.sign_off_required, "created_at": report.created_at,
            "due_at": report.due_at, "phone_due_at": report.phone_due_at, "phoned_at": report.phoned_at,
            "phoned_by": report.phoned_by, "phone_note": report.phone_note, "edited_at": report.edited_at,
            "edited_by": report.edited_by, "signed_at": report.signed_at, "signed_by": report.signed_by,
            "sent_at": report.sent_at, "sent_by": report.sent_by,
            "open": ReportStatus(report.status).is_open,
            "late": written is not None or phone is not None, "late_by_s": written, "phone_late_by_s": phone}


def views(session: Session, incident_id: str, now: datetime | None = None) -> list[dict[str, Any]]:
    return [view(r, now) for r in reports_of(session, incident_id)]


def late_reports(session: Session, incident_id: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """The incident's late reports (迟报), in order of creation."""
    return [v for v in views(session, incident_id, now) if v["late"]]
