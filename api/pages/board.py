"""An incident's situation board: what the departments report and share (newest first, its key figures on top),
polled by the page, and the form to post a report, shared with departments chosen by name."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import PageUser, Principal, SessionDep
from api.errors import ApiError
from api.pages.instructions import instruction_context
from api.pages.rendering import (
    FRAGMENT_HEADER,
    POLL_SECONDS,
    Form,
    checked_form,
    field,
    page,
    page_router,
    plan_field,
    redirect,
)
from api.refusals import refusal_said
from core.incidents import reads
from core.incidents.scope import EVERYONE, departments_on
from core.plans.store import plan_for_version, registry
from core.reporting.figures import figure_of
from core.sharing import answers
from core.sharing.board import ReportInvalid, board, key_figures, post_report

router = page_router()


def _board_context(session: Session, principal: Principal, incident_id: str) -> dict[str, Any]:
    reader = None if principal.sees_all else principal.user.department
    incident = reads.get_incident(session, incident_id, reader)
    items = board(session, incident, reader)
    plan = plan_for_version(session, incident.plan_version_id)
    # The departments a report may be shared with, by name: those on the incident (who read its board), in the
    # registry's order, less the one posting.
    on = departments_on(session, incident.id)
    share_choices = [d.key for d in registry().departments if d.key in on and d.key != principal.acts_for]
    # 叫应: how the calls went (answered/called, who did not answer, p95), for those who read the whole incident.
    answer_calls = answers.figures(session, incident.id) if principal.sees_all else None
    return {"incident": incident, "items": items, "figures": key_figures(items), "poll_seconds": POLL_SECONDS,
            "answer_calls": answer_calls,
            "can_report": principal.acts_for is not None, "share_choices": share_choices,
            "form_field": lambda step_key, key: plan_field(plan, step_key, key), "figure_of": figure_of,
            **instruction_context(session, incident, reader)}


def _scope(values: list[str]) -> list[str]:
    """The departments ticked on the form (a comma-separated list is read too); none ticked: all on the incident."""
    return [d.strip() for value in values for d in value.split(",") if d.strip()] or [EVERYONE]


@router.get("/incidents/{incident_id}/board")
def board_page(incident_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "board.html", report_error=None, report_text="", share_with=[],
                **_board_context(session, principal, incident_id))


@router.get("/incidents/{incident_id}/board/items")
def board_items(incident_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "_board_items.html", headers={FRAGMENT_HEADER: "1"},
                **_board_context(session, principal, incident_id))


@router.post("/incidents/{incident_id}/reports")
def board_report(incident_id: str, request: Request, principal: PageUser, session: SessionDep,
                 form: Form) -> Response:
    checked_form(principal, form)
    if principal.acts_for is None:
        raise ApiError(403, "forbidden", "managers read the board; they do not post to it")
    context = _board_context(session, principal, incident_id)
    chosen = [v for v in form.getlist("share_with") if isinstance(v, str)]
    try:
        post_report(session, incident_id=context["incident"].id, department=principal.acts_for,
                    author=principal.actor, text=field(form, "text"), share_with=_scope(chosen),
                    classification=field(form, "classification") or "internal")
    except ReportInvalid as exc:
        session.rollback()
        return page(request, principal, "board.html", 422, report_error=refusal_said(exc, principal.user.lang),
                    report_text=field(form, "text"), share_with=_scope(chosen),
                    **_board_context(session, principal, incident_id))
    session.commit()
    return redirect(f"/incidents/{context['incident'].id}/board")
