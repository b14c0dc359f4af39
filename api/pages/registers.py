"""The registers page (台账): each register's entries by kind, searched, for every logged-in user, with what
each may read (`core.registers.service`: vulnerable residents only for their community and the office)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from api.deps import PageUser, SessionDep
from api.pages.rendering import page, page_router
from core.registers import service
from core.registers.columns import KIND_NAMES, RISK_KIND_NAMES, columns
from core.registers.models import RegisterKind

router = page_router()
# The columns the page shows of each register, beside code, name, organisation and place.
SHOWN: dict[RegisterKind, tuple[str, ...]] = {
    RegisterKind.risk_point: ("kind", "level", "people_at_risk"),
    RegisterKind.shelter: ("capacity", "occupancy", "is_open"),
    RegisterKind.reserve: ("category", "quantity", "unit", "safety_stock", "warehouse", "expires_on"),
    RegisterKind.team: ("speciality", "headcount", "on_call"),
    RegisterKind.expert: ("speciality", "title", "employer"),
    RegisterKind.vulnerable_resident: ("category", "address", "contact_phone", "keeper_name"),
    RegisterKind.area: ("district", "contact_name", "contact_phone"),
}


@router.get("/registers")
def registers_page(request: Request, principal: PageUser, session: SessionDep,
                   kind: Annotated[str, Query(max_length=32)] = "risk_point",
                   q: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    register = service.register_kind(kind)
    kinds = [(k.value, {"zh": KIND_NAMES[k][0], "en": KIND_NAMES[k][1]}) for k in RegisterKind
             if service.may_read(principal.user, k)]
    rows: list[Any] = []
    if service.may_read(principal.user, register):
        rows = service.entries(session, kind=register, user=principal.user, query=q, limit=service.MAX_LIST)
    return page(request, principal, "registers.html", kinds=kinds, kind=register.value, q=q, rows=rows,
                shown=SHOWN[register], risk_kinds={k: {"zh": v[0], "en": v[1]} for k, v in RISK_KIND_NAMES.items()},
                limit=service.MAX_LIST,
                column_names={c.key: {"zh": c.zh, "en": c.key.replace("_", " ")} for c in columns(register)})
