"""The real API as a separate process for HTTP tests, with users and their bearer tokens.

Import the fixtures into a test module by their function names (`from tests.api_server import
api_fixture, api_server_fixture  # noqa: F401`); tests ask for them as `api` and `api_server`. The worker is
not running in these tests: advance an incident with `tests.engine_driver.step(incident_id)`, which runs the
engine synchronously against the same database the server uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from argon2 import PasswordHasher
from sqlmodel import col, func, select

import core.users.service
from core.incidents.models import DepartmentTask, Incident, LevelChange
from core.ledger.models import LedgerEntry
from core.outbox.models import OutboundDelivery
from core.platform.db import session_scope
from core.reporting.models import UpwardReport
from core.sharing.models import CapAlert, SituationReport
from core.signals.models import Signal
from core.users.models import AccessToken, AuditEvent, LoginLock, User, UserPosition
from core.users.service import add_user, issue_token
from flows.stack import free_port
from tests import engine_driver as drive

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "baton-test-password"

# Valid form values for the flood plan's first human steps.
FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": "2026-07-20T18:00:00+08:00"}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}
LIFT = {"decision": "respond"}
VALID_OUTPUTS: dict[str, dict[str, Any]] = {"rainstorm_forecast": FORECAST, "flood_risk_assessment": ASSESSMENT,
                                             "lift_warning": LIFT}
NEW_INCIDENT = {"type": "flood", "level": "IV", "title": "暴雨内涝 test"}

# The standard cast: one user per role, and department users for the departments a flood involves first.
STANDARD_USERS: dict[str, tuple[str, str | None]] = {
    "office": ("office", None),
    "manager": ("manager", None),
    "admin": ("admin", None),
    "meteorology": ("department", "meteorology"),
    "water_affairs": ("department", "water_affairs"),
    "public_security": ("department", "public_security"),
    # The flood headquarters' commander (an office user holding the position): decides every flood level.
    "commander": ("office", None),
}
STANDARD_POSITIONS: dict[str, list[str]] = {"commander": ["commander@flood_control_hq"]}


@dataclass
class ApiServer:
    """A running `uvicorn api.app:app`; `url` is its base URL (no trailing slash)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, token: str | None = None, headers: Mapping[str, str] | None = None) -> httpx.Client:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=all_headers, timeout=30)

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        with self.client(token) as client:
            return client.request(method, path, **kwargs)

    def log_tail(self) -> str:
        """The end of the server's output (tracebacks of 500s land here)."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Ready when /api/health answers at all: 503 only says Prefect is not configured or not reachable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API at {url} did not answer within {timeout:.0f} s")


@contextmanager
def run_api(env: Mapping[str, str | None] | None = None) -> Iterator[ApiServer]:
    """Run the API with the current environment (what the `baton` fixture set), changed by `env`
    (a value of None removes the variable)."""
    environ = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = Path(tempfile.mkdtemp(prefix="baton-api-"))
    log = logs / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--no-proxy-headers"],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(url, proc, log)
        yield ApiServer(url=url, proc=proc, log=log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        shutil.rmtree(logs, ignore_errors=True)


# Hashing with the production cost takes a third of a second a user on a busy machine; the hash carries its
# parameters, so the server verifies these cheap ones (and upgrades them at the first login, as it would).
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def make_user(username: str, role: str, department: str | None = None, password: str = PASSWORD,
              positions: list[str] | None = None) -> str:
    """Add a user straight to the database (as `baton users add` does), holding `positions`; returns its id."""
    from core.users.positions import grant

    with session_scope() as session, mock.patch.object(core.users.service, "_hasher", _CHEAP_HASHER):
        user = add_user(session, username=username, role=role, department=department, password=password,
                        actor="test:setup")
        for ref in positions or []:
            grant(session, user_id=user.id, ref=ref, actor="test:setup")
        return user.id


def login(server: ApiServer, username: str, password: str = PASSWORD) -> str:
    response = httpx.post(f"{server.url}/api/auth/token", data={"username": username, "password": password},
                          timeout=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def issued_token(username: str, ttl: timedelta = timedelta(hours=8)) -> str:
    """A bearer token for `username` issued straight in the database, as POST /api/auth/token issues it."""
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        return issue_token(session, user=user, ttl=ttl).token


def expired_token(username: str) -> str:
    """A bearer token for `username` that expired a minute ago."""
    return issued_token(username, ttl=timedelta(minutes=-1))


def ledger_count(incident_id: str | None = None) -> int:
    """Ledger entries of one incident, or of all of them."""
    with session_scope() as session:
        query = select(func.count()).select_from(LedgerEntry)
        if incident_id is not None:
            query = query.where(LedgerEntry.incident_id == incident_id)
        return int(session.exec(query).one())


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the response is `status` in the error format (with `code` when given); return the error."""
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text[:500]}"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


@dataclass
class FloodIncident:
    """A flood incident driven by the engine as far as `until`; `tasks` maps step keys to task ids."""

    id: str
    code: str
    tasks: dict[str, str]


def flood(until: str = "forecast", level: str = "IV") -> FloodIncident:
    """A flood incident opened by the office and advanced until the named step is assigned:
    "forecast" (meteorology's rainstorm_forecast open), "assessment" (forecast done, water_affairs'
    flood_risk_assessment open) or "lift" (both done, the emergency office's lift_warning open)."""
    order = ["forecast", "assessment", "lift"]
    steps = ["rainstorm_forecast", "flood_risk_assessment", "lift_warning"]
    incident_id = drive.open_("flood", level=level)
    drive.step(incident_id)
    tasks: dict[str, str] = {}
    for index, key in enumerate(steps[:order.index(until) + 1]):
        if index:
            previous = steps[index - 1]
            drive.complete_step(incident_id, previous, VALID_OUTPUTS[previous], actor=f"test:{previous}")
            drive.step(incident_id)
        tasks[key] = drive.open_tasks(incident_id)[key].id
    return FloodIncident(id=incident_id, code=drive.incident(incident_id).code, tasks=tasks)


def flood_with_proposal() -> tuple[str, str]:
    """A flood at level IV in its response whose casualty report (12 dead) graded it at II: the incident's id
    and its open level proposal's id."""
    from core.incidents import grading

    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    for key, outputs in (("rainstorm_forecast", FORECAST), ("flood_risk_assessment", ASSESSMENT),
                         ("lift_warning", LIFT), ("activate_command", None),
                         ("casualty_report", {"deaths": 12, "missing": 0, "injured": 5, "people_moved": 300})):
        drive.complete_step(incident_id, key, outputs)
        drive.step(incident_id)
    with session_scope() as session:
        [proposal] = grading.open_proposals(session, incident_id)
    return incident_id, proposal.id


def ledger_kinds(incident_id: str) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                            .order_by(col(LedgerEntry.seq))).all()
        return [(row.kind, row.step_key) for row in rows]


def task_row(task_id: str) -> DepartmentTask:
    with session_scope() as session:
        row = session.get(DepartmentTask, task_id)
        assert row is not None
        return row


def audit_actions(username: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """Audit events (actor, action, detail) in order, those about `username` when given."""
    with session_scope() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    out = [(row.actor, row.action, dict(row.detail)) for row in rows]
    if username is not None:
        out = [e for e in out if e[0] == f"user:{username}" or e[2].get("username") == username]
    return out


def fingerprint() -> tuple[Any, ...]:
    """What a refused request must leave as it was: the ledger, incidents and their levels, tasks, reports,
    warnings, signals (and what each did), deliveries, revoked tokens, users (active, failed logins, lockout) and
    their locks per address, upward reports."""
    with session_scope() as session:
        def count(model: Any, *where: Any) -> int:
            return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

        tasks = tuple(sorted((t.id, t.status, t.acknowledged_at is not None, t.outputs is not None)
                             for t in session.exec(select(DepartmentTask)).all()))
        levels = tuple(sorted((i.id, i.level) for i in session.exec(select(Incident)).all()))
        deliveries = tuple(sorted((d.id, d.outcome, d.replays) for d in session.exec(select(OutboundDelivery)).all()))
        # Not the password hash: a user's first login re-hashes it at the production cost (see make_user).
        users = tuple(sorted((u.username, u.active, u.failed_logins, u.locked_until is not None)
                             for u in session.exec(select(User)).all()))
        upward = tuple(sorted((r.id, r.status, r.edited_at is not None, r.phoned_at is not None)
                              for r in session.exec(select(UpwardReport)).all()))
        signals = tuple(sorted((s.id, s.outcome) for s in session.exec(select(Signal)).all()))
        locks = tuple(sorted((lock.user_id, lock.source, lock.failures, lock.locked_until is not None)
                             for lock in session.exec(select(LoginLock)).all()))
        return (count(LedgerEntry), count(Incident), count(LevelChange), count(UserPosition), count(SituationReport),
                count(CapAlert),
                signals, count(AccessToken, col(AccessToken.revoked_at).is_not(None)),
                tasks, levels, deliveries, users, locks, upward)


@dataclass
class Api:
    """A running API and its users: `tokens[name]` is each one's bearer token."""

    server: ApiServer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def as_(self, name: str | None) -> httpx.Client:
        """A client acting as the named user (None: anonymous)."""
        return self.server.client(self.tokens[name] if name else None)

    def call(self, name: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.as_(name) as client:
            return client.request(method, path, **kwargs)


def standard_api(server: ApiServer, users: Mapping[str, tuple[str, str | None]] = STANDARD_USERS,
                 via_login: bool = False) -> Api:
    """Add the users and give each a token: through POST /api/auth/token when `via_login` (in parallel; each
    first login re-hashes the password at the production cost, a second or more on a busy machine), else
    issued in the database (the login itself is tested in test_api.py)."""
    api = Api(server=server)
    for name, (role, department) in users.items():
        make_user(name, role, department, positions=STANDARD_POSITIONS.get(name, []))
    if via_login:
        with ThreadPoolExecutor(len(users)) as pool:
            api.tokens.update(zip(users, pool.map(lambda name: login(server, name), users), strict=True))
    else:
        api.tokens.update({name: issued_token(name) for name in users})
    return api


@pytest.fixture(name="api_server")
def api_server_fixture(baton: str) -> Iterator[ApiServer]:
    """The API on this test's fresh database (SQLite, or PostgreSQL where `db_kind` says so)."""
    with run_api() as server:
        yield server


@pytest.fixture(name="api")
def api_fixture(api_server: ApiServer) -> Api:
    """The API with the standard users (STANDARD_USERS) and a bearer token for each."""
    return standard_api(api_server)


def page_client(server: ApiServer, username: str, password: str = PASSWORD) -> httpx.Client:
    """A browser-like client logged in through the login form (cookies kept; redirects not followed)."""
    client = httpx.Client(base_url=server.url, timeout=30)
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    response = client.post("/login", data={"username": username, "password": password, "csrf": token.group(1),
                                           "next": "/"})
    assert response.status_code in (200, 303), response.text[:500]
    assert client.cookies.get("baton_session"), "no session cookie after login"
    return client


def csrf_of(client: httpx.Client, page: str = "/") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert found, f"{page} has no CSRF field"
    return found.group(1)
