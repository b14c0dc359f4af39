"""Access-matrix rows for 叫应 and notification channels (issue 17, items 3 and 4; see test_access.py and
test_access_pages.py): the office and administrators configure channels and how each reaches a person;
administrators name stand-ins; the office, managers and administrators read how a call went; departments get
403. An answer link's page needs no login (the link is the credential): anyone holding a good link sees it and
answers once; an unknown link is not there for anybody."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from api.deps import csrf_token
from core.outbox.links import token_for
from core.outbox.models import NotifyChannel
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.sharing.models import AnswerCall, AnswerRequest
from tests.access_matrix import roles
from tests.fixtures.api import make_user
from tests.test_access import Case, Target

OFFICE_ONLY = roles(401, 200, 403, 200, 403, 403)
OFFICE_MISSING = roles(401, 404, 403, 404, 403, 403)
ADMIN_ONLY = roles(401, 403, 403, 200, 403, 403)
REVIEWERS = roles(401, 200, 200, 200, 403, 403)
REVIEWERS_MISSING = roles(401, 404, 404, 404, 403, 403)


def channel_target() -> Target:
    with session_scope() as session:
        channel = NotifyChannel(name=f"sms-{uuid.uuid4().hex[:8]}", kind="sms", url="http://127.0.0.1:9/sms",
                                token="matrix-api-key-0001", created_by="test:setup")
        session.add(channel)
        session.flush()
        return Target("notify_channel", {"channel_id": channel.id}, "water_affairs", "public_security")


def holder_target() -> Target:
    name = f"keeper-{uuid.uuid4().hex[:8]}"
    user_id = make_user(name, "department", "community", positions=["evacuation_keeper@community"])
    make_user(f"{name}-b", "department", "community")
    return Target("stand_in_holder", {"user_id": user_id, "stand_in": f"{name}-b"}, "water_affairs",
                  "public_security")


def answer_link_target() -> Target:
    """An official's unanswered request on a flood incident, and its signed link."""
    from tests.test_access import build_target  # defined after the rows are loaded

    incident = build_target("incident")
    name = f"official-{uuid.uuid4().hex[:8]}"
    user_id = make_user(name, "department", "community", positions=["evacuation_keeper@community"])
    now = utcnow()
    with session_scope() as session:
        call = AnswerCall(incident_id=incident.params["incident_id"], source_key=f"matrix:{uuid.uuid4()}",
                          colour="red", title={"zh": "暴雨红色预警", "en": "Red rainstorm warning"},
                          text={"zh": "请确认", "en": "Please confirm"}, limit_seconds=900)
        session.add(call)
        session.flush()
        request = AnswerRequest(call_id=call.id, incident_id=call.incident_id, rung="official",
                                position="evacuation_keeper@community", user_id=user_id, sent_at=now,
                                due_at=now + timedelta(minutes=15),
                                link_expires_at=(now + timedelta(hours=24)).replace(microsecond=0))
        session.add(request)
        session.flush()
        token = token_for(request.id, request.link_expires_at)
    return Target("answer_link", {**incident.params, "token": token}, "water_affairs", "public_security")


def new_channel(target: Target) -> dict[str, Any]:
    return {"name": f"sms-{uuid.uuid4().hex[:8]}", "kind": "sms", "url": "http://127.0.0.1:9/sms",
            "token": "matrix-api-key-0002"}


def contact(target: Target) -> dict[str, Any]:
    return {"username": "water_affairs", "address": "13900001234"}


def stand_in(target: Target) -> dict[str, Any]:
    return {"position": "evacuation_keeper@community", "stand_in": target.params.get("stand_in", "office")}


def confirm_form(target: Target) -> dict[str, str]:
    return {"confirm": csrf_token(f"answer:{target.params.get('token', '')}")}


ROWS: list[Case] = [
    Case("GET", "/api/channels", "none", OFFICE_ONLY),
    Case("POST", "/api/channels", "none", roles(401, 201, 403, 201, 403, 403), json=new_channel, writes=True),
    Case("PATCH", "/api/channels/{channel_id}", "notify_channel", OFFICE_ONLY, json={"active": False}, writes=True),
    Case("PATCH", "/api/channels/{channel_id}", "unknown", OFFICE_MISSING, json={"active": False}, writes=True),
    Case("PUT", "/api/channels/{channel_id}/contacts", "notify_channel", OFFICE_ONLY, json=contact, writes=True),
    Case("PUT", "/api/channels/{channel_id}/contacts", "unknown", OFFICE_MISSING, json=contact, writes=True),
    Case("PUT", "/api/users/{user_id}/stand-in", "stand_in_holder", ADMIN_ONLY, json=stand_in, writes=True),
    Case("PUT", "/api/users/{user_id}/stand-in", "unknown", roles(401, 403, 403, 404, 403, 403), json=stand_in,
         writes=True),
    Case("GET", "/api/incidents/{incident_id}/answers", "incident", REVIEWERS),
    Case("GET", "/api/incidents/{incident_id}/answers", "unknown", REVIEWERS_MISSING),
]

TARGETS = {"notify_channel": channel_target, "stand_in_holder": holder_target, "answer_link": answer_link_target}


# The office's channels page (api/pages/channels.py): the office and administrators; a stand-in is an
# administrator's. For every other role the page is not there (404); nobody logged in is sent to log in.
LOGIN = 303
OFFICE_PAGE = roles(LOGIN, 200, 404, 200, 404, 404)
OFFICE_FORM = roles(LOGIN, 303, 404, 303, 404, 404)
OFFICE_FORM_MISSING = roles(LOGIN, 404, 404, 404, 404, 404)
ADMIN_FORM = roles(LOGIN, 404, 404, 303, 404, 404)


def page_contact(target: Target) -> dict[str, str]:
    return {"channel": target.params.get("channel_id", "no-such-channel"), "username": "water_affairs",
            "address": "13900001234"}


def page_stand_in(target: Target) -> dict[str, str]:
    holder = str(target.params.get("stand_in", "nobody-b"))[:-2]
    return {"username": holder, "position": "evacuation_keeper@community",
            "stand_in": str(target.params.get("stand_in", ""))}


PAGE_ROWS: list[dict[str, Any]] = [
    {"method": "GET", "path": "/office/channels", "target": "none", "expect": OFFICE_PAGE},
    {"method": "POST", "path": "/office/channels", "target": "none", "expect": OFFICE_FORM, "form": new_channel,
     "writes": True},
    {"method": "POST", "path": "/office/channels/{channel_id}", "target": "notify_channel", "expect": OFFICE_FORM,
     "form": {"active": "0"}, "writes": True},
    {"method": "POST", "path": "/office/channels/{channel_id}", "target": "unknown", "expect": OFFICE_FORM_MISSING,
     "form": {"active": "0"}, "writes": True},
    {"method": "POST", "path": "/office/channels-contacts", "target": "notify_channel", "expect": OFFICE_FORM,
     "form": page_contact, "writes": True},
    {"method": "POST", "path": "/admin/stand-ins", "target": "stand_in_holder", "expect": ADMIN_FORM,
     "form": page_stand_in, "writes": True},
]
