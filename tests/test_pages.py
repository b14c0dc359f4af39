"""The server-rendered pages, in process (FastAPI's TestClient) on a fresh database: sessions and CSRF, who may
see what, the office's trigger and level forms, the department task form, review, language, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from starlette.datastructures import FormData

from api.app import app
from api.pages.rendering import Helpers
from core.incidents.models import DepartmentTask, Incident, LevelChange
from core.learning.timeline_svg import render_timeline
from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.users.models import AccessToken, User
from core.users.service import add_user
from tests import engine_driver as drive

PASSWORDS = {"office1": "office-secret-1", "met1": "meteo-secret-1", "water1": "water-secret-1",
             "boss1": "manager-secret-1", "root1": "admin-secret-1"}
FORECAST_FORM = {"f_rainfall_1h": "60", "f_rainfall_24h": "180.5", "f_warning_colour": "orange",
                 "f_valid_until": drive.VALID_UNTIL_LOCAL}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}

Login = Callable[[str], TestClient]


@pytest.fixture
def users(baton: str) -> None:
    with session_scope() as session:  # at a low cost (tests/fixtures/api.py)
        add_user(session, username="office1", role="office", password=PASSWORDS["office1"], display_name="值班员")
        add_user(session, username="met1", role="department", department="meteorology", password=PASSWORDS["met1"])
        add_user(session, username="water1", role="department", department="water_affairs",
                 password=PASSWORDS["water1"])
        add_user(session, username="boss1", role="manager", password=PASSWORDS["boss1"])
        add_user(session, username="root1", role="admin", password=PASSWORDS["root1"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login_response(client: TestClient, username: str, password: str | None = None) -> httpx.Response:
    form = client.get("/login")
    assert form.status_code == 200
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf": csrf_of(form.text), "next": "/"}, follow_redirects=False)


@pytest.fixture
def login(users: None) -> Iterator[Login]:
    clients: list[TestClient] = []

    def as_user(username: str) -> TestClient:
        client = TestClient(app)
        clients.append(client)
        response = login_response(client, username)
        assert response.status_code == 303, response.text
        return client

    yield as_user
    for client in clients:
        client.close()


def post(client: TestClient, url: str, data: dict[str, Any], page: str | None = None) -> httpx.Response:
    """POST a form the way a browser does: with the CSRF token of a page of the same session."""
    token = csrf_of(client.get(page or "/").text)
    return client.post(url, data={"csrf": token, **data}, follow_redirects=False)


def flood(level: str = "IV", **kwargs: Any) -> str:
    incident_id = drive.open_("flood", level=level, **kwargs)
    drive.step(incident_id)
    return incident_id


def task_of(incident_id: str, step_key: str) -> DepartmentTask:
    return drive.tasks(incident_id)[step_key]


def ledger_count(incident_id: str) -> int:
    with session_scope() as session:
        return len(ledger.read_chain(session, incident_id))


def field_error(html: str, key: str) -> str:
    found = re.search(rf'<p class="field-error" id="err-{key}">(.*?)</p>', html, re.S)
    return unescape(found.group(1)).strip() if found else ""


# -- sessions, CSRF -----------------------------------------------------------------------------------
def test_login_sets_an_http_only_session_cookie_and_every_login_rotates_it(users: None) -> None:
    client = TestClient(app)
    first = login_response(client, "office1")
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith("baton_session="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    assert "Secure" not in cookie
    old = client.cookies.get("baton_session")
    assert old and client.get("/office").status_code == 200

    second = login_response(client, "office1")
    assert second.status_code == 303
    new = client.cookies.get("baton_session")
    assert new and new != old
    assert client.get("/office").status_code == 200
    # The token the browser held before is revoked: it opens nothing any more.
    stale = TestClient(app, cookies={"baton_session": old})
    response = stale.get("/office", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with session_scope() as session:
        tokens = session.exec(select(AccessToken).where(AccessToken.kind == "session")).all()
        assert len(tokens) == 2 and sum(t.revoked_at is not None for t in tokens) == 1


def test_session_cookie_is_secure_when_configured(users: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_COOKIE_SECURE", "true")
    get_settings.cache_clear()
    client = TestClient(app, base_url="https://testserver")
    response = login_response(client, "met1")
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("baton_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_session_token_is_not_a_bearer_token_and_the_reverse(users: None) -> None:
    client = TestClient(app)
    login_response(client, "office1")
    session_token = client.cookies.get("baton_session")
    # The page session does not open the JSON API as a bearer token.
    assert TestClient(app).get("/api/auth/me", headers={"Authorization": f"Bearer {session_token}"}).status_code == 401
    bearer = TestClient(app).post("/api/auth/token", data={"username": "office1", "password": PASSWORDS["office1"]})
    assert bearer.status_code == 200
    as_cookie = TestClient(app, cookies={"baton_session": bearer.json()["access_token"]})
    assert as_cookie.get("/office", follow_redirects=False).status_code == 303


def test_a_failed_login_says_so_and_its_count_is_kept(users: None) -> None:
    client = TestClient(app)
    response = login_response(client, "met1", "not-the-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert "baton_session" not in client.cookies
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "met1")).one()
        assert user.failed_logins == 1


def test_login_form_needs_its_csrf_token(users: None) -> None:
    client = TestClient(app)
    client.get("/login")
    response = client.post("/login", data={"username": "office1", "password": PASSWORDS["office1"]},
                           follow_redirects=False)
    assert response.status_code == 403
    assert "baton_session" not in client.cookies
    # A token made for another browser's login form does not pass either.
    other = TestClient(app)
    token = csrf_of(other.get("/login").text)
    response = client.post("/login", data={"username": "office1", "password": PASSWORDS["office1"],
                                           "csrf": token}, follow_redirects=False)
    assert response.status_code == 403


def test_login_follows_only_local_next_urls(users: None) -> None:
    client = TestClient(app)
    for target, expected in (("/review", "/review"), ("https://evil.example/", "/"), ("//evil.example", "/")):
        token = csrf_of(client.get("/login").text)
        response = client.post("/login", data={"username": "boss1", "password": PASSWORDS["boss1"], "csrf": token,
                                               "next": target}, follow_redirects=False)
        assert response.headers["location"] == expected


def test_every_post_without_the_csrf_token_is_refused(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    office, met = login("office1"), login("met1")
    foreign = csrf_of(login("water1").get("/inbox").text)
    office_posts = {"/logout": {}, "/lang": {"lang": "en"},
                    "/office/incidents": {"type": "flood", "level": "IV", "title": "no token"},
                    f"/office/incidents/{incident_id}/level": {"level": "II", "reason": "no token"}}
    met_posts = {f"/tasks/{task.id}/acknowledge": {}, f"/tasks/{task.id}/complete": FORECAST_FORM,
                 f"/tasks/{task.id}/hand-back": {"reason": "no token"}}
    for client, posts in ((office, office_posts), (met, met_posts)):
        for url, data in posts.items():
            for token in (None, "0" * 64, foreign):
                body = dict(data, **({"csrf": token} if token else {}))
                response = client.post(url, data=body, follow_redirects=False)
                assert response.status_code == 403, url
                assert "表单已过期" in response.text
    # Nothing happened: still logged in, same language, no new incident, level and task untouched.
    assert office.get("/office").status_code == 200 and "应急办工作台" in office.get("/office").text
    with session_scope() as session:
        assert len(session.exec(select(Incident)).all()) == 1
        assert session.exec(select(LevelChange)).first() is None
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned"


def test_logout_revokes_the_session(login: Login) -> None:
    office = login("office1")
    response = post(office, "/logout", {})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert office.get("/office", follow_redirects=False).status_code == 303
    with session_scope() as session:
        assert all(t.revoked_at is not None for t in session.exec(select(AccessToken)).all())


# -- who sees what ------------------------------------------------------------------------------------
def test_pages_redirect_to_login_without_a_session(baton: str) -> None:
    client = TestClient(app)
    for url in ("/", "/office", "/inbox", "/inbox/list", "/review", "/review/incidents/x", "/office/incidents/x",
                "/tasks/x"):
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/login?next="), url
    assert client.get("/office?x=1", follow_redirects=False).headers["location"] == "/login?next=/office%3Fx%3D1"
    assert client.post("/tasks/x/complete", follow_redirects=False).headers["location"] == "/login"


def test_start_page_sends_each_role_to_its_page(login: Login) -> None:
    for username, target in (("office1", "/office"), ("met1", "/inbox"), ("boss1", "/review"), ("root1", "/office")):
        assert login(username).get("/", follow_redirects=False).headers["location"] == target


def test_each_page_renders_for_its_roles_and_reads_as_missing_for_others(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    expected = {
        "/office": {"office1": 200, "root1": 200, "boss1": 404, "met1": 404},
        f"/office/incidents/{incident_id}": {"office1": 200, "root1": 200, "boss1": 404, "met1": 404},
        f"/office/incidents/{incident_id}/progress": {"office1": 200, "boss1": 404, "met1": 404},
        "/inbox": {"met1": 200, "water1": 200, "office1": 200, "boss1": 404},
        "/review": {"office1": 200, "boss1": 200, "root1": 200, "met1": 404},
        f"/review/incidents/{incident_id}": {"office1": 200, "boss1": 200, "root1": 200, "met1": 404},
        f"/tasks/{task.id}": {"met1": 200, "office1": 200, "boss1": 200, "water1": 404},
        "/tasks/no-such-task": {"met1": 404, "office1": 404},
        "/review/incidents/no-such-incident": {"boss1": 404},
    }
    clients = {name: login(name) for name in PASSWORDS}
    for url, by_user in expected.items():
        for username, status in by_user.items():
            response = clients[username].get(url, follow_redirects=False)
            assert response.status_code == status, (url, username, response.status_code)
            assert response.headers["content-type"].startswith("text/html")
            if status == 404:
                assert "页面不存在，或您无权查看" in response.text


def test_only_the_holding_department_acts_on_a_task(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    water, office, manager = login("water1"), login("office1"), login("boss1")
    # Another department: the task reads as missing.
    assert post(water, f"/tasks/{task.id}/complete", FORECAST_FORM, "/inbox").status_code == 404
    # Office and managers may read it, but not act for meteorology.
    assert post(office, f"/tasks/{task.id}/acknowledge", {}).status_code == 403
    assert post(manager, f"/tasks/{task.id}/complete", FORECAST_FORM).status_code == 403
    page = office.get(f"/tasks/{task.id}").text
    assert 'action="/tasks/' not in page and "只有承办该步骤的部门可以办理" in page
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned"


def test_pages_use_no_inline_script_or_style_and_carry_the_csp(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    office, met = login("office1"), login("met1")
    pages = [office.get("/office"), office.get(f"/office/incidents/{incident_id}"), office.get("/review"),
             office.get(f"/review/incidents/{incident_id}"), met.get("/inbox"), met.get(f"/tasks/{task.id}"),
             TestClient(app).get("/login")]
    for response in pages:
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        html = response.text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html
        assert '<link rel="stylesheet" href="/static/baton.css">' in html
    for asset in ("/static/baton.css", "/static/baton.js"):
        assert TestClient(app).get(asset).status_code == 200


# -- office console -----------------------------------------------------------------------------------
def test_trigger_form_opens_an_incident_once(login: Login) -> None:
    office = login("office1")
    console = office.get("/office").text
    form = {"csrf": csrf_of(console), "key": re.search(r'name="key" value="([^"]+)"', console).group(1),  # type: ignore[union-attr]
            "type": "flood", "level": "III", "title": "滨江路积水", "description": "多处积水",
            "location_name": "滨江路", "lat": "31.23", "lon": "121.47", "drill": "1"}
    response = office.post("/office/incidents", data=form, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/office/incidents/[0-9a-f-]{36}\?done=opened", location)
    # The same form sent again (a double click, a retry) opens nothing new.
    again = office.post("/office/incidents", data=form, follow_redirects=False)
    assert again.headers["location"] == location
    with session_scope() as session:
        rows = session.exec(select(Incident)).all()
        assert len(rows) == 1
        incident = rows[0]
        assert (incident.type, incident.level, incident.title, incident.drill) == ("flood", "III", "滨江路积水", True)
        assert (incident.location_name, incident.lat, incident.lon) == ("滨江路", 31.23, 121.47)
        assert incident.opened_by == "user:office1"
        assert [e.kind for e in ledger.read_chain(session, incident.id)] == ["incident.opened", "stage.entered"]
    page = office.get(location)
    assert page.status_code == 200 and incident.code in page.text and "Ⅲ级" in page.text
    assert f"已启动事件 {incident.code}" in page.text
    assert incident.code in office.get("/office").text


def test_trigger_form_names_its_bad_fields_and_opens_nothing(login: Login) -> None:
    office = login("office1")
    response = post(office, "/office/incidents", {"type": "volcano", "level": "V", "title": "  ",
                                                  "lat": "north", "lon": "200", "location_name": "东湖"}, "/office")
    assert response.status_code == 422
    html = response.text
    assert field_error(html, "type") == "请选择事件类型。"
    assert field_error(html, "level") == "请选择响应级别。"
    assert field_error(html, "title") == "此项必填。"
    assert field_error(html, "lat") == "纬度须为-90至90之间的数字。"
    assert field_error(html, "lon") == "经度须为-180至180之间的数字。"
    assert 'value="north"' in html and 'value="东湖"' in html
    with session_scope() as session:
        assert session.exec(select(Incident)).first() is None


def test_office_changes_the_level_with_a_reason(login: Login) -> None:
    incident_id = flood("IV")
    office = login("office1")
    url = f"/office/incidents/{incident_id}"
    refused = post(office, f"{url}/level", {"level": "II", "reason": " "}, url)
    assert refused.status_code == 422 and "请填写原因。" in refused.text
    assert drive.incident(incident_id).level == "IV"
    # Level II is the flood headquarters' commander's to decide: the office alone is refused, naming the position.
    refused = post(office, f"{url}/level", {"level": "II", "reason": "积水扩大到三个街道"}, url)
    assert refused.status_code == 403 and "市防汛抗旱指挥部总指挥" in refused.text
    assert drive.incident(incident_id).level == "IV"
    # At night the office records the commander's verbal order; it stays flagged until the commander confirms.
    drive.person()
    response = post(office, f"{url}/level", {"level": "II", "reason": "积水扩大到三个街道",
                                             "ordered_by": "commander"}, url)
    assert response.status_code == 303 and response.headers["location"] == f"{url}?done=level"
    assert drive.incident(incident_id).level == "II"
    assert "响应级别已调整为Ⅱ级" in office.get(response.headers["location"]).text
    with session_scope() as session:
        change = session.exec(select(LevelChange)).one()
        assert (change.from_level, change.to_level, change.actor) == ("IV", "II", "user:office1")
    page = office.get(url).text
    assert "值班员按commander口头指令代为记录" in page and "user:" not in page
    assert "积水扩大到三个街道" in office.get(f"/review/incidents/{incident_id}").text


def test_office_progress_shows_who_holds_which_step_and_polls_a_fragment(login: Login) -> None:
    incident_id = flood()
    office = login("office1")
    page = office.get(f"/office/incidents/{incident_id}").text
    assert f'data-poll-url="/office/incidents/{incident_id}/progress"' in page
    assert '<script src="/static/baton.js" defer></script>' in page
    fragment = office.get(f"/office/incidents/{incident_id}/progress")
    assert fragment.headers["x-baton-fragment"] == "1"
    assert "<html" not in fragment.text
    row = re.search(r'<tr data-step="rainstorm_forecast" data-status="assigned" data-department="meteorology"',
                    fragment.text)
    assert row and "市气象局" in fragment.text
    # Overdue steps are marked.
    with session_scope() as session:
        task = session.get(DepartmentTask, task_of(incident_id, "rainstorm_forecast").id)
        assert task is not None
        task.due_at = datetime.now(UTC) - timedelta(minutes=5)
        session.add(task)
    fragment = office.get(f"/office/incidents/{incident_id}/progress").text
    assert 'data-department="meteorology" class="is-overdue"' in fragment and "已超时" in fragment


# -- department inbox and task form -------------------------------------------------------------------
def test_inbox_lists_the_departments_tasks_overdue_first(login: Login) -> None:
    first, second = flood(), flood()
    with session_scope() as session:
        late = session.get(DepartmentTask, task_of(second, "rainstorm_forecast").id)
        assert late is not None
        late.due_at = datetime.now(UTC) - timedelta(minutes=1)
        session.add(late)
    met, water = login("met1"), login("water1")
    html = met.get("/inbox").text
    items = re.findall(r'<li class="item( is-overdue)?" data-step="rainstorm_forecast"', html)
    assert items == [" is-overdue", ""]
    codes = re.findall(r"(FLD-\d{4}-\d{4})", html)
    assert codes[0] == drive.incident(second).code and drive.incident(first).code in codes
    assert "rainstorm_forecast" not in water.get("/inbox").text
    fragment = met.get("/inbox/list")
    assert fragment.headers["x-baton-fragment"] == "1" and "<html" not in fragment.text


def test_task_form_with_bad_values_names_each_field_and_changes_nothing(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    before = ledger_count(incident_id)
    met = login("met1")
    url = f"/tasks/{task.id}"
    response = post(met, f"{url}/complete", {"f_rainfall_1h": "sixty", "f_rainfall_24h": "",
                                             "f_warning_colour": "purple", "f_valid_until": "tomorrow",
                                             "note": "先报一部分"}, url)
    assert response.status_code == 422
    html = response.text
    assert "表单填写有误" in html
    assert field_error(html, "rainfall_1h") == "请填写数字，单位：毫米。"
    assert field_error(html, "rainfall_24h") == "此项必填。"
    assert field_error(html, "warning_colour") == "请从所列选项中选择。"
    assert field_error(html, "valid_until") == "请填写日期和时间。"
    # What the user typed is shown again.
    assert 'value="sixty"' in html and 'value="tomorrow"' in html and "先报一部分</textarea>" in html
    after = task_of(incident_id, "rainstorm_forecast")
    assert after.status == "assigned" and after.outputs is None and after.completed_at is None
    assert ledger_count(incident_id) == before


def test_completing_through_the_form_hands_over_to_the_next_department(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    met = login("met1")
    url = f"/tasks/{task.id}"
    acknowledged = post(met, f"{url}/acknowledge", {}, url)
    assert acknowledged.status_code == 303 and acknowledged.headers["location"] == f"{url}?done=acknowledged"
    assert task_of(incident_id, "rainstorm_forecast").acknowledged_at is not None
    response = post(met, f"{url}/complete", {**FORECAST_FORM, "note": "雷达回波增强"}, url)
    assert response.status_code == 303 and response.headers["location"] == f"{url}?done=completed"
    done = task_of(incident_id, "rainstorm_forecast")
    assert done.status == "completed" and done.completed_by == "user:met1"
    # Numbers as numbers, the local time with Beijing's offset.
    assert done.outputs == {"rainfall_1h": 60, "rainfall_24h": 180.5, "warning_colour": "orange",
                            "valid_until": drive.VALID_UNTIL}
    assert done.note == "雷达回波增强"
    with session_scope() as session:
        kinds = [(e.kind, e.actor) for e in ledger.read_chain(session, incident_id)]
    assert ("task.acknowledged", "user:met1") in kinds and ("task.completed", "user:met1") in kinds
    shown = met.get(response.headers["location"]).text
    until = drive.VALID_UNTIL_LOCAL[5:].replace("T", " ")  # MM-DD HH:MM, with the year before it in another year
    assert "已办结。后续部门的任务已分派。" in shown and "橙色" in shown and until in shown
    again = met.post(f"{url}/complete", data={"csrf": csrf_of(shown), **FORECAST_FORM})
    assert again.status_code == 409 and "该任务已不在办理中" in again.text

    # The worker's next turn hands flood_risk_assessment to water affairs, with the forecast shared.
    drive.step(incident_id)
    water = login("water1")
    inbox = water.get("/inbox").text
    assert 'data-step="flood_risk_assessment"' in inbox
    assessment = task_of(incident_id, "flood_risk_assessment")
    page = water.get(f"/tasks/{assessment.id}").text
    assert 'data-step="rainstorm_forecast"' in page and "60 毫米" in page and "180.5 毫米" in page
    assert 'type="checkbox" id="f_river_level_high"' in page
    assert 'type="number" step="1" inputmode="numeric" min="0" id="f_hot_spots"' in page  # a count, from 0
    completed = post(water, f"/tasks/{assessment.id}/complete",
                     {"f_hot_spots": "4", "f_pumps_deployed": "12", "f_river_level_high": "1",
                      "f_hot_spot_map": "DOC-2026-118"}, "/inbox")
    assert completed.status_code == 303
    assert task_of(incident_id, "flood_risk_assessment").outputs == {**ASSESSMENT, "hot_spot_map": "DOC-2026-118"}
    drive.step(incident_id)
    assert task_of(incident_id, "lift_warning").status == "assigned"


def test_office_acts_for_the_emergency_office(login: Login) -> None:
    incident_id = flood()
    drive.complete_step(incident_id, "rainstorm_forecast", None)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id)
    lift = task_of(incident_id, "lift_warning")
    office = login("office1")
    console = office.get("/office").text
    assert f'href="/tasks/{lift.id}"' in console and 'data-step="lift_warning"' in console
    page = office.get(f"/tasks/{lift.id}").text
    assert '<select id="f_decision" name="f_decision" required>' in page
    response = post(office, f"/tasks/{lift.id}/complete", {"f_decision": "respond"}, "/office")
    assert response.status_code == 303
    assert task_of(incident_id, "lift_warning").outputs == {"decision": "respond"}
    assert drive.step(incident_id).stage == "response"


def test_a_task_is_handed_back_only_with_a_reason(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    met = login("met1")
    url = f"/tasks/{task.id}"
    refused = post(met, f"{url}/hand-back", {"reason": "   "}, url)
    assert refused.status_code == 422 and "请填写原因。" in refused.text
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned"
    response = post(met, f"{url}/hand-back", {"reason": "雷达站停电，无法研判"}, url)
    assert response.status_code == 303
    back = task_of(incident_id, "rainstorm_forecast")
    assert back.status == "handed_back" and back.hand_back_reason == "雷达站停电，无法研判"
    assert "雷达站停电，无法研判" in met.get(url).text


def test_every_field_type_is_rendered_and_read_back(login: Login) -> None:
    """Choice lists (one and several), locations with coordinates, attachments and text, on the activate
    command step (location, text) and a plan form built for the test."""
    from api.pages.task_form import parse_outputs
    from process_defs.schema import Step

    step = Step.model_validate({
        "key": "s", "title": {"zh": "步骤", "en": "Step"}, "department": "meteorology", "kind": "human",
        "form": [
            {"key": "kinds", "label": {"zh": "类型", "en": "Kinds"}, "type": "choice", "multiple": True,
             "choices": [{"value": "a", "label": {"zh": "甲", "en": "A"}},
                         {"value": "b", "label": {"zh": "乙", "en": "B"}}]},
            {"key": "place", "label": {"zh": "地点", "en": "Place"}, "type": "location"},
            {"key": "files", "label": {"zh": "附件", "en": "Files"}, "type": "attachment", "multiple": True},
            {"key": "at", "label": {"zh": "时间", "en": "At"}, "type": "datetime"},
            {"key": "ok", "label": {"zh": "是否", "en": "OK"}, "type": "boolean"},
        ]})
    form = FormData([("f_kinds", "a"), ("f_kinds", "b"), ("f_place_name", "东门"), ("f_place_lat", "31.2"),
                     ("f_place_lon", "121"), ("f_files", "F-1\n\nF-2 \n"), ("f_at", "2026-01-05T07:30")])
    outputs, raw = parse_outputs(step, form)
    assert outputs == {"kinds": ["a", "b"], "place": {"name": "东门", "lat": 31.2, "lon": 121},
                       "files": ["F-1", "F-2"], "at": "2026-01-05T07:30:00+08:00", "ok": False}
    assert raw["f_kinds"] == ["a", "b"] and raw["f_place_lat"] == "31.2"

    incident_id = flood()
    drive.complete_step(incident_id, "rainstorm_forecast", None)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    drive.step(incident_id)
    command = task_of(incident_id, "activate_command")
    office = login("office1")
    page = office.get(f"/tasks/{command.id}").text
    assert 'name="f_command_post_name"' in page and 'name="f_command_post_lat"' in page
    # "Use my position" fills latitude and longitude by script; hidden until the script finds it can.
    assert '<button type="button" class="locate" data-locate="f_command_post" hidden>使用当前位置</button>' in page
    assert '<textarea id="f_commander" name="f_commander"' in page
    bad = post(office, f"/tasks/{command.id}/complete", {"f_command_post_name": "市应急指挥中心",
                                                         "f_command_post_lat": "95", "f_command_post_lon": "121",
                                                         "f_commander": "张三"}, "/office")
    assert bad.status_code == 422 and field_error(bad.text, "command_post").startswith("纬度（-90至90）")
    assert 'value="95"' in bad.text and "张三</textarea>" in bad.text
    good = post(office, f"/tasks/{command.id}/complete", {"f_command_post_name": "市应急指挥中心",
                                                          "f_command_post_lat": "31.2", "f_command_post_lon": "121.5",
                                                          "f_commander": "张三"}, "/office")
    assert good.status_code == 303
    assert task_of(incident_id, "activate_command").outputs == {
        "command_post": {"name": "市应急指挥中心", "lat": 31.2, "lon": 121.5}, "commander": "张三"}


# -- review -------------------------------------------------------------------------------------------
def test_review_shows_flow_run_link_timeline_ledger_and_deadlines(login: Login,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_PREFECT_API_URL", "http://127.0.0.1:4200/api/")
    get_settings.cache_clear()
    incident_id = flood()
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        row.flow_run_id = "0b5f6a0e-1111-4222-8333-944455556666"
        session.add(row)
    met = login("met1")
    task = task_of(incident_id, "rainstorm_forecast")
    post(met, f"/tasks/{task.id}/acknowledge", {}, "/inbox")
    post(met, f"/tasks/{task.id}/complete", FORECAST_FORM, "/inbox")
    drive.step(incident_id)
    manager = login("boss1")
    listing = manager.get("/review").text
    link = 'href="http://127.0.0.1:4200/runs/flow-run/0b5f6a0e-1111-4222-8333-944455556666"'
    assert link in listing
    html = manager.get(f"/review/incidents/{incident_id}").text
    assert link in html
    svg = re.search(r"<svg .*?</svg>", html, re.S)
    assert svg is not None
    tree = ET.fromstring(svg.group(0))
    rows = {g.get("data-step"): g for g in tree.iter("{http://www.w3.org/2000/svg}g") if g.get("data-step")}
    assert rows["rainstorm_forecast"].get("data-status") == "completed"
    assert rows["flood_risk_assessment"].get("data-status") == "assigned"
    assert any(p.get("class") == "ack" for p in rows["rainstorm_forecast"].iter("{http://www.w3.org/2000/svg}path"))
    assert '<p class="ledger-status verified alert ok">' in html and "校验链完整" in html
    assert 'data-kind="task.completed"' in html
    deadlines = re.search(r'<tr data-department="meteorology">\s*<td>市气象局</td><td class="num met">1</td>', html)
    assert deadlines is not None


def test_review_reports_a_broken_ledger(login: Login, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.incidents import reads

    incident_id = flood()
    real = reads.ledger_view

    def broken(session: Any, incident: Incident) -> dict[str, Any]:
        return {**real(session, incident), "valid": False, "first_bad_seq": 2, "reason": "hash mismatch"}

    monkeypatch.setattr(reads, "ledger_view", broken)
    html = login("boss1").get(f"/review/incidents/{incident_id}").text
    assert '<p class="ledger-status broken alert error">' in html and "第 2 条记录校验失败：hash mismatch" in html
    assert "ledger-status verified" not in html


# -- language, escaping -------------------------------------------------------------------------------
def test_language_switch_changes_the_page_text(login: Login) -> None:
    office = login("office1")
    assert "应急办工作台" in office.get("/office").text
    response = post(office, "/lang", {"lang": "en", "next": "/office"}, "/office")
    assert response.status_code == 303 and response.headers["location"] == "/office"
    html = office.get("/office").text
    assert "Office console" in html and "Open an incident" in html and '<html lang="en">' in html
    assert "应急办工作台" not in html and "启动事件响应" not in html
    with session_scope() as session:
        assert session.exec(select(User).where(User.username == "office1")).one().lang == "en"
    # Plan texts follow the language too.
    assert "Urban flood and waterlogging" in html
    post(office, "/lang", {"lang": "zh", "next": "/office"}, "/office")
    assert "应急办工作台" in office.get("/office").text
    # The login page is Chinese by default, English on request.
    assert "用户名" in TestClient(app).get("/login").text
    assert "User name" in TestClient(app).get("/login?lang=en").text


def test_user_text_is_escaped_everywhere(login: Login) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    office = login("office1")
    response = post(office, "/office/incidents", {"type": "flood", "level": "IV", "title": evil,
                                                  "description": evil, "location_name": evil,
                                                  "key": "k1"}, "/office")
    assert response.status_code == 303
    incident_id = response.headers["location"].rsplit("/", 1)[1].split("?")[0]
    drive.step(incident_id)
    task = task_of(incident_id, "rainstorm_forecast")
    met = login("met1")
    inbox = met.get("/inbox").text
    assert "<script>alert" not in inbox and escaped in inbox
    post(met, f"/tasks/{task.id}/hand-back", {"reason": evil}, "/inbox")
    pages = {"/office": office, f"/office/incidents/{incident_id}": office, "/review": office,
             f"/review/incidents/{incident_id}": office, f"/tasks/{task.id}": met}
    for url, client in pages.items():
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, url
        assert escaped in page.text, url
    progress = office.get(f"/office/incidents/{incident_id}/progress").text
    assert "<script>alert" not in progress


# -- the timeline picture -----------------------------------------------------------------------------
def _timeline(**overrides: Any) -> dict[str, Any]:
    t0 = datetime(2026, 7, 20, 2, 0, tzinfo=UTC)
    steps = [
        {"task_id": "1", "step": "forecast", "title": {"zh": "预报 <b>&", "en": "Forecast <b>&"}, "stage": "warning",
         "department": "meteorology", "kind": "human", "attempt": 1, "status": "completed", "assigned_at": t0,
         "acknowledged_at": t0 + timedelta(minutes=2), "completed_at": t0 + timedelta(minutes=10),
         "due_at": t0 + timedelta(minutes=60), "escalated_at": None, "escalated_to": None, "overdue": False},
        {"task_id": "2", "step": "assess", "title": {"zh": "研判", "en": "Assess"}, "stage": "warning",
         "department": "water_affairs", "kind": "human", "attempt": 1, "status": "escalated",
         "assigned_at": t0 + timedelta(minutes=10), "acknowledged_at": None, "completed_at": None,
         "due_at": t0 + timedelta(minutes=20), "escalated_at": t0 + timedelta(minutes=20),
         "escalated_to": "emergency_office", "overdue": True},
        {"task_id": "3", "step": "suspend", "title": {"zh": "停课", "en": "Suspend"}, "stage": "warning",
         "department": "education", "kind": "human", "attempt": 1, "status": "skipped", "assigned_at": None,
         "acknowledged_at": None, "completed_at": None, "due_at": None, "escalated_at": None, "escalated_to": None,
         "overdue": False},
    ]
    data = {"incident_id": "i", "code": 'FLD-"1"', "opened_at": t0, "closed_at": None,
            "stages": [{"stage": "warning", "entered_at": t0, "left_at": None}], "steps": steps,
            "level_changes": [{"from": "IV", "to": "III", "actor": "user:x", "reason": "<why>",
                               "at": t0 + timedelta(minutes=15)}]}
    data.update(overrides)
    return data


def test_timeline_svg_draws_rows_due_times_overdue_and_acknowledgements() -> None:
    now = datetime(2026, 7, 20, 2, 40, tzinfo=UTC)
    svg = render_timeline(_timeline(), lang="en", now=now, department_names={"meteorology": "Met <Bureau>"})
    tree = ET.fromstring(svg)  # well-formed: every text escaped
    ns = "{http://www.w3.org/2000/svg}"
    rows = {g.get("data-step"): g for g in tree.iter(f"{ns}g") if g.get("data-step")}
    assert list(rows) == ["forecast", "assess", "suspend"]
    texts = ["".join(t.itertext()) for t in rows["forecast"].iter(f"{ns}text")]
    assert "Forecast <b>&" in texts and "Met <Bureau>" in texts
    assert "Forecast <b>&amp;" not in svg and "Forecast &lt;b&gt;&amp;" in svg
    forecast_bar = next(r for r in rows["forecast"].iter(f"{ns}rect") if r.get("class") == "bar")
    assessment_bar = next(r for r in rows["assess"].iter(f"{ns}rect") if r.get("class") == "bar")
    assert forecast_bar.get("fill") == "#2e7d32" and assessment_bar.get("fill") == "#c62828"
    assert rows["assess"].get("data-overdue") == "true" and "overdue" in (rows["assess"].get("class") or "")
    # The completed bar ends where it was completed; the open one runs to now (the right edge).
    x0 = float(forecast_bar.get("x") or 0)
    assert float(forecast_bar.get("width") or 0) < float(assessment_bar.get("width") or 0) + 1
    assert abs(float(assessment_bar.get("x") or 0) + float(assessment_bar.get("width") or 0) - 932) < 1
    assert x0 < float(assessment_bar.get("x") or 0)
    assert any(p.get("class") == "ack" for p in rows["forecast"].iter(f"{ns}path"))
    assert not any(p.get("class") == "ack" for p in rows["assess"].iter(f"{ns}path"))
    assert [line.get("class") for line in rows["assess"].iter(f"{ns}line")] == ["due"]
    assert any(c.get("class") == "escalated" for c in rows["assess"].iter(f"{ns}circle"))
    # Due beyond the picture's right edge: an arrow head; a skipped step: no bar.
    assert any(p.get("class") == "due due-later" for p in rows["forecast"].iter(f"{ns}path"))
    assert not any(r.get("class") == "bar" for r in rows["suspend"].iter(f"{ns}rect"))
    stages = [g for g in tree.iter(f"{ns}g") if g.get("class") == "stage"]
    assert [g.get("data-stage") for g in stages] == ["warning"]
    assert "Warning" in "".join(stages[0].itertext())
    assert any("IV→III" in "".join(g.itertext()) for g in tree.iter(f"{ns}g") if g.get("class") == "level-change")
    assert "style=" not in svg and "<script" not in svg
    # Chinese labels and Beijing times on the axis.
    zh = render_timeline(_timeline(), lang="zh", now=now)
    assert "预报 &lt;b&gt;&amp;" in zh and "预警" in zh and ">10:00<" in zh


def test_timeline_svg_of_a_new_incident_without_steps() -> None:
    svg = render_timeline(_timeline(steps=[], level_changes=[], stages=[]), now=datetime(2026, 7, 20, 2, 0, 5,
                                                                                        tzinfo=UTC))
    tree = ET.fromstring(svg)
    assert tree.get("class") == "timeline" and tree.get("aria-label") == 'FLD-"1"'


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_page_address_that_does_not_exist_is_a_page_in_the_readers_language(login: Login) -> None:
    """A person who follows a stale link gets a page (in Chinese, or English when asked), never the API's JSON;
    programs (the API, the feeds, files) keep the error format."""
    with TestClient(app) as anonymous:
        missing = anonymous.get("/incidents/no-such-page/anywhere", headers=BROWSER)
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "页面不存在，或您无权查看。" in missing.text and '<html lang="zh' in missing.text
        assert missing.headers.get("Content-Security-Policy")  # the page's security headers too
        english = anonymous.get("/no-such-page?lang=en", headers=BROWSER)
        assert english.status_code == 404 and "There is nothing here, or it is not yours to see." in english.text
        for path in ("/api/no-such-route", "/public/no-such.atom", "/static/no-such.css"):
            answer = anonymous.get(path, headers=BROWSER)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
        # A program that does not ask for HTML gets the error format on a page address too.
        assert anonymous.get("/no-such-page").json()["error"]["code"] == "not_found"
    office = login("office1")
    signed_in = office.get("/no-such-page", headers=BROWSER)
    assert signed_in.status_code == 404 and "页面不存在" in signed_in.text


def test_pages_name_people_as_people_know_them_not_by_actor_ids(login: Login) -> None:
    from core.incidents.service import open_incident

    with session_scope() as session:
        incident_id = open_incident(session, type_key="flood", level="IV", title="城东内涝",
                                    actor="user:office1").incident.id
    drive.step(incident_id)
    forecast = drive.open_tasks(incident_id)["rainstorm_forecast"]
    drive.complete_step(incident_id, "rainstorm_forecast", actor="user:met1")
    office = login("office1")
    page = office.get(f"/office/incidents/{incident_id}").text
    # office1's display name, as the users' list gives it; never the ledger's actor id.
    assert "值班员" in page and "user:office1" not in page
    task_page = login("met1").get(f"/tasks/{forecast.id}").text
    assert "met1 · 市气象局" in task_page and "user:met1" not in task_page
    english = Helpers("en")
    assert english.person("baton") == "Baton (automatic)" and english.person("cli:water_affairs") == (
        "command line (Water Affairs Bureau (flood and drought defence))")
    assert Helpers("zh").person("demo:office") == "演示（市应急管理局（应急指挥部办公室））"
    assert Helpers("zh").person("signal:rain-gauge-7") == "监测信号" and Helpers("zh").person("") == ""


def test_the_office_sees_a_hand_back_with_its_reason_and_reassigns_it_on_the_page(login: Login) -> None:
    from tests import engine_driver as drive

    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    met, office = login("met1"), login("office1")
    assert post(met, f"/tasks/{task.id}/hand-back", {"reason": "雷达站停电，无法研判"}, f"/tasks/{task.id}") \
        .status_code == 303
    page_url = f"/office/incidents/{incident_id}"
    for url in (page_url, "/office"):
        html = office.get(url).text
        assert 'id="handback-alerts"' in html and "雷达站停电，无法研判" in html, url
        assert f'action="/office/tasks/{task.id}/reassign"' in html
    # A department nobody can act for is refused on the page too, and the alert stays.
    refused = post(office, f"/office/tasks/{task.id}/reassign", {"department": "education", "reason": "教育局"},
                   page_url)
    assert refused.status_code == 409 and "该部门没有可办理的在岗人员" in refused.text
    assert 'id="handback-alerts"' in refused.text
    done = post(office, f"/office/tasks/{task.id}/reassign",
                {"department": "water_affairs", "reason": "水务局有雨量数据"}, page_url)
    assert done.status_code == 303 and done.headers["location"] == page_url
    assert 'id="handback-alerts"' not in office.get(page_url).text
    drive.step(incident_id)
    new = task_of(incident_id, "rainstorm_forecast")
    assert (new.department, new.attempt) == ("water_affairs", 2)
    history = login("water1").get(f"/tasks/{new.id}").text
    assert 'id="task-history"' in history and "雷达站停电，无法研判" in history


# -- answers the domain refuses, and the confirmation before sending ----------------------------------------------
def _review(client: TestClient, url: str, values: dict[str, Any]) -> httpx.Response:
    return post(client, f"{url}/complete", {**values, "action": "review"}, url)


def test_task_form_refuses_values_outside_the_domain_beside_each_field_in_chinese(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    before = ledger_count(incident_id)
    met = login("met1")
    url = f"/tasks/{task.id}"
    # -5 mm of rain, and a forecast valid until 2020.
    response = _review(met, url, {**FORECAST_FORM, "f_rainfall_1h": "-5", "f_valid_until": "2020-07-20T18:00"})
    assert response.status_code == 422
    assert field_error(response.text, "rainfall_1h") == "不能小于 0 毫米。"
    assert field_error(response.text, "valid_until") == "不能早于当前时间。"
    assert 'data-error="below_min"' in response.text and 'data-error="in_the_past"' in response.text
    assert 'value="-5"' in response.text and 'value="2020-07-20T18:00"' in response.text  # shown again
    # A forecast a week ahead is beyond the plan's three-day horizon: the latest time allowed is named.
    week = (datetime.now(UTC) + timedelta(days=7)).astimezone(Helpers("zh").zone).strftime("%Y-%m-%dT%H:%M")
    response = _review(met, url, {**FORECAST_FORM, "f_valid_until": week})
    assert response.status_code == 422 and field_error(response.text, "valid_until").startswith("不能晚于 ")
    # More rain in the peak hour than in the whole day: the check between the two fields.
    response = _review(met, url, {**FORECAST_FORM, "f_rainfall_1h": "200", "f_rainfall_24h": "100"})
    assert response.status_code == 422
    assert field_error(response.text, "rainfall_1h") == "不能大于“预计24小时累计雨量”（100 毫米）。"
    # The same refusals without the review step (a form posted straight to complete), and nothing stored.
    response = post(met, f"{url}/complete", {**FORECAST_FORM, "f_rainfall_1h": "-5"}, url)
    assert response.status_code == 422 and field_error(response.text, "rainfall_1h") == "不能小于 0 毫米。"
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned"
    assert ledger_count(incident_id) == before
    # In English for a reader who chose English.
    post(met, "/lang", {"lang": "en", "next": url}, url)
    response = _review(met, url, {**FORECAST_FORM, "f_rainfall_1h": "-5", "f_valid_until": "2020-07-20T18:00"})
    assert field_error(response.text, "rainfall_1h") == "Must be at least 0 mm."
    assert field_error(response.text, "valid_until") == "Must not be in the past."


def test_a_count_takes_whole_numbers_from_zero(login: Login) -> None:
    incident_id = flood()
    drive.complete_step(incident_id, "rainstorm_forecast")  # simulated answers, within the form's bounds
    drive.step(incident_id)
    task = task_of(incident_id, "flood_risk_assessment")
    water = login("water1")
    url = f"/tasks/{task.id}"
    page = water.get(url).text
    assert 'type="number" step="1" inputmode="numeric" min="0" id="f_pumps_deployed"' in page
    response = _review(water, url, {"f_hot_spots": "2.5", "f_pumps_deployed": "-3"})
    assert response.status_code == 422
    assert field_error(response.text, "hot_spots") == "请填写整数：此项为数量。"
    assert field_error(response.text, "pumps_deployed") == "不能小于 0 台。"
    assert task_of(incident_id, "flood_risk_assessment").status == "assigned"


def _hidden(html: str) -> list[tuple[str, str]]:
    return [(name, unescape(value)) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html) if name != "csrf"]


def test_completing_on_the_page_shows_the_answers_to_confirm_before_sending(login: Login) -> None:
    incident_id = flood()
    task = task_of(incident_id, "rainstorm_forecast")
    before = ledger_count(incident_id)
    met = login("met1")
    url = f"/tasks/{task.id}"
    note = "雷达回波增强\n第二行 <b>"
    review = _review(met, url, {**FORECAST_FORM, "note": note})
    assert review.status_code == 200
    html = review.text
    assert "核对填报内容" in html and "尚未提交" in html and "确认提交" in html and "返回修改" in html
    assert "60 毫米" in html and "180.5 毫米" in html and "橙色" in html and "&lt;b&gt;" in html
    # Nothing is stored until it is confirmed.
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned" and ledger_count(incident_id) == before
    hidden = _hidden(html)
    assert ("f_rainfall_1h", "60") in hidden and ("note", note) in hidden
    # "Edit" brings the form back with the answers in it.
    edit = met.post(f"{url}/complete", data={"csrf": csrf_of(html), **dict(hidden), "action": "edit"},
                    follow_redirects=False)
    assert edit.status_code == 200 and 'value="180.5"' in edit.text and "第二行 &lt;b&gt;</textarea>" in edit.text
    assert task_of(incident_id, "rainstorm_forecast").status == "assigned"
    # "Confirm" sends them.
    done = met.post(f"{url}/complete", data={"csrf": csrf_of(html), **dict(hidden), "action": "confirm"},
                    follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{url}?done=completed"
    completed = task_of(incident_id, "rainstorm_forecast")
    assert completed.status == "completed" and completed.note == note
    assert completed.outputs == {"rainfall_1h": 60, "rainfall_24h": 180.5, "warning_colour": "orange",
                                 "valid_until": drive.VALID_UNTIL}


def test_page_times_show_the_year_when_it_is_not_this_year() -> None:
    helpers = Helpers("zh")
    now = datetime.now(UTC)
    assert helpers.when(now) == now.astimezone(helpers.zone).strftime("%m-%d %H:%M")
    last_year = now.replace(year=now.year - 1, month=6, day=1, hour=4)  # noon in Beijing: the same day there
    assert helpers.when(last_year) == last_year.astimezone(helpers.zone).strftime("%Y-%m-%d %H:%M")
    assert helpers.when(last_year, seconds=True).startswith(f"{now.year - 1}-06-01 ")


def test_a_refused_page_names_its_reader_without_reading_them_again(login: Login) -> None:
    """A page a role may not see is a 404 page in the reader's language with their name on it; the rollback of the
    refused request keeps the user and session already read, so the page costs the one statement that found them
    (reading them again would also block the event loop, where the error page is rendered)."""
    from sqlalchemy import event

    from core.platform.db import get_engine

    client = login("met1")
    client.get("/inbox")  # the app's first requests warm what is read once per process (plans, settings)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        refused = client.get("/office")
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    assert refused.status_code == 404
    assert "met1" in refused.text and 'lang="zh' in refused.text
    assert len([s for s in statements if "FROM app_user" in s or "FROM access_token" in s]) == 1, statements
