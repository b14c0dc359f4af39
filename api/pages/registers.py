"""The registers page (台账): each register's entries by kind, searched, for every logged-in user, with what
each may read (`core.registers.service`: vulnerable residents only for their community and the office). On the
shelters, the owning department and the office report how many people are in one now (`core.registers.occupancy`,
as `POST /api/registers/shelter/{id}/occupancy`); a refused count re-shows the page with why and a 4xx status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import PageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from core.platform.errors import BatonError
from core.registers import occupancy, service
from core.registers.columns import KIND_NAMES, RISK_KIND_NAMES, names
from core.registers.models import RegisterKind, Shelter

router = page_router()
# The columns the page shows of each register, beside code, name, organisation and place.
SHOWN: dict[RegisterKind, tuple[str, ...]] = {
    RegisterKind.risk_point: ("kind", "level", "people_at_risk"),
    RegisterKind.shelter: ("capacity", "occupancy", "occupancy_at", "is_open"),
    RegisterKind.reserve: ("category", "quantity", "unit", "safety_stock", "warehouse", "expires_on"),
    RegisterKind.team: ("speciality", "headcount", "on_call"),
    RegisterKind.expert: ("speciality", "title", "employer"),
    RegisterKind.vulnerable_resident: ("category", "address", "contact_phone", "keeper_name"),
    RegisterKind.area: ("district", "contact_name", "contact_phone"),
}


def _page(request: Request, principal: Principal, session: Session, *, kind: str, q: str = "",
          problem: BatonError | None = None, problem_shelter: str | None = None, done: str | None = None,
          status_code: int = 200) -> HTMLResponse:
    register = service.register_kind(kind)
    kinds = [(k.value, {"zh": KIND_NAMES[k][0], "en": KIND_NAMES[k][1]}) for k in RegisterKind
             if service.may_read(principal.user, k)]
    rows: list[Any] = []
    if service.may_read(principal.user, register):
        rows = service.entries(session, kind=register, user=principal.user, query=q, limit=service.MAX_LIST)
    reportable = {e.id for e in rows if isinstance(e, Shelter) and occupancy.may_report(principal.user, e)}
    return page(request, principal, "registers.html", status_code, kinds=kinds, kind=register.value, q=q, rows=rows,
                shown=SHOWN[register], risk_kinds={k: {"zh": v[0], "en": v[1]} for k, v in RISK_KIND_NAMES.items()},
                limit=service.MAX_LIST, reportable=reportable, problem=problem, problem_shelter=problem_shelter,
                done=done if done == "occupancy" else None,
                column_names=names(register))


@router.get("/registers")
def registers_page(request: Request, principal: PageUser, session: SessionDep,
                   kind: Annotated[str, Query(max_length=32)] = "risk_point",
                   q: Annotated[str, Query(max_length=100)] = "",
                   done: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    return _page(request, principal, session, kind=kind, q=q, done=done)


@router.post("/registers/shelter/{shelter_id}/occupancy")
def report_occupancy(shelter_id: str, request: Request, principal: PageUser, session: SessionDep,
                     form: Form) -> Response:
    """The count the form gives, through the same service as the API (a department not running the shelter: 403,
    as there)."""
    checked_form(principal, form)
    try:
        occupancy.report(session, shelter_id=shelter_id, occupancy=field(form, "occupancy"), user=principal.user,
                         actor=principal.actor)
    except BatonError as refused:
        if refused.http_status in (403, 404):
            raise
        session.rollback()
        return _page(request, principal, session, kind="shelter", problem=refused, problem_shelter=shelter_id,
                     status_code=refused.http_status)
    session.commit()
    return redirect(f"/registers?kind=shelter&done=occupancy#shelter-{shelter_id}")
