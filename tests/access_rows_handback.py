"""Access-matrix rows for the office's hand-back alerts and its choices on them (see test_access.py and
test_access_pages.py): the office's (and admin's, who act for it) only; managers read nothing of them here, a
department is refused even on its own handed-back task. Targets are floods whose risk assessment water_affairs
handed back, with the office's alert open."""

from __future__ import annotations

from core.incidents.handoffs import hand_back
from core.platform.db import session_scope
from tests import engine_driver as drive
from tests.access_matrix import roles
from tests.api_server import flood
from tests.test_access import Case, Target

OFFICE_ONLY = roles(401, 200, 403, 200, 403, 403)
OFFICE_ONLY_MISSING = roles(401, 404, 403, 404, 403, 403)
CHOICES = (("reassign", {"department": "meteorology", "reason": "气象局有雷达数据"}),
           ("take-over", {"reason": "值班室直接办理"}),
           ("ask-leader", {"position": "commander@flood_control_hq", "reason": "请总指挥定夺"}))


def handed_back_task() -> Target:
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    with session_scope() as session:
        hand_back(session, task_id=task_id, actor="user:water_affairs", reason="不属于本部门职责")
    drive.step(incident.id)
    return Target("handed_back_task", {"incident_id": incident.id, "task_id": task_id}, "water_affairs",
                  "public_security")


ROWS: list[Case] = [
    Case("GET", "/api/incidents/{incident_id}/alerts", "handed_back_task", OFFICE_ONLY),
    Case("GET", "/api/incidents/{incident_id}/alerts?all=true", "handed_back_task", OFFICE_ONLY),
    Case("GET", "/api/incidents/{incident_id}/alerts", "unknown", OFFICE_ONLY_MISSING),
    *[Case("POST", f"/api/tasks/{{task_id}}/{choice}", target, expect, json=body, writes=True)
      for choice, body in CHOICES
      for target, expect in (("handed_back_task", OFFICE_ONLY), ("unknown", OFFICE_ONLY_MISSING))],
]

TARGETS = {"handed_back_task": handed_back_task}
