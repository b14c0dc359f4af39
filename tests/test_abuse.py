"""Abuse: what an outsider with a source's API key, a stranger at the login form, a spoofed header, a burst of PDF
prints or a process supervisor's stop can do to Baton, and the limit that holds against each (docs/security.md,
"Abuse"). Each test fails when its limit is taken away.

- monitoring signals: a rate per source with a burst (429 with Retry-After, audited once a run), a freshness
  window for `observed_at`, finite numbers, and a cap on incidents a source opens per hour (beyond it, its
  signals wait for the duty desk), all kept in the database so that every API process shares them;
- logins: five wrong passwords lock an account for the address they came from only, a slower back-off locks it
  everywhere, and a locked account answers as a missing one does; administrators see and lift locks;
- X-Forwarded-For is believed only from BATON_TRUSTED_PROXIES;
- PDF prints run a few at a time behind a short queue, 429 beyond it; /docs needs no CDN;
- `baton serve` and `baton stack up` stop every process they started when they get SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import app
from core.incidents.models import Incident
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.platform.tls import tls_context
from core.reports.pdf import chromium_path
from core.signals.intake import SignalRateLimited, SignalRejected, add_source, admit, receive, source_for_key
from core.signals.models import Signal
from core.users.models import User
from tests.api_server import (
    PASSWORD,
    audit_actions,
    error_of,
    issued_token,
    make_user,
    run_api,
    said_in_english,
    serve_api,
)
from tests.servers import seed_prefect_home, stop_process

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)


def _settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"BATON_{name.upper()}", value)
    get_settings.cache_clear()


def _new_source(name: str) -> str:
    with session_scope() as session:
        return add_source(session, name=name, actor="test:setup")


def _client(peer: str = "127.0.0.1") -> TestClient:
    return TestClient(app, client=(peer, 50000))


def _as(username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued_token(username)}"}


def _rain(area: str, value: float = 150, **more: Any) -> dict[str, Any]:
    return {"kind": "rainfall", "area": area, "value": value, "unit": "mm", **more}


def _incidents() -> int:
    with session_scope() as session:
        return len(session.exec(select(Incident)).all())


# -- monitoring signals -------------------------------------------------------------------------------------------


@pytest.fixture
def two_apis(baton: str) -> Iterator[tuple[str, str]]:
    """Two API processes on one database, as two uvicorn workers (or two replicas) are. The rate is one signal a
    minute after the burst, so that nothing refills while the test runs."""
    env = {"BATON_SIGNAL_RATE_PER_MINUTE": "1"}
    with run_api(env) as one, run_api(env) as two:
        yield one.url, two.url


@pytest.mark.slow  # two uvicorn processes
@BOTH
def test_a_burst_of_signals_is_limited_across_api_processes(two_apis: tuple[str, str]) -> None:
    """The report's burst: 15 level-Ⅰ rainfall signals at once, for 15 areas, from one source, spread over two
    API processes. The burst (10 by default) is let in and 5 are refused with 429 and Retry-After; of the 10,
    3 open incidents (the default hourly cap) and 7 wait for the duty desk. Counted in the database: each
    process alone would have let its own burst in."""
    key = _new_source("hydrology_network")
    other = _new_source("meteorology")

    def post(n: int) -> httpx.Response:
        return httpx.post(f"{two_apis[n % 2]}/api/signals", json=_rain(f"区{n}"), headers={"X-Api-Key": key},
                          timeout=60)

    with ThreadPoolExecutor(15) as pool:
        answers = list(pool.map(post, range(15)))
    assert Counter(a.status_code for a in answers) == {201: 10, 429: 5}, [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 429):
        error = error_of(refused, 429, "signal_rate_limited")
        assert "try again later" in said_in_english(error)
        # One a minute (the fixture's rate), the bucket just emptied: the next token is nearly a minute away.
        assert 50 <= int(refused.headers["Retry-After"]) <= 60, refused.headers
    outcomes = Counter(a.json()["outcome"] for a in answers if a.status_code == 201)
    assert outcomes == {"opened": 3, "held": 7}, outcomes
    assert _incidents() == 3
    # One audit entry for the run of refusals, not one a request (a flood must not flood the audit trail).
    assert [a for _, a, d in audit_actions() if a == "signal.rate_limited"] == ["signal.rate_limited"]
    # Another source has a bucket of its own.
    ok = httpx.post(f"{two_apis[1]}/api/signals", json=_rain("区0", 10), headers={"X-Api-Key": other}, timeout=30)
    assert ok.status_code == 201 and ok.json()["outcome"] == "ignored"


def test_the_rate_refills_and_refused_content_still_counts(baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, signal_burst="3", signal_rate_per_minute="1")
    key = _new_source("hydrology_network")
    client = _client()
    bad = [client.post("/api/signals", json={"kind": "volcano", "value": 1}, headers={"X-Api-Key": key})
           for _ in range(3)]
    assert [b.status_code for b in bad] == [422] * 3
    # Three refused signals used up the burst: the fourth request is refused for the rate, whatever it holds.
    refused = client.post("/api/signals", json=_rain("滨江", 10), headers={"X-Api-Key": key})
    error_of(refused, 429, "signal_rate_limited")
    # One a minute, the bucket just emptied: the next token is nearly a minute away (less what the requests took).
    assert 50 <= int(refused.headers["Retry-After"]) <= 60, refused.headers
    # The bucket refills at the rate, up to the burst (the service, on a clock of the test's choosing).
    _settings(monkeypatch, signal_rate_per_minute="6")  # one every 10 s
    with session_scope() as session:
        source = source_for_key(session, key)
        start = source.tokens_at
    assert start is not None
    for seconds, admitted in ((5, False), (11, True), (12, False), (60, True), (60, True), (60, True), (60, False)):
        with session_scope() as session:
            limited: SignalRateLimited | None = None
            try:
                admit(session, source=source, now=start + timedelta(seconds=seconds))
            except SignalRateLimited as exc:
                limited = exc
        assert (limited is None) == admitted, seconds
        if limited is not None:
            assert limited.retry_after is not None and 1 <= limited.retry_after <= 10


def test_stale_future_and_non_finite_signals_are_refused(baton: str) -> None:
    key = _new_source("hydrology_network")
    client = _client()

    def post(body: Any, **kwargs: Any) -> httpx.Response:
        return client.post("/api/signals", json=body, headers={"X-Api-Key": key}, **kwargs)

    now = datetime.now(UTC)
    opened = post(_rain("滨江", observed_at=(now - timedelta(minutes=5)).isoformat()))
    assert opened.status_code == 201 and opened.json()["outcome"] == "opened", opened.text
    # The report's replay: a signal dated 2020 for the same area was merged into the open incident.
    for when, said in (("2020-06-01T08:00:00+08:00", "too old"),
                       ((now - timedelta(hours=2)).isoformat(), "too old"),
                       ((now + timedelta(hours=1)).isoformat(), "ahead of this server's clock")):
        error = error_of(post(_rain("滨江", 180, observed_at=when)), 422, "signal_out_of_window")
        assert said in said_in_english(error), error
    error_of(post(_rain("滨江", observed_at="2026-07-20T08:00:00")), 422, "invalid_request")  # no time zone
    # "Infinity" (a string JSON allows, read as a float), the bare literal Python's JSON reader takes, and an
    # overflowing number.
    for raw in (b'{"kind": "rainfall", "area": "x", "value": "Infinity"}',
                b'{"kind": "rainfall", "area": "x", "value": Infinity}',
                b'{"kind": "rainfall", "area": "x", "value": NaN}',
                b'{"kind": "rainfall", "area": "x", "value": 1e999}',
                b'{"kind": "water_level", "area": "x", "over_warning_m": "-Infinity"}'):
        error_of(client.post("/api/signals", content=raw, headers={"X-Api-Key": key,
                                                                   "Content-Type": "application/json"}),
                 422, "invalid_request")
    with session_scope() as session:
        signals = session.exec(select(Signal)).all()
        assert [s.outcome for s in signals] == ["opened"], "a refused signal was recorded"
        source = source_for_key(session, key)
    # The service itself refuses them too, whoever calls it.
    with session_scope() as session, pytest.raises(SignalRejected, match="finite"):
        receive(session, source=source, payload=_rain("滨江", float("inf")))
    # A CAP alert is dated by its <sent>.
    stale_cap = json.dumps({"kind": "rainstorm_cap", "xml": CAP_2020})
    meteorology = _new_source("meteorology")
    error_of(client.post("/api/signals", content=stale_cap, headers={"X-Api-Key": meteorology,
                                                                     "Content-Type": "application/json"}),
             422, "signal_out_of_window")
    assert _incidents() == 1


CAP_2020 = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>cn-met-2020-0001</identifier><sender>met@example.gov.cn</sender>
  <sent>2020-06-01T08:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><category>Met</category><event>暴雨</event><urgency>Immediate</urgency><severity>Extreme</severity>
    <certainty>Observed</certainty><area><areaDesc>滨江区</areaDesc></area></info>
</alert>"""


def test_signals_over_the_hourly_cap_wait_for_the_duty_desk(baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, signal_incidents_per_hour="2")
    key = _new_source("hydrology_network")
    for name, role, department in (("office", "office", None), ("manager", "manager", None),
                                   ("water_affairs", "department", "water_affairs")):
        make_user(name, role, department)
    client = _client()
    answers = [client.post("/api/signals", json=_rain(area), headers={"X-Api-Key": key}).json()
               for area in ("滨江", "西湖", "上城", "拱墅")]
    assert [a["outcome"] for a in answers] == ["opened", "opened", "held", "held"], answers
    assert answers[2]["incident_id"] is None and _incidents() == 2
    # A signal for an area already open still merges (and raises): the cap is on new incidents.
    merged = client.post("/api/signals", json=_rain("滨江", 160), headers={"X-Api-Key": key}).json()
    assert merged["outcome"] == "merged" and merged["incident_id"] == answers[0]["incident_id"]
    # The duty desk sees the held signals ...
    held = client.get("/api/signals?status=held", headers=_as("office")).json()
    assert held["total"] == 2 and {s["payload"]["area"] for s in held["items"]} == {"上城", "拱墅"}
    assert all(s["status"] == "held" and s["level"] == "I" for s in held["items"])
    assert client.get("/api/signals?status=held", headers=_as("manager")).json()["total"] == 2
    error_of(client.get("/api/signals", headers=_as("water_affairs")), 403, "forbidden")
    error_of(client.get("/api/signals"), 401, "not_authenticated")
    error_of(client.get("/api/signals?status=lost", headers=_as("office")), 422, "invalid_request")
    # ... and opens one, and dismisses the other with a reason; each only once.
    first, second = sorted(held["items"], key=lambda s: s["payload"]["area"] != "上城")
    opened = client.post(f"/api/signals/{first['id']}/open", headers=_as("office"))
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"] == "opened" and opened.json()["handled_by"] == "user:office"
    with session_scope() as session:
        incident = session.get(Incident, opened.json()["incident_id"])
        assert incident is not None and incident.level == "I" and incident.signal_id == first["id"]
        assert "上城" in incident.title
    error_of(client.post(f"/api/signals/{first['id']}/open", headers=_as("office")), 409, "signal_not_held")
    error_of(client.post(f"/api/signals/{second['id']}/dismiss", json={"reason": ""}, headers=_as("office")), 422)
    error_of(client.post(f"/api/signals/{second['id']}/open", headers=_as("manager")), 403, "forbidden")
    dismissed = client.post(f"/api/signals/{second['id']}/dismiss", json={"reason": "雨量站故障"},
                            headers=_as("office"))
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    error_of(client.post(f"/api/signals/{second['id']}/dismiss", json={"reason": "again"}, headers=_as("office")),
             409, "signal_not_held")
    assert client.get("/api/signals?status=held", headers=_as("office")).json()["total"] == 0
    assert _incidents() == 3
    actions = [a for _, a, _ in audit_actions()]
    assert actions.count("signal.released") == 1 and actions.count("signal.dismissed") == 1
    # The desk's opening does not count against the source: the cap is still reached by its own two.
    still = client.post("/api/signals", json=_rain("余杭"), headers={"X-Api-Key": key}).json()
    assert still["outcome"] == "held"


# -- logins -------------------------------------------------------------------------------------------------------

GUESSER, OWNER = "127.0.0.2", "127.0.0.3"


def _login(peer: str, username: str, password: str) -> httpx.Response:
    return _client(peer).post("/api/auth/token", data={"username": username, "password": password})


def _page_session(username: str) -> TestClient:
    from core.users.service import issue_token

    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        token = issue_token(session, user=user, kind="session").token
    client = _client()
    client.cookies.set("baton_session", token)
    return client


def test_a_lockout_holds_one_address_and_reads_as_a_missing_account(baton: str) -> None:
    make_user("manager", "manager")
    make_user("admin", "admin")
    for _ in range(5):
        error_of(_login(GUESSER, "manager", "wrong-password"), 401, "authentication_failed")
    # The guesser's address is locked out of the account, even with the right password ...
    locked = _login(GUESSER, "manager", PASSWORD)
    missing = _login(GUESSER, "no-such-user", PASSWORD)
    # ... and cannot tell that from a user name that does not exist: status, code, message, headers.
    assert locked.status_code == missing.status_code == 401
    assert locked.json() == missing.json() == {"error": {"code": "authentication_failed",
                                                         "message": "用户名或密码错误。",
                                                         "message_en": "wrong user name or password"}}
    assert {k: v for k, v in locked.headers.items() if k != "content-length"} == \
        {k: v for k, v in missing.headers.items() if k != "content-length"}
    # The owner, elsewhere, logs in as usual: five wrong guesses no longer lock anyone out from anywhere.
    assert _login(OWNER, "manager", PASSWORD).status_code == 200
    # The lockout is audited, with the address and what it covers.
    assert ("login.locked", {"source": GUESSER, "scope": "address"}) in \
        [(a, d) for _, a, d in audit_actions("manager")]


def test_a_locked_account_takes_as_long_to_refuse_as_a_missing_one(baton: str) -> None:
    make_user("manager", "manager")
    for _ in range(5):
        _login(GUESSER, "manager", "wrong-password")

    def timed(username: str) -> float:
        # The API runs in this process: its CPU time is the work each refusal does, which is what an attacker's
        # clock would tell apart, without the wall clock's noise from the other processes on a busy machine (a
        # wall-clock version failed once at a ratio of 1.7 while the suite ran).
        start = time.process_time()
        error_of(_login(GUESSER, username, PASSWORD), 401, "authentication_failed")
        return time.process_time() - start

    timed("no-such-user")  # warm up
    rounds = [(timed("manager"), timed("no-such-user")) for _ in range(6)]
    locked = sorted(r[0] for r in rounds)[3]
    missing = sorted(r[1] for r in rounds)[3]
    # Both check the password against the same fixed hash (tens of milliseconds); a locked account answered at
    # once would be an order of magnitude faster.
    assert 0.6 < locked / missing < 1.7, (locked, missing)


def test_many_addresses_back_the_account_off_and_admins_see_and_lift_lockouts(
        baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, login_failures_per_account="8")
    make_user("manager", "manager")
    make_user("admin", "admin")
    make_user("office", "office")
    for _ in range(5):
        _login(GUESSER, "manager", "wrong-password")
    # A guesser spread over many addresses: none reaches five, but the account's own count passes its limit
    # (five from GUESSER, three more), and the account is locked everywhere for a while.
    for n in range(3):
        error_of(_login(f"127.0.1.{n + 1}", "manager", "wrong-password"), 401, "authentication_failed")
    error_of(_login(OWNER, "manager", PASSWORD), 401, "authentication_failed")
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "manager")).one()
        assert user.locked_until is not None
        first = (user.locked_until - datetime.now(UTC)).total_seconds()
        assert 50 < first <= 60, first  # a minute at first ...
        user.locked_until = datetime.now(UTC) - timedelta(seconds=1)  # (let it run out)
        session.add(user)
    error_of(_login("127.0.1.9", "manager", "wrong-password"), 401, "authentication_failed")
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "manager")).one()
        assert user.locked_until is not None
        assert 110 < (user.locked_until - datetime.now(UTC)).total_seconds() <= 120  # ... twice as long the next
    # Administrators see every lockout: the guesser's address, and the account's.
    admin = _client()
    seen = admin.get("/api/users/lockouts", headers=_as("admin"))
    assert seen.status_code == 200, seen.text
    assert {(x["username"], x["source"]) for x in seen.json()["items"]} == {("manager", GUESSER), ("manager", None)}
    listed = next(u for u in admin.get("/api/users", headers=_as("admin")).json()["items"]
                  if u["username"] == "manager")
    assert listed["locked"] and {x["source"] for x in listed["lockouts"]} == {GUESSER, None}
    error_of(admin.get("/api/users/lockouts", headers=_as("office")), 403, "forbidden")
    page = _page_session("admin").get("/admin/users")
    assert page.status_code == 200
    row = page.text[page.text.index('data-user="manager"'):]
    row = row[:row.index("</tr>")]
    assert f'data-lockout="{GUESSER}"' in row and 'data-lockout="*"' in row and "所有地址" in row
    # ... and lift them at once: then the right password works from anywhere, the guesser's address too.
    lifted = admin.post(f"/api/users/{listed['id']}/unlock", headers=_as("admin"))
    assert lifted.status_code == 200 and lifted.json()["locked"] is False and lifted.json()["lockouts"] == []
    assert admin.get("/api/users/lockouts", headers=_as("admin")).json()["total"] == 0
    assert _login(GUESSER, "manager", PASSWORD).status_code == 200
    assert ("user.unlocked", {"username": "manager", "was_locked": True, "sources": ["*", GUESSER]}) in \
        [(a, d) for _, a, d in audit_actions("manager")]


# -- forwarded headers --------------------------------------------------------------------------------------------

SPOOFED = "203.0.113.7"


def _failed_login_source(client: TestClient | httpx.Client, headers: dict[str, str]) -> str:
    response = client.post("/api/auth/token", data={"username": "nobody", "password": "wrong-password"},
                           headers=headers)
    assert response.status_code == 401
    actor, action, _ = audit_actions()[-1]
    assert action == "login.failed"
    return actor.removeprefix("anonymous:")


def test_forwarded_headers_are_believed_only_from_trusted_proxies(baton: str, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    client = _client("127.0.0.1")
    spoof = {"X-Forwarded-For": SPOOFED}
    # By default nobody is a trusted proxy, not even loopback: the audit trail has the connection's address.
    assert get_settings().trusted_proxies == []
    assert _failed_login_source(client, spoof) == "127.0.0.1"
    _settings(monkeypatch, trusted_proxies="127.0.0.1, ::1")
    assert _failed_login_source(client, spoof) == SPOOFED
    # The nearest address a trusted proxy appended counts; what the client wrote in front of it does not.
    assert _failed_login_source(client, {"X-Forwarded-For": f"198.51.100.66, {SPOOFED}"}) == SPOOFED
    assert _failed_login_source(client, {"X-Forwarded-For": "garbage, 198.51.100.66"}) == "198.51.100.66"
    assert _failed_login_source(client, {"X-Forwarded-For": "not-an-address"}) == "127.0.0.1"
    # Behind two trusted hops (a CIDR), the client is the first address from the right that is not one of them.
    _settings(monkeypatch, trusted_proxies='["127.0.0.0/8"]')
    assert _failed_login_source(client, {"X-Forwarded-For": f"198.51.100.66, {SPOOFED}, 127.0.0.9"}) == SPOOFED
    # A connection from anywhere else is not believed.
    assert _failed_login_source(_client("192.0.2.10"), spoof) == "192.0.2.10"


@pytest.mark.slow  # the API as its own process
def test_the_shipped_api_command_believes_no_forwarded_header_by_default(baton: str, tmp_path: Path) -> None:
    """The API as `baton serve` starts it (a real uvicorn): uvicorn on its own would believe X-Forwarded-For
    from loopback."""
    from flows.stack import Stack, free_port

    (tmp_path / "logs").mkdir()
    stack = Stack(home=tmp_path, api_url="http://127.0.0.1:9/api")
    port = free_port()
    try:
        stack.start_api("127.0.0.1", port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert _failed_login_source(client, {"X-Forwarded-For": SPOOFED}) == "127.0.0.1"
    finally:
        stack.stop()


# -- the API reference without a CDN ------------------------------------------------------------------------------


def test_the_api_docs_load_nothing_from_another_origin(baton: str) -> None:
    import re

    make_user("manager", "manager")
    client = _page_session("manager")
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        csp = page.headers["Content-Security-Policy"]
        assert "http" not in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], csp
        assert "frame-ancestors 'none'" in csp
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
    assert client.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("application/javascript", "text/javascript"))


@pytest.fixture
def docs_server(baton: str) -> Iterator[str]:
    make_user("manager", "manager")
    with serve_api() as server:
        yield server.url


@pytest.mark.chromium
def test_the_api_docs_work_in_a_browser_that_reaches_no_other_origin(docs_server: str) -> None:
    """Swagger UI and ReDoc render the operations in Chromium with every request to another origin refused
    (offline) and no CSP violation."""
    from playwright.sync_api import expect, sync_playwright

    from core.users.service import issue_token

    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "manager")).one()
        token = issue_token(session, user=user, kind="session").token
    elsewhere: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "baton_session", "value": token, "url": docs_server}])

            def only_here(route: Any) -> None:
                if route.request.url.startswith(docs_server):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            context.route("**/*", only_here)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{docs_server}/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=60_000)
            assert page.locator(".opblock").count() > 20
            page.goto(f"{docs_server}/redoc")
            expect(page.get_by_text("/api/signals/{signal_id}/open").first).to_be_attached(timeout=60_000)
        finally:
            browser.close()
    assert not elsewhere, elsewhere
    # The only thing the CSP keeps out is ReDoc's "powered by" logo from its vendor's CDN (decoration).
    refused = [p for p in problems if "Content Security Policy" in p or "Refused" in p]
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in p and "img-src" in p for p in refused), refused


# -- PDF prints ---------------------------------------------------------------------------------------------------


@pytest.mark.chromium
def test_concurrent_pdf_prints_wait_their_turn_and_beyond_the_queue_get_429(
        baton: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The report's 8 prints at once: at most 2 Chromiums run (real ones, through a wrapper that logs when
    each starts and ends), 2 more wait for them, and 4 get 429 pdf_busy with Retry-After at once. The wrapper
    holds each Chromium until the four refusals are in, so that on a loaded machine no print ends (freeing its
    place) before the last of the eight requests arrives."""
    from tests.test_after_action import constructed_flood

    log = tmp_path / "chromium.log"
    wrapper = tmp_path / "chromium"
    release = tmp_path / "release"
    wrapper.write_text(f"#!/bin/sh\necho start $(date +%s.%N) >> {log}\n"
                       f"while [ ! -e {release} ]; do sleep 0.05; done\n{chromium_path()} \"$@\"\ncode=$?\n"
                       f"echo end $(date +%s.%N) >> {log}\nexit $code\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("BATON_CHROMIUM", str(wrapper))
    _settings(monkeypatch, pdf_workers="2", pdf_queue="2", pdf_queue_seconds="300")
    incident = constructed_flood()
    make_user("manager", "manager")
    headers = _as("manager")
    client = _client()

    def print_one(_: int) -> httpx.Response:
        return client.get(f"/api/incidents/{incident}/report.pdf", headers=headers)

    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(print_one, n) for n in range(8)]
        refused = []
        for future in as_completed(pending, timeout=120):
            refused.append(future.result().status_code)
            if len(refused) == 4:
                break
        assert refused == [429] * 4, refused  # at once, while the first two prints are held and two wait
        release.touch()
        answers = [future.result(timeout=300) for future in pending]
    assert Counter(a.status_code for a in answers) == {200: 4, 429: 4}, [a.status_code for a in answers]
    for answer in answers:
        if answer.status_code == 200:
            assert answer.content.startswith(b"%PDF")
        else:
            error_of(answer, 429, "pdf_busy")
            assert answer.headers["Retry-After"] == "30"
    events = sorted((float(at), kind) for kind, at in (line.split() for line in log.read_text().splitlines()))
    running = most = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert [k for _, k in events].count("start") == 4 and most == 2, events
    # A queued print that waits longer than pdf_queue_seconds is refused as well.
    _settings(monkeypatch, pdf_workers="1", pdf_queue="1", pdf_queue_seconds="0.5")
    from core.reports.pdf import PdfBusy, print_slot

    with print_slot(), pytest.raises(PdfBusy, match=r"within 0\.5 s"), print_slot():
        pass


# -- SIGTERM to the commands that start the system ----------------------------------------------------------------


def _marked(mark: str) -> list[str]:
    """Processes (not zombies) whose environment carries `mark`: everything a command started, however deep,
    and whoever adopted it since."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark.encode() in environ.split(b"\0") and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(f"{entry.name}: {command[:150]}")
    return found


def _start_marked(args: list[str], home: Path, **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    import uuid

    mark = f"BATON_ABUSE_TEST_MARK={uuid.uuid4().hex}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "PREFECT_API_URL"))}
    environ.update({"BATON_DATA_DIR": str(home), mark.split("=")[0]: mark.split("=")[1], **env})
    log = home.parent / f"{home.name}.log"
    seed_prefect_home(home)  # `serve` starts an embedded Prefect server on SQLite there
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=environ, stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
    return proc, mark, log


def _wait_until(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, verify=tls_context()).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _clean_up(proc: subprocess.Popen[bytes], mark: str) -> None:
    """After a failure too: stop the command as it should be stopped, then kill whatever it left."""
    stop_process(proc, 60)
    for line in _marked(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


def _terminate_and_check(proc: subprocess.Popen[bytes], mark: str, log: Path) -> None:
    before = _marked(mark)
    assert len(before) >= 3, before
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running 90 s after SIGTERM:\n{log.read_text()[-3000:]}") from None
    survivors = _marked(mark)
    assert not survivors, f"left running after SIGTERM: {survivors}"
    # 0 once up; 130 (interrupted) or 1 (click's "Aborted!") when stopped while still starting, or -SIGINT: a
    # KeyboardInterrupt that reaches no handler (the SIGTERM landing outside typer's, seen once under a profiler's
    # load) ends Python by its own SIGINT. Either way nothing may be left running (above).
    assert code in (0, 1, 130, -signal.SIGINT), (code, log.read_text()[-3000:])


def test_a_sigterm_whose_interrupt_was_lost_still_stops_a_stack_that_is_starting() -> None:
    """The interrupt a SIGTERM raises lands wherever the main thread is, and can be lost there (inside a weakref
    callback during garbage collection, as CI once saw: "Exception ignored in …"). The stack's next wait raises
    it again, instead of starting the rest for minutes before anyone looks."""
    from flows.stack import free_port, stop_on_sigterm, wait_http

    with stop_on_sigterm() as signalled:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here; its interrupt is swallowed below, as it was in the callback
        except KeyboardInterrupt:
            pass
        assert signalled.is_set()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            wait_http(f"http://127.0.0.1:{free_port()}/api/health", 30)  # nothing answers there
        assert time.monotonic() - started < 5
    # Outside the block a SIGTERM is no longer this block's business, and a later wait is not interrupted.
    with pytest.raises(RuntimeError, match="did not answer"):
        wait_http(f"http://127.0.0.1:{free_port()}/api/health", 1)



def test_stopping_groups_does_not_wait_on_a_child_that_died_before() -> None:
    """`stack up --foreground` starts the stack and later stops it in one process, knowing its children by pid only
    (the stack file): one that had died before (a crashed worker) stays a zombie until reaped, and must not hold
    the stop for the whole grace period while a live one is still stopped."""
    from flows.stack import stop_process_groups

    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    while Path(f"/proc/{dead.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # wait until it has exited, not reaped: a zombie
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    started = time.monotonic()
    stop_process_groups({dead.pid: None, live.pid: None}, grace=20)
    assert time.monotonic() - started < 5
    assert not Path(f"/proc/{live.pid}").exists()  # stopped by the SIGTERM, and reaped
@pytest.mark.slow  # baton serve: Prefect, a worker, the API
def test_sigterm_to_baton_serve_stops_every_process_it_started(tmp_path: Path) -> None:
    """`baton serve` (its own Prefect server, a worker, the API under two uvicorn workers), stopped as a process
    supervisor stops it."""
    from flows.stack import free_port

    home = tmp_path / "serve"
    port, prefect_port = free_port(), free_port()
    proc, mark, log = _start_marked(["serve", "--port", str(port), "--prefect-port", str(prefect_port),
                                     "--api-workers", "2"], home)
    try:
        _wait_until("API", lambda: _answers(f"http://127.0.0.1:{port}/api/health"), proc, log)
        _wait_until("worker", lambda: any("flows.cli worker" in p for p in _marked(mark)), proc, log)
        _terminate_and_check(proc, mark, log)
    finally:
        _clean_up(proc, mark)


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["starting", "up"])
def test_sigterm_to_baton_stack_up_stops_every_process_it_started(when: str) -> None:
    """`baton stack up --foreground` under a supervisor, stopped once up, and plain `baton stack up` stopped half-way
    through starting (PostgreSQL and the Prefect server already running): nothing is left, PostgreSQL included."""
    from flows.stack import STACK_FILE, free_port

    # PostgreSQL runs as the postgres user, who must be able to enter the folder (pytest's are private).
    home = Path(tempfile.mkdtemp(prefix="baton-sigterm-")) / "stack"
    home.mkdir()
    home.parent.chmod(0o755)
    home.chmod(0o755)
    port = free_port()
    args = ["stack", "up", "--workers", "1", "--api-workers", "2", "--port", str(port), "--prefect-port",
            str(free_port()), "--pg-port", str(free_port())]
    proc, mark, log = _start_marked([*args, "--foreground"] if when == "up" else args, home)
    try:
        if when == "up":
            # Up once its state is written (after the API answers).
            _wait_until("stack state", lambda: (home / STACK_FILE).exists(), proc, log)
            assert _answers(f"http://127.0.0.1:{port}/api/health")
        else:
            _wait_until("Prefect server", lambda: any("prefect server start" in p for p in _marked(mark)), proc, log)
        _terminate_and_check(proc, mark, log)
        assert not (home / STACK_FILE).exists()
    finally:
        _clean_up(proc, mark)
        shutil.rmtree(home.parent, ignore_errors=True)
