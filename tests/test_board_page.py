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
