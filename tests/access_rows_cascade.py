"""Access-matrix rows for cascading incidents and the activity log (see test_access.py).

Opening a linked incident is the office's (and admin's); the chain and the activity log are read like the
incident itself: a department not on it gets 404."""

from __future__ import annotations

from tests.access_matrix import roles
from tests.test_access import Case

VISIBLE = roles(401, 200, 200, 200, 200, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
CHILD = {"type": "hazmat_leak", "reason": "暴雨冲毁化工厂围堰"}

ROWS: list[Case] = [
    Case("POST", "/api/incidents/{incident_id}/children", "incident", roles(401, 201, 403, 201, 403, 403),
         json=CHILD, writes=True),
    Case("POST", "/api/incidents/{incident_id}/children", "unknown", roles(401, 404, 403, 404, 403, 403),
         json=CHILD, writes=True),
    Case("GET", "/api/incidents/{incident_id}/chain", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/chain", "unknown", MISSING),
    Case("GET", "/api/incidents/{incident_id}/activity-log", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/activity-log", "unknown", MISSING),
]
