"""Access-matrix rows for the learning stage: lessons, follow-ups and plan change proposals (see test_access.py).

Lessons follow their incident's visibility and are recorded by the office; follow-ups are scoped like tasks
(only the assigned department sees another department's as missing, and only it completes one; the office and
admin complete the emergency office's); plan proposals are read by reviewers and made and decided by planners.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core.learning import service as learning
from core.platform.db import session_scope
from tests.access_matrix import roles
from tests.api_server import flood
from tests.test_access import Case, Target

EVERYONE = roles(401, 200, 200, 200, 200, 200)
VISIBLE = roles(401, 200, 200, 200, 200, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
REVIEW = roles(401, 200, 200, 200, 403, 403)
REVIEW_MISSING = roles(401, 404, 404, 404, 403, 403)
OFFICE_WRITES = roles(401, 201, 403, 201, 403, 403)
OFFICE_WRITES_MISSING = roles(401, 404, 403, 404, 403, 403)
PLANNER_DECIDES = roles(401, 200, 403, 200, 403, 403)

LESSON = {"text": "研判与预置衔接不畅，泵站启动偏慢"}
REJECT = {"reason": "不采纳"}


def follow_up_body(target: Target) -> dict[str, Any]:
    return {"department": "water_affairs", "title": "修订泵站预置方案",
            "due_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()}


def proposal_body(target: Target) -> dict[str, Any]:
    with session_scope() as session:
        text = learning.current_plan(session, "flood").text
    return {"type": "flood", "text": f"{text}# proposed {uuid.uuid4()}\n", "lesson_id": target.params["lesson_id"]}


def _lesson() -> tuple[str, str]:
    """A flood at its hot-spot assessment (water_affairs on it, public_security not) with a lesson."""
    incident = flood("assessment")
    with session_scope() as session:
        lesson = learning.record_lesson(session, incident_id=incident.id, text=LESSON["text"], actor="test:office")
        return incident.id, lesson.id


def lesson_target() -> Target:
    incident_id, lesson_id = _lesson()
    return Target("lesson", {"incident_id": incident_id, "lesson_id": lesson_id}, "water_affairs", "public_security")


def _follow_up_target(kind: str, department: str, owner: str | None, other: str) -> Target:
    incident_id, lesson_id = _lesson()
    with session_scope() as session:
        follow_up = learning.assign_follow_up(session, lesson_id=lesson_id, department=department, title="修订方案",
                                              due_at=datetime.now(UTC) + timedelta(days=7), actor="test:office")
        return Target(kind, {"incident_id": incident_id, "lesson_id": lesson_id, "follow_up_id": follow_up.id},
                      owner, other)


def follow_up_target() -> Target:
    # The other department is on the same incident (meteorology did the forecast) but the follow-up is not its own.
    return _follow_up_target("follow_up", "water_affairs", "water_affairs", "meteorology")


def office_follow_up_target() -> Target:
    return _follow_up_target("office_follow_up", "emergency_office", None, "water_affairs")


def proposal_target() -> Target:
    target = lesson_target()
    body = proposal_body(target)
    with session_scope() as session:
        proposal = learning.propose(session, type_key=body["type"], text=body["text"], actor="test:office",
                                    lesson_id=body["lesson_id"])
        return Target("proposal", {**target.params, "proposal_id": proposal.id}, "water_affairs", "public_security")


TARGETS = {"lesson": lesson_target, "follow_up": follow_up_target, "office_follow_up": office_follow_up_target,
           "proposal": proposal_target}

ROWS: list[Case] = [
    Case("POST", "/api/incidents/{incident_id}/lessons", "incident", OFFICE_WRITES, json=LESSON, writes=True),
    Case("POST", "/api/incidents/{incident_id}/lessons", "unknown", OFFICE_WRITES_MISSING, json=LESSON, writes=True),
    Case("GET", "/api/incidents/{incident_id}/lessons", "lesson", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/lessons", "unknown", MISSING),
    Case("GET", "/api/lessons/{lesson_id}", "lesson", VISIBLE),
    Case("GET", "/api/lessons/{lesson_id}", "unknown", MISSING),
    Case("POST", "/api/lessons/{lesson_id}/follow-ups", "lesson", OFFICE_WRITES, json=follow_up_body, writes=True),
    Case("POST", "/api/lessons/{lesson_id}/follow-ups", "unknown", OFFICE_WRITES_MISSING, json=follow_up_body,
         writes=True),
    Case("GET", "/api/follow-ups", "none", EVERYONE),
    Case("GET", "/api/follow-ups?incident={incident_id}", "follow_up", roles(401, 200, 200, 200, 200, 200),
         note="other is on the incident"),
    Case("GET", "/api/follow-ups?incident={incident_id}", "lesson", VISIBLE),
    Case("GET", "/api/follow-ups?incident={incident_id}", "unknown", MISSING),
    Case("GET", "/api/follow-ups/{follow_up_id}", "follow_up", VISIBLE),
    Case("GET", "/api/follow-ups/{follow_up_id}", "office_follow_up", roles(401, 200, 200, 200, None, 404)),
    Case("GET", "/api/follow-ups/{follow_up_id}", "unknown", MISSING),
    Case("POST", "/api/follow-ups/{follow_up_id}/complete", "follow_up", roles(401, 403, 403, 403, 200, 404),
         json={}, writes=True),
    Case("POST", "/api/follow-ups/{follow_up_id}/complete", "office_follow_up", roles(401, 200, 403, 200, None, 404),
         json={}, writes=True),
    Case("POST", "/api/follow-ups/{follow_up_id}/complete", "unknown", roles(401, 404, 403, 404, 404, 404), json={},
         writes=True),
    Case("POST", "/api/plan-proposals", "lesson", OFFICE_WRITES, json=proposal_body, writes=True),
    Case("GET", "/api/plan-proposals", "none", REVIEW),
    Case("GET", "/api/plan-proposals/{proposal_id}", "proposal", REVIEW),
    Case("GET", "/api/plan-proposals/{proposal_id}", "unknown", REVIEW_MISSING),
    Case("POST", "/api/plan-proposals/{proposal_id}/accept", "proposal", PLANNER_DECIDES, writes=True),
    Case("POST", "/api/plan-proposals/{proposal_id}/accept", "unknown", OFFICE_WRITES_MISSING, writes=True),
    Case("POST", "/api/plan-proposals/{proposal_id}/reject", "proposal", PLANNER_DECIDES, json=REJECT, writes=True),
    Case("POST", "/api/plan-proposals/{proposal_id}/reject", "unknown", OFFICE_WRITES_MISSING, json=REJECT,
         writes=True),
]
