"""The office's alerts as a Chinese duty officer reads them: an alert the system raises (a task nobody can act on,
overdue with nobody to escalate to, a post nobody holds) carries a code, worded on the page in the reader's
language with the department or post by its name, never an English sentence or a key; a department's own
hand-back reason shows as typed. The duty screen's counter counts what the panel beside it lists. Disabling a
department's last user from the command line alerts the office as the API and the admin page do."""

from __future__ import annotations

import re
from html import unescape

from sqlmodel import select
from typer.testing import CliRunner

from core.incidents import reads
from core.incidents.alerts import alert_of_task, open_alerts
from core.incidents.models import Incident, OfficeAlert
from core.ledger.models import LedgerEntry
from core.plans.store import registry
from core.platform.db import session_scope
from flows.cli import app
from tests import engine_driver as drive
from tests.api_server import Api, flood
from tests.fixtures.api import csrf_of, make_user, page_client


def dept_name(key: str, lang: str = "zh") -> str:
    department = registry().department(key)
    assert department is not None
    return str(getattr(department.name, lang))


def reason_shown(html: str, task_id: str) -> str:
    """The reason the office's panel shows for the task's alert, as read."""
    item = re.search(rf'<li class="item[^"]*" data-alert="[^"]+" [^>]*>\s*<a class="item-title" href="/tasks/{task_id}"'
                     r'.*?<p class="pre handback-reason"[^>]*>(.*?)</p>', html, re.S)
    assert item is not None, f"no alert on task {task_id} in the panel"
    return unescape(item.group(1)).strip()


def counter(html: str) -> int:
    found = re.search(r'data-count="waiting_on_office"[^>]*><span class="num">(\d+)</span>', html)
    assert found is not None
    return int(found.group(1))


def panel_count(html: str) -> int:
    found = re.search(r'id="handback-alerts".*?<h2>[^<]*<span class="badge">(\d+)</span>', html, re.S)
    assert found is not None
    return int(found.group(1))


def test_a_task_nobody_can_act_on_is_worded_in_the_readers_language_and_counted_as_listed(api: Api) -> None:
    # At level II the warning stage gives education the school suspension; education has no users.
    incident = flood("assessment", level="II")
    school = drive.tasks(incident.id)["school_suspension"]
    with session_scope() as session:
        alert = alert_of_task(session, school.id)
        assert alert is not None and (alert.kind, alert.reason_code) == ("unstaffed", "dept_unstaffed")
        row = session.get(Incident, incident.id)
        assert row is not None
        listed = open_alerts(session, incident_id=incident.id)
        # The duty screen's counter counts what the office's panel lists, a task nobody can act on included.
        assert reads.duty_screen(session, row)["counts"]["waiting_on_office"] == len(listed) >= 1
        assert school.id in {a.task_id for a in listed}
    education = dept_name("education")
    with page_client(api.server, "office") as office:
        page = f"/office/incidents/{incident.id}"
        html = office.get(page).text
        shown = reason_shown(html, school.id)
        assert shown == f"{education}暂无在岗人员可办理此项任务。", shown
        assert "education" not in shown and "nobody" not in shown.lower()
        assert "nobody active in" not in html.lower()
        # "0 退回待处理" beside a panel listing one is gone: the counter and the panel agree.
        assert counter(html) == panel_count(html) == len(re.findall(r'data-alert="', html)) >= 1
        # A reader in English reads it in English, the department by its English name.
        assert office.post("/lang", data={"lang": "en", "next": page,
                                          "csrf": csrf_of(office, page)}).status_code == 303
        english = reason_shown(office.get(page).text, school.id)
        assert english == f"Nobody active in {dept_name('education', 'en')} can act on the task.", english


def test_each_code_is_worded_and_a_reason_typed_or_from_before_the_codes_shows_as_stored(api: Api) -> None:
    incident = flood("assessment", level="II")
    school = drive.tasks(incident.id)["school_suspension"]
    commander = registry().position_name("commander@flood_control_hq", "zh")
    make_user("met_duty", "department", "meteorology")
    with session_scope() as session:
        from core.users.models import User

        shown_as = session.exec(select(User).where(User.username == "met_duty")).one().display_name or "met_duty"
    cases = [
        ("unstaffed", "education", "dept_emptied",
         f"{dept_name('education')}最后一名在岗人员的账号已停用，暂无人员可办理此项任务。"),
        ("unstaffed", "commander@flood_control_hq", "post_unheld", f"当前无人担任{commander}。"),
        ("unstaffed", "commander@flood_control_hq", "post_away:met_duty",
         f"当前无人担任{commander}：值班人员（{shown_as} · {dept_name('meteorology')}）不在岗，且未设置AB角。"),
        ("unstaffed", "commander@flood_control_hq", "post_away",
         f"当前无人担任{commander}：值班人员不在岗，且未设置AB角。"),
        ("overdue", "commander@flood_control_hq", "overdue_post", f"{commander}承办的任务已超时，转应急办处理。"),
        ("overdue", "education", "overdue:city_government",
         f"任务已超时，按预案应上报{dept_name('city_government')}，但该单位暂无在岗人员可办理。"),
        ("overdue", "education", "overdue", "任务已超时，按预案应上报的单位暂无在岗人员可办理。"),
        # An alert raised before the codes: its reason as stored.
        ("unstaffed", "education", None, "nobody active in education can act on the task"),
        # A department's own reason, and a decline's: as typed, whatever code a decline carries.
        ("handed_back", "education", None, "教育局值班电话无人接听"),
        ("declined", "education", "not_our_duty", "教育局值班电话无人接听"),
    ]
    with page_client(api.server, "office") as office:
        for kind, department, code, expected in cases:
            with session_scope() as session:
                alert = session.exec(select(OfficeAlert).where(OfficeAlert.task_id == school.id)).one()
                alert.kind, alert.department, alert.reason_code = kind, department, code
                alert.reason = expected if code is None or kind == "declined" else "stored english sentence"
                session.add(alert)
            shown = reason_shown(office.get(f"/office/incidents/{incident.id}").text, school.id)
            assert shown == expected, (code, shown)


def test_overdue_with_nobody_to_escalate_to_names_the_department_in_chinese(api: Api) -> None:
    # The city government (meteorology's supervisor) has no users: the office is alerted instead.
    incident_id, task = drive.forecast_past_due()
    with session_scope() as session:
        alert = alert_of_task(session, task.id)
        assert alert is not None and (alert.kind, alert.reason_code) == ("overdue", "overdue:city_government")
    with page_client(api.server, "office") as office:
        shown = reason_shown(office.get(f"/office/incidents/{incident_id}").text, task.id)
    assert shown == f"任务已超时，按预案应上报{dept_name('city_government')}，但该单位暂无在岗人员可办理。", shown


def test_disabling_a_departments_last_user_from_the_command_line_alerts_the_office(baton: str) -> None:
    make_user("met_only", "department", "meteorology")
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    with session_scope() as session:
        assert alert_of_task(session, task_id) is None  # meteorology has somebody able to act
    runner = CliRunner()
    result = runner.invoke(app, ["users", "disable", "met_only", "--reason", "调离"])
    assert result.exit_code == 0, result.output
    assert "disabled met_only" in result.output and "emergency office has been alerted" in result.output
    with session_scope() as session:
        alert = alert_of_task(session, task_id)
        assert alert is not None and alert.resolved_at is None
        assert (alert.kind, alert.reason_code, alert.raised_by) == ("unstaffed", "dept_emptied", "cli:admin")
        unstaffed = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident.id,
                                                           LedgerEntry.kind == "department.unstaffed")).all()
        assert [e.details["department"] for e in unstaffed] == ["meteorology"]
    # Disabled again: nothing more is raised or ledgered.
    again = runner.invoke(app, ["users", "disable", "met_only"])
    assert again.exit_code == 0 and "alerted" not in again.output, again.output
    with session_scope() as session:
        assert len(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident.id,
                                                          LedgerEntry.kind == "department.unstaffed")).all()) == 1
