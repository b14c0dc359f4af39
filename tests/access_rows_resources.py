"""Access-matrix rows for resources in incidents (see test_access.py).

A request is seen by the department that asked, the department asked (it owns the reserve) and the office, managers
and administrators; anyone else gets 404. The owning department approves, refuses and dispatches; the requesting
department confirms receipt and returns; those who see a request but do not act for that side get 403. Asking is
for whoever acts for a department on the incident (a department not on it: 404; managers: 403).

Targets are floods at level IV (water_affairs and meteorology on them, public_security not): water_affairs asks
public_security for road barriers from its reserve. `resource_*` targets are seen from the supplier
(dept_owner: public_security, dept_other: meteorology), `resource_mine_*` from the requester (dept_owner:
water_affairs, dept_other: meteorology); a replenishment is public_security's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.registers.models import MaterialReserve
from core.resources import service
from core.resources.models import Replenishment
from core.users.models import User
from tests.access_matrix import roles
from tests.api_server import flood
from tests.test_access import Case, Target

VISIBLE = roles(401, 200, 200, 200, 200, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
EVERYONE = roles(401, 200, 200, 200, 200, 200)
SIDE_ACTS = roles(401, 403, 403, 403, 200, 404)
SIDE_MISSING = roles(401, 404, 404, 404, 404, 404)


def _reserve(quantity: int, safety_stock: int = 0) -> str:
    with session_scope() as session:
        reserve = MaterialReserve(code=f"PS-BARRIER-{utcnow().timestamp()}", name_zh="隔离护栏", name_en="Barriers",
                                  organisation="public_security", category="3010101", unit="片", quantity=quantity,
                                  safety_stock=safety_stock)
        session.add(reserve)
        session.flush()
        return reserve.id


def _user(session: Any, username: str) -> User:
    from sqlmodel import select

    user = session.exec(select(User).where(User.username == username)).one()
    assert isinstance(user, User)
    return user


def resource_target(kind: str) -> Target:
    """A request of water_affairs to public_security, taken as far as `kind` says."""
    incident = flood("assessment")
    reserve_id = _reserve(10_000, safety_stock=9_990 if kind == "replenishment" else 0)
    params = {"incident_id": incident.id, "reserve_id": reserve_id}
    if kind == "resource_incident":
        return Target(kind, params, "water_affairs", "public_security")
    steps = {"resource_request": 0, "resource_approved": 1, "replenishment": 1, "resource_mine_dispatched": 2,
             "resource_mine_received": 3}[kind]
    with session_scope() as session:
        request, _made = service.request_resources(
            session, incident_id=incident.id, user=_user(session, "water_affairs"), actor="user:water_affairs",
            quantity=20, needed_by=utcnow() + timedelta(hours=4), destination="城东区解放路口", reserve_id=reserve_id)
        params["request_id"] = request.id
    actions = [lambda s: service.approve(s, request_id=params["request_id"], actor="user:public_security"),
               lambda s: service.dispatch(s, request_id=params["request_id"], actor="user:public_security"),
               lambda s: service.receive(s, request_id=params["request_id"], actor="user:water_affairs")]
    for action in actions[:steps]:
        with session_scope() as session:
            action(session)
    if kind == "replenishment":
        with session_scope() as session:
            from sqlmodel import select

            found = session.exec(select(Replenishment).where(Replenishment.reserve_id == reserve_id)).one()
            params["replenishment_id"] = found.id
        return Target(kind, params, "public_security", "meteorology")
    if kind.startswith("resource_mine"):
        return Target(kind, params, "water_affairs", "meteorology")
    return Target(kind, params, "public_security", "meteorology")


def ask(target: Target) -> dict[str, Any]:
    return {"quantity": 10, "needed_by": (utcnow() + timedelta(hours=4)).isoformat(), "destination": "城东区解放路口",
            "reserve_id": target.params.get("reserve_id", "no-such-reserve")}


ROWS: list[Case] = [
    # Asking: the office and admin act for the emergency office, water_affairs is on the incident; public_security
    # is not (404, the incident does not show); managers only read.
    Case("POST", "/api/incidents/{incident_id}/resource-requests", "resource_incident",
         roles(401, 201, 403, 201, 201, 404), json=ask, writes=True),
    Case("POST", "/api/incidents/{incident_id}/resource-requests", "unknown", MISSING, json=ask, writes=True),
    # An incident's list follows the incident's visibility (meteorology is on it and finds no request of its
    # own there); the supplier, not on the incident, reads its requests at /api/resource-requests.
    Case("GET", "/api/incidents/{incident_id}/resource-requests", "resource_request", roles(401, 200, 200, 200, 404,
                                                                                           200),
         note="the supplier is not on the incident"),
    Case("GET", "/api/incidents/{incident_id}/resource-requests", "resource_mine_dispatched", EVERYONE),
    Case("GET", "/api/incidents/{incident_id}/resource-requests", "unknown", MISSING),
    Case("GET", "/api/resource-requests", "none", EVERYONE),
    Case("GET", "/api/resource-requests/{request_id}", "resource_request", VISIBLE),
    Case("GET", "/api/resource-requests/{request_id}", "resource_mine_dispatched", VISIBLE),
    Case("GET", "/api/resource-requests/{request_id}", "unknown", MISSING),
    Case("GET", "/api/resource-requests/{request_id}/edxl-rm/request", "resource_request", VISIBLE),
    Case("GET", "/api/resource-requests/{request_id}/edxl-rm/request", "unknown", MISSING),
    Case("GET", "/api/resource-requests/{request_id}/edxl-rm/commit", "resource_approved", VISIBLE),
    Case("GET", "/api/resource-requests/{request_id}/edxl-rm/commit", "unknown", MISSING),
    # The supplier's side.
    *[Case("POST", f"/api/resource-requests/{{request_id}}/{step}", target, expect, json=body, writes=True)
      for step, body, kind in (("approve", {"quantity": 5}, "resource_request"),
                               ("refuse", {"reason": "护栏已全部调往城西区"}, "resource_request"),
                               ("dispatch", {"note": "交警车辆运送"}, "resource_approved"))
      for target, expect in ((kind, SIDE_ACTS), ("unknown", SIDE_MISSING))],
    # The requester's side.
    *[Case("POST", f"/api/resource-requests/{{request_id}}/{step}", target, expect, json=body, writes=True)
      for step, body, kind in (("receive", {"quantity": 20}, "resource_mine_dispatched"),
                               ("return", {"quantity": 3}, "resource_mine_received"))
      for target, expect in ((kind, SIDE_ACTS), ("unknown", SIDE_MISSING))],
    Case("GET", "/api/replenishments", "none", EVERYONE),
    Case("POST", "/api/replenishments/{replenishment_id}/complete", "replenishment", SIDE_ACTS,
         json={"quantity": 100}, writes=True),
    Case("POST", "/api/replenishments/{replenishment_id}/complete", "unknown", SIDE_MISSING,
         json={"quantity": 100}, writes=True),
]

TARGETS = {kind: (lambda kind=kind: resource_target(kind))
           for kind in ("resource_incident", "resource_request", "resource_approved", "resource_mine_dispatched",
                        "resource_mine_received", "replenishment")}


def ask_form(target: Target) -> dict[str, str]:
    """The incident's resources page's form, as a browser posts it (a fresh one-time key each time)."""
    return {key: str(value) for key, value in ask(target).items()} | {"idempotency": str(utcnow().timestamp())}


LOGIN = 303
# The incident's resources page (its requests and the form that asks): whoever sees the incident reads it; the form
# is for whoever the API lets ask (managers 403; public_security, not on the incident, 404 as on the API).
PAGE_ROWS: list[dict[str, Any]] = [
    {"method": "GET", "path": "/incidents/{incident_id}/resources", "target": "resource_incident",
     "expect": roles(LOGIN, 200, 200, 200, 200, 404)},
    {"method": "GET", "path": "/incidents/{incident_id}/resources", "target": "unknown",
     "expect": roles(LOGIN, 404, 404, 404, 404, 404)},
    {"method": "POST", "path": "/incidents/{incident_id}/resources", "target": "resource_incident",
     "expect": roles(LOGIN, 303, 403, 303, 303, 404), "form": ask_form, "writes": True},
    {"method": "POST", "path": "/incidents/{incident_id}/resources", "target": "unknown",
     "expect": roles(LOGIN, 404, 404, 404, 404, 404), "form": ask_form, "writes": True},
]
