"""Access-matrix rows for the duty desk and leaders' instructions (issue 17, items 2 and 5; see test_access.py and
test_access_pages.py). The desk is the office's: the office and administrators record sheets, keep the duty log
and hand it over; managers read; no department is party to a sheet or a log (403; on the pages, missing).
Reviewing a sheet needs the duty leader on duty (or an office leader), which none of the matrix's users is: 403
`position_required` for the office and admin. An instruction is read by the reviewers and the departments it names
(another department finds nothing); a department reports on its own part only; the office closes an instruction
once every part is done (409 `instruction_tasks_open` before)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import select

from core.desk import instructions, logs, sheets
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users.models import User
from tests.access_matrix import roles
from tests.api_server import flood
from tests.test_access import Case, Target

LOGIN = 303
OFFICE_WRITES = roles(401, 201, 403, 201, 403, 403)
OFFICE_ACTS = roles(401, 200, 403, 200, 403, 403)
DESK_READ = roles(401, 200, 200, 200, 403, 403)
DESK_MISSING = roles(401, 404, 404, 404, 403, 403)
ACT_MISSING = roles(401, 404, 403, 404, 403, 403)
LEADER_ONLY = roles(401, 403, 403, 403, 403, 403)
NO_POSITION = {"office": "position_required", "admin": "position_required"}
NAMED = roles(401, 200, 200, 200, 200, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)


def _report() -> dict[str, Any]:
    return {"source": "hotline_12345", "caller": "张先生", "callback": "12345", "place": "城南区立交桥下",
            "occurred_at": (utcnow() - timedelta(minutes=10)).isoformat(), "what": "桥下积水，车辆熄火", "trapped": 1}


def _office() -> User:
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "office")).first()
        assert user is not None
        session.expunge(user)
        return user


def sheet() -> Target:
    given = _report()
    with session_scope() as session:
        row = sheets.record(session, given=sheets.SheetInput(**{**given, "occurred_at": utcnow()}),
                            actor="user:office")
        return Target("sheet", {"sheet_id": row.id}, "water_affairs", "public_security")


def returned_sheet() -> Target:
    target = sheet()
    with session_scope() as session:
        row = sheets.get_sheet(session, target.params["sheet_id"])
        row.status, row.returned_reason = "returned", "请补充回拨电话"  # as the duty leader's return leaves it
        session.add(row)
    return Target("returned_sheet", target.params, "water_affairs", "public_security")


def _fresh_log() -> str:
    """Hand the open log (if any) over, so that a new one is open: the shift the row writes in."""
    with session_scope() as session:
        current = logs.current(session)
        if current is None:
            return logs.start(session, officer="office", actor="test:setup").id
        return logs.handover(session, log_id=current.id, incoming="office", note="", actor="test:setup")[1].id


def duty_log() -> Target:
    return Target("duty_log", {"log_id": _fresh_log()}, "water_affairs", "public_security")


def no_log() -> Target:
    with session_scope() as session:
        current = logs.current(session)
        if current is not None:
            current.ended_at, current.incoming = utcnow(), "office"  # closed without a successor, for the row
            session.add(current)
    return Target("no_log", {}, "water_affairs", "public_security")


def _instruction(kind: str, *, done: bool) -> Target:
    incident = flood("assessment")
    with session_scope() as session:
        row = instructions.record(session, incident_id=incident.id, user=_office(), leader="王市长",
                                  text="立即排查低洼地带", departments=["water_affairs"])
        [task] = instructions.tasks_of(session, [row.id])[row.id]
        if done:
            instructions.complete_task(session, task_id=task.id, actor="user:water_affairs", reply="已排查")
        return Target(kind, {"incident_id": incident.id, "instruction_id": row.id, "task_id": task.id},
                      "water_affairs", "public_security")


def instruction() -> Target:
    return _instruction("instruction", done=False)


def instruction_done() -> Target:
    return _instruction("instruction_done", done=True)


INSTRUCTION = {"leader": "李局长", "text": "加强巡查", "departments": ["water_affairs"]}
SHEET_FORM = {"source": "phone", "caller": "张先生", "callback": "12345", "place": "城南区立交桥下",
              "occurred_at": "2026-07-20T08:00", "what": "桥下积水", "dead": "0", "injured": "0", "missing": "0",
              "trapped": "1"}


def _amend(target: Target) -> dict[str, Any]:
    return {**_report(), "callback": "139 0000 0000"}


ROWS: list[Case] = [
    Case("POST", "/api/sheets", "none", OFFICE_WRITES, json=lambda target: _report(), writes=True),
    Case("GET", "/api/sheets", "none", DESK_READ),
    Case("GET", "/api/sheets/{sheet_id}", "sheet", DESK_READ),
    Case("GET", "/api/sheets/{sheet_id}", "unknown", DESK_MISSING),
    *[Case("POST", f"/api/sheets/{{sheet_id}}/{act}", target, LEADER_ONLY if target == "sheet" else ACT_MISSING,
           json=body, writes=True, codes=NO_POSITION if target == "sheet" else {})
      for act, body in (("open", {"type": "flood", "level": "IV"}), ("merge", {"incident_id": "FLD-1900-0001"}),
                        ("file", {"reason": "误报"}), ("return", {"reason": "请补充"}))
      for target in ("sheet", "unknown")],
    Case("POST", "/api/sheets/{sheet_id}/amend", "returned_sheet", OFFICE_ACTS, json=_amend, writes=True),
    Case("POST", "/api/sheets/{sheet_id}/amend", "unknown", ACT_MISSING, json=_amend, writes=True),
    Case("GET", "/api/duty-logs", "none", DESK_READ),
    Case("POST", "/api/duty-logs", "no_log", OFFICE_WRITES, json={"officer": "office"}, writes=True),
    Case("GET", "/api/duty-logs/{log_id}", "duty_log", DESK_READ),
    Case("GET", "/api/duty-logs/{log_id}", "unknown", DESK_MISSING),
    Case("POST", "/api/duty-logs/{log_id}/notes", "duty_log", OFFICE_WRITES, json={"text": "市气象台来电"},
         writes=True),
    Case("POST", "/api/duty-logs/{log_id}/notes", "unknown", ACT_MISSING, json={"text": "x"}, writes=True),
    Case("POST", "/api/duty-logs/{log_id}/handover", "duty_log", OFFICE_ACTS, json={"incoming": "admin"},
         writes=True),
    Case("POST", "/api/duty-logs/{log_id}/handover", "unknown", ACT_MISSING, json={"incoming": "admin"},
         writes=True),
    # Instructions: the office records one given by a leader; a department without a leader's post may not.
    Case("POST", "/api/incidents/{incident_id}/instructions", "incident", roles(401, 201, 403, 201, 403, 404),
         json=INSTRUCTION, writes=True, codes={"dept_owner": "position_required"}),
    Case("POST", "/api/incidents/{incident_id}/instructions", "unknown", roles(401, 404, 403, 404, 404, 404),
         json=INSTRUCTION, writes=True),
    Case("GET", "/api/incidents/{incident_id}/instructions", "instruction", NAMED),
    Case("GET", "/api/incidents/{incident_id}/instructions", "unknown", MISSING),
    Case("GET", "/api/instructions/{instruction_id}", "instruction", NAMED),
    Case("GET", "/api/instructions/{instruction_id}", "unknown", MISSING),
    Case("GET", "/api/instruction-tasks", "none", roles(401, 200, 403, 200, 200, 200)),
    Case("POST", "/api/instruction-tasks/{task_id}/complete", "instruction", roles(401, 403, 403, 403, 200, 404),
         json={"reply": "已排查低洼点12处"}, writes=True),
    Case("POST", "/api/instruction-tasks/{task_id}/complete", "unknown", roles(401, 404, 403, 404, 404, 404),
         json={"reply": "x"}, writes=True),
    Case("POST", "/api/instructions/{instruction_id}/close", "instruction", roles(401, 409, 403, 409, 403, 403),
         json={}, writes=True, codes={"office": "instruction_tasks_open", "admin": "instruction_tasks_open"}),
    Case("POST", "/api/instructions/{instruction_id}/close", "instruction_done", OFFICE_ACTS, json={}, writes=True),
    Case("POST", "/api/instructions/{instruction_id}/close", "unknown", ACT_MISSING, json={}, writes=True),
]

OFFICE_PAGE = roles(LOGIN, 200, 404, 200, 404, 404)
OFFICE_FORM = roles(LOGIN, 303, 404, 303, 404, 404)
MISSING_PAGE = roles(LOGIN, 404, 404, 404, 404, 404)
PAGE_ROWS: list[dict[str, Any]] = [
    {"method": "GET", "path": "/desk", "target": "none", "expect": OFFICE_PAGE},
    {"method": "POST", "path": "/desk/sheets", "target": "none", "expect": OFFICE_FORM, "form": SHEET_FORM,
     "writes": True},
    {"method": "GET", "path": "/desk/sheets/{sheet_id}", "target": "sheet", "expect": OFFICE_PAGE},
    {"method": "GET", "path": "/desk/sheets/{sheet_id}", "target": "unknown", "expect": MISSING_PAGE},
    *[{"method": "POST", "path": f"/desk/sheets/{{sheet_id}}/{act}", "target": target,
       "expect": roles(LOGIN, 403, 404, 403, 404, 404) if target == "sheet" else MISSING_PAGE, "form": form,
       "writes": True}
      for act, form in (("open", {"type": "flood", "level": "IV"}), ("merge", {"incident_id": "FLD-1900-0001"}),
                        ("file", {"reason": "误报"}), ("return", {"reason": "请补充"}))
      for target in ("sheet", "unknown")],
    {"method": "POST", "path": "/desk/sheets/{sheet_id}/amend", "target": "returned_sheet", "expect": OFFICE_FORM,
     "form": SHEET_FORM, "writes": True},
    {"method": "POST", "path": "/desk/sheets/{sheet_id}/amend", "target": "unknown", "expect": MISSING_PAGE,
     "form": SHEET_FORM, "writes": True},
    {"method": "POST", "path": "/desk/logs", "target": "no_log", "expect": OFFICE_FORM, "form": {"officer": "office"},
     "writes": True},
    *[{"method": "POST", "path": f"/desk/logs/{{log_id}}/{act}", "target": target,
       "expect": OFFICE_FORM if target == "duty_log" else MISSING_PAGE, "form": form, "writes": True}
      for act, form in (("notes", {"text": "市气象台来电"}), ("handover", {"incoming": "admin", "note": ""}))
      for target in ("duty_log", "unknown")],
    {"method": "GET", "path": "/desk/logs/{log_id}/print", "target": "duty_log",
     "expect": roles(LOGIN, 200, 200, 200, 404, 404)},
    {"method": "GET", "path": "/desk/logs/{log_id}/print", "target": "unknown", "expect": MISSING_PAGE},
    {"method": "GET", "path": "/incidents/{incident_id}/instructions", "target": "instruction",
     "expect": roles(LOGIN, 200, 200, 200, 200, 404)},
    {"method": "GET", "path": "/incidents/{incident_id}/instructions", "target": "unknown", "expect": MISSING_PAGE},
    {"method": "POST", "path": "/incidents/{incident_id}/instructions", "target": "incident",
     "expect": roles(LOGIN, 303, 404, 303, 403, 404), "form": {**INSTRUCTION, "departments": "water_affairs"},
     "writes": True},
    {"method": "POST", "path": "/incidents/{incident_id}/instructions", "target": "unknown", "expect": MISSING_PAGE,
     "form": {**INSTRUCTION, "departments": "water_affairs"}, "writes": True},
    {"method": "POST", "path": "/instruction-tasks/{task_id}/complete", "target": "instruction",
     "expect": roles(LOGIN, 403, 404, 403, 303, 404), "form": {"reply": "已排查"}, "writes": True},
    {"method": "POST", "path": "/instruction-tasks/{task_id}/complete", "target": "unknown",
     "expect": MISSING_PAGE, "form": {"reply": "已排查"}, "writes": True},
    {"method": "POST", "path": "/instructions/{instruction_id}/close", "target": "instruction",
     "expect": roles(LOGIN, 409, 404, 409, 404, 404), "form": {"note": ""}, "writes": True},
    {"method": "POST", "path": "/instructions/{instruction_id}/close", "target": "instruction_done",
     "expect": OFFICE_FORM, "form": {"note": ""}, "writes": True},
    {"method": "POST", "path": "/instructions/{instruction_id}/close", "target": "unknown", "expect": MISSING_PAGE,
     "form": {"note": ""}, "writes": True},
    {"method": "GET", "path": "/roster", "target": "none", "expect": roles(LOGIN, 200, 200, 200, 200, 200)},
    {"method": "POST", "path": "/roster/away", "target": "duty_person", "expect": OFFICE_FORM,
     "form": lambda target: {"username": target.params["username"], "starts_at": f"{target.params['day']}T08:00",
                             "ends_at": f"{target.params['day']}T12:00", "reason": "病假"}, "writes": True},
]

TARGETS = {"sheet": sheet, "returned_sheet": returned_sheet, "duty_log": duty_log, "no_log": no_log,
           "instruction": instruction, "instruction_done": instruction_done}
