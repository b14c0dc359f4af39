"""Access-matrix rows for the registers (issue 18; see test_access.py): every signed-in user reads the shared
registers and exports what they read; the office and administrators import every entry, a department its own
(a row naming no organisation is its own), a manager nothing. Vulnerable residents' own scoping is tested in
test_registers.py. A register target is the risk-point register with a fresh code to import."""

from __future__ import annotations

import uuid
from typing import Any

from core.platform.db import session_scope
from core.registers.models import Shelter
from tests.access_matrix import roles
from tests.test_access import EVERYONE, MISSING, Case, Target

IMPORTS = roles(401, 200, 403, 200, 200, 200)
IMPORT_MISSING = roles(401, 404, 404, 404, 404, 404)


def register() -> Target:
    return Target("register", {"kind": "risk_point", "code": f"JS-{uuid.uuid4().hex[:10]}"}, "water_affairs",
                  "public_security")


def shelter() -> Target:
    """A shelter of water_affairs (capacity 500) whose occupancy is reported."""
    with session_scope() as session:
        found = Shelter(code=f"BN-{uuid.uuid4().hex[:10]}", name_zh="城东体育馆避难场所", organisation="water_affairs",
                        capacity=500, lon=120.2, lat=30.25)
        session.add(found)
        session.flush()
        return Target("shelter", {"shelter_id": found.id}, "water_affairs", "public_security")


def flood_point(target: Target) -> dict[str, Any]:
    code = target.params.get("code", "JS-x")
    return {"filename": "积水点.csv", "content": f"code,name_zh,kind,lon,lat\n{code},中山路隧道,积水点,113.26,23.13\n"}


ROWS: list[Case] = [
    Case("GET", "/api/registers", "none", EVERYONE),
    Case("GET", "/api/registers/layers", "none", EVERYONE),
    Case("GET", "/api/registers/{kind}", "register", EVERYONE),
    Case("GET", "/api/registers/{kind}", "unknown", MISSING),
    Case("GET", "/api/registers/{kind}/export?format=geojson", "register", EVERYONE),
    Case("GET", "/api/registers/{kind}/export", "unknown", MISSING),
    Case("POST", "/api/registers/{kind}/import", "register", IMPORTS, json=flood_point, writes=True),
    Case("POST", "/api/registers/{kind}/import", "unknown", IMPORT_MISSING, json=flood_point, writes=True),
    # A shelter's occupancy: its owning department, the office and administrators report it; another department
    # and a manager read the shelter but may not (403).
    Case("POST", "/api/registers/shelter/{shelter_id}/occupancy", "shelter", roles(401, 200, 403, 200, 200, 403),
         json={"occupancy": 120}, writes=True),
    Case("POST", "/api/registers/shelter/{shelter_id}/occupancy", "unknown", IMPORT_MISSING,
         json={"occupancy": 120}, writes=True),
]

PAGE_ROWS: list[dict[str, Any]] = [
    {"method": "POST", "path": "/registers/shelter/{shelter_id}/occupancy", "target": "shelter",
     "expect": roles(303, 303, 403, 303, 303, 403), "form": {"occupancy": "120"}, "writes": True},
    {"method": "POST", "path": "/registers/shelter/{shelter_id}/occupancy", "target": "unknown",
     "expect": roles(303, 404, 404, 404, 404, 404), "form": {"occupancy": "120"}, "writes": True},
]

TARGETS = {"register": register, "shelter": shelter}
