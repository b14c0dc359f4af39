"""After-action reports and analytics, for reviewers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.deps import Principal, ReviewerPageUser, SessionDep
from api.pages import listings
from api.pages.rendering import base_context, page_router
from core.learning import analytics
from core.learning.after_action.compute import build_report
from core.learning.after_action.render import report_context
from core.learning.after_action.text import ReportText
from core.plans.store import registry
from core.platform.errors import BatonError
from core.platform.templating import render
from core.users.service import people

router = page_router()


def _report_page(request: Request, principal: Principal, name: str, status_code: int = 200,
                 **context: Any) -> HTMLResponse:
    lang = principal.user.lang
    html = render(f"reports/{name}", lang, **{**base_context(request.url.path, principal, lang), **context})
    return HTMLResponse(html, status_code=status_code)


@router.get("/review/incidents/{incident_id}/report")
def review_report(incident_id: str, request: Request, principal: ReviewerPageUser, session: SessionDep) -> Response:
    report = build_report(session, incident_id=incident_id)
    return _report_page(request, principal, "after_action_page.html", **report_context(report, principal.user.lang,
                                                                                 lambda: people(session)))


@router.get("/review/analytics")
def review_analytics(request: Request, principal: ReviewerPageUser, session: SessionDep) -> Response:
    query = request.query_params
    values = {name: (query.get(name) or "").strip()[:64] for name in ("from", "to", "type", "department")}
    drills = query.get("include_drills", "") in ("1", "true", "on", "yes")
    rt = ReportText(principal.user.lang)
    error: str | None = None
    result = None
    try:
        result = analytics.compute(session, start=analytics.parse_bound(values["from"]),
                                   end=analytics.parse_bound(values["to"], upper=True),
                                   type_key=values["type"] or None, department=values["department"] or None,
                                   include_drills=drills)
    except BatonError as exc:
        error = exc.code
    chosen = {k: v for k, v in values.items() if v}
    csv_query = urlencode({**chosen, **({"include_drills": "true"} if drills else {})})
    charts = {}
    if result is not None:
        # Every text in the pictures is escaped where they are built; nothing else is marked safe.
        charts = {"on_time": Markup(analytics.on_time_chart(result.by_department, rt)),
                  "delays": Markup(analytics.delay_chart(result.by_department, rt))}
    return _report_page(request, principal, "analytics_page.html", 422 if error else 200, result=result,
                        charts=charts, rt=rt, values=values, include_drills=drills, error=error,
                        csv_url="/api/analytics.csv" + (f"?{csv_query}" if csv_query else ""),
                        types=[(key, plan.name) for key, plan in listings.plans()],
                        departments=[(d.key, d.name) for d in registry().departments])

