"""The prevention page (汛前检查, 隐患排查, drills): what is overdue, which register entries were not checked this
season, and rectifications (整改) by department. A department sees its own; the office, managers and admins all."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.deps import PageUser, SessionDep
from api.pages.rendering import page, page_router
from api.routes.prevention import reader_of
from core.platform.clock import utcnow
from core.prevention import service
from core.prevention.campaigns import CAMPAIGNS

router = page_router()


@router.get("/prevention")
def prevention(request: Request, principal: PageUser, session: SessionDep) -> HTMLResponse:
    reader = reader_of(principal)
    now = utcnow()
    return page(request, principal, "prevention.html",
                overdue=service.overdue(session, department=reader, now=now),
                unchecked=service.not_checked(session, department=reader),
                rectifications=service.rectifications_by_department(session, department=reader, now=now),
                open_tasks=service.list_tasks(session, department=reader, open_only=True, limit=300),
                campaigns=CAMPAIGNS)
