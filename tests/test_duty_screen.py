# ruff: noqa: F811  (the tests take test_pages' `login` and `users` fixtures, imported below, as arguments)
"""The duty officer's screen of an incident (issue 16, item 4) and natural wording on the Chinese pages (item 6):
the counters and next deadlines read from the incident's tasks, the chase-up of an overdue task (ledgered, sent
to the department's system, shown on the department's task page), the confirmations after opening an incident
and changing its level, and no jargon (actor ids, English status words, zone names, run ids) on the main pages.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from sqlmodel import select

from api.pages.rendering import Helpers
from core.incidents import alerts, chase, handoffs, reads
from core.incidents.models import DepartmentTask, Incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import sending
from core.outbox.models import DeliveryOutcome, OutboundDelivery
from core.platform.db import session_scope
from core.platform.errors import BatonError
from core.platform.settings import get_settings
from core.users.models import User
from tests import engine_driver as drive
from tests.receiver import Receiver, running_receiver
from tests.test_pages import (  # noqa: F401  (login and users are fixtures)
    Login,
    flood,
    login,
    post,
    task_of,
    users,
)

SECRET = "duty-screen-secret"


def late(task_id: str, minutes: int = 10) -> None:
    """Make the task overdue by `minutes`."""
    with session_scope() as session:
        task = session.get(DepartmentTask, task_id)
        assert task is not None
        task.due_at = datetime.now(UTC) - timedelta(minutes=minutes)
        session.add(task)


def due_in(task_id: str, minutes: int) -> None:
    with session_scope() as session:
        task = session.get(DepartmentTask, task_id)
        assert task is not None
        task.due_at = datetime.now(UTC) + timedelta(minutes=minutes)
        session.add(task)


def screen(incident_id: str) -> dict[str, Any]:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return reads.duty_screen(session, incident)


def visible(html: str) -> str:
    """What a reader sees of a page: its text, tags and attributes left out."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", body))


# -- the counters and deadlines (core) ------------------------------------------------------------------------------
def test_the_counters_and_next_deadlines_of_a_constructed_incident(baton: str) -> None:
    from tests.fixtures.api import make_user

    # Somebody able to act in each department given a task (else each task is the office's to route).
    for name, department in (("water1", "water_affairs"), ("edu1", "education"), ("met1", "meteorology")):
        make_user(name, "department", department)
    incident_id = flood("II")
    drive.complete_step(incident_id, "rainstorm_forecast")
    drive.step(incident_id)
    open_now = drive.open_tasks(incident_id)
    assessment, schools = open_now["flood_risk_assessment"], open_now["school_suspension"]
    with session_scope() as session:
        handoffs.acknowledge(session, task_id=assessment.id, actor="user:water1")
    late(schools.id)
    due_in(assessment.id, 50)
    first = screen(incident_id)
    assert first["counts"] == {"waiting": 1, "in_progress": 1, "overdue": 1, "waiting_on_office": 0}
    assert [t.id for t in first["overdue"]] == [schools.id]
    # The next deadlines: open and not yet passed, nearest first, with the department and the time left.
    assert [d["task"].id for d in first["deadlines"]] == [assessment.id]
    assert first["deadlines"][0]["department"] == "water_affairs"
    assert timedelta(minutes=48) < first["deadlines"][0]["remaining"] <= timedelta(minutes=50)
    assert [s["state"] for s in first["stages"]] == ["current", "ahead", "ahead", "ahead"]
    # The level: as opened (no reason), by whom.
    assert first["level"]["level"] == "II" and first["level"]["reason"] is None
    # A hand-back is counted as the office's to route; the handed-back task no longer waits or is in progress.
    with session_scope() as session:
        handoffs.hand_back(session, task_id=assessment.id, actor="user:water1", reason="泵车全部外借")
    second = screen(incident_id)
    assert second["counts"] == {"waiting": 1, "in_progress": 0, "overdue": 1, "waiting_on_office": 1}
    # The counter counts what the office's panel lists: a task nobody can act on too, not hand-backs alone.
    with session_scope() as session:
        education = session.exec(select(User).where(User.username == "edu1")).one()
        alerts.disable_user(session, user_id=education.id, actor="test:admin")
    third = screen(incident_id)
    with session_scope() as session:
        listed = alerts.open_alerts(session, incident_id=incident_id)
    assert {a.task_id: a.kind for a in listed} == {assessment.id: "handed_back", schools.id: "unstaffed"}
    assert third["counts"]["waiting_on_office"] == len(listed) == 2
    assert second["deadlines"] == []
    assert Helpers("zh").remaining(timedelta(minutes=80)) == "还剩 1小时20分"
    assert Helpers("en").remaining(timedelta(minutes=5)) == "5 min left"


def test_the_duty_screen_on_the_page_and_its_fragment(login: Login) -> None:
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    office = login("office1")
    url = f"/office/incidents/{incident_id}"
    html = office.get(url).text
    assert f'data-poll-url="{url}/duty"' in html
    assert 'aria-current="step" data-stage="warning"' in html or 'data-stage="warning" aria-current="step"' in html
    clock = re.search(r"北京时间 (\d{2}):(\d{2})", html)
    assert clock is not None
    assert 'data-count="waiting"><span class="num">1</span>' in html
    assert "overdue-banner" not in html and "/chase-up" not in html
    late(forecast.id)
    fragment = office.get(f"{url}/duty")
    assert fragment.headers["x-baton-fragment"] == "1" and "<html" not in fragment.text
    text = fragment.text
    assert 'data-overdue-title="(1) 已超时"' in text and "超时任务 1 项" in text
    assert 'data-count="overdue" class="is-overdue"><span class="num">1</span>' in text
    assert f'action="/office/tasks/{forecast.id}/chase-up"' in text
    # Finished steps are folded under their stage; open ones stay in view.
    drive.complete_step(incident_id, "rainstorm_forecast")
    drive.step(incident_id)
    progress = office.get(f"{url}/progress").text
    folded = re.search(r'<details class="finished">.*?</details>', progress, re.S)
    assert folded is not None and 'data-step="rainstorm_forecast"' in folded.group(0)
    assert 'data-step="flood_risk_assessment"' not in folded.group(0)


# -- the chase-up --------------------------------------------------------------------------------------------------
@pytest.fixture
def receiver(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver(SECRET) as rec:
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"meteorology": {"url": rec.url, "secret": SECRET}}))
        get_settings.cache_clear()
        yield rec


def chase_entries(incident_id: str) -> list[str]:
    with session_scope() as session:
        return [e.to_party for e in ledger.read_chain(session, incident_id) if e.kind == LedgerKind.task_chased_up]


def test_the_office_chases_up_an_overdue_task_ledgered_delivered_and_shown_to_the_department(
        login: Login, receiver: Receiver) -> None:
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    office, met, boss = login("office1"), login("met1"), login("boss1")
    url = f"/office/incidents/{incident_id}"
    chase_url = f"/office/tasks/{forecast.id}/chase-up"
    # Not overdue yet: refused, nothing written.
    refused = post(office, chase_url, {}, url)
    assert refused.status_code == 409 and "只有已超时且未办结的任务才能催办" in refused.text
    assert chase_entries(incident_id) == []
    late(forecast.id)
    # Only the office chases up: the department and a manager find no such page, and nothing is written.
    for client in (met, boss):
        assert post(client, chase_url, {}, "/").status_code == 404
    # Without the form's CSRF token: refused.
    assert office.post(chase_url, data={}, follow_redirects=False).status_code == 403
    assert chase_entries(incident_id) == []
    done = post(office, chase_url, {}, url)
    assert done.status_code == 303 and done.headers["location"] == f"{url}?done=chased"
    assert "已催办，已通知承办部门" in office.get(done.headers["location"]).text
    assert chase_entries(incident_id) == ["meteorology"]
    with session_scope() as session:
        entry = next(e for e in ledger.read_chain(session, incident_id) if e.kind == LedgerKind.task_chased_up)
        assert (entry.actor, entry.from_party) == ("user:office1", "emergency_office")
        assert entry.details["task_id"] == forecast.id
        delivery = session.exec(select(OutboundDelivery).where(OutboundDelivery.purpose == "chase_up")).one()
        assert (delivery.target, delivery.payload["task"]["id"]) == ("meteorology", forecast.id)
        item = sending.message(session, delivery_id=delivery.id)
    assert item is not None
    attempt = asyncio.run(sending.post(item))
    with session_scope() as session:
        assert sending.record_attempt(session, delivery_id=delivery.id, attempt=attempt) == DeliveryOutcome.delivered
    assert [m["purpose"] for m in receiver.received if m["purpose"] == "chase_up"] == ["chase_up"]
    # The department reads it on the task's page, in Beijing time.
    with session_scope() as session:
        task = session.get(DepartmentTask, forecast.id)
        assert task is not None
        at = chase.chase_ups(session, task)[0]
    shown = Helpers("zh").when(at)
    assert f"应急办已于 {shown} 催办。" in met.get(f"/tasks/{forecast.id}").text
    # A task completed meanwhile is not chased up.
    drive.complete_step(incident_id, "rainstorm_forecast")
    assert post(office, chase_url, {}, url).status_code == 409
    assert chase_entries(incident_id) == ["meteorology"]


def test_a_chase_up_is_refused_in_the_service_for_a_task_not_overdue(baton: str) -> None:
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    with session_scope() as session, pytest.raises(BatonError) as refused:
        chase.chase_up(session, task_id=forecast.id, actor="user:office1")
    assert refused.value.code == "task_not_overdue" and refused.value.http_status == 409


# -- confirmations ------------------------------------------------------------------------------------------------
def test_the_level_notice_names_the_new_level_in_one_numeral_form(login: Login) -> None:
    incident_id = flood("IV")
    drive.person()
    office = login("office1")
    url = f"/office/incidents/{incident_id}"
    response = post(office, f"{url}/level", {"level": "III", "reason": "积水扩大", "ordered_by": "commander"}, url)
    assert response.status_code == 303 and response.headers["location"] == f"{url}?done=level"
    page = office.get(response.headers["location"]).text
    assert '<p class="alert ok" role="status" id="notice">响应级别已调整为Ⅲ级</p>' in page
    # The level on the duty screen: its reason, who set it and on whose order.
    level = re.search(r'<p class="level-now" id="level-now">(.*?)</p>', page, re.S)
    assert level is not None
    said = visible(level.group(1))
    assert "Ⅲ级" in said and "积水扩大" in said and "值班员决定" in said and "按commander口头指令" in said
    # Without `done` there is no notice; an unknown one says nothing either.
    assert 'id="notice"' not in office.get(url).text and 'id="notice"' not in office.get(f"{url}?done=x").text


# -- no jargon on the Chinese pages ------------------------------------------------------------------------------------
JARGON = re.compile(r"user:|demo:|skipped|Skipped|Asia/Shanghai|UTC\+08|流程运行|密级|贵单位|\bAlert\b"
                    r"|(?<![A-Za-zⅠⅡⅢⅣ])(?:I{1,3}|IV)级")


def test_the_main_chinese_pages_carry_no_jargon(login: Login, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_PREFECT_API_URL", "http://127.0.0.1:4200/api/")
    get_settings.cache_clear()
    # A flood at level IV: the steps of higher levels do not apply (skipped), the level is raised on a verbal
    # order, a step is handed back, the run has a flow run in Prefect.
    incident_id = flood("IV")
    drive.person()
    run_id = "0b5f6a0e-1111-4222-8333-944455556666"
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        row.flow_run_id = run_id
        session.add(row)
    office, met, boss = login("office1"), login("met1"), login("boss1")
    url = f"/office/incidents/{incident_id}"
    drive.complete_step(incident_id, "rainstorm_forecast", actor="user:met1")
    drive.step(incident_id)
    assessment = task_of(incident_id, "flood_risk_assessment")
    late(assessment.id)
    post(office, f"{url}/level", {"level": "II", "reason": "积水扩大到三个街道", "ordered_by": "commander"}, url)
    drive.step(incident_id)
    forecast = task_of(incident_id, "rainstorm_forecast")
    pages = {"office home": office.get("/office"), "office incident": office.get(url),
             "progress": office.get(f"{url}/progress"), "duty": office.get(f"{url}/duty"),
             "task": met.get(f"/tasks/{forecast.id}"), "board": office.get(f"/incidents/{incident_id}/board"),
             "review": boss.get("/review"), "review incident": boss.get(f"/review/incidents/{incident_id}")}
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = visible(response.text)
        found = JARGON.findall(text)
        assert not found, f"{name}: {found} " + " | ".join(text[max(0, m.start() - 80):m.end() + 40]
                                                           for m in JARGON.finditer(text))
        assert run_id not in text, name
    # The flow run's link stays, named for what it is.
    incident_page = pages["office incident"].text
    assert f'href="http://127.0.0.1:4200/runs/flow-run/{run_id}"' in incident_page
    assert "查看自动流转记录" in incident_page
    assert "北京时间" in visible(incident_page)
    # A form's times say Beijing time; no English subtitles under the Chinese labels.
    task_page = pages["task"].text
    assert 'class="alt"' not in task_page


def test_the_office_is_not_offered_to_hand_its_own_task_back_to_itself(login: Login) -> None:
    incident_id = flood("IV")
    drive.complete_step(incident_id, "rainstorm_forecast")
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment")
    drive.step(incident_id)
    gate = task_of(incident_id, "lift_warning")
    assert gate.department == "emergency_office"
    page = login("office1").get(f"/tasks/{gate.id}").text
    assert 'id="complete"' in page and 'id="hand-back"' not in page and "退回应急办" not in page
    # A department's task still offers it.
    other = flood("IV")
    assert 'id="hand-back"' in login("met1").get(f"/tasks/{task_of(other, 'rainstorm_forecast').id}").text


def test_one_form_of_level_numerals_and_beijing_time() -> None:
    zh, en = Helpers("zh"), Helpers("en")
    assert [zh.level_short(k) for k in ("I", "II", "III", "IV")] == ["Ⅰ级", "Ⅱ级", "Ⅲ级", "Ⅳ级"]
    assert en.level_short("II") == "Level II" and en.numeral("II") == "II"
    assert zh.zone_label() == "北京时间" and en.zone_label() == "Beijing time"
    assert re.fullmatch(r"北京时间 \d{2}:\d{2}", zh.clock())
    moment = datetime(2026, 7, 20, 6, 5, tzinfo=UTC)
    assert zh.clock(moment) == "北京时间 14:05"
