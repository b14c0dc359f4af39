"""After-action reports (JSON figures and PDF) and analytics across incidents (JSON and CSV), for reviewers:
the emergency office, managers and administrators. A department's user gets 403, as for the timeline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.encoders import jsonable_encoder

from api.deps import ReviewerUser, SessionDep
from core.learning import analytics
from core.learning.after_action.compute import build_report
from core.learning.after_action.render import render_report_html
from core.reports.pdf import html_to_pdf
from core.users.service import people

router = APIRouter(tags=["reports"])

Lang = Annotated[str | None, Query(pattern="^(zh|en)$")]


@router.get("/api/incidents/{incident_id}/report")
def report(incident_id: str, principal: ReviewerUser, session: SessionDep) -> dict[str, Any]:
    """The incident's after-action figures: stage durations, handoff waits against deadlines, the critical path
    and its slowest department, escalations, level changes, deviations from the plan, ledger verification.
    Durations are seconds; a drill on a compressed clock reports plan time (`time_basis: plan`)."""
    figures: dict[str, Any] = jsonable_encoder(build_report(session, incident_id=incident_id).to_json())
    return figures


@router.get("/api/incidents/{incident_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}},
                       429: {"description": "Every print slot and the queue are taken (`pdf_busy`, Retry-After)"}})
def report_pdf(incident_id: str, principal: ReviewerUser, session: SessionDep, lang: Lang = None) -> Response:
    """The after-action report as a PDF (printed by headless Chromium), in the reader's language or `lang`."""
    result = build_report(session, incident_id=incident_id)
    chosen = lang or principal.user.lang
    html = render_report_html(result, chosen, lambda: people(session))
    # Nothing is written: end the read transaction before the printer runs for a second or two.
    session.rollback()
    pdf = html_to_pdf(html)
    filename = f"{result.code}-after-action-{chosen}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _analytics(session: SessionDep, start: str | None, end: str | None, type_key: str | None,
               department: str | None, include_drills: bool) -> analytics.Analytics:
    return analytics.compute(session, start=analytics.parse_bound(start), end=analytics.parse_bound(end, upper=True),
                             type_key=type_key or None, department=department or None, include_drills=include_drills)


@router.get("/api/analytics")
def analytics_json(principal: ReviewerUser, session: SessionDep,
                   start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
                   end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
                   type: Annotated[str | None, Query(max_length=64)] = None,
                   department: Annotated[str | None, Query(max_length=64)] = None,
                   include_drills: bool = False) -> dict[str, Any]:
    """Per department and per incident type, for handoffs assigned in [from, to): handoffs on time, overdue,
    median and 90th-percentile acknowledgement and completion delays (seconds), escalations. Drills are left
    out unless `include_drills`."""
    figures: dict[str, Any] = jsonable_encoder(
        _analytics(session, start, end, type, department, include_drills).to_json())
    return figures


@router.get("/api/analytics.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def analytics_csv(principal: ReviewerUser, session: SessionDep,
                  start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
                  end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
                  type: Annotated[str | None, Query(max_length=64)] = None,
                  department: Annotated[str | None, Query(max_length=64)] = None,
                  include_drills: bool = False) -> Response:
    """The same figures as CSV (UTF-8 with a byte-order mark): a row per department, per type, and the total."""
    result = _analytics(session, start, end, type, department, include_drills)
    period = "-".join(part for part in (start, end) if part) or "all"
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in period)[:60]
    return Response(analytics.to_csv(result), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="baton-analytics-{safe}.csv"'})
