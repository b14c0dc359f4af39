"""Targeted security cases, through the app in process, over real HTTP where the server's reading of the body
matters, and with a real worker (and uvicorn process) where a flow must run or logs be read:

- bad input: oversized bodies, huge fields, deep JSON nesting, invalid UTF-8 — refused with clear errors in
  the error format, never a 5xx;
- template injection: user text such as "{{7*7}}" or "<script>" stays literal in pages, CAP XML, the public
  feed and situation reports;
- a malformed plan in BATON_PLANS_DIR never crashes a worker: it logs, and the other incidents go on;
- access: tokens expire and can be revoked, page sessions rotate on login, five failed logins lock the
  account for their address (answered as a wrong password is, audited, counted exactly under concurrent
  guesses), too many failures from one address over many accounts throttle it (429 login_throttled with
  Retry-After), every page form needs its CSRF token, security headers everywhere;
- secrets (the secret key, an endpoint's signing secret, passwords, tokens) never reach a log or the
  database in the clear; logins and administrative changes leave an audit trail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlmodel import col, select

from api.app import app
from core.incidents.models import Incident
from core.plans.models import PlanVersion
from core.platform.db import session_scope
from core.platform.settings import PROCESS_DEFS_DIR, get_settings
from core.users.models import AuditEvent, User
from flows.stack import free_port
from tests import engine_driver as drive
from tests.api_server import (
    FORECAST,
    NEW_INCIDENT,
    PASSWORD,
    Api,
    audit_actions,
    csrf_of,
    error_of,
    fingerprint,
    flood,
    issued_token,
    make_user,
    page_client,
    said_in_english,
    standard_api,
)
from tests.conftest import Say, StartWorker, copy_plans
from tests.fixtures.api import ApiWith, ProcessApi, wait_ready
from tests.fixtures.clock import Clock
from tests.receiver import running_receiver
from tests.servers import PrefectServer

CSP_NEEDS = ("frame-ancestors 'none'", "default-src 'self'")


def assert_still_up(api: Api) -> None:
    assert api.call("office", "GET", "/api/incidents").status_code == 200
    assert api.server.alive(), api.server.log_tail()
    assert "Traceback" not in api.server.log_tail(), api.server.log_tail()


# -- bad input ----------------------------------------------------------------------------------------------------


def test_oversized_bodies_and_huge_fields_are_refused_with_clear_errors(loopback_api: Api) -> None:
    """Over real HTTP: uvicorn hands the body over as it arrives, chunked or not, and the limit is met there."""
    api = loopback_api
    incident = flood("forecast")
    task = incident.tasks["rainstorm_forecast"]
    before = fingerprint()
    big = 1_000_001  # over the default BATON_MAX_BODY_BYTES
    for who, path, content, kind in (
            ("office", "/api/incidents", b"{" + b" " * big + b"}", "application/json"),
            ("office", "/api/incidents", json.dumps({**NEW_INCIDENT, "title": "x" * big}).encode(), "application/json"),
            (None, "/api/auth/token", b"username=office&password=" + b"p" * big, "application/x-www-form-urlencoded")):
        response = api.call(who, "POST", path, content=content, headers={"Content-Type": kind})
        error = error_of(response, 413, "body_too_large")
        assert "1000000 bytes" in said_in_english(error)
    # A page's form gets a page that says so (in the reader's language), not a JSON error.
    for who, path, content in ((None, "/login", b"username=office&password=" + b"p" * big),
                               ("office", "/office/incidents", b"title=" + b"t" * big),
                               (None, "/login?lang=en", b"username=office&password=" + b"p" * big)):
        response = api.call(who, "POST", path, content=content,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413 and response.headers["content-type"].startswith("text/html"), path
        said = "What was sent is too large" if "lang=en" in path else "提交的内容过大"
        assert said in response.text and "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    # A multipart upload with one huge part, to a form the pages read; and one sent in chunks, with no length.
    response = api.call(None, "POST", "/login", files={"username": (None, "office"),
                                                       "password": ("p.bin", b"\0" * big)})
    assert response.status_code == 413 and "提交的内容过大" in response.text

    def chunks() -> Iterator[bytes]:
        for _ in range(big // 65_536 + 1):
            yield b"a" * 65_536

    chunked = api.call("office", "POST", "/api/incidents", content=chunks(),
                       headers={"Content-Type": "application/json"})
    error_of(chunked, 413, "body_too_large")
    # Under the body limit, each field has its own, named in the error.
    huge = "长" * 20_000
    cases = [("office", "/api/incidents", {**NEW_INCIDENT, "title": huge}, "title"),
             ("office", "/api/incidents", {**NEW_INCIDENT, "description": huge}, "description"),
             ("office", "/api/incidents", {**NEW_INCIDENT, "location": {"name": huge}}, "location.name"),
             ("office", f"/api/incidents/{incident.id}/level", {"level": "III", "reason": huge}, "reason"),
             ("meteorology", f"/api/tasks/{task}/complete", {"outputs": FORECAST, "note": huge}, "note"),
             ("meteorology", f"/api/tasks/{task}/hand-back", {"reason": huge}, "reason"),
             ("meteorology", f"/api/incidents/{incident.id}/reports", {"text": huge}, "text")]
    for who, path, body, named in cases:
        error = error_of(api.call(who, "POST", path, json=body), 422, "invalid_request")
        assert named in {d["field"] for d in error["details"]}, (path, error)
    error_of(api.call("office", "POST", "/api/incidents", json=NEW_INCIDENT, headers={"Idempotency-Key": "k" * 5000}),
             422, "invalid_request")
    # A huge text field in a page form: the form comes back naming it; nothing is opened.
    office = page_client(api.server, "office")
    response = office.post("/office/incidents", data={"csrf": csrf_of(office, "/office"), "type": "flood",
                                                      "level": "IV", "title": huge, "key": "huge"})
    assert response.status_code == 422, response.status_code
    assert "<form" in response.text
    assert fingerprint() == before
    assert_still_up(api)


def nested(depth: int, leaf: Any = 1) -> str:
    return "[" * depth + json.dumps(leaf) + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [64, 1_000, 100_000])
def test_deep_json_nesting_is_refused_not_crashed(api: Api, depth: int) -> None:
    incident = flood("forecast")
    task = incident.tasks["rainstorm_forecast"]
    before = fingerprint()
    bodies = [
        ("office", "/api/incidents", nested(depth)),
        ("office", "/api/incidents", '{"type":"flood","level":"IV","title":' + nested(depth, "t") + "}"),
        ("meteorology", f"/api/tasks/{task}/complete", '{"outputs":' + nested_object(depth) + "}"),
        ("meteorology", f"/api/tasks/{task}/complete",
         '{"outputs":{"rainfall_1h":' + nested(depth) + "}}"),
        ("meteorology", f"/api/incidents/{incident.id}/reports", '{"text":"x","figures":' + nested_object(depth) + "}"),
        (None, "/api/signals", nested_object(depth)),
    ]
    for who, path, raw in bodies:
        response = api.call(who, "POST", path, content=raw.encode(), headers={"Content-Type": "application/json"})
        # Shallow enough to parse: refused by validation; deeper: refused by the parser, before any handler.
        if depth <= 64:
            error = error_of(response, 422)
            assert error["code"] in ("invalid_request", "form_invalid"), (path, error)
        else:
            error_of(response, 400, "bad_request")
    assert fingerprint() == before
    assert_still_up(api)


def test_invalid_utf8_is_refused_with_clear_errors(api: Api) -> None:
    incident = flood("forecast")
    task = incident.tasks["rainstorm_forecast"]
    before = fingerprint()
    bad = b'{"type":"flood","level":"IV","title":"\xff\xfe\xc3\x28"}'
    for who, path, raw, kind in (
            ("office", "/api/incidents", bad, "application/json"),
            ("office", "/api/incidents", b'{"type":"flood","level":"IV","title":"\\udcff"}', "application/json"),
            ("meteorology", f"/api/tasks/{task}/complete", b'{"outputs":{"rainfall_1h":"\xff"}}', "application/json"),
            ("office", f"/api/incidents/{incident.id}/level", b'{"level":"III","reason":"\xc0\xaf"}',
             "application/json"),
            (None, "/api/auth/token", b"username=\xff\xfe&password=\xff", "application/x-www-form-urlencoded")):
        response = api.call(who, "POST", path, content=raw, headers={"Content-Type": kind})
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
        error_of(response, response.status_code)
    # Invalid UTF-8 in the path and the query: read as text with replacement characters, which name nothing
    # (a 404, an empty list); never a crash.
    for who, path, status in (("office", "/api/incidents/%ff%fe", 404), ("office", "/api/tasks?incident=%ff", 404),
                              ("office", "/api/incidents?type=%c0%af", 200),
                              ("meteorology", "/api/tasks/%ed%a0%80", 404)):
        response = api.call(who, "GET", path)
        assert response.status_code == status, (path, response.status_code, response.text[:300])
        if status == 404:
            error_of(response, 404, "not_found")
        else:
            assert response.json()["items"] == []
    assert fingerprint() == before, "a refused request changed something"
    # In a header, the bytes are read as Latin-1 text: a key like any other.
    response = api.call("office", "POST", "/api/incidents", json=NEW_INCIDENT,
                        headers={"Idempotency-Key": b"\xff\xfe-key"})
    assert response.status_code == 201, response.text[:300]
    # A page form's invalid UTF-8 is read as Latin-1 too: the incident opens with that text, not a crash.
    office = page_client(api.server, "office")
    raw = b"csrf=" + csrf_of(office, "/office").encode() + b"&type=flood&level=IV&title=\xff\xfe&key=utf8"
    response = office.post("/office/incidents", content=raw,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 303, response.status_code
    opened = response.headers["location"].rsplit("/", 1)[1].split("?")[0]
    assert drive.incident(opened).title == b"\xff\xfe".decode("latin-1")
    assert fingerprint()[1] == before[1] + 2  # those two incidents, and no other
    assert_still_up(api)


# -- template injection ---------------------------------------------------------------------------------------------

EVIL = "{{7*7}} ${7*7} {% raw %}<script>alert(1)</script>{{ config }}"
ESCAPED = "{{7*7}} ${7*7} {% raw %}&lt;script&gt;alert(1)&lt;/script&gt;{{ config }}"


def test_user_text_stays_literal_in_pages_cap_xml_and_reports(api: Api) -> None:
    response = api.call("office", "POST", "/api/incidents",
                        json={"type": "flood", "level": "IV", "title": EVIL, "description": EVIL,
                              "location": {"name": EVIL}})
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    assert response.json()["title"] == EVIL
    drive.step(incident_id)
    task_id = drive.open_tasks(incident_id)["rainstorm_forecast"].id
    assert api.call("meteorology", "POST", f"/api/incidents/{incident_id}/reports",
                    json={"text": EVIL, "figures": {"x": 1}, "share_with": ["all"]}).status_code == 201
    warning = {"event": {"zh": EVIL, "en": EVIL}, "headline": {"zh": EVIL, "en": EVIL},
               "instruction": {"zh": EVIL, "en": EVIL}}
    alert = api.call("office", "POST", f"/api/incidents/{incident_id}/warnings", json=warning)
    assert alert.status_code == 201, alert.text
    assert alert.json()["texts"]["headline"] == {"zh": EVIL, "en": EVIL}  # the office's words, taken as written
    # Released (审核签发): the office reviews it and the emergency management bureau's director signs it off.
    make_user("em_director", "office", positions=["bureau_director@emergency_office"])
    api.tokens["em_director"] = issued_token("em_director")
    base = f"/api/incidents/{incident_id}/warnings/{alert.json()['id']}"
    assert api.call("office", "POST", f"{base}/review").status_code == 200
    assert api.call("em_director", "POST", f"{base}/sign").json()["published"] is True
    # Pages: escaped once, never evaluated.
    office = page_client(api.server, "office")
    met = page_client(api.server, "meteorology")
    pages = {f"/office/incidents/{incident_id}": office, f"/review/incidents/{incident_id}": office, "/office": office,
             "/review": office, "/inbox": met, f"/tasks/{task_id}": met, f"/incidents/{incident_id}/board": met,
             f"/incidents/{incident_id}/board/items": met}
    for url, client in pages.items():
        page = client.get(url)
        assert page.status_code == 200, (url, page.status_code)
        assert "<script>alert(1)" not in page.text, url
        assert ESCAPED in page.text, url  # shown, escaped once, the template syntax left as it was typed
    # CAP XML (published: not a drill) and the Atom feed: the text is the element's text, exactly.
    alert_id = alert.json()["id"]
    xml = api.server.get(f"/public/warnings/{alert_id}.xml")
    assert xml.status_code == 200
    root = ET.fromstring(xml.content)
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    texts = [el.text or "" for el in root.iter() if el.tag.endswith(("headline", "description", "event",
                                                                       "instruction", "areaDesc"))]
    assert any(EVIL in t for t in texts) and all("49" not in t.replace(EVIL, "") for t in texts if EVIL in t)
    assert root.find("cap:info/cap:event", ns) is not None
    assert b"<script>" not in xml.content
    feed = api.server.get("/public/warnings.atom")
    assert feed.status_code == 200 and b"<script>" not in feed.content
    assert any(EVIL in (el.text or "") for el in ET.fromstring(feed.content).iter())
    # Situation report and board (JSON): literal.
    sitrep = api.call("office", "GET", f"/api/incidents/{incident_id}/sitrep").json()
    assert sitrep["incident"]["title"] == EVIL
    assert EVIL in json.dumps(sitrep, ensure_ascii=False)
    board = api.call("office", "GET", f"/api/incidents/{incident_id}/board").json()
    assert any(item.get("text") == EVIL for item in board["items"]), board["items"]


# -- a malformed plan ------------------------------------------------------------------------------------------------


@pytest.fixture
def broken_plans(tmp_path: Path) -> Path:
    plans = copy_plans(tmp_path / "plans", "flood")
    shutil.copy(PROCESS_DEFS_DIR / "signals.yaml", plans / "signals.yaml")
    (plans / "broken.yaml").write_text((Path(__file__).parent / "broken_plans" / "malformed_yaml.yaml").read_text())
    return plans


@dataclass
class BrokenWorker:
    proc: subprocess.Popen[bytes]
    log: Path
    bad_id: str
    good_id: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, predicate: Any, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate():
            assert self.proc.poll() is None, f"the worker died:\n{self.text()[-3000:]}"
            time.sleep(0.2)
        assert predicate(), f"timed out waiting for {what}:\n{self.text()[-3000:]}"


@pytest.fixture
def broken_worker(baton: str, workers: StartWorker, broken_plans: Path, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> BrokenWorker:
    """A worker with a malformed plan file among its plans, and two incidents: one whose frozen plan is
    malformed (as a bad edit that reached the database would be), one good."""
    monkeypatch.setenv("BATON_PLANS_DIR", str(broken_plans))
    get_settings.cache_clear()
    from core.plans.store import forget_plans

    forget_plans()
    bad_id = drive.open_("flood")
    with session_scope() as session:
        garbage = PlanVersion(type="flood", version=99, digest="f" * 64, content="key: flood\nstages: [unclosed")
        session.add(garbage)
        session.flush()
        incident = session.get(Incident, bad_id)
        assert incident is not None and garbage.id is not None
        incident.plan_version_id = garbage.id
        session.add(incident)
    good_id = drive.open_("flood")
    proc = workers("w-broken", BATON_PLANS_DIR=str(broken_plans))
    return BrokenWorker(proc, tmp_path / "w-broken.log", bad_id, good_id)


@pytest.mark.prefect
def test_a_malformed_plan_never_crashes_the_worker(broken_worker: BrokenWorker, broken_plans: Path,
                                                  api_with: ApiWith) -> None:
    worker = broken_worker
    worker.wait(lambda: "rainstorm_forecast" in drive.open_tasks(worker.good_id), "the good incident's first step")
    drive.complete_step(worker.good_id, "rainstorm_forecast", FORECAST)
    worker.wait(lambda: "flood_risk_assessment" in drive.open_tasks(worker.good_id), "the good incident's next step")
    # The broken incident is logged, not fatal: the worker is alive, and the good incident went on.
    worker.wait(lambda: "PlanInvalid" in worker.text(), "the malformed plan to be logged")
    assert worker.proc.poll() is None
    assert drive.tasks(worker.bad_id) == {}
    # The API: the malformed type cannot be opened (a clear 422), the good ones still can.
    with api_with({"BATON_PLANS_DIR": str(broken_plans)}) as server:
        api = standard_api(server, {"office": ("office", None)})
        error = error_of(api.call("office", "POST", "/api/incidents", json={**NEW_INCIDENT, "type": "broken"}), 422)
        assert error["code"] in ("plan_invalid", "unknown_incident_type"), error
        assert api.call("office", "POST", "/api/incidents", json=NEW_INCIDENT).status_code == 201
        assert api.call("office", "GET", "/api/process-defs/flood").status_code == 200


@pytest.mark.prefect
def test_a_failing_incident_is_named_in_the_log_and_retried_with_backoff(broken_worker: BrokenWorker) -> None:
    """Each failure names the incident and is retried after a longer pause (2 s, then 4 s, …): the worker neither
    gives the incident up nor spins on it."""
    worker = broken_worker

    def failures() -> list[str]:
        return [line for line in worker.text().splitlines() if " failed, attempt " in line and worker.bad_id in line]

    worker.wait(lambda: len(failures()) >= 2, "the broken incident's second attempt")
    first, second = failures()[:2]
    code = drive.incident(worker.bad_id).code
    assert code in first and "attempt 1; retrying in 2 s" in first, first
    assert "attempt 2; retrying in 4 s" in second, second

    def logged_at(line: str) -> datetime:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    assert (logged_at(second) - logged_at(first)).total_seconds() >= 2, "retried before its 2-second pause"


def test_one_malformed_plan_does_not_hide_the_others_from_the_plan_list(api_with: ApiWith, broken_plans: Path) -> None:
    with api_with({"BATON_PLANS_DIR": str(broken_plans)}) as server:
        api = standard_api(server, {"office": ("office", None)})
        response = api.call("office", "GET", "/api/process-defs")
        assert response.status_code == 200, response.text[:300]
        assert "flood" in {p["key"] for p in response.json()}


def test_one_malformed_plan_does_not_take_the_office_console_down(api_with: ApiWith, broken_plans: Path) -> None:
    with api_with({"BATON_PLANS_DIR": str(broken_plans)}) as server:
        make_user("office", "office")
        office = page_client(server, "office").get("/office")
        assert office.status_code == 200, office.status_code
        assert 'value="flood"' in office.text
        # The office is told which file is broken, so that it can be fixed.
        broken = sorted(set(p.stem for p in broken_plans.glob("*.yaml")) - {"departments", "signals", "flood"})
        assert broken and all(f"<code>{key}.yaml</code>" in office.text for key in broken), broken


# -- access ---------------------------------------------------------------------------------------------------------


def test_tokens_expire_and_can_be_revoked(api: Api, clock: Clock) -> None:
    short = issued_token("office", ttl=timedelta(seconds=2))
    assert api.server.request("GET", "/api/auth/me", short).status_code == 200
    clock.advance(seconds=1.8)
    assert api.server.request("GET", "/api/auth/me", short).status_code == 200
    clock.advance(seconds=0.4)
    error_of(api.server.request("GET", "/api/auth/me", short), 401, "not_authenticated")
    # Revoked: that token only; the user's others still work.
    one, two = issued_token("meteorology"), issued_token("meteorology")
    assert api.server.request("POST", "/api/auth/revoke", one).status_code == 204
    error_of(api.server.request("GET", "/api/tasks", one), 401, "not_authenticated")
    error_of(api.server.request("POST", "/api/auth/revoke", one), 401, "not_authenticated")
    assert api.server.request("GET", "/api/tasks", two).status_code == 200
    # A page session is not a bearer token and expires the same way.
    with session_scope() as session:
        from core.users.models import User
        from core.users.service import issue_token, revoke_all

        user = session.exec(select(User).where(User.username == "meteorology")).one()
        page_token = issue_token(session, user=user, kind="session", ttl=timedelta(seconds=1)).token
    error_of(api.server.request("GET", "/api/tasks", page_token), 401)
    assert api.server.get("/inbox", cookies={"baton_session": page_token}).status_code == 200
    clock.advance(seconds=1.2)
    response = api.server.get("/inbox", cookies={"baton_session": page_token})
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with session_scope() as session:
        assert revoke_all(session, user_id=user.id, actor="user:admin") >= 1
    error_of(api.server.request("GET", "/api/tasks", two), 401)


def test_page_sessions_rotate_on_login(api: Api) -> None:
    client = page_client(api.server, "office")
    first = client.cookies.get("baton_session")
    assert client.get("/office").status_code == 200
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"username": "office", "password": PASSWORD, "csrf": token, "next": "/"})
    assert response.status_code == 303
    second = client.cookies.get("baton_session")
    assert second and second != first
    stale = api.server.get("/office", cookies={"baton_session": first or ""})
    assert stale.status_code == 303 and stale.headers["location"].startswith("/login")
    assert client.get("/office").status_code == 200
    # Logging out ends the session.
    assert client.post("/logout", data={"csrf": csrf_of(client, "/office")}).status_code == 303
    assert api.server.get("/office", cookies={"baton_session": second}).status_code == 303


def test_five_failed_logins_lock_the_account_and_are_audited(api: Api) -> None:
    for _ in range(5):
        error_of(api.server.post("/api/auth/token", data={"username": "manager", "password": "wrong-password"}),
                 401, "authentication_failed")
    # Now even the right password is refused from this address, through the API and through the login page, in
    # the words a wrong password gets (tests/test_abuse.py: other addresses, the back-off, a missing account).
    error_of(api.server.post("/api/auth/token", data={"username": "manager", "password": PASSWORD}),
             401, "authentication_failed")
    client = api.server.client()
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"username": "manager", "password": PASSWORD, "csrf": token})
    assert response.status_code == 401 and "baton_session" not in client.cookies
    actions = [a for _, a, _ in audit_actions("manager")]
    assert actions.count("login.failed") == 5 and actions.count("login.locked") == 2, actions
    assert "login" not in actions
    # Other accounts are not locked.
    assert api.server.post("/api/auth/token", data={"username": "office", "password": PASSWORD}).status_code == 200


@pytest.fixture
def throttled_api(api_with: ApiWith) -> Iterator[Api]:
    with api_with({"BATON_LOGIN_FAILURES_PER_SOURCE": "6"}) as server:
        yield standard_api(server)


def test_guessing_across_accounts_from_one_address_is_throttled(throttled_api: Api) -> None:
    api = throttled_api
    # One wrong guess at each of six names (accounts and names that do not exist): no account reaches its
    # lockout, but the address has made six failures.
    for name in ("office", "manager", "admin", "meteorology", "no-such-user", "water_affairs"):
        error_of(api.server.post("/api/auth/token", data={"username": name, "password": "wrong-password"}),
                 401, "authentication_failed")
    # Now the right password is refused too, whichever account, through the API and the login page.
    response = api.server.post("/api/auth/token", data={"username": "public_security", "password": PASSWORD})
    error = error_of(response, 429, "login_throttled")
    assert "try again later" in said_in_english(error)
    assert 590 <= int(response.headers["retry-after"]) <= 600, response.headers
    client = api.server.client()
    response = client.post("/login", data={"username": "office", "password": PASSWORD, "csrf": csrf_of(client,
                                                                                                      "/login")})
    assert response.status_code == 429 and "baton_session" not in client.cookies
    actions = [action for _, action, _ in audit_actions()]
    assert actions.count("login.failed") == 6 and actions.count("login.throttled") == 2, actions
    assert "login" not in actions
    # No account was locked, and tokens already issued go on working: the address is what waits.
    with session_scope() as session:
        assert all(u.locked_until is None for u in session.exec(select(User)).all())
    assert api.call("office", "GET", "/api/incidents").status_code == 200


@pytest.mark.parametrize("db_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_concurrent_wrong_passwords_are_counted_one_by_one(api: Api) -> None:
    """Sixteen guesses at once at one account from one address: five are checked (and counted), the rest find it
    locked (and are answered alike). If the failure count were read and written without a lock, concurrent
    guesses would each see the same count and more than five would be tried."""
    def guess(_: int) -> int:
        return api.server.post("/api/auth/token", data={"username": "manager", "password": "wrong-password"}
                               ).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = Counter(pool.map(guess, range(16)))
    assert statuses == {401: 16}, statuses
    actions = [action for _, action, _ in audit_actions("manager")]
    assert actions.count("login.failed") == 5 and actions.count("login.locked") == 11, actions


def page_forms() -> list[str]:
    """Every POST route of the pages (not the JSON API): each must check its CSRF token."""
    from fastapi import routing

    # FastAPI 0.150 keeps included routers as wrappers in `app.routes`; `iter_route_contexts` flattens them.
    flatten = getattr(routing, "iter_route_contexts", None)
    out = set()
    for route in flatten(app.routes) if flatten else app.routes:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if isinstance(original, APIRoute) and path and "POST" in methods \
                and not path.startswith(("/api/", "/public/")):
            out.add(path)
    return sorted(out)


def test_an_api_write_on_a_page_session_needs_the_csrf_header(api: Api) -> None:
    """The browser sends the session cookie by itself, so a write to the API on that cookie alone is refused;
    with the page's CSRF token in X-CSRF-Token it goes through. Bearer tokens are not sent by a browser on its
    own and need no such header; reads on the cookie (report downloads, CSV) need none either."""
    client = page_client(api.server, "office")
    before = fingerprint()
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": ""}):
        response = client.post("/api/incidents", json=NEW_INCIDENT, headers=headers)
        error_of(response, 403, "csrf_failed")
    # A CSRF token of another session does not do either.
    other = page_client(api.server, "admin")
    error_of(client.post("/api/incidents", json=NEW_INCIDENT, headers={"X-CSRF-Token": csrf_of(other, "/office")}),
             403, "csrf_failed")
    assert fingerprint() == before, "a refused write changed something"
    assert client.get("/api/incidents").status_code == 200
    response = client.post("/api/incidents", json=NEW_INCIDENT, headers={"X-CSRF-Token": csrf_of(client, "/office")})
    assert response.status_code == 201, response.text
    assert api.call("office", "POST", "/api/incidents", json=NEW_INCIDENT).status_code == 201


def test_the_api_schema_and_docs_are_for_logged_in_users(api: Api) -> None:
    error_of(api.server.get("/openapi.json"), 401, "not_authenticated")
    for path in ("/docs", "/redoc"):
        response = api.server.get(path)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}", path
    schema = api.call("meteorology", "GET", "/openapi.json")
    assert schema.status_code == 200 and "/api/tasks/{task_id}/complete" in schema.json()["paths"]
    client = page_client(api.server, "manager")
    assert client.get("/openapi.json").json()["info"]["title"] == "Baton"
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200 and "/openapi.json" in response.text, path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    # FastAPI's own unauthenticated routes for them are gone.
    assert api.server.get("/docs/oauth2-redirect").status_code == 404


def test_every_page_form_refuses_a_post_without_its_csrf_token(api: Api, figures: Say) -> None:
    forms = page_forms()
    assert {"/login", "/logout", "/office/incidents", "/tasks/{task_id}/complete", "/admin/users",
            "/admin/users/{user_id}/disable"} <= set(forms), forms
    incident = flood("assessment")
    with session_scope() as session:
        someone = session.exec(select(User).where(User.username == "meteorology")).one().id
    known = {"incident_id": incident.id, "task_id": incident.tasks["flood_risk_assessment"], "user_id": someone}
    clients = {"office": page_client(api.server, "office"), "water_affairs": page_client(api.server, "water_affairs"),
               "admin": page_client(api.server, "admin")}
    foreign = csrf_of(page_client(api.server, "meteorology"), "/inbox")
    before = fingerprint()
    refused: dict[str, set[int]] = {}
    for path in forms:
        names = re.findall(r"{(\w+)}", path)
        url = path.format(**{n: known.get(n, str(uuid.uuid4())) for n in names})
        # Each form is sent by a user who may use it (the office, or the department holding the task); a form
        # this test does not know is sent by both, and may also read as missing (404) to one of them.
        users = ["water_affairs"] if path.startswith("/tasks/") else ["admin"] if path.startswith("/admin/") \
            else ["office"]
        known_form = all(n in known for n in names) and path.startswith(("/login", "/logout", "/lang", "/office/",
                                                                          "/tasks/", "/incidents/", "/admin/"))
        allowed = {403} if known_form else {403, 404}
        for who, client in clients.items():
            if known_form and who not in users:
                continue
            for token in (None, "0" * 64, foreign):
                data = {"title": "csrf", "type": "flood", "level": "IV", "reason": "csrf", "text": "csrf",
                        "lang": "en", "username": who, "password": PASSWORD}
                if token is not None:
                    data["csrf"] = token
                response = client.post(url, data=data, follow_redirects=False)
                refused.setdefault(path, set()).add(response.status_code)
                assert response.status_code in allowed, (path, who, token, response.status_code)
    figures(f"\n{len(forms)} page forms refused without their CSRF token: {refused}")
    assert fingerprint() == before
    for client in clients.values():  # still logged in: sent on to the user's own page, not to the login form
        response = client.get("/", follow_redirects=False)
        assert response.status_code == 303 and not response.headers["location"].startswith("/login"), response


def test_security_headers_on_api_pages_static_and_errors(api: Api) -> None:
    office = page_client(api.server, "office")
    incident = flood("forecast")
    responses = [office.get(p) for p in ("/login", "/office", f"/office/incidents/{incident.id}", "/review",
                                         "/static/baton.css", "/no-such-page", f"/review/incidents/{uuid.uuid4()}")]
    responses += [api.call(who, method, path) for who, method, path in (
        ("office", "GET", "/api/incidents"), (None, "GET", "/api/incidents"), ("office", "GET", "/api/nothing"),
        ("office", "DELETE", "/api/incidents"), (None, "GET", "/api/health"), (None, "GET", "/public/warnings.atom"),
        ("manager", "POST", f"/api/incidents/{incident.id}/level"))]
    responses.append(api.call("office", "POST", "/api/incidents", content=b"x" * 1_000_001,
                              headers={"Content-Type": "application/json"}))
    statuses = set()
    for response in responses:
        statuses.add(response.status_code)
        csp = response.headers.get("Content-Security-Policy", "")
        assert all(part in csp for part in CSP_NEEDS), (response.request.url, csp)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.request.url
    assert {200, 401, 403, 404, 405, 413} <= statuses, statuses


# -- secrets and the audit trail ------------------------------------------------------------------------------------

SECRET_KEY = "sk-baton-secret-key-4f9a1c7e2d"
ENDPOINT_SECRET = "ep-signing-secret-8b3d6e0f1a"
USER_PASSWORD = "pw-meteorology-2c5e9a7b3f"


@pytest.fixture
def secret_env(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_receiver(ENDPOINT_SECRET) as receiver:
        endpoints = {name: {"url": receiver.url, "secret": ENDPOINT_SECRET}
                     for name in ("meteorology", "water_affairs", "subdistrict")}
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps(endpoints))
        monkeypatch.setenv("BATON_SECRET_KEY", SECRET_KEY)
        get_settings.cache_clear()
        receiver.fail_next = 2  # two failed deliveries: error paths get logged too
        yield receiver.url


@pytest.mark.prefect
def test_secrets_never_reach_a_log_or_the_database(secret_env: str, prefect_server: PrefectServer,
                                                   tmp_path: Path) -> None:
    make_user("met-secret", "department", "meteorology", password=USER_PASSWORD)
    worker_log = tmp_path / "worker.log"
    env = dict(os.environ, BATON_WORKER_ID="w-secret", PREFECT_API_URL=prefect_server.api_url,
               PREFECT_LOGGING_LEVEL="DEBUG")
    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], env=env, stdout=worker_log.open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    port = free_port()
    api_log = tmp_path / "api.log"
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port),
                            "--log-level", "debug"], env=dict(os.environ, BATON_PREFECT_API_URL=prefect_server.api_url),
                           stdout=api_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    secrets_seen: list[str] = [SECRET_KEY, ENDPOINT_SECRET, USER_PASSWORD]
    try:
        wait_ready(url, api, api_log)
        make_user("office-secret", "office")
        login = httpx.post(f"{url}/api/auth/token", data={"username": "met-secret", "password": USER_PASSWORD})
        assert login.status_code == 200
        token = login.json()["access_token"]
        office = httpx.post(f"{url}/api/auth/token", data={"username": "office-secret", "password": PASSWORD})
        office_token = office.json()["access_token"]
        secrets_seen += [token, office_token]
        # A failed login with the secret as the password, and a bearer token that is the secret.
        assert httpx.post(f"{url}/api/auth/token",
                          data={"username": "met-secret", "password": ENDPOINT_SECRET}).status_code == 401
        assert httpx.get(f"{url}/api/tasks", headers={"Authorization": f"Bearer {SECRET_KEY}"}).status_code == 401
        created = httpx.post(f"{url}/api/incidents", json=NEW_INCIDENT,
                             headers={"Authorization": f"Bearer {office_token}"})
        assert created.status_code == 201
        incident_id = created.json()["id"]
        # The worker assigns the forecast and notifies meteorology's system (signed with the endpoint secret).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "rainstorm_forecast" not in drive.open_tasks(incident_id):
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            time.sleep(0.2)
        task_id = drive.open_tasks(incident_id)["rainstorm_forecast"].id
        done = httpx.post(f"{url}/api/tasks/{task_id}/complete", json={"outputs": FORECAST},
                          headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200, done.text
        from core.outbox.service import list_deliveries

        def delivered() -> bool:
            with session_scope() as session:
                rows = list_deliveries(session, incident_id=incident_id).items
            return any(r.outcome == "delivered" for r in rows) and all(r.outcome != "pending" for r in rows)

        while time.monotonic() < deadline and not delivered():
            time.sleep(0.3)
        assert delivered(), "no notice was delivered"
        # A page login too (CSRF tokens are derived from the secret key).
        page_client(ProcessApi(url=url, proc=api, log=api_log), "met-secret", USER_PASSWORD).close()
    finally:
        for proc in (api, worker):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    logs = {"api.log": api_log.read_bytes(), "worker.log": worker_log.read_bytes()}
    assert b"Baton worker w-secret started" in logs["worker.log"]
    database = Path(get_settings().resolved_database_url().removeprefix("sqlite:///"))
    stored = {p.name: p.read_bytes() for p in database.parent.glob(database.name + "*")}
    prefect_db = {p.name: p.read_bytes() for p in Path(prefect_server.home).rglob("*.db*")}
    with session_scope() as session:
        audit = json.dumps([(e.actor, e.action, e.detail) for e in session.exec(select(AuditEvent)).all()],
                           ensure_ascii=False)
    assert "login.failed" in audit and "login" in audit
    leaks = [(secret[:6] + "…", where) for secret in secrets_seen
             for where, blob in {**logs, **stored, **prefect_db, "audit_event": audit.encode()}.items()
             if secret.encode() in blob]
    assert not leaks, leaks


def test_secrets_come_from_the_environment_or_mounted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BATON_SECRETS_DIR names a folder of one file a setting (as Docker and Kubernetes mount secrets); the
    environment wins over a file; a folder that is not there is an error, not silently no secrets."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "baton_secret_key").write_text(SECRET_KEY + "\n")
    (folder / "baton_database_url").write_text("postgresql+psycopg://baton:pw-from-file@db/baton\n")
    (folder / "baton_endpoints").write_text(json.dumps({"water_affairs": {"url": "https://water.example",
                                                                         "secret": ENDPOINT_SECRET}}))
    for name in ("BATON_SECRET_KEY", "BATON_DATABASE_URL", "BATON_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATON_SECRETS_DIR", str(folder))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.resolved_secret_key() == SECRET_KEY
        assert settings.resolved_database_url() == "postgresql+psycopg://baton:pw-from-file@db/baton"
        assert settings.endpoints["water_affairs"].secret.get_secret_value() == ENDPOINT_SECRET
        # Shown, the settings hide their secrets.
        assert SECRET_KEY not in repr(settings) and ENDPOINT_SECRET not in repr(settings)
        assert "pw-from-file" not in repr(settings) and "pw-from-file" not in str(settings.model_dump())
        monkeypatch.setenv("BATON_SECRET_KEY", "from-the-environment")
        get_settings.cache_clear()
        assert get_settings().resolved_secret_key() == "from-the-environment"
        monkeypatch.setenv("BATON_SECRETS_DIR", str(tmp_path / "not-there"))
        get_settings.cache_clear()
        with pytest.raises(RuntimeError, match=r"BATON_SECRETS_DIR=.*not-there is not a folder"):
            get_settings()
    finally:
        get_settings.cache_clear()
    # And the repository holds none: no environment file, key or generated secret is tracked.
    tracked = subprocess.run(["git", "ls-files"], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                             text=True, check=True).stdout.split()
    suspicious = [name for name in tracked if Path(name).name in (".env", "secret_key", "ledger_signing_key.pem")
                  or name.endswith((".key", ".p12"))]
    assert suspicious == [], suspicious


def test_logins_and_administrative_changes_leave_an_audit_trail(api: Api) -> None:
    from core.signals.intake import add_source

    def login(username: str, password: str) -> int:
        return api.server.post("/api/auth/token", data={"username": username, "password": password}).status_code

    assert login("admin", PASSWORD) == 200
    assert login("admin", "nope-nope") == 401
    assert login("ghost", "nope-nope") == 401
    assert api.call("manager", "POST", "/api/auth/revoke").status_code == 204
    with session_scope() as session:
        add_source(session, name="hydrology", actor="user:admin")
    incident = flood("forecast")
    delivery_id = _dead_letter(incident.id)
    assert api.call("office", "POST", f"/api/deliveries/{delivery_id}/replay").status_code == 200
    with session_scope() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    trail = [(row.actor, row.action) for row in rows]
    assert all(row.at is not None and row.actor for row in rows)
    expected = {("test:setup", "user.added"), ("user:admin", "login"), ("user:admin", "login.failed"),
                ("user:manager", "token.revoked"), ("user:admin", "signal_source.added"),
                ("user:office", "delivery.replayed")}
    assert expected <= set(trail), trail
    assert any(actor.startswith("anonymous:") and action == "login.failed" for actor, action in trail)
    ghost = [row.detail for row in rows if row.actor.startswith("anonymous:")]
    assert ghost and ghost[0].get("username") == "ghost" and "password" not in json.dumps(ghost)


def _dead_letter(incident_id: str) -> str:
    from core.outbox.models import OutboundDelivery

    with session_scope() as session:
        delivery = OutboundDelivery(incident_id=incident_id, idempotency_key=str(uuid.uuid4()), purpose="assignment",
                                    target="water_affairs", endpoint="water_affairs", payload={"x": 1},
                                    payload_digest="0" * 64, attempts=4, last_status=503, outcome="failed")
        session.add(delivery)
        session.flush()
        return delivery.id
