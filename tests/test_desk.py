"""The duty desk (issue 17, items 2 and 5): a phone report recorded at the desk as an event record sheet
(事件记录单) is reviewed by the duty leader (送审), who opens an incident from it, merges it into an open one, files
it with a reason, or returns it for more details; nothing recorded is lost (every change in the desk's chain,
an unreviewed sheet shows overdue); the shift's duty log (值班日志) is handed over and printed; a leader's
instruction (批示) becomes tasks for the departments it names and cannot close while one is open."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from core.desk.models import EventSheet, InstructionTask
from core.incidents.models import Incident
from core.ledger.chain import DESK, read_named, verify_chain, verify_incident
from core.ledger.models import LedgerEntry
from core.outbox.models import OutboundDelivery
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from flows.maintenance import sweep_instructions
from tests.api_server import Api, csrf_of, error_of, flood, issued_token, make_user, page_client
from tests.fixtures.clock import Clock

LEADER_REF = "duty_leader@emergency_office"


def phone_report(**changes: Any) -> dict[str, Any]:
    report = {"source": "phone", "caller": "李女士", "callback": "138 0000 1234", "place": "城东区解放路地下通道",
              "occurred_at": (utcnow() - timedelta(minutes=20)).isoformat(), "what": "地下通道积水约1米，有车辆被困",
              "dead": 0, "injured": 1, "missing": 0, "trapped": 2}
    return {**report, **changes}


@pytest.fixture
def desk(api: Api) -> Api:
    """The standard cast, and the office's duty leader (带班领导, an office user holding the post)."""
    make_user("leader", "office", positions=[LEADER_REF])
    api.tokens["leader"] = issued_token("leader")
    return api


def desk_kinds(sheet_id: str) -> list[str]:
    with session_scope() as session:
        return [e.kind for e in read_named(session, DESK, f"sheet:{sheet_id}")]


def incident_entries(incident_id: str, kind: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                           LedgerEntry.kind == kind)).all())


def record(api: Api, **changes: Any) -> dict[str, Any]:
    response = api.call("office", "POST", "/api/sheets", json=phone_report(**changes))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_phone_report_recorded_at_the_duty_desk_becomes_an_incident_after_the_duty_leaders_review(
        desk: Api, clock: Clock) -> None:
    sheet = record(desk)
    assert sheet["status"] == "submitted" and sheet["number"].startswith("JL-") and not sheet["overdue"]
    shown = page_client(desk.server, "leader").get(f"/desk/sheets/{sheet['id']}")
    assert shown.status_code == 200 and sheet["number"] in shown.text and 'id="open-form"' in shown.text
    # The officer cannot review it: only the duty leader (or the office's leaders) may.
    refused = error_of(desk.call("office", "POST", f"/api/sheets/{sheet['id']}/open",
                                 json={"type": "flood", "level": "IV"}), 403, "position_required")
    assert LEADER_REF in refused["details"]["needs"]
    # Left unreviewed past the limit (15 minutes), it shows overdue.
    clock.advance(minutes=16)
    assert desk.call("manager", "GET", f"/api/sheets/{sheet['id']}").json()["overdue"] is True
    response = desk.call("leader", "POST", f"/api/sheets/{sheet['id']}/open",
                         json={"type": "flood", "level": "III", "title": "解放路地下通道积水"})
    assert response.status_code == 201, response.text
    opened = response.json()
    incident = opened["incident"]
    assert (incident["type"], incident["level"], incident["status"], incident["title"]) == (
        "flood", "III", "open", "解放路地下通道积水")
    assert incident["location"]["name"] == "城东区解放路地下通道"
    assert opened["sheet"]["status"] == "opened" and opened["sheet"]["incident_id"] == incident["id"]
    assert opened["sheet"]["reviewed_by"] == "user:leader" and not opened["sheet"]["overdue"]
    # Linked both ways: the incident's ledger names the sheet, the sheet the incident; both chains verify.
    [entry] = incident_entries(incident["id"], "sheet.opened")
    assert entry.details["number"] == sheet["number"] and entry.details["casualties"]["trapped"] == 2
    assert desk_kinds(sheet["id"]) == ["sheet.recorded", "sheet.opened"]
    with session_scope() as session:
        assert verify_chain(session, DESK).valid and verify_incident(session, incident["id"]).valid
        row = session.get(Incident, incident["id"])
        assert row is not None and row.flow_run_id is None  # written only: a worker starts its flow
    # Reviewed once: a second decision is refused and changes nothing.
    error_of(desk.call("leader", "POST", f"/api/sheets/{sheet['id']}/file", json={"reason": "重复"}), 409,
             "sheet_state_conflict")
    assert desk_kinds(sheet["id"]) == ["sheet.recorded", "sheet.opened"]


def test_the_leader_merges_a_second_call_files_a_false_alarm_and_returns_a_thin_sheet(desk: Api) -> None:
    target = flood("forecast")
    second = record(desk, caller="王先生", source="hotline_12345")
    merged = desk.call("leader", "POST", f"/api/sheets/{second['id']}/merge",
                       json={"incident_id": target.code, "note": "同一积水点，第二次来电"})
    assert merged.status_code == 200, merged.text
    assert (merged.json()["status"], merged.json()["incident_id"]) == ("merged", target.id)
    [entry] = incident_entries(target.id, "sheet.merged")
    assert entry.details["number"] == second["number"] and entry.details["source"] == "hotline_12345"
    # The incident's review page lists it (its ledger and its sheets).
    review = page_client(desk.server, "manager").get(f"/review/incidents/{target.id}")
    assert second["number"] in review.text

    alarm = record(desk, what="有人报告闻到煤气味，经核实为误报")
    error_of(desk.call("leader", "POST", f"/api/sheets/{alarm['id']}/file", json={"reason": "  "}), 422)
    filed = desk.call("leader", "POST", f"/api/sheets/{alarm['id']}/file", json={"reason": "燃气公司核实为误报"})
    assert filed.status_code == 200 and filed.json()["status"] == "filed"
    assert filed.json()["reason"] == "燃气公司核实为误报" and filed.json()["incident_id"] is None

    thin = record(desk, what="有情况", callback="")
    returned = desk.call("leader", "POST", f"/api/sheets/{thin['id']}/return",
                         json={"reason": "请补充回拨电话和具体情况"})
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    error_of(desk.call("leader", "POST", f"/api/sheets/{thin['id']}/open", json={"type": "flood"}), 409,
             "sheet_state_conflict")
    amended = desk.call("office", "POST", f"/api/sheets/{thin['id']}/amend",
                        json=phone_report(what="小区地下车库进水，10余辆车被淹", callback="139 1111 2222"))
    assert amended.status_code == 200 and amended.json()["status"] == "submitted"
    assert desk_kinds(thin["id"]) == ["sheet.recorded", "sheet.returned", "sheet.amended"]
    # Nothing is ever dropped: every sheet is still there, in the listing and the chain.
    listed = {s["id"]: s["status"] for s in desk.call("manager", "GET", "/api/sheets").json()}
    assert listed == {second["id"]: "merged", alarm["id"]: "filed", thin["id"]: "submitted"}
    with session_scope() as session:
        assert verify_chain(session, DESK).valid
    with pytest.raises(Exception, match="append-only"), session_scope() as session:
        session.connection().exec_driver_sql("DELETE FROM ledger_entry WHERE chain = 'desk'")
    # An incident that does not exist takes no merge.
    error_of(desk.call("leader", "POST", f"/api/sheets/{thin['id']}/merge", json={"incident_id": "FLD-1900-0001"}),
             404, "not_found")


@pytest.mark.parametrize(("change", "field"), [
    ({"caller": "李\x07女士"}, "caller"),
    ({"occurred_at": "2199-01-01T08:00:00+08:00"}, "occurred_at"),
    ({"occurred_at": "2026-07-20T08:00:00"}, "occurred_at"),
    ({"injured": -1}, "injured"),
    ({"dead": 1.5}, "dead"),
    ({"trapped": math.nan}, "trapped"),
    ({"what": "水" * 5001}, "what"),
    ({"place": "路" * 201}, "place"),
    ({"callback": "call me maybe"}, "callback"),
    ({"lat": 31.2}, "lon"),
    ({"source": "pigeon"}, "source"),
])
def test_bad_input_is_refused_with_the_field_named(desk: Api, change: dict[str, Any], field: str) -> None:
    body = phone_report(**change)
    client = desk.server.client(desk.tokens["office"])
    response = client.post("/api/sheets", content=_json(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"].split(".")[0] == field for d in details), details
    with session_scope() as session:
        assert session.exec(select(EventSheet)).first() is None


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body, ensure_ascii=False, allow_nan=True)


def test_the_duty_log_is_handed_over_and_printable(desk: Api, clock: Clock) -> None:
    make_user("night", "office")
    desk.tokens["night"] = issued_token("night")
    started = desk.call("office", "POST", "/api/duty-logs", json={"officer": "office"})
    assert started.status_code == 201, started.text
    log_id = started.json()["id"]
    error_of(desk.call("office", "POST", "/api/duty-logs", json={"officer": "night"}), 409, "duty_log_conflict")
    clock.advance(seconds=5)
    sheet = record(desk)
    note = desk.call("office", "POST", f"/api/duty-logs/{log_id}/notes", json={"text": "18:30 市气象台来电：雨势减弱"})
    assert note.status_code == 201, note.text
    desk.call("leader", "POST", f"/api/sheets/{sheet['id']}/open", json={"type": "flood", "level": "IV"})
    error_of(desk.call("office", "POST", f"/api/duty-logs/{log_id}/handover", json={"incoming": "manager"}), 422,
             "input_invalid")
    clock.advance(seconds=5)
    handed = desk.call("office", "POST", f"/api/duty-logs/{log_id}/handover",
                       json={"incoming": "night", "note": "解放路积水事件仍在处置，注意回访"})
    assert handed.status_code == 200, handed.text
    assert handed.json()["officer"] == "night" and handed.json()["ended_at"] is None
    old = desk.call("manager", "GET", f"/api/duty-logs/{log_id}").json()
    assert (old["incoming"], old["next_log_id"]) == ("night", handed.json()["id"]) and old["ended_at"]
    kinds = [e["kind"] for e in old["entries"]]
    assert kinds == ["sheet.recorded", "note", "incident.opened", "sheet.opened"], kinds
    error_of(desk.call("office", "POST", f"/api/duty-logs/{log_id}/notes", json={"text": "迟到的记录"}), 409,
             "duty_log_conflict")
    # The printable page: the shift, its entries, the handover with both officers; a department may not see it.
    printed = page_client(desk.server, "office").get(f"/desk/logs/{log_id}/print")
    assert printed.status_code == 200
    for text in ("值班日志", sheet["number"], "18:30 市气象台来电：雨势减弱", "解放路积水事件仍在处置", "night"):
        assert text in printed.text, text
    assert 'class="print-page"' in printed.text and "/static/baton.css" in printed.text
    assert "@media print" in desk.server.client().get("/static/baton.css").text
    assert page_client(desk.server, "water_affairs").get(f"/desk/logs/{log_id}/print").status_code == 404


def test_an_instruction_to_two_departments_cannot_close_while_one_task_is_open(desk: Api) -> None:
    incident = flood("assessment")
    body = {"leader": "王市长", "text": "立即组织排查低洼地带，确保群众安全",
            "departments": ["water_affairs", "public_security"],
            "due_at": (datetime.now().astimezone() + timedelta(hours=2)).isoformat()}
    error_of(desk.call("manager", "POST", f"/api/incidents/{incident.id}/instructions", json=body), 403, "forbidden")
    error_of(desk.call("office", "POST", f"/api/incidents/{incident.id}/instructions",
                       json={**body, "departments": ["water_affairs", "atlantis"]}), 422, "input_invalid")
    response = desk.call("office", "POST", f"/api/incidents/{incident.id}/instructions", json=body)
    assert response.status_code == 201, response.text
    instruction = response.json()
    tasks = {t["department"]: t for t in instruction["tasks"]}
    assert set(tasks) == {"water_affairs", "public_security"} and {t["status"] for t in tasks.values()} == {"open"}
    # public_security is not on the incident, but the instruction names it: it reads it and its own part.
    mine = desk.call("public_security", "GET", "/api/instruction-tasks").json()
    assert [t["id"] for t in mine] == [tasks["public_security"]["id"]]
    assert desk.call("public_security", "GET", f"/api/incidents/{incident.id}/instructions").status_code == 200
    # Neither department reports on the other's part.
    error_of(desk.call("public_security", "POST", f"/api/instruction-tasks/{tasks['water_affairs']['id']}/complete",
                       json={"reply": "x"}), 404)
    done = desk.call("water_affairs", "POST", f"/api/instruction-tasks/{tasks['water_affairs']['id']}/complete",
                     json={"reply": "已排查低洼点12处，转移群众40人"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    refused = error_of(desk.call("office", "POST", f"/api/instructions/{instruction['id']}/close", json={}), 409,
                       "instruction_tasks_open")
    assert refused["details"]["open"] == ["public_security"]
    desk.call("public_security", "POST", f"/api/instruction-tasks/{tasks['public_security']['id']}/complete",
              json={"reply": "已设置警戒，疏导交通"})
    closed = desk.call("office", "POST", f"/api/instructions/{instruction['id']}/close", json={"note": "落实完毕"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    error_of(desk.call("office", "POST", f"/api/instructions/{instruction['id']}/close", json={}), 409,
             "instruction_closed")
    kinds = [e.kind for e in incident_entries(incident.id, "instruction.recorded")
             + incident_entries(incident.id, "instruction.task_done") + incident_entries(incident.id,
                                                                                         "instruction.closed")]
    assert kinds == ["instruction.recorded", "instruction.task_done", "instruction.task_done", "instruction.closed"]
    # It shows on the board and in the manager's review.
    board = page_client(desk.server, "water_affairs").get(f"/incidents/{incident.id}/board")
    assert "立即组织排查低洼地带" in board.text
    review = page_client(desk.server, "manager").get(f"/review/incidents/{incident.id}")
    assert "立即组织排查低洼地带" in review.text and "已排查低洼点12处" in review.text


def test_a_department_reads_no_sheet_and_no_instruction_it_is_not_party_to(desk: Api) -> None:
    sheet = record(desk)
    for department in ("water_affairs", "meteorology"):
        error_of(desk.call(department, "GET", "/api/sheets"), 403, "forbidden")
        error_of(desk.call(department, "GET", f"/api/sheets/{sheet['id']}"), 403, "forbidden")
    incident = flood("assessment")
    made = desk.call("office", "POST", f"/api/incidents/{incident.id}/instructions",
                     json={"leader": "李局长", "text": "加强巡查", "departments": ["water_affairs"]}).json()
    # meteorology is on the incident but not named: it finds no instruction; public_security is on neither.
    assert desk.call("meteorology", "GET", f"/api/incidents/{incident.id}/instructions").json() == []
    error_of(desk.call("meteorology", "GET", f"/api/instructions/{made['id']}"), 404, "not_found")
    error_of(desk.call("public_security", "GET", f"/api/incidents/{incident.id}/instructions"), 404, "not_found")
    assert desk.call("water_affairs", "GET", f"/api/instructions/{made['id']}").status_code == 200
    board = page_client(desk.server, "meteorology").get(f"/incidents/{incident.id}/board")
    assert board.status_code == 200 and "加强巡查" not in board.text


HOSTILE = "<script>alert(1)</script>&amp; =1+1 \u202e"


def test_markup_through_the_desk_comes_out_literal_on_every_page(desk: Api) -> None:
    """Text that looks like markup is stored as given and shown as text: on the desk, the sheet's page, the
    duty log's print page and an instruction's page (templates autoescape; nothing is sanitised away)."""
    sheet = record(desk, what=HOSTILE, caller=HOSTILE[:40], place=HOSTILE)
    incident = flood("assessment")
    made = desk.call("office", "POST", f"/api/incidents/{incident.id}/instructions",
                     json={"leader": HOSTILE[:40], "text": HOSTILE, "departments": ["water_affairs"]})
    assert made.status_code == 201, made.text
    log = desk.call("office", "POST", "/api/duty-logs", json={"officer": "office"})
    assert log.status_code == 201, log.text
    assert desk.call("office", "POST", f"/api/duty-logs/{log.json()['id']}/notes",
                     json={"text": HOSTILE}).status_code == 201
    pages = [("office", "/desk"), ("office", f"/desk/sheets/{sheet['id']}"),
             ("office", f"/desk/logs/{log.json()['id']}/print"), ("office", f"/incidents/{incident.id}/instructions"),
             ("water_affairs", f"/incidents/{incident.id}/instructions")]
    for who, path in pages:
        page = page_client(desk.server, who).get(path)
        assert page.status_code == 200, (who, path, page.status_code)
        assert "<script>alert(1)</script>" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    assert desk.call("office", "GET", f"/api/sheets/{sheet['id']}").json()["what"] == HOSTILE


# -- an instruction's tasks are tracked as the departments' other tasks: inbox, own systems, overdue -------------------


def instruct(api: Api, incident_id: str, departments: list[str], *, hours: float = 2,
             text: str = "立即组织排查低洼地带，确保群众安全") -> dict[str, str]:
    """Record an instruction by the office; its tasks' ids by department."""
    response = api.call("office", "POST", f"/api/incidents/{incident_id}/instructions",
                        json={"leader": "王市长", "text": text, "departments": departments,
                              "due_at": (utcnow() + timedelta(hours=hours)).isoformat()})
    assert response.status_code == 201, response.text
    return {t["department"]: t["id"] for t in response.json()["tasks"]}


def deliveries() -> list[OutboundDelivery]:
    with session_scope() as session:
        return list(session.exec(select(OutboundDelivery).where(
            col(OutboundDelivery.idempotency_key).startswith("instruction:"))).all())


def test_a_departments_instruction_tasks_are_in_its_inbox_and_reported_done_from_it(desk: Api) -> None:
    incident = flood("assessment")
    tasks = instruct(desk, incident.id, ["water_affairs", "public_security"])
    water = page_client(desk.server, "water_affairs")
    inbox = water.get("/inbox")
    assert inbox.status_code == 200
    assert f'data-instruction-task="{tasks["water_affairs"]}"' in inbox.text and "立即组织排查低洼地带" in inbox.text
    assert incident.code in inbox.text and 'name="back" value="inbox"' in inbox.text
    # Scoped: each department sees its own part; one not named sees none.
    assert f'data-instruction-task="{tasks["public_security"]}"' not in inbox.text
    police = page_client(desk.server, "public_security")
    assert f'data-instruction-task="{tasks["public_security"]}"' in police.get("/inbox").text
    other = page_client(desk.server, "meteorology").get("/inbox").text
    assert "data-instruction-task=" not in other and "立即组织排查低洼地带" not in other
    # Another department cannot report on water_affairs' part from its page.
    refused = police.post(f"/instruction-tasks/{tasks['water_affairs']}/complete",
                          data={"csrf": csrf_of(police, "/inbox"), "reply": "x", "back": "inbox"})
    assert refused.status_code == 404
    done = water.post(f"/instruction-tasks/{tasks['water_affairs']}/complete",
                      data={"csrf": csrf_of(water, "/inbox"), "reply": "已排查低洼点12处", "back": "inbox"})
    assert done.status_code == 303 and done.headers["location"].startswith("/inbox?done=instruction")
    with session_scope() as session:
        row = session.get(InstructionTask, tasks["water_affairs"])
        assert row is not None and (row.status, row.reply, row.done_by) == ("done", "已排查低洼点12处",
                                                                           "user:water_affairs")
        still = session.get(InstructionTask, tasks["public_security"])
        assert still is not None and still.status == "open"
    after = water.get("/inbox?done=instruction").text
    assert f'data-instruction-task="{tasks["water_affairs"]}"' not in after and 'role="status"' in after
    assert [e.details["department"] for e in incident_entries(incident.id, "instruction.task_done")] == [
        "water_affairs"]


def test_an_instruction_task_reaches_the_named_departments_own_system_only(
        desk: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an incident task's assignment and escalation do: through the outbox, on the incident (whose flow sends
    it, so it is woken), once per task and purpose; a department with a system that is not named gets nothing, a
    named one without a system is not queued for."""
    endpoint = {"url": "https://example.gov.cn/hook", "secret": "instruction-outbox-secret"}
    monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"water_affairs": endpoint, "meteorology": endpoint}))
    get_settings.cache_clear()
    incident = flood("assessment")
    with session_scope() as session:
        row = session.get(Incident, incident.id)
        assert row is not None
        woken_before = row.woken_at
    tasks = instruct(desk, incident.id, ["water_affairs", "public_security"], hours=1)
    queued = deliveries()
    assert [(d.target, d.purpose, d.incident_id) for d in queued] == [("water_affairs", "assignment", incident.id)]
    told = queued[0].payload["instruction_task"]
    assert told["id"] == tasks["water_affairs"] and told["department"] == "water_affairs"
    assert told["text"] == "立即组织排查低洼地带，确保群众安全" and told["leader"] == "王市长" and told["due_at"]
    with session_scope() as session:
        row = session.get(Incident, incident.id)
        assert row is not None and row.woken_at > woken_before
    # Overdue: the department's system is told once, by the sweep; meteorology (not named) never.
    clock.advance(hours=2)
    assert set(sweep_instructions()) == set(tasks.values())
    assert sweep_instructions() == []
    assert sorted((d.target, d.purpose) for d in deliveries()) == [("water_affairs", "assignment"),
                                                                    ("water_affairs", "overdue")]
    assert all(d.target != "meteorology" for d in deliveries())


def test_an_overdue_instruction_task_shows_overdue_and_is_escalated_to_the_office_once(
        desk: Api, clock: Clock) -> None:
    incident = flood("assessment")
    tasks = instruct(desk, incident.id, ["water_affairs", "public_security"], hours=1)
    water = page_client(desk.server, "water_affairs")
    board = page_client(desk.server, "office")
    assert 'data-overdue="1"' not in water.get("/inbox").text
    assert 'data-overdue="1"' not in board.get(f"/incidents/{incident.id}/board").text
    assert sweep_instructions() == []  # not due yet
    # public_security reports in time; water_affairs does not.
    desk.call("public_security", "POST", f"/api/instruction-tasks/{tasks['public_security']}/complete",
              json={"reply": "已设置警戒"})
    clock.advance(hours=1, minutes=1)
    # By the clock it shows overdue at once, before any sweep: on the board and in the department's inbox.
    shown = board.get(f"/incidents/{incident.id}/board").text
    assert 'data-department="water_affairs" data-task-status="open" data-overdue="1"' in shown
    assert 'data-department="public_security" data-task-status="done"' in shown
    assert shown.count('data-overdue="1"') == 1
    inbox = water.get("/inbox").text
    assert f'data-instruction-task="{tasks["water_affairs"]}" data-overdue="1"' in inbox
    assert "data-instruction-task=" not in page_client(desk.server, "public_security").get("/inbox").text
    [mine] = desk.call("water_affairs", "GET", "/api/instruction-tasks").json()
    assert (mine["id"], mine["overdue"], mine["overdue_at"]) == (tasks["water_affairs"], True, None)
    # The periodic sweep escalates it to the office once: a ledger entry from the department to the command.
    assert sweep_instructions() == [tasks["water_affairs"]]
    clock.advance(minutes=5)
    assert sweep_instructions() == []
    [entry] = incident_entries(incident.id, "instruction.task_overdue")
    assert (entry.from_party, entry.to_party, entry.actor) == ("water_affairs", "emergency_office", "baton")
    assert entry.details["task_id"] == tasks["water_affairs"]
    assert desk.call("water_affairs", "GET", "/api/instruction-tasks").json()[0]["overdue_at"] is not None
    with session_scope() as session:
        flagged = session.get(InstructionTask, tasks["water_affairs"])
        assert flagged is not None and flagged.overdue_at is not None
        assert verify_incident(session, incident.id).valid
    # Reported late, it is done and no longer overdue; the office may close the instruction.
    desk.call("water_affairs", "POST", f"/api/instruction-tasks/{tasks['water_affairs']}/complete",
              json={"reply": "已排查"})
    assert 'data-overdue="1"' not in board.get(f"/incidents/{incident.id}/board").text
    assert sweep_instructions() == []
