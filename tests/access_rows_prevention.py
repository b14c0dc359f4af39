"""Access-matrix rows for prevention on schedules (see test_access.py).

A department reads and acts on its own inspections and rectifications (water_affairs owns the risk point here);
another department finds nothing (404); the office, managers and admins read all and act on none (403: the
department answers and rectifies); nobody logged in gets 401. Evidence reads as its rectification does.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.prevention import service
from core.registers.models import RiskPoint
from tests.access_matrix import roles
from tests.test_access import ACT_MISSING, DEPT_ACTS, EVERYONE, MISSING, VISIBLE, Case, Target
from tests.test_prevention import PNG

FILE = {"file": ("整改.png", PNG, "image/png")}
_slots = iter(range(1, 10_000))


def prevention_target(kind: str) -> Target:
    """`inspection`: an open 汛前检查 of water_affairs' waterlogging point; `rectification`: the one its finding
    opened; `rectification_with_evidence`: with a photo sent; `evidence`: that photo."""
    with session_scope() as session:
        point = RiskPoint(code=f"AM-{utcnow().timestamp()}", kind="waterlogging", name_zh="矩阵积水点",
                          organisation="water_affairs")
        session.add(point)
        session.flush()
        outcome = service.run_campaign(session, campaign="flood_precheck",
                                       slot=utcnow() + timedelta(days=next(_slots)))
        inspection = next(t for t in outcome.tasks if t.entry_id == point.id)
        params = {"task_id": inspection.id}
        if kind != "inspection":
            fix = service.answer_inspection(session, task_id=inspection.id, actor="user:water_affairs",
                                            hazard_found=True, finding="雨水篦子缺失")
            assert fix is not None
            params = {"task_id": fix.id}
            if kind in ("rectification_with_evidence", "evidence"):
                evidence = service.add_evidence(session, task_id=fix.id, actor="user:water_affairs",
                                                filename="x.png", stream=io.BytesIO(PNG))
                params["evidence_id"] = evidence.id
    return Target(kind, params, "water_affairs", "public_security")


ANSWER = {"hazard_found": True, "finding": "排水口堵塞"}
CLOSE = {"measures": "已清掏并加装篦子"}

ROWS: list[Case] = [
    Case("GET", "/api/prevention/tasks", "none", EVERYONE),
    Case("GET", "/api/prevention/tasks/{task_id}", "inspection", VISIBLE),
    Case("GET", "/api/prevention/tasks/{task_id}", "unknown", MISSING),
    *[Case("POST", "/api/prevention/tasks/{task_id}/answer", target, expect, json=ANSWER, writes=True)
      for target, expect in (("inspection", DEPT_ACTS), ("unknown", ACT_MISSING))],
    *[Case("POST", "/api/prevention/tasks/{task_id}/evidence", target, expect, files=FILE, writes=True)
      for target, expect in (("rectification", {**DEPT_ACTS, "dept_owner": 201}), ("unknown", ACT_MISSING))],
    *[Case("POST", "/api/prevention/tasks/{task_id}/close", target, expect, json=CLOSE, writes=True)
      for target, expect in (("rectification_with_evidence", DEPT_ACTS), ("unknown", ACT_MISSING))],
    Case("GET", "/api/prevention/evidence/{evidence_id}", "evidence", roles(401, 200, 200, 200, 200, 404)),
    Case("GET", "/api/prevention/evidence/{evidence_id}", "unknown", MISSING),
]

TARGETS = {kind: (lambda kind=kind: prevention_target(kind))
           for kind in ("inspection", "rectification", "rectification_with_evidence", "evidence")}

# The pages of one inspection or rectification (api/pages/prevention.py), reached from the department's inbox: read
# as the API reads them; answered and closed by the owning department only (the office, managers, admins: 403).
LOGIN = 303
VISIBLE_PAGE = roles(LOGIN, 200, 200, 200, 200, 404)
MISSING_PAGE = roles(LOGIN, 404, 404, 404, 404, 404)
DEPT_FORM = roles(LOGIN, 403, 403, 403, 303, 404)

PAGE_ROWS: list[dict[str, Any]] = [
    *[{"method": "GET", "path": "/prevention/tasks/{task_id}", "target": target,
       "expect": VISIBLE_PAGE if target != "unknown" else MISSING_PAGE} for target in ("inspection", "unknown")],
    *[{"method": "POST", "path": "/prevention/tasks/{task_id}/answer", "target": target,
       "expect": DEPT_FORM if target != "unknown" else MISSING_PAGE, "form": {"hazard": "no"}, "writes": True}
      for target in ("inspection", "unknown")],
    *[{"method": "POST", "path": "/prevention/tasks/{task_id}/close", "target": target,
       "expect": DEPT_FORM if target != "unknown" else MISSING_PAGE, "form": {"measures": "已清掏并加装篦子"},
       "writes": True} for target in ("rectification_with_evidence", "unknown")],
]
