"""An incident's situation board: what the departments report and share, polled by the page, and the form to
post a report."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import PageUser, Principal, SessionDep
from api.errors import ApiError
from api.pages.rendering import FRAGMENT_HEADER, POLL_SECONDS, Form, checked_form, field, page, page_router, redirect
from core.incidents import reads
from core.sharing.board import ReportInvalid, board, post_report

router = page_router()


def _board_context(session: Session, principal: Principal, incident_id: str) -> dict[str, Any]:
    reader = None if principal.sees_all else principal.user.department
    incident = reads.get_incident(session, incident_id, reader)
    return {"incident": incident, "items": board(session, incident, reader), "poll_seconds": POLL_SECONDS,
            "can_report": principal.acts_for is not None}


@router.get("/incidents/{incident_id}/board")
def board_page(incident_id: str, request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "board.html", report_error=None, report_text="", share_with="",
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
    scope = [d.strip() for d in field(form, "share_with").split(",") if d.strip()] or ["all"]
    try:
        post_report(session, incident_id=context["incident"].id, department=principal.acts_for,
                    author=principal.actor, text=field(form, "text"), share_with=scope,
                    classification=field(form, "classification") or "internal")
    except ReportInvalid as exc:
        session.rollback()
        return page(request, principal, "board.html", 422, report_error=exc.message,
                    report_text=field(form, "text"), share_with=field(form, "share_with"),
                    **_board_context(session, principal, incident_id))
    session.commit()
    return redirect(f"/incidents/{context['incident'].id}/board")

