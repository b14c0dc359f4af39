"""Access-matrix rows for plans by law (see test_access.py): the levels the plan's grading proposes are read by
the reviewers and decided by the office; departments see neither."""

from __future__ import annotations

from tests.access_matrix import roles
from tests.api_server import flood_with_proposal
from tests.test_access import Case, Target

REVIEW = roles(401, 200, 200, 200, 403, 403)
REVIEW_MISSING = roles(401, 404, 404, 404, 403, 403)
DECLINE = {"decision": "decline", "reason": "伤亡系交通事故所致，不属洪涝灾情"}


def proposal_target() -> Target:
    incident_id, proposal_id = flood_with_proposal()
    return Target("level_proposal", {"incident_id": incident_id, "proposal_id": proposal_id, "type_key": "flood"},
                  "water_affairs", "meteorology")


TARGETS = {"level_proposal": proposal_target}

ROWS: list[Case] = [
    Case("GET", "/api/incidents/{incident_id}/proposals", "level_proposal", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/proposals", "unknown", REVIEW_MISSING),
    Case("POST", "/api/incidents/{incident_id}/proposals/{proposal_id}", "level_proposal",
         roles(401, 200, 403, 200, 403, 403), json=DECLINE, writes=True),
    Case("POST", "/api/incidents/{incident_id}/proposals/{proposal_id}", "unknown",
         roles(401, 404, 403, 404, 403, 403), json=DECLINE, writes=True),
]
