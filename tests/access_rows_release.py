"""Access-matrix rows for the release of public warnings (审核签发; see test_access.py).

The flood plan's rainstorm warning is drafted for the meteorology bureau (the target's owning department; public
security is not on the incident). The office reviews and returns drafts (and admin, who acts for it); managers and
departments may not (403). The drafting department or the office redrafts a returned draft. Signing off needs a
leader's position of the meteorology bureau, which none of the matrix's users holds (403 position_required);
signing an unreviewed draft is 409 whoever asks. Updating or cancelling the released warning is the office's or a
signer's: others on the incident get 403 position_required. The public page shows it to anyone, without login.
"""

from __future__ import annotations

import uuid

from sqlmodel import select

from core.incidents.models import Incident
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from core.sharing import warnings as release
from core.sharing.models import CapAlert
from core.users.models import User
from process_defs.actions import PublishWarningParams
from tests.access_matrix import roles
from tests.api_server import flood
from tests.fixtures.api import make_user
from tests.test_access import Case, Target

OFFICE_ONLY = roles(401, 200, 403, 200, 403, 403)
OFFICE_MISSING = roles(401, 404, 403, 404, 403, 403)
REDRAFT = roles(401, 200, 403, 200, 200, 404)
ACT_MISSING = roles(401, 404, 403, 404, 404, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
NO_SIGNER = roles(401, 403, 403, 403, 403, 404)
NOT_REVIEWED = roles(401, 409, 409, 409, 409, 404)
AMEND = roles(401, 201, 403, 201, 403, 404)
NONE_IN_FORCE = roles(401, 409, 409, 409, 409, 404)
POSITION = {"office": "position_required", "manager": "position_required", "admin": "position_required",
            "dept_owner": "position_required"}


def met_leader() -> User:
    """The meteorology bureau's director, who signs its warnings off (made once)."""
    with session_scope() as session:
        found = session.exec(select(User).where(User.username == "met_leader")).first()
    if found is None:
        make_user("met_leader", "department", "meteorology", positions=["bureau_director@meteorology"])
        with session_scope() as session:
            found = session.exec(select(User).where(User.username == "met_leader")).one()
    return found


def warning_target(kind: str, state: str, drill: bool = False) -> Target:
    """A level IV flood whose forecast is done and whose rainstorm warning is drafted for the meteorology bureau,
    then taken to `state`: draft, reviewed, returned or issued (signed off by its director)."""
    incident = flood("assessment")
    with session_scope() as session:
        row = session.get(Incident, incident.id)
        assert row is not None
        if drill:
            row.drill = True
            session.add(row)
        step = plan_for_version(session, row.plan_version_id).step("publish_rainstorm_warning")
        alert = release.draft(session, incident_id=incident.id, params=PublishWarningParams.model_validate(
            step.params), department="meteorology", actor="baton", key=f"matrix:{uuid.uuid4()}",
            step_key=step.key)
        assert alert is not None
        alert_id = alert.id
    if state in ("reviewed", "issued"):
        with session_scope() as session:
            release.review(session, incident_id=incident.id, alert_id=alert_id, actor="user:office")
    if state == "returned":
        with session_scope() as session:
            release.return_draft(session, incident_id=incident.id, alert_id=alert_id, actor="user:office",
                                 reason="请核实雨量")
    if state == "issued":
        leader = met_leader()
        with session_scope() as session:
            release.sign(session, incident_id=incident.id, alert_id=alert_id, signer=leader)
    with session_scope() as session:
        alert_row = session.get(CapAlert, alert_id)
        assert alert_row is not None
        identifier = alert_row.identifier
    return Target(kind, {"incident_id": incident.id, "alert_id": alert_id, "identifier": identifier},
                  "meteorology", "public_security")


TARGETS = {"warning_draft": lambda: warning_target("warning_draft", "draft"),
           "warning_reviewed": lambda: warning_target("warning_reviewed", "reviewed"),
           "warning_returned": lambda: warning_target("warning_returned", "returned"),
           "warning_released": lambda: warning_target("warning_released", "issued"),
           "drill_warning_released": lambda: warning_target("drill_warning_released", "issued", drill=True)}

BASE = "/api/incidents/{incident_id}/warnings"
ROWS: list[Case] = [
    Case("POST", f"{BASE}/{{alert_id}}/review", "warning_draft", OFFICE_ONLY, writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/review", "unknown", OFFICE_MISSING, writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/return", "warning_draft", OFFICE_ONLY, json={"reason": "请核实雨量"},
         writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/return", "unknown", OFFICE_MISSING, json={"reason": "请核实雨量"},
         writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/redraft", "warning_returned", REDRAFT, json={"colour": "orange"},
         writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/redraft", "unknown", ACT_MISSING, json={"colour": "orange"}, writes=True),
    Case("POST", f"{BASE}/{{alert_id}}/sign", "warning_reviewed", NO_SIGNER, writes=True, codes=POSITION),
    Case("POST", f"{BASE}/{{alert_id}}/sign", "warning_draft", NOT_REVIEWED, writes=True, note="not reviewed",
         codes={r: "warning_not_reviewed" for r in ("office", "manager", "admin", "dept_owner")}),
    Case("POST", f"{BASE}/{{alert_id}}/sign", "unknown", MISSING, writes=True),
    Case("POST", f"{BASE}/update", "warning_released", AMEND, json={"colour": "orange"}, writes=True,
         codes={"manager": "position_required", "dept_owner": "position_required"}),
    Case("POST", f"{BASE}/update", "warning_draft", NONE_IN_FORCE, json={"colour": "orange"}, writes=True,
         note="none released", codes={r: "warning_state_conflict" for r in ("office", "manager", "admin",
                                                                            "dept_owner")}),
    Case("POST", f"{BASE}/update", "unknown", MISSING, json={"colour": "orange"}, writes=True),
    Case("POST", f"{BASE}/cancel", "warning_released", AMEND, json={"reason": "降雨减弱"}, writes=True,
         codes={"manager": "position_required", "dept_owner": "position_required"}),
    Case("POST", f"{BASE}/cancel", "unknown", MISSING, json={"reason": "降雨减弱"}, writes=True),
]
