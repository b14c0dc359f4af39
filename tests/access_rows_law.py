"""Access-matrix rows for plans by law (see test_access.py).

The levels the plan's grading proposes, and who authorised each level decision, are read by the reviewers.
Deciding a proposal is a level decision: the office records it on the commander's verbal order (the standard
cast's `commander`); a department on the incident is refused for want of the position, one not on it gets
404. Confirming a verbal order is the named commander's alone: every role of the matrix is refused. Positions
are granted and taken back by administrators."""

from __future__ import annotations

import uuid

from tests.access_matrix import roles
from tests.api_server import flood_with_proposal, make_user
from tests.test_access import Case, Target

REVIEW = roles(401, 200, 200, 200, 403, 403)
REVIEW_MISSING = roles(401, 404, 404, 404, 403, 403)
ADMIN = roles(401, 403, 403, 200, 403, 403)
ADMIN_MISSING = roles(401, 403, 403, 404, 403, 403)
NO_POSITION = {"dept_owner": "position_required", "dept_other": "position_required"}
DECLINE = {"decision": "decline", "reason": "伤亡系交通事故所致，不属洪涝灾情", "ordered_by": "commander"}
POSITION = {"position": "deputy_commander@flood_control_hq"}


def proposal_target() -> Target:
    incident_id, proposal_id = flood_with_proposal()
    return Target("level_proposal", {"incident_id": incident_id, "proposal_id": proposal_id, "type_key": "flood"},
                  "water_affairs", "meteorology")


def verbal_order_target() -> Target:
    """A level the office recorded on the commander's verbal order, awaiting the commander's confirmation."""
    from core.incidents import authority
    from core.incidents.service import change_level
    from core.platform.db import session_scope
    from core.users.service import user_named

    incident_id, _ = flood_with_proposal()
    with session_scope() as session:
        change_level(session, incident_id=incident_id, level="III", by=user_named(session, username="office"),
                     reason="雨情加重", ordered_by="commander")
    with session_scope() as session:
        [row] = [r for r in authority.awaiting(session, incident_id) if r.verbal]
    return Target("verbal_order", {"incident_id": incident_id, "authorisation_id": row.id, "type_key": "flood"},
                  "water_affairs", "meteorology")


def position_holder() -> Target:
    username = f"u-{uuid.uuid4().hex[:10]}"
    user_id = make_user(username, "department", "water_affairs", positions=[POSITION["position"]])
    return Target("position_holder", {"user_id": user_id, "position": POSITION["position"]}, "water_affairs",
                  "public_security")


TARGETS = {"level_proposal": proposal_target, "verbal_order": verbal_order_target,
           "position_holder": position_holder}

ROWS: list[Case] = [
    Case("GET", "/api/incidents/{incident_id}/proposals", "level_proposal", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/proposals", "unknown", REVIEW_MISSING),
    Case("POST", "/api/incidents/{incident_id}/proposals/{proposal_id}", "level_proposal",
         roles(401, 200, 403, 200, 403, 403), json=DECLINE, writes=True, codes=NO_POSITION),
    Case("POST", "/api/incidents/{incident_id}/proposals/{proposal_id}", "unknown",
         roles(401, 404, 403, 404, 404, 404), json=DECLINE, writes=True),
    Case("GET", "/api/incidents/{incident_id}/authorisations", "verbal_order", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/authorisations", "unknown", REVIEW_MISSING),
    Case("POST", "/api/incidents/{incident_id}/authorisations/{authorisation_id}/confirm", "verbal_order",
         roles(401, 403, 403, 403, 403, 403), writes=True,
         codes={"office": "position_required", "admin": "position_required", **NO_POSITION}),
    Case("POST", "/api/incidents/{incident_id}/authorisations/{authorisation_id}/confirm", "unknown",
         roles(401, 404, 403, 404, 404, 404), writes=True),
    Case("POST", "/api/users/{user_id}/positions", "user", ADMIN, json=POSITION, writes=True),
    Case("POST", "/api/users/{user_id}/positions", "unknown", ADMIN_MISSING, json=POSITION, writes=True),
    Case("DELETE", "/api/users/{user_id}/positions/{position}", "position_holder", ADMIN, writes=True),
    Case("DELETE", "/api/users/{user_id}/positions/{position}", "unknown", ADMIN_MISSING, writes=True),
]
