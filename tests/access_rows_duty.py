"""Access-matrix rows for duty rosters and declining a task (issue 17; see test_access.py and
test_access_pages.py): the office and administrators import rosters and mark people away; everyone signed in
reads who is on duty (a department its own department's only); a task is declined by its department, as it is
handed back. A roster target is a fresh water_affairs user to name, on a day no other target uses."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, timedelta
from typing import Any

from tests.access_matrix import roles
from tests.api_server import make_user
from tests.test_access import ACT_MISSING, DEPT_ACTS, EVERYONE, OFFICE_ACTS, Case, Target

OFFICE_ONLY = roles(401, 200, 403, 200, 403, 403)
OWN_DEPARTMENT = roles(401, 200, 200, 200, 200, 403)
DECLINE = {"reason_code": "not_our_duty", "reason": "非本单位职责"}
_days = itertools.count()


def duty_person() -> Target:
    username = f"duty-{uuid.uuid4().hex[:8]}"
    make_user(username, "department", "water_affairs")
    day = date(2031, 1, 1) + timedelta(days=next(_days) + uuid.uuid4().int % 5000 * 7)
    return Target("duty_person", {"username": username, "day": day.isoformat()}, "water_affairs",
                  "public_security")


def roster(target: Target) -> dict[str, Any]:
    return {"filename": "值班表.csv",
            "content": "department,position,holder,date,start,end\n"
                       f"water_affairs,duty_officer,{target.params['username']},{target.params['day']},08:00,20:00\n"}


def absence(target: Target) -> dict[str, Any]:
    return {"username": target.params["username"], "starts_at": f"{target.params['day']}T08:00:00",
            "ends_at": f"{target.params['day']}T12:00:00", "reason": "病假"}


ROWS: list[Case] = [
    Case("POST", "/api/rosters/import", "duty_person", OFFICE_ONLY, json=roster, writes=True),
    Case("POST", "/api/rosters/absences", "duty_person", OFFICE_ONLY, json=absence, writes=True),
    Case("GET", "/api/rosters", "none", EVERYONE),
    Case("GET", "/api/rosters?department=water_affairs&at=2026-07-20T02:00", "none", OWN_DEPARTMENT),
    *[Case("POST", "/api/tasks/{task_id}/decline", target, expect, json=DECLINE, writes=True)
      for target, expect in (("task", DEPT_ACTS), ("task_same_incident", DEPT_ACTS), ("office_task", OFFICE_ACTS),
                             ("unknown", ACT_MISSING))],
]

TARGETS = {"duty_person": duty_person}

# The roster page's import takes a file (as POST /api/rosters/import does) and shows what it kept: the office and
# administrators; for anyone else the form is not there. (The page's other rows are in access_rows_desk.py.)
PAGE_ROWS: list[dict[str, Any]] = [
    {"method": "POST", "path": "/roster/import", "target": "duty_person", "expect": roles(303, 200, 404, 200, 404, 404),
     "files": lambda target: {"roster_file": ("值班表.csv", roster(target)["content"].encode())}, "writes": True},
]
