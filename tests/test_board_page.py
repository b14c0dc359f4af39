"""The situation board page: scoped like the API, updated by polling, reports posted with CSRF."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.app import app
from core.platform.db import session_scope
from core.users.service import add_user
from tests import engine_driver as drive
from tests.test_sharing import EVACUATION, to_evacuation


def login(client: TestClient, user: str, password: str) -> str:
    page = client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    data = {"username": user, "password": password}
    if nonce:
        data["csrf"] = nonce.group(1)
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]
    board = client.get("/inbox")
    token = re.search(r'name="csrf" value="([^"]+)"', board.text)
    return token.group(1) if token else ""


def test_board_page_shows_what_the_department_may_see_and_takes_reports(baton: str) -> None:
    incident_id = to_evacuation()
    with session_scope() as session:
        add_user(session, username="police", role="department", department="public_security", password="police-pw-123")
        add_user(session, username="health", role="department", department="health_commission",
                 password="health-pw-123")
    police = TestClient(app)
    csrf = login(police, "police", "police-pw-123")
    page = police.get(f"/incidents/{incident_id}/board")
    # The restricted evacuation figure as the board shows it ("<li>开放安置点: 4 处</li>"): a bare "4" can be
    # part of an id. The number of people moved is published (shared with all), the shelters are not.
    shown = re.findall(rf"<li>开放安置点: {EVACUATION['shelters_open']} 处</li>", page.text)
    public = re.findall(rf"<li>转移人数: {EVACUATION['people_evacuated']} 人</li>", page.text)
    assert page.status_code == 200 and shown and public, page.text
    fragment = police.get(f"/incidents/{incident_id}/board/items")
    assert fragment.headers.get("X-Baton-Fragment") == "1" and shown[0] in fragment.text
    health = TestClient(app)
    login(health, "health", "health-pw-123")
    other = health.get(f"/incidents/{incident_id}/board")
    # The health commission is on the incident (it reads the board) but outside the figures' sharing scope.
    assert other.status_code == 200
    assert not any(item in other.text for item in shown), shown
    assert public[0] in other.text
    refused = police.post(f"/incidents/{incident_id}/reports", data={"text": "roads closed"}, follow_redirects=False)
    assert refused.status_code == 403
    posted = police.post(f"/incidents/{incident_id}/reports", follow_redirects=False,
                         data={"text": "<script>alert(1)</script> 封闭道路 3 条", "csrf": csrf,
                               "classification": "internal", "share_with": ""})
    assert posted.status_code == 303
    again = police.get(f"/incidents/{incident_id}/board/items").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 封闭道路 3 条" in again and "<script>alert(1)" not in again
    bad = police.post(f"/incidents/{incident_id}/reports", data={"text": "x", "csrf": csrf,
                                                                 "classification": "restricted", "share_with": ""})
    assert bad.status_code == 422 and "restricted" in bad.text
    assert drive.incident(incident_id).status == "open"


def _visible_text(html: str) -> str:
    """What a reader reads: the page without its tags, attributes, scripts and styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def _board_section(html: str) -> str:
    return html[html.index('<div id="board"'):html.index("</ol>", html.index('<ol class="board">'))]


def test_the_board_is_newest_first_and_its_key_figures_are_scoped_per_reader(baton: str) -> None:
    from core.incidents.models import Incident
    from core.sharing.board import key_figures
    from tests.test_sharing import board_items

    incident_id = to_evacuation()
    for reader in (None, "public_security", "health_commission"):
        moments = [item["at"] for item in board_items(incident_id, reader)]
        assert moments == sorted(moments, reverse=True) and len(moments) > 3, reader
    totals = {reader: {f.key: f.total for f in key_figures(board_items(incident_id, reader))}
              for reader in (None, "public_security", "health_commission")}
    # The office sees everything; the police the evacuation (restricted to them), not the water rescue (restricted
    # to the office and the health commission); the health commission the rescue, not the shelters.
    assert totals[None]["moved"] == 320 and totals[None]["shelters_open"] == 4 and totals[None]["rescued"] == 3
    assert totals["public_security"]["shelters_open"] == 4 and "rescued" not in totals["public_security"]
    assert totals["health_commission"]["moved"] == 320 and totals["health_commission"]["rescued"] == 3
    assert "shelters_open" not in totals["health_commission"]
    with session_scope() as session:
        add_user(session, username="police2", role="department", department="public_security",
                 password="police-pw-123")
        add_user(session, username="health2", role="department", department="health_commission",
                 password="health-pw-123")
        code = session.get(Incident, incident_id).code  # type: ignore[union-attr]
    police, health = TestClient(app), TestClient(app)
    login(police, "police2", "police-pw-123")
    login(health, "health2", "health-pw-123")
    police_page = police.get(f"/incidents/{incident_id}/board").text
    health_page = health.get(f"/incidents/{incident_id}/board").text
    assert 'data-figure="shelters_open" data-total="4"' in police_page
    assert 'data-figure="moved" data-total="320"' in health_page
    # Not in the summary, not in its sources, not anywhere on the page.
    assert 'data-figure="shelters_open"' not in health_page and "开放安置点" not in health_page
    assert 'data-figure="rescued"' not in police_page
    # The page lists the newest first too.
    shown = re.findall(r'data-kind="\w+" data-id="([^"]+)"', police_page)
    assert shown == [item["id"] for item in board_items(incident_id, "public_security")]
    # The API gives the same figures, scoped the same way; `since` limits the items, not the figures.
    from tests.api_server import issued_token, make_user

    for name, department in (("police_api", "public_security"), ("health_api", "health_commission")):
        make_user(name, "department", department)
        body = TestClient(app).get(f"/api/incidents/{code}/board?since=2099-01-01T00:00:00%2B00:00",
                                   headers={"Authorization": f"Bearer {issued_token(name)}"}).json()
        assert body["items"] == []
        assert {f["key"]: f["total"] for f in body["figures"]} == totals[department], name


def test_a_chinese_board_words_its_values_for_people(baton: str) -> None:
    from core.incidents.models import Incident
    from core.plans.store import plan_for_version
    from tests.test_sharing import _released, board_items

    incident_id = to_evacuation()
    identifier = _released(incident_id, "board-words").identifier
    with session_scope() as session:
        add_user(session, username="office9", role="office", password="office-pw-123")
        plan = plan_for_version(session, session.get(Incident, incident_id).plan_version_id)  # type: ignore[union-attr]
    office = TestClient(app)
    login(office, "office9", "office-pw-123")
    html = office.get(f"/incidents/{incident_id}/board").text
    text = _visible_text(_board_section(html))
    assert "True" not in text and "False" not in text and "None" not in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", text), "an ISO timestamp on the page"
    assert "{" not in text and "[" not in text, "a Python dict or list printed raw"
    assert "暴雨预警" in text and "发布" in text  # the warning by its headline, not its CAP identifier
    assert identifier not in text
    assert "internal" not in text and "restricted" not in text and "public" not in text
    shown_any_choice = False
    for item in board_items(incident_id, None):
        if item["kind"] != "step":
            continue
        step = plan.step(item["step"])
        for f in item["fields"]:
            form_field = step.field(f["key"])
            assert form_field is not None
            # Labelled in Chinese (an English label never heads a value on a Chinese page).
            assert f"<li>{form_field.label.zh}: " in html and f"<li>{form_field.label.en}:" not in html, f["key"]
            if form_field.choices and isinstance(f["value"], str):
                label = next(c.label.zh for c in form_field.choices if c.value == f["value"])
                assert f"{form_field.label.zh}: {label}" in text, (f["key"], label)
                assert not re.search(rf"(?<![\w-]){re.escape(f['value'])}(?![\w-])", text), f["value"]
                shown_any_choice = True
            if isinstance(f["value"], bool):
                assert f"{form_field.label.zh}: {'是' if f['value'] else '否'}" in text
    assert shown_any_choice


def test_a_report_is_shared_with_departments_chosen_by_name(baton: str) -> None:
    from tests.test_sharing import board_items

    incident_id = to_evacuation()
    with session_scope() as session:
        add_user(session, username="police3", role="department", department="public_security",
                 password="police-pw-123")
    police = TestClient(app)
    csrf = login(police, "police3", "police-pw-123")
    page = police.get(f"/incidents/{incident_id}/board").text
    start = page.index(f'action="/incidents/{incident_id}/reports"')
    form = page[start:page.index("</form>", start)]
    # Checkboxes named by the departments' names, not a box to type codes into.
    assert '<input name="share_with"' not in form
    assert re.search(r'<input type="checkbox" name="share_with" value="health_commission"[^>]*> 市卫生健康委员会', form)
    assert 'value="public_security"' not in form  # not the poster's own department
    posted = police.post(f"/incidents/{incident_id}/reports", follow_redirects=False,
                         data={"text": "东岸封路 2 处", "csrf": csrf, "classification": "restricted",
                               "share_with": ["health_commission", "civil_affairs"]})
    assert posted.status_code == 303, posted.text[:500]

    def sees(reader: str) -> bool:
        return any(i["kind"] == "report" and i["text"] == "东岸封路 2 处" for i in board_items(incident_id, reader))

    assert sees("health_commission") and sees("public_security")
    assert not sees("fire_rescue")
