"""The review console for managers (and the office): every incident, and one incident's timeline, ledger and
deadlines."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.deps import ReviewerPageUser, SessionDep
from api.pages import listings
from api.pages.instructions import instruction_context
from api.pages.rendering import Helpers, page, page_router
from core.desk.sheets import sheets_of_incident
from core.incidents import alerts, reads
from core.learning.timeline_svg import render_timeline
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.settings import get_settings
from core.reporting.reads import views as upward_reports

router = page_router()


@router.get("/review")
def review(request: Request, principal: ReviewerPageUser, session: SessionDep) -> HTMLResponse:
    incidents = list(reads.list_incidents(session, department=None, limit=200).items)
    links = {i.id: listings.flow_run_url(i) for i in incidents}
    return page(request, principal, "review.html", flow_links=links, **listings.incident_context(incidents))


@router.get("/review/incidents/{incident_id}")
def review_incident(incident_id: str, request: Request, principal: ReviewerPageUser, session: SessionDep) -> Response:
    incident = reads.get_incident(session, incident_id, None)
    timeline = reads.timeline(session, incident)
    lang = principal.user.lang
    helpers = Helpers(lang)
    names = {d.key: helpers.plain(d.name) for d in registry().departments}
    # The SVG is built by escaping every text it holds (core.learning.timeline_svg); nothing else is marked safe.
    svg = Markup(render_timeline(timeline, lang=lang, now=utcnow(), tz=get_settings().timezone,
                                 department_names=names))
    plan = plan_for_version(session, incident.plan_version_id)
    step_titles = {step.key: step.title for _, step in plan.steps()}
    return page(request, principal, "review_incident.html", incident=incident, plan=plan, timeline=timeline,
                step_titles=step_titles, upward_reports=upward_reports(session, incident.id),
                svg=svg, ledger=reads.ledger_view(session, incident),
                deadlines=reads.deadlines_by_department(session, incident),
                flow_run_url=listings.flow_run_url(incident),
                ownerless_minutes=alerts.ownerless_minutes(session, incident),
                sheets=sheets_of_incident(session, incident.id), **instruction_context(session, incident, None))

