"""The duty desk (issue 17, items 1 and 6): rosters name who holds a duty position per shift and their stand-in
(AB角); a step addressed to a position reaches whoever holds it now, the ledger keeping who was meant to act and
who acted; roster imports refuse bad rows one by one and keep the good ones; a department declines a task (退单)
with a reason code, the office must route it in time, and the minutes the task had no owner are reported."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlmodel import select

from core.ledger.models import LedgerEntry
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users import rosters
from core.users.models import RosterShift
from tests import engine_driver as drive
from tests.api_server import ASSESSMENT, Api, audit_actions, error_of, flood, make_user, page_client, task_row
from tests.conftest import copy_plans
from tests.fixtures.clock import Clock
from tests.fixtures.database import clear_settings_caches

ZONE = ZoneInfo("Asia/Shanghai")


def entries(incident_id: str, kind: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                           LedgerEntry.kind == kind)).all())


@pytest.fixture
def duty_plan(baton: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The flood plan with its risk assessment addressed to the water bureau's duty officer."""
    plans = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((plans / "flood.yaml").read_text(encoding="utf-8"))
    [step] = [s for s in plan["stages"]["warning"]["steps"] if s["key"] == "flood_risk_assessment"]
    del step["department"]
    step["position"] = "duty_officer@water_affairs"
    (plans / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("BATON_PLANS_DIR", str(plans))
    clear_settings_caches()
    yield
    clear_settings_caches()


def at_two_in_the_night(clock: Clock) -> datetime:
    """Move the clock back to the latest 02:00 in Beijing (within the last day): tokens stay valid."""
    now = utcnow().astimezone(ZONE)
    target = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if target > now:
        target -= timedelta(days=1)
    clock.advance(seconds=(target - now).total_seconds())
    return target


def night_roster(day: date) -> str:
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    return ("department,position,holder,stand_in,from,to,days,start,end\n"
            f"water_affairs,duty_officer,wa_zhang,wa_li,{before},{after},all,20:00,08:00\n"
            f"water_affairs,duty_officer,wa_wang,,{before},{after},all,08:00,20:00\n"
            f"water_affairs,duty_leader,wa_chief,,{before},{after},all,08:00,08:00\n")


def duty_people(api: Api) -> None:
    from tests.fixtures.api import issued_token

    for name in ("wa_zhang", "wa_li", "wa_wang", "wa_chief"):
        make_user(name, "department", "water_affairs")
        api.tokens[name] = issued_token(name)


def test_a_night_task_for_the_duty_officer_reaches_the_rostered_person_then_the_stand_in(
        duty_plan: None, api: Api, clock: Clock) -> None:
    night = at_two_in_the_night(clock)
    duty_people(api)
    response = api.call("office", "POST", "/api/rosters/import",
                        json={"filename": "water.csv", "content": night_roster(night.date())})
    assert response.status_code == 200, response.text
    assert response.json()["refused"] == [] and response.json()["added"] == 3 * 3
    # Who is on duty now, and the next handover (08:00).
    desk = api.call("wa_wang", "GET", "/api/rosters").json()
    assert {(d["position"], d["on_duty"]) for d in desk["on_duty"]} == {("duty_officer", "wa_zhang"),
                                                                         ("duty_leader", "wa_chief")}
    assert datetime.fromisoformat(desk["next_handover"]).astimezone(ZONE).hour == 8
    error_of(api.call("wa_wang", "GET", "/api/rosters?department=meteorology"), 403, "forbidden")

    incident = flood("assessment")
    task = task_row(incident.tasks["flood_risk_assessment"])
    assert (task.department, task.position, task.meant, task.assignee) == (
        "water_affairs", "duty_officer@water_affairs", "wa_zhang", "wa_zhang")
    [assigned] = [e for e in entries(incident.id, "task.assigned") if e.step_key == "flood_risk_assessment"]
    assert (assigned.to_party, assigned.details["meant"], assigned.details["assignee"]) == (
        "duty_officer@water_affairs", "wa_zhang", "wa_zhang")
    # Only the person on duty acts: the day officer and the department's other users are refused.
    for other in ("wa_wang", "water_affairs"):
        error_of(api.call(other, "POST", f"/api/tasks/{task.id}/acknowledge"), 403, "forbidden")

    # Zhang is called away: Li, the stand-in, holds the position, and the next such task goes to Li.
    response = api.call("office", "POST", "/api/rosters/absences",
                        json={"username": "wa_zhang", "starts_at": (night - timedelta(minutes=5)).isoformat(),
                              "ends_at": (night + timedelta(hours=4)).isoformat(), "reason": "家中急事"})
    assert response.status_code == 200, response.text
    desk = api.call("office", "GET", "/api/rosters?department=water_affairs").json()
    [officer] = [d for d in desk["on_duty"] if d["position"] == "duty_officer"]
    assert (officer["holder"], officer["on_duty"], officer["by_stand_in"]) == ("wa_zhang", "wa_li", True)
    # Li may act on the task Zhang was given; Li completes it, and the ledger says who was meant and who acted.
    done = api.call("wa_li", "POST", f"/api/tasks/{task.id}/complete", json={"outputs": ASSESSMENT})
    assert done.status_code == 200, done.text
    [completed] = [e for e in entries(incident.id, "task.completed") if e.step_key == "flood_risk_assessment"]
    assert (completed.details["meant"], completed.details["acted"]) == ("wa_zhang", "user:wa_li")

    second = flood("assessment")
    again = task_row(second.tasks["flood_risk_assessment"])
    assert (again.meant, again.assignee) == ("wa_zhang", "wa_li")
    [assigned] = [e for e in entries(second.id, "task.assigned") if e.step_key == "flood_risk_assessment"]
    assert (assigned.details["meant"], assigned.details["assignee"]) == ("wa_zhang", "wa_li")
    assert any(a[1] == "roster.away" for a in audit_actions("wa_zhang"))


def test_nobody_on_duty_raises_the_office_alert(duty_plan: None, api: Api, clock: Clock) -> None:
    night = at_two_in_the_night(clock)
    duty_people(api)
    # Zhang holds the night with no stand-in, and is away.
    roster = ("department,position,holder,from,to,start,end\n"
              f"water_affairs,duty_officer,wa_zhang,{night.date() - timedelta(days=1)},{night.date()},20:00,08:00\n")
    assert api.call("office", "POST", "/api/rosters/import",
                    json={"filename": "w.csv", "content": roster}).json()["added"] == 2
    with session_scope() as session:
        rosters.mark_away(session, username="wa_zhang", starts_at=night - timedelta(hours=1),
                          ends_at=night + timedelta(hours=1), reason="病假", actor="test")
    incident = flood("assessment")
    alerts = api.call("office", "GET", f"/api/incidents/{incident.id}/alerts").json()
    [alert] = [a for a in alerts if a["step_key"] == "flood_risk_assessment"]
    assert (alert["kind"], alert["department"]) == ("unstaffed", "duty_officer@water_affairs")
    assert "wa_zhang is away" in alert["reason"]


def test_roster_import_refuses_bad_rows_one_by_one_keeps_the_good_and_is_idempotent(api: Api) -> None:
    duty_people(api)
    roster = ("department,position,holder,stand_in,date,start,end\n"
              "water_affairs,duty_officer,wa_zhang,wa_li,2026-07-20,08:00,20:00\n"  # row 2: good
              "water_affairs,duty_officer,wa_wang,,2026-07-20,18:00,23:00\n"  # 3: overlaps row 2
              "water_affairs,night_watchman,wa_wang,,2026-07-20,20:00,08:00\n"  # 4: unknown position
              "water_affairs,duty_officer,nobody_here,,2026-07-21,08:00,20:00\n"  # 5: holder not a user
              "water_affairs,duty_officer,wa_wang,wa_li,2026-07-20,20:00,08:00\n")  # 6: good (to the 21st)
    response = api.call("office", "POST", "/api/rosters/import", json={"filename": "r.csv", "content": roster})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(p["row"], p["field"], p["code"]) for p in body["refused"]] == [
        (3, "start", "overlap"), (4, "position", "unknown_position"), (5, "holder", "not_a_user")]
    assert all(p["message"] and p["message_zh"] for p in body["refused"])
    assert "不是系统用户" in body["refused"][2]["message_zh"]
    assert (body["added"], body["unchanged"]) == (2, 0)
    with session_scope() as session:
        before = [(s.id, s.holder_id, s.starts_at, s.ends_at) for s in session.exec(select(RosterShift)).all()]
    again = api.call("office", "POST", "/api/rosters/import", json={"filename": "r.csv", "content": roster}).json()
    assert (again["added"], again["updated"], again["unchanged"], len(again["refused"])) == (0, 0, 2, 3)
    with session_scope() as session:
        assert [(s.id, s.holder_id, s.starts_at, s.ends_at) for s in session.exec(select(RosterShift)).all()] == before
    imports = [a for a in audit_actions() if a[1] == "roster.imported"]
    assert len(imports) == 2 and imports[0][0] == "user:office" and imports[0][2]["added"] == 2
    # Departments and managers may not import.
    for who in ("water_affairs", "manager"):
        error_of(api.call(who, "POST", "/api/rosters/import", json={"filename": "r.csv", "content": roster}), 403)


def test_holiday_and_working_day_patterns_follow_chinas_calendar(api: Api) -> None:
    """2026-10-01 to 10-07 are National Day holidays; Sunday 2026-09-20 and Saturday 2026-10-10 are adjusted
    working days (调休上班) — by chinese-calendar, not by weekday."""
    from openpyxl import Workbook

    duty_people(api)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["部门", "岗位", "值班人", "AB角", "开始日期", "结束日期", "日类型", "开始时间", "结束时间"])
    sheet.append(["water_affairs", "duty_leader", "wa_chief", "wa_wang", "2026-09-28", "2026-10-11", "holiday",
                  "08:00", "08:00"])
    sheet.append(["water_affairs", "duty_leader", "wa_zhang", "wa_li", "2026-09-28", "2026-10-11", "workday",
                  "08:00", "08:00"])
    buffer = io.BytesIO()
    book.save(buffer)
    response = api.call("admin", "POST", "/api/rosters/import",
                        json={"filename": "国庆.xlsx", "content_base64": base64.b64encode(buffer.getvalue()).decode()})
    assert response.status_code == 200, response.text
    assert response.json()["refused"] == [] and response.json()["added"] == 14
    assert rosters.day_matches(date(2026, 10, 1), "holiday") and not rosters.day_matches(date(2026, 10, 1), "workday")
    assert rosters.day_matches(date(2026, 10, 10), "workday")  # a Saturday worked in lieu
    with session_scope() as session:
        def leader(day: int) -> str | None:
            duty = rosters.on_duty(session, department="water_affairs", position="duty_leader",
                                   at=datetime(2026, 10, day, 12, tzinfo=ZONE))
            return duty.holder.username if duty else None

        assert [leader(d) for d in (1, 7, 8, 9, 10, 11)] == ["wa_chief", "wa_chief", "wa_zhang", "wa_zhang",
                                                            "wa_zhang", "wa_chief"]


def test_a_declined_task_alerts_the_office_escalates_when_not_routed_and_counts_ownerless_minutes(
        api: Api, clock: Clock) -> None:
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    error_of(api.call("water_affairs", "POST", f"/api/tasks/{task_id}/decline",
                      json={"reason_code": "not_mine", "reason": "x"}), 422)
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/decline",
                      json={"reason_code": "wrong_area", "reason": "x"}), 404)
    response = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/decline",
                        json={"reason_code": "wrong_area", "reason": "积水点在邻区，非本辖区"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "handed_back"
    [declined] = entries(incident.id, "task.declined")
    assert declined.details["reason_code"] == "wrong_area" and declined.actor == "user:water_affairs"
    drive.step(incident.id)
    [alert] = [a for a in api.call("office", "GET", f"/api/incidents/{incident.id}/alerts").json()
               if a["task_id"] == task_id]
    assert (alert["kind"], alert["reason_code"], alert["escalated_at"]) == ("declined", "wrong_area", None)
    due = datetime.fromisoformat(alert["route_due_at"])
    assert due - datetime.fromisoformat(alert["raised_at"]) == timedelta(minutes=15)
    # 16 minutes later nobody has routed it: the alert escalates, once, in the ledger.
    clock.advance(minutes=16)
    drive.step(incident.id)
    drive.step(incident.id)
    [escalated] = entries(incident.id, "alert.escalated")
    assert escalated.details["reason_code"] == "wrong_area"
    [alert] = [a for a in api.call("office", "GET", f"/api/incidents/{incident.id}/alerts").json()
               if a["task_id"] == task_id]
    assert alert["escalated_at"] is not None
    clock.advance(minutes=4)
    response = api.call("office", "POST", f"/api/tasks/{task_id}/reassign",
                        json={"department": "meteorology", "reason": "气象局核实"})
    assert response.status_code == 200, response.text
    drive.step(incident.id)
    assert drive.open_tasks(incident.id)["flood_risk_assessment"].department == "meteorology"
    # 20 minutes without an owner, in the review page and the analytics.
    from core.incidents.alerts import ownerless_minutes
    from core.incidents.models import Incident

    with session_scope() as session:
        row = session.get(Incident, incident.id)
        assert row is not None
        assert 19.9 <= ownerless_minutes(session, row) <= 20.2
    with page_client(api.server, "manager") as browser:
        page = browser.get(f"/review/incidents/{incident.id}")
    assert page.status_code == 200 and 'data-ownerless-minutes="20' in page.text, page.text[:500]
    figures = api.call("manager", "GET", "/api/analytics").json()
    [mine] = [r for r in figures["ownerless"] if r["incident_id"] == incident.id]
    assert 19.9 <= mine["minutes"] <= 20.2 and figures["total"]["ownerless_minutes"] >= mine["minutes"]


def test_ownerless_minutes_cover_a_task_still_waiting(api: Api, clock: Clock) -> None:
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    assert api.call("water_affairs", "POST", f"/api/tasks/{task_id}/hand-back",
                    json={"reason": "力量不足"}).status_code == 200
    clock.advance(minutes=7)
    from core.incidents.alerts import ownerless_minutes
    from core.incidents.models import Incident

    with session_scope() as session:
        row = session.get(Incident, incident.id)
        assert row is not None
        assert 6.9 <= ownerless_minutes(session, row) <= 7.2


def test_cli_roster_import_names_file_row_and_field_and_is_idempotent(api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    duty_people(api)
    roster = tmp_path / "water.csv"
    roster.write_text("department,position,holder,stand_in,date,start,end\n"
                      "water_affairs,duty_officer,wa_zhang,wa_li,2026-10-01,08:00,20:00\n"
                      "water_affairs,chief_of_everything,wa_zhang,,2026-10-01,08:00,20:00\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["roster", "import", str(roster)])
    assert result.exit_code == 1, result.output
    assert f"{roster}:3:position: unknown_position: unknown position 'chief_of_everything'" in result.output
    assert "1 shifts added" in result.output
    again = runner.invoke(app, ["roster", "import", str(roster)])
    assert "0 shifts added, 0 updated, 1 unchanged, 1 rows refused" in again.output, again.output


def test_the_inbox_shows_who_is_on_duty_and_a_department_declines_from_the_task_page(api: Api) -> None:
    from tests.api_server import csrf_of

    duty_people(api)
    today = utcnow().astimezone(ZONE).date()
    roster = ("department,position,holder,stand_in,from,to,start,end\n"
              f"water_affairs,duty_officer,wa_zhang,wa_li,{today - timedelta(days=1)},{today + timedelta(days=1)},"
              "08:00,08:00\n")
    assert api.call("office", "POST", "/api/rosters/import",
                    json={"filename": "w.csv", "content": roster}).json()["added"] == 3
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    with page_client(api.server, "water_affairs") as browser:
        inbox = browser.get("/inbox")
        assert inbox.status_code == 200
        assert 'id="on-duty"' in inbox.text and 'data-on-duty="wa_zhang"' in inbox.text
        assert "当前值班" in inbox.text and "下次交接班" in inbox.text
        page = browser.get(f"/tasks/{task_id}")
        assert 'action="/tasks/' + task_id + '/decline"' in page.text and "非本辖区" in page.text
        response = browser.post(f"/tasks/{task_id}/decline",
                                data={"csrf": csrf_of(browser, f"/tasks/{task_id}"), "reason_code": "lacking_resources",
                                      "reason": "泵车全部在外"})
        assert response.status_code == 303, response.text[:500]
    assert task_row(task_id).decline_code == "lacking_resources"
    drive.step(incident.id)
    with page_client(api.server, "office") as browser:
        office = browser.get(f"/office/incidents/{incident.id}")
    assert 'data-kind="declined"' in office.text and "力量不足" in office.text and "派发时限" in office.text


def test_a_step_addressed_to_a_position_names_a_post_of_its_own_department(tmp_path: Path) -> None:
    from process_defs.validation import check_paths

    plans = copy_plans(tmp_path, "flood")
    text = (plans / "flood.yaml").read_text(encoding="utf-8")
    changed = text.replace("        department: water_affairs\n        kind: human\n",
                           "        department: water_affairs\n        position: duty_officer@meteorology\n"
                           "        kind: human\n", 1)
    assert changed != text
    (plans / "flood.yaml").write_text(changed, encoding="utf-8")
    problems = [str(p) for p in check_paths([plans]).problems]
    assert any("the position is in 'meteorology'" in p for p in problems), problems
    (plans / "flood.yaml").write_text(changed.replace("duty_officer@meteorology", "duty_officer@water_affairs"),
                                      encoding="utf-8")
    assert not check_paths([plans]).problems
