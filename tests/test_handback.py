"""A hand-back cannot vanish (issue 16, item 3): the office is alerted with the reason and chooses (reassign, take
over, ask a leader), each choice ledgered and carried out by the engine; no task goes silently to a department
nobody can act for; leaving a stage with open work needs a confirmation with a reason."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import select

from core.incidents.alerts import alert_of_task, open_alerts
from core.ledger.models import LedgerEntry
from core.platform.db import session_scope
from tests import engine_driver as drive
from tests.api_server import (
    ASSESSMENT,
    FORECAST,
    Api,
    error_of,
    flood,
    ledger_kinds,
    task_row,
)
from tests.fixtures.api import make_user


def entries(incident_id: str, kind: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                           LedgerEntry.kind == kind)).all())


def handed_back(api: Api) -> tuple[str, str]:
    """A flood whose forecast meteorology handed back: (incident id, task id)."""
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    response = api.call("meteorology", "POST", f"/api/tasks/{task_id}/hand-back", json={"reason": "雷达站停电"})
    assert response.status_code == 200, response.text
    drive.step(incident.id)
    return incident.id, task_id


def alerts_of(api: Api, incident_id: str, who: str = "office", **params: Any) -> list[dict[str, Any]]:
    response = api.call(who, "GET", f"/api/incidents/{incident_id}/alerts", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_a_hand_back_raises_an_office_alert_with_the_reason(api: Api) -> None:
    incident_id, task_id = handed_back(api)
    [alert] = [a for a in alerts_of(api, incident_id) if a["task_id"] == task_id]
    assert (alert["kind"], alert["reason"], alert["department"], alert["raised_by"]) == (
        "handed_back", "雷达站停电", "meteorology", "user:meteorology")
    assert alert["resolved_at"] is None and alert["step_key"] == "rainstorm_forecast"
    # Scoped to the office: departments and managers do not read it.
    error_of(api.call("meteorology", "GET", f"/api/incidents/{incident_id}/alerts"), 403, "forbidden")
    error_of(api.call("manager", "GET", f"/api/incidents/{incident_id}/alerts"), 403, "forbidden")
    # Not silently reassigned: nobody holds the step until the office chooses.
    assert "rainstorm_forecast" not in drive.open_tasks(incident_id)
    assert ("task.reassigned", "rainstorm_forecast") not in ledger_kinds(incident_id)


def test_the_office_reassigns_and_the_new_department_acts_the_old_cannot(api: Api) -> None:
    incident_id, task_id = handed_back(api)
    # A department nobody can act for is refused, and nothing changes.
    error = error_of(api.call("office", "POST", f"/api/tasks/{task_id}/reassign",
                              json={"department": "city_government", "reason": "上级政府"}), 409,
                     "department_unstaffed")
    assert error["details"]["department"] == "city_government"
    error_of(api.call("office", "POST", f"/api/tasks/{task_id}/reassign",
                      json={"department": "no_such", "reason": "x"}), 422, "target_invalid")
    # Only the office chooses.
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/reassign",
                      json={"department": "water_affairs", "reason": "x"}), 403, "forbidden")
    response = api.call("office", "POST", f"/api/tasks/{task_id}/reassign",
                        json={"department": "water_affairs", "reason": "水务局有雨量站数据"})
    assert response.status_code == 200, response.text
    assert (response.json()["resolution"], response.json()["target"]) == ("reassign", "water_affairs")
    error_of(api.call("office", "POST", f"/api/tasks/{task_id}/take-over", json={"reason": "again"}), 409,
             "alert_resolved")
    assert alerts_of(api, incident_id) == []
    drive.step(incident_id)  # the engine (never the API) assigns the next attempt
    new = drive.open_tasks(incident_id)["rainstorm_forecast"]
    assert (new.department, new.attempt, new.assigned_by) == ("water_affairs", 2, "user:office")
    inbox = api.call("water_affairs", "GET", "/api/tasks", params={"open": True}).json()["items"]
    assert new.id in {t["id"] for t in inbox}
    error_of(api.call("meteorology", "POST", f"/api/tasks/{new.id}/complete", json={"outputs": FORECAST}),
             404)  # another department's task reads as missing
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": FORECAST}),
             409, "task_state_conflict")
    response = api.call("water_affairs", "POST", f"/api/tasks/{new.id}/complete", json={"outputs": FORECAST})
    assert response.status_code == 200, response.text
    [ordered] = entries(incident_id, "task.reassign_ordered")
    assert (ordered.actor, ordered.from_party, ordered.to_party) == ("user:office", "meteorology", "water_affairs")
    assert ordered.details["reason"] == "水务局有雨量站数据" and ordered.details["alert_reason"] == "雷达站停电"
    [moved] = entries(incident_id, "task.reassigned")
    assert (moved.actor, moved.from_party, moved.to_party) == ("user:office", "meteorology", "water_affairs")
    kinds = ledger_kinds(incident_id)
    assert kinds.index(("task.handed_back", "rainstorm_forecast")) < kinds.index(
        ("task.reassign_ordered", "rainstorm_forecast")) < kinds.index(("task.reassigned", "rainstorm_forecast"))


def test_the_office_takes_a_task_over_and_completes_it(api: Api) -> None:
    incident_id, task_id = handed_back(api)
    response = api.call("office", "POST", f"/api/tasks/{task_id}/take-over", json={"reason": "值班室直接向省台核实"})
    assert response.status_code == 200 and response.json()["resolution"] == "take_over"
    drive.step(incident_id)
    new = drive.open_tasks(incident_id)["rainstorm_forecast"]
    assert new.department == "emergency_office"
    response = api.call("office", "POST", f"/api/tasks/{new.id}/complete", json={"outputs": FORECAST})
    assert response.status_code == 200, response.text
    assert task_row(new.id).completed_by == "user:office"
    [taken] = entries(incident_id, "task.taken_over")
    assert taken.actor == "user:office" and taken.details["reason"] == "值班室直接向省台核实"


def test_ask_a_leader_is_ledgered_and_only_the_position_acts(api: Api) -> None:
    incident_id, task_id = handed_back(api)
    error_of(api.call("office", "POST", f"/api/tasks/{task_id}/ask-leader",
                      json={"position": "deputy_commander@flood_control_hq", "reason": "x"}), 409, "position_unheld")
    response = api.call("office", "POST", f"/api/tasks/{task_id}/ask-leader",
                        json={"position": "commander@flood_control_hq", "reason": "请总指挥定夺"})
    assert response.status_code == 200, response.text
    [asked] = entries(incident_id, "task.referred_to_leader")
    assert (asked.actor, asked.details["target"], asked.details["reason"]) == (
        "user:office", "commander@flood_control_hq", "请总指挥定夺")
    drive.step(incident_id)
    new = drive.open_tasks(incident_id)["rainstorm_forecast"]
    assert (new.department, new.position) == ("emergency_office", "commander@flood_control_hq")
    # An office user without the position may not act on it; the commander may.
    error_of(api.call("office", "POST", f"/api/tasks/{new.id}/complete", json={"outputs": FORECAST}), 403,
             "forbidden")
    response = api.call("commander", "POST", f"/api/tasks/{new.id}/complete", json={"outputs": FORECAST})
    assert response.status_code == 200, response.text
    assert response.json()["position"] == "commander@flood_control_hq"


def test_a_department_nobody_can_act_for_is_alerted_at_assignment(api: Api) -> None:
    # At level II the warning stage gives education the school suspension; education has no users.
    incident = flood("assessment", level="II")
    tasks = drive.tasks(incident.id)
    school = tasks["school_suspension"]
    with session_scope() as session:
        alert = alert_of_task(session, school.id)
        assert alert is not None and alert.kind == "unstaffed" and alert.resolved_at is None
        assert alert_of_task(session, tasks["flood_risk_assessment"].id) is None  # water_affairs has a user
    [entry] = [e for e in entries(incident.id, "task.unstaffed") if e.step_key == "school_suspension"]
    assert entry.details["department"] == "education"
    listed = {a["task_id"]: a for a in alerts_of(api, incident.id)}
    assert listed[school.id]["kind"] == "unstaffed"
    # The office routes it to a department that can act: the open attempt is taken from education.
    response = api.call("office", "POST", f"/api/tasks/{school.id}/reassign",
                        json={"department": "public_security", "reason": "教育局无人值守"})
    assert response.status_code == 200, response.text
    drive.step(incident.id)
    assert task_row(school.id).status == "handed_back"
    assert drive.open_tasks(incident.id)["school_suspension"].department == "public_security"


def test_leaving_a_stage_with_open_work_needs_a_confirmation_with_a_reason(api: Api) -> None:
    incident = flood("assessment", level="II")
    drive.complete_step(incident.id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident.id)
    open_now = drive.open_tasks(incident.id)
    lift = open_now["lift_warning"].id
    body = {"outputs": {"decision": "respond"}}
    error = error_of(api.call("office", "POST", f"/api/tasks/{lift}/complete", json=body), 409, "open_work")
    listed = {item["step"]: item for item in error["details"]["open"]}
    assert "school_suspension" in listed and listed["school_suspension"]["required"] is True
    assert task_row(lift).status == "assigned"
    error_of(api.call("office", "POST", f"/api/tasks/{lift}/complete", json={**body, "confirm_open_work": True}),
             422, "reason_required")
    response = api.call("office", "POST", f"/api/tasks/{lift}/complete",
                        json={**body, "confirm_open_work": True, "open_work_reason": "雨势减弱，停课另行通知"})
    assert response.status_code == 200, response.text
    [confirmed] = entries(incident.id, "stage.open_work_confirmed")
    assert confirmed.actor == "user:office" and confirmed.details["reason"] == "雨势减弱，停课另行通知"
    assert {item["step"] for item in confirmed.details["open"]} == set(listed)
    drive.step(incident.id)
    school = drive.tasks(incident.id)["school_suspension"]
    assert school.status == "cancelled"
    with session_scope() as session:
        assert [a for a in open_alerts(session, incident_id=incident.id) if a.task_id == school.id] == []


def test_lowering_the_level_with_open_work_needs_a_confirmation(api: Api) -> None:
    incident = flood("forecast", level="II")
    assert "school_suspension" not in drive.open_tasks(incident.id)
    drive.complete_step(incident.id, "rainstorm_forecast", FORECAST)
    drive.step(incident.id)
    assert "school_suspension" in drive.open_tasks(incident.id)
    body = {"level": "IV", "reason": "雨势减弱"}
    error = error_of(api.call("commander", "POST", f"/api/incidents/{incident.id}/level", json=body), 409,
                     "open_work")
    assert "school_suspension" in {item["step"] for item in error["details"]["open"]}
    assert drive.incident(incident.id).level == "II"
    response = api.call("commander", "POST", f"/api/incidents/{incident.id}/level",
                        json={**body, "confirm_open_work": True})
    assert response.status_code == 200, response.text
    [confirmed] = entries(incident.id, "stage.open_work_confirmed")
    assert confirmed.details["reason"] == "雨势减弱" and confirmed.details["why"] == "level:II->IV"


def test_disabling_a_departments_last_user_warns_and_alerts_the_office(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    spare = make_user("met2", "department", "meteorology")
    response = api.call("admin", "POST", f"/api/users/{spare}/disable")
    assert response.status_code == 200 and response.json()["warnings"] == []  # meteorology still has a user
    with session_scope() as session:
        from core.users.models import User

        last = session.exec(select(User).where(User.username == "meteorology")).one().id
    response = api.call("admin", "POST", f"/api/users/{last}/disable")
    assert response.status_code == 200, response.text
    [warning] = response.json()["warnings"]
    assert (warning["code"], warning["department"], warning["open_tasks"]) == ("department_unstaffed",
                                                                               "meteorology", 1)
    [alert] = alerts_of(api, incident.id)
    assert (alert["task_id"], alert["kind"]) == (task_id, "unstaffed")
    assert [e.details["department"] for e in entries(incident.id, "department.unstaffed")] == ["meteorology"]


def test_plans_staffing_lists_the_departments_nobody_can_act_for(baton: str) -> None:
    from typer.testing import CliRunner

    from core.plans.store import plan_in_use
    from flows.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["plans", "staffing", "flood"])
    assert result.exit_code == 1, result.output
    assert "meteorology" in result.output and "education" in result.output
    with session_scope() as session:
        plan = plan_in_use(session, "flood")[0]
    departments = sorted({s.department for _, s in plan.steps() if s.kind == "human"} - {"emergency_office"})
    for department in departments[1:]:
        make_user(f"desk_{department}", "department", department)
    result = runner.invoke(app, ["plans", "staffing", "flood"])
    assert result.exit_code == 1 and departments[0] in result.output
    assert not any(d in result.output for d in departments[1:])
    make_user(f"desk_{departments[0]}", "department", departments[0])
    result = runner.invoke(app, ["plans", "staffing", "flood"])
    assert result.exit_code == 0, result.output


def test_the_page_offers_the_leaders_who_hold_posts_by_name_not_a_code_to_type(api: Api) -> None:
    """"Ask a leader" on the office's page: the posts the plan names at this level that somebody holds, then the
    other posts held, each by its name and its holders' names; a post nobody holds is not offered."""
    from tests.fixtures.api import csrf_of, page_client

    make_user("town_head_li", "department", "emergency_office", positions=["town_head@town"])
    incident_id, task_id = handed_back(api)
    office = page_client(api.server, "office")
    page = office.get(f"/office/incidents/{incident_id}")
    assert page.status_code == 200, page.text[:300]
    [form] = re.findall(rf'<form method="post" action="/office/tasks/{task_id}/ask-leader".*?</form>', page.text,
                        re.S)
    assert not re.search(r'<input[^>]*name="position"', form), "a code to type"
    assert re.search(r'<select[^>]*name="position" required>', form), form
    groups = dict(re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', form, re.S))
    assert set(groups) == {"预案规定的本级领导", "其他在岗职务"}, groups
    named = re.findall(r'<option value="([^"]+)">([^<]+)</option>', groups["预案规定的本级领导"])
    assert ("commander@flood_control_hq", "市防汛抗旱指挥部总指挥（commander）") in named, named
    # deputy_commander@flood_control_hq is named by the plan but nobody holds it: not offered.
    assert "deputy_commander@flood_control_hq" not in form
    others = re.findall(r'<option value="([^"]+)">([^<]+)</option>', groups["其他在岗职务"])
    assert [ref for ref, _ in others if ref == "town_head@town"], others
    assert all("@" not in shown for _, shown in named + others), "a post shown by its code"
    response = office.post(f"/office/tasks/{task_id}/ask-leader",
                           data={"csrf": csrf_of(office, f"/office/incidents/{incident_id}"),
                                 "position": "commander@flood_control_hq", "reason": "请总指挥定夺"})
    assert response.status_code == 303, response.text[:500]
    [asked] = entries(incident_id, "task.referred_to_leader")
    assert asked.details["target"] == "commander@flood_control_hq"
