"""Access-matrix rows for upward reports (信息报送; see test_access.py).

The flood plan's reports are the emergency office's: the office and administrators (who act for it) edit and
send them, and only a holder of a leader's position signs them off (none of the matrix's users does); managers
read them and do nothing else (403); a department's user reads only its own department's reports, so the
office's read as missing (404) even to water_affairs, which is on the incident. Sending a report that was never
signed off is refused with 409 and changes nothing.
"""

from __future__ import annotations

from sqlmodel import select

from core.platform.db import session_scope
from core.reporting import service
from core.reporting.models import UpwardReport
from core.reporting.schedule import advance_with_reports
from core.users.models import User
from tests.access_matrix import roles
from tests.api_server import flood
from tests.fixtures.api import make_user
from tests.test_access import Case, Target

READ = roles(401, 200, 200, 200, 404, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
ACT = roles(401, 200, 403, 200, 404, 404)
NOT_SIGNED = roles(401, 409, 403, 409, 404, 404)
SIGN = roles(401, 403, 403, 403, 404, 404)
VISIBLE = roles(401, 200, 200, 200, 200, 404)


def signing_leader() -> str:
    """The office's duty leader, who signs reports off (made once: the matrix builds its targets many times)."""
    with session_scope() as session:
        found = session.exec(select(User.id).where(User.username == "leader")).first()
    return found or make_user("leader", "office", positions=["duty_leader@emergency_office"])


def _report(kind: str, signed: bool) -> Target:
    """A level IV flood with its initial report owed (drafting), or signed off by a leader; water_affairs holds
    a task on the incident, public_security is not on it."""
    incident = flood("assessment")
    with session_scope() as session:
        advance_with_reports(session, incident_id=incident.id)
    leader = signing_leader() if signed else None
    with session_scope() as session:
        report = session.exec(select(UpwardReport).where(UpwardReport.incident_id == incident.id)).one()
        if leader is not None:
            signer = session.get(User, leader)
            assert signer is not None
            service.sign_off(session, report_id=report.id, signer=signer)
        return Target(kind, {"incident_id": incident.id, "report_id": report.id}, "water_affairs", "public_security")


TARGETS = {"report": lambda: _report("report", signed=False),
           "signed_report": lambda: _report("signed_report", signed=True)}

ROWS: list[Case] = [
    Case("GET", "/api/upward-reports", "none", roles(401, 200, 200, 200, 200, 200)),
    *[Case("GET", path, target, VISIBLE if target == "report" else MISSING)
      for path in ("/api/incidents/{incident_id}/upward-reports", "/api/incidents/{incident_id}/casualties")
      for target in ("report", "unknown")],
    *[Case("GET", path, target, READ if target == "report" else MISSING)
      for path in ("/api/upward-reports/{report_id}", "/api/upward-reports/{report_id}/document.docx",
                   "/api/upward-reports/{report_id}/document.html")
      for target in ("report", "unknown")],
    *[Case(method, path, target, ACT if target == "report" else MISSING, json=body, writes=True)
      for method, path, body in (("PATCH", "/api/upward-reports/{report_id}", {"text": "城东区积水已排除两处。"}),
                                 ("POST", "/api/upward-reports/{report_id}/phone", {"note": "电话报告省防指"}))
      for target in ("report", "unknown")],
    # Signing off needs a leader's position (签发), which none of the matrix's users holds.
    *[Case("POST", "/api/upward-reports/{report_id}/sign-off", target, SIGN if target == "report" else MISSING,
           writes=True, codes={"office": "position_required", "admin": "position_required"} if target == "report"
           else {}) for target in ("report", "unknown")],
    Case("POST", "/api/upward-reports/{report_id}/send", "signed_report", ACT, writes=True),
    Case("POST", "/api/upward-reports/{report_id}/send", "report", NOT_SIGNED, writes=True,
         note="not signed off"),
    Case("POST", "/api/upward-reports/{report_id}/send", "unknown", MISSING, writes=True),
]
