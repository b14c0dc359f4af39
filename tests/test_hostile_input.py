"""Hostile input (issue 14, items 4-6): what is stored can always be shown and published.

The input policy (core/platform/input_policy.py) holds at every edge, the renderers are total, and a 500 keeps
the security headers. In process (FastAPI's TestClient) on a fresh database, SQLite and PostgreSQL:

- a regression test for each break the issue reproduced (each fails with its fix reverted);
- property tests (hypothesis): arbitrary text, numbers and times go in through every door (the API, the pages'
  forms, a monitoring signal) and on through the department's form, the CAP alert, the public feed, the pages,
  the reports and the webhooks; nothing answers 5xx, and every XML document parses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import text as sql
from sqlmodel import col, select

from api.app import SECURITY_HEADERS, app, create_app
from api.deps import csrf_token
from core.incidents.models import DepartmentTask, Incident
from core.outbox.models import OutboundDelivery
from core.platform.db import session_scope
from core.platform.settings import PROCESS_DEFS_DIR, get_settings
from core.sharing.cap import CAP_SCHEMA
from core.sharing.models import CapAlert, SituationReport
from core.signals.intake import add_source
from core.users.models import User
from core.users.service import issue_token
from tasks.delivery import send_once
from tests import engine_driver as drive
from tests.access_matrix import app_routes
from tests.api_server import make_user, said_in_english
from tests.receiver import Receiver, running_receiver

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
# Enough examples to meet the odd character, number and time; few enough for the suite (both databases) to take
# about a minute. Derandomised, as the schemathesis run: a failure is there again on the next run. The values
# the issue found are explicit examples, tried on every run besides these.
EXAMPLES = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

ATOM = "{http://www.w3.org/2005/Atom}"
CAP_XSD = etree.XMLSchema(etree.parse(str(CAP_SCHEMA)))
SECRET = "hostile-input-receiver-secret"
FAR_FUTURE = "9999-12-31T23:59:59-12:00"

# One form with every field type, shared with everyone and the public; a public warning whose description
# carries the form's values; a step that gets the form as its input (and a webhook with it).
PROBE_PLAN = """\
key: probe
name: {zh: 输入探测, en: Input probe}
category: accident
version: 1
description: {zh: 恶意输入测试用预案。, en: A plan for the hostile-input tests.}
default_level: IV
code_prefix: PRB
stages:
  warning:
    steps:
      - key: report
        title: {zh: 现场报告, en: Field report}
        department: meteorology
        kind: human
        deadline: PT1H
        form:
          - {key: summary, label: {zh: 概要, en: Summary}, type: text}
          - {key: count, label: {zh: 数量, en: Count}, type: number, unit: 人}
          - {key: until, label: {zh: 有效期至, en: Valid until}, type: datetime}
          - {key: place, label: {zh: 地点, en: Place}, type: location}
          - key: colour
            label: {zh: 颜色, en: Colour}
            type: choice
            choices:
              - {value: blue, label: {zh: 蓝色, en: Blue}}
              - {value: red, label: {zh: 红色, en: Red}}
          - {key: photo, label: {zh: 照片, en: Photo}, type: attachment, required: false}
          - {key: urgent, label: {zh: 紧急, en: Urgent}, type: boolean, required: false}
        share: {with: all, classification: public}
      - key: publish
        title: {zh: 发布预警, en: Publish the warning}
        department: emergency_office
        kind: action
        action: publish_warning
        depends_on: [report]
        params:
          event: {zh: 探测, en: Probe}
          headline: {zh: 探测预警, en: Probe warning}
          instruction: {zh: 请注意。, en: Take care.}
      - key: assess
        title: {zh: 研判, en: Assess}
        department: water_affairs
        kind: human
        depends_on: [report]
        inputs: [report]
        deadline: PT1H
        form:
          - {key: note, label: {zh: 意见, en: Note}, type: text}
  response:
    steps: []
  recovery:
    steps: []
  learning:
    steps:
      - key: review
        title: {zh: 复盘, en: Review}
        department: emergency_office
        kind: human
        after_action: true
        deadline: P7D
        form:
          - {key: findings, label: {zh: 结论, en: Findings}, type: text}
"""
SAFE_OUTPUTS = {"summary": "两处积水", "count": 3, "until": "2026-07-20T18:00:00+08:00",
                "place": {"name": "东湖路", "lat": 30.5, "lon": 114.3}, "colour": "red"}
WARNING = {"event": {"zh": "暴雨", "en": "Rain"}, "headline": {"zh": "暴雨预警", "en": "Rain warning"},
           "instruction": {"zh": "远离低洼", "en": "Keep away"}}
CAST = {"office": ("office", None), "admin": ("admin", None), "manager": ("manager", None),
        "meteorology": ("department", "meteorology"), "water_affairs": ("department", "water_affairs"),
        # The emergency management bureau's director signs its warnings off (审核签发): only then are they public.
        "em_director": ("office", None)}
POSITIONS = {"em_director": ["bureau_director@emergency_office"]}


# -- the system under test, in process ----------------------------------------------------------------------------
@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    target = tmp_path / "plans"
    shutil.copytree(PROCESS_DEFS_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (target / "probe.yaml").write_text(PROBE_PLAN, encoding="utf-8")
    return target


def answered(response: httpx.Response) -> httpx.Response:
    """Not a 5xx; an API refusal in the error format; a JSON answer that is JSON (no NaN or Infinity)."""
    path = response.request.url.path
    assert response.status_code < 500, f"{response.request.method} {path}: {response.status_code} {response.text[:800]}"
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        body = json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{path} answered {name}"))
        if response.status_code >= 400:
            assert isinstance(body.get("error", {}).get("code"), str), body
    return response


def well_formed(response: httpx.Response) -> etree._Element:
    assert response.status_code == 200, response.text[:500]
    return etree.fromstring(response.content)


@dataclass
class Baton:
    """Baton in process with its cast: bearer tokens for the API, logged-in page clients, a monitoring source's
    key, and a department system (a real local receiver) for the webhooks."""

    client: TestClient
    receiver: Receiver
    signal_key: str
    tokens: dict[str, str] = field(default_factory=dict)
    pages: dict[str, TestClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)

    def api(self, who: str | None, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        if body is not None:
            # Python's JSON, as a careless or hostile client writes it: NaN and Infinity included.
            kwargs["content"] = json.dumps(body, allow_nan=True)
            headers["Content-Type"] = "application/json"
        return answered(self.client.request(method, path, headers=headers, **kwargs))

    def page(self, who: str, method: str, path: str, form: dict[str, Any] | None = None) -> httpx.Response:
        data = None if form is None else {**form, "csrf": self.csrf[who]}
        return answered(self.pages[who].request(method, path, data=data, follow_redirects=False))


@pytest.fixture
def baton_in_process(monkeypatch: pytest.MonkeyPatch, baton: str) -> Iterator[Baton]:
    with running_receiver(SECRET) as receiver:
        # The department systems are known once the receiver listens: the settings are read again.
        endpoints = {name: {"url": receiver.url, "secret": SECRET} for name in ("water_affairs", "emergency_office")}
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps(endpoints))
        monkeypatch.setenv("BATON_HTTP_TIMEOUT", "5")
        get_settings.cache_clear()
        for name, (role, department) in CAST.items():
            make_user(name, role, department, positions=POSITIONS.get(name))
        with session_scope() as session:
            key = add_source(session, name="hydrology_network", actor="test:setup")
        with TestClient(app, raise_server_exceptions=False) as client:
            system = Baton(client=client, receiver=receiver, signal_key=key)
            with session_scope() as session:
                for name in CAST:
                    user = session.exec(select(User).where(User.username == name)).one()
                    system.tokens[name] = issue_token(session, user=user).token
                    page = issue_token(session, user=user, kind="session")
                    system.pages[name] = TestClient(app, raise_server_exceptions=False,
                                                    cookies={"baton_session": page.token})
                    system.csrf[name] = csrf_token(page.record.id)
            yield system
            for page_client in system.pages.values():
                page_client.close()


# -- what every example goes through ------------------------------------------------------------------------------
def trigger(b: Baton, *, title: str, description: str, place: str) -> list[str]:
    """Open an incident through each door with the same texts; the ids of those that were accepted."""
    opened = []
    api = b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": title,
                                                     "description": description, "location": {"name": place}})
    if api.status_code == 201:
        opened.append(api.json()["id"])
    else:
        assert api.status_code == 422, api.text
    page = b.page("office", "POST", "/office/incidents", {"type": "probe", "level": "IV", "title": title,
                                                         "description": description, "location_name": place,
                                                         "key": uuid.uuid4().hex})
    if page.status_code == 303:
        opened.append(page.headers["location"].rsplit("/", 1)[-1].split("?")[0])
    else:
        assert page.status_code == 422, page.text[:500]
    signal = b.api(None, "POST", "/api/signals", {"kind": "rainfall", "area": place, "value": 75},
                   headers={"X-Api-Key": b.signal_key})
    if signal.status_code == 201 and signal.json()["incident_id"]:
        opened.append(signal.json()["incident_id"])
    return opened


def probe_incident(b: Baton, title: str) -> str:
    created = b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": title})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def report_task(incident_id: str) -> str | None:
    drive.step(incident_id)
    task = drive.open_tasks(incident_id).get("report")
    return task.id if task else None


def complete(b: Baton, task_id: str, outputs: dict[str, Any], note: Any = None) -> bool:
    """Complete the probe's report over the API; True if it was accepted, else it is refused with a 422."""
    response = b.api("meteorology", "POST", f"/api/tasks/{task_id}/complete", {"outputs": outputs, "note": note})
    assert response.status_code in (200, 422), response.text
    return response.status_code == 200


def complete_on_the_page(b: Baton, task_id: str, values: dict[str, str]) -> bool:
    response = b.page("meteorology", "POST", f"/tasks/{task_id}/complete", values)
    assert response.status_code in (303, 422), response.text[:500]
    return response.status_code == 303


def carry_on(b: Baton, incident_id: str, task_id: str | None, webhooks: bool = True) -> None:
    """If the hostile form was refused, complete it with plain values; then publish the warning (the real action)
    and send the webhooks to the receiver."""
    if task_id is not None and drive.tasks(incident_id)["report"].status != "completed":
        assert complete(b, task_id, SAFE_OUTPUTS)
    drive.step(incident_id, real_actions=True)
    release_drafts(b, incident_id)
    if webhooks:
        deliver_webhooks(b)


def release_drafts(b: Baton, incident_id: str) -> list[str]:
    """The office reviews each drafted warning of the incident and the director signs it off (publishes it)."""
    listing = b.api("office", "GET", f"/api/incidents/{incident_id}/warnings")
    assert listing.status_code == 200, listing.text
    released = []
    for item in listing.json()["items"]:
        if item["state"] == "draft":
            base = f"/api/incidents/{incident_id}/warnings/{item['id']}"
            assert b.api("office", "POST", f"{base}/review").status_code == 200
            signed = b.api("em_director", "POST", f"{base}/sign")
            assert signed.status_code == 200 and signed.json()["published"], signed.text
            released.append(item["id"])
    return released


def deliver_webhooks(b: Baton) -> None:
    with session_scope() as session:
        pending = session.exec(select(OutboundDelivery.id).where(OutboundDelivery.outcome == "pending")).all()
    for delivery_id in pending:
        assert asyncio.run(send_once(delivery_id)) in ("delivered", "no_endpoint", "done")
    assert b.receiver.bad_signatures == 0
    for message in b.receiver.received:
        json.dumps(message, allow_nan=False)  # what a department system got is JSON


def published_everywhere(b: Baton, incident_ids: list[str]) -> None:
    """The public feed and each incident's CAP alerts parse (and the alerts are valid CAP 1.2)."""
    feed = well_formed(b.api(None, "GET", "/public/warnings.atom"))
    listed = {link.get("href", "").rsplit("/", 1)[-1].removesuffix(".xml")
              for link in feed.iter(f"{ATOM}link") if link.get("type") == "application/cap+xml"}
    with session_scope() as session:
        alerts = session.exec(select(CapAlert).where(col(CapAlert.incident_id).in_(incident_ids))).all()
        ours = [(a.id, a.published) for a in alerts]
    for alert_id, published in ours:
        if published:
            assert alert_id in listed or len(listed) >= 200
            CAP_XSD.assertValid(well_formed(b.api(None, "GET", f"/public/warnings/{alert_id}.xml")))


def shown_everywhere(b: Baton, incident_ids: list[str], *, lists: bool = True) -> None:
    """Every page, report and read of the incidents answers (no 5xx), for the office, a reviewer and the
    departments on them; with `lists`, also the consoles, inboxes and analytics that list every incident."""
    if lists:
        b.page("office", "GET", "/office")
        b.page("manager", "GET", "/review")
        b.page("meteorology", "GET", "/inbox")
        b.page("water_affairs", "GET", "/inbox")
        b.page("manager", "GET", "/review/analytics")
        b.api("manager", "GET", "/api/analytics.csv")
    for incident_id in incident_ids:
        b.page("office", "GET", f"/office/incidents/{incident_id}")
        b.page("office", "GET", f"/incidents/{incident_id}/board")
        b.page("manager", "GET", f"/review/incidents/{incident_id}")
        b.page("manager", "GET", f"/review/incidents/{incident_id}/report")
        for path in ("", "/board", "/sitrep", "/activity-log", "/report", "/chain") + (
                ("/shared", "/timeline", "/ledger", "/warnings", "/lessons") if lists else ()):
            b.api("office", "GET", f"/api/incidents/{incident_id}{path}")
        for task in drive.tasks(incident_id).values():
            if task.kind == "human":
                who = {"meteorology": "meteorology", "water_affairs": "water_affairs"}.get(task.department, "office")
                b.page(who, "GET", f"/tasks/{task.id}")
                b.api(who, "GET", f"/api/tasks/{task.id}")


# -- strategies: the known-bad values first, then whatever hypothesis makes -------------------------------------
HOSTILE_TEXT = ["\x00", "a\x01b", "\x0b", "\x1f", "\x7f", "\x85", "\u009f", "\ufffe", "\uffff", "tab\there",
                "line\nbreak", "cr\r\nlf", "e\u0301", "\u0958" * 150, "x" * 201, "\u202e\u2028\u2029",
                "<![CDATA[", "]]>", "&amp;", "<alert>", "&#1;", "\U0001f30a", ""]
texts = st.one_of(st.sampled_from(HOSTILE_TEXT),
                  st.text(st.characters(codec="utf-8"), max_size=60),
                  st.text(st.characters(codec="utf-8", max_codepoint=0x9f), max_size=20),
                  st.builds(lambda ch, n: ch * n, st.characters(codec="utf-8"), st.integers(150, 30_000)))
HOSTILE_NUMBERS: list[Any] = [float("nan"), float("inf"), float("-inf"), "Infinity", "-Infinity", "NaN", "1e400",
                              10**20, -(10**30), 10**15 + 1, True, "", " 5 ", "0x10", 1e-320]
numbers = st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats(), st.integers(-(10**40), 10**40))


def _stamp(moment: datetime, offset_minutes: int | None) -> str:
    if offset_minutes is None:
        return moment.isoformat()
    return moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).isoformat()


HOSTILE_TIMES = [FAR_FUTURE, "0001-01-01T00:00:00+14:00", "2026-07-20T18:00:00", "2201-01-01T00:00:00Z",
                 "1899-12-31T23:59:59+00:00", "9999-12-31", "2026-02-30T00:00:00+08:00", "soon", ""]
times = st.one_of(st.sampled_from(HOSTILE_TIMES),
                  st.builds(_stamp, st.datetimes(), st.none() | st.integers(-23 * 60 - 59, 23 * 60 + 59)))


# -- properties ---------------------------------------------------------------------------------------------------
@BOTH
def test_any_text_through_every_door_and_every_renderer(baton_in_process: Baton) -> None:
    b = baton_in_process

    @EXAMPLES
    @given(title=texts, description=texts, place=texts, summary=texts, reference=texts)
    @example(title="暴雨\x01", description="\x00", place="东\x0b湖", summary="]]>\x1f", reference="\ufffe")
    @example(title="e\u0301 <alert>&amp;", description="一\r\n二\t三", place="\U0001f30a", summary="<![CDATA[",
             reference="r" * 500)
    def run(title: str, description: str, place: str, summary: str, reference: str) -> None:
        opened = trigger(b, title=title, description=description, place=place)
        # The form's texts go through a probe incident whether or not these texts could open one.
        probes = [i for i in opened if drive.incident(i).type == "probe"] or [probe_incident(b, "探测")]
        for index, incident_id in enumerate(probes):
            task_id = report_task(incident_id)
            if task_id is not None:
                outputs = {**SAFE_OUTPUTS, "summary": summary, "place": {"name": place}, "photo": reference}
                if index % 2:
                    complete_on_the_page(b, task_id, {"f_summary": summary, "f_count": "3",
                                                      "f_until": "2026-07-20T18:00", "f_place_name": place,
                                                      "f_colour": "blue", "f_photo": reference})
                else:
                    complete(b, task_id, outputs, note=description)
            carry_on(b, incident_id, task_id)
        b.api("office", "POST", f"/api/incidents/{probes[0]}/reports",
              {"text": summary, "figures": {title[:64]: 1}, "location": {"name": place}})
        published_everywhere(b, [*opened, *probes])
        shown_everywhere(b, sorted({*opened, *probes}))

    run()


@BOTH
def test_any_number_is_finite_where_it_is_stored(baton_in_process: Baton) -> None:
    b = baton_in_process

    @EXAMPLES
    @given(count=numbers, figure=numbers, lat=numbers, value=numbers)
    @example(count=float("nan"), figure=float("inf"), lat="Infinity", value=10**30)
    @example(count=True, figure="NaN", lat=float("-inf"), value="1e400")
    def run(count: Any, figure: Any, lat: Any, value: Any) -> None:
        incident_id = probe_incident(b, "数值")
        b.api("office", "POST", f"/api/incidents/{incident_id}/reports",
              {"text": "数值", "figures": {"n": figure}})
        b.api(None, "POST", "/api/signals", {"kind": "rainfall", "area": "东湖", "value": value, "lat": lat, "lon": 1},
              headers={"X-Api-Key": b.signal_key})
        b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": "坐标",
                                                   "location": {"name": "东湖", "lat": lat, "lon": 114}})
        task_id = report_task(incident_id)
        if task_id is not None:
            place = {"name": "东湖", "lat": lat, "lon": 114}
            if not complete(b, task_id, {**SAFE_OUTPUTS, "count": count, "place": place}):
                complete_on_the_page(b, task_id, {"f_summary": "数值", "f_count": str(count),
                                                  "f_until": "2026-07-20T18:00", "f_place_name": "东湖",
                                                  "f_place_lat": str(lat), "f_place_lon": "114", "f_colour": "red"})
            carry_on(b, incident_id, task_id)
        stored_json_is_json()
        published_everywhere(b, [incident_id])
        shown_everywhere(b, [incident_id], lists=False)

    run()


@BOTH
def test_any_time_is_aware_and_in_range_where_it_is_stored(baton_in_process: Baton) -> None:
    b = baton_in_process
    lesson_id = b.api("office", "POST", f"/api/incidents/{probe_incident(b, '教训')}/lessons", {"text": "教训"}
                      ).json()["id"]

    @EXAMPLES
    @given(until=times, due=times, since=times, start=times)
    @example(until=FAR_FUTURE, due=FAR_FUTURE, since="2026-07-20T18:00:00", start="0001-01-01T00:00:00+14:00")
    def run(until: str, due: str, since: str, start: str) -> None:
        incident_id = probe_incident(b, "时间")
        task_id = report_task(incident_id)
        if task_id is not None:
            if not complete(b, task_id, {**SAFE_OUTPUTS, "until": until}):
                complete_on_the_page(b, task_id, {"f_summary": "时间", "f_count": "1", "f_until": until[:16],
                                                  "f_place_name": "东湖", "f_colour": "red"})
            carry_on(b, incident_id, task_id, webhooks=False)  # a time is text in JSON: nothing to break there
        b.api("office", "POST", f"/api/lessons/{lesson_id}/follow-ups",
              {"department": "water_affairs", "title": "整改", "due_at": due})
        b.api("office", "GET", f"/api/incidents/{incident_id}/board", params={"since": since})
        b.api("admin", "GET", "/api/audit", params={"since": since})
        b.api("manager", "GET", "/api/analytics", params={"from": start, "to": since})
        b.page("manager", "GET", f"/review/analytics?{httpx.QueryParams({'from': start, 'to': until})}")
        b.api("water_affairs", "GET", "/api/follow-ups")
        published_everywhere(b, [incident_id])
        shown_everywhere(b, [incident_id], lists=False)

    run()


def listing_paths() -> list[str]:
    """Every GET route with an `offset` query parameter: a listing added later is covered by itself."""
    def lists(path: str, route: Any) -> bool:
        dependant = getattr(route, "dependant", None)
        return dependant is not None and any(param.name == "offset" for param in dependant.query_params)

    found = sorted(path for method, path in app_routes(lists) if method == "GET")
    unfilled = [path for path in found if "{" in path.replace("{kind}", "")]
    assert not unfilled, f"give these listings' path parameters a value here: {unfilled}"
    # A listing whose path names a kind (the registers) is read for one of them.
    return [path.replace("{kind}", "shelter") for path in found]


@BOTH
def test_any_offset_on_every_listing(baton_in_process: Baton) -> None:
    b = baton_in_process
    paths = listing_paths()
    assert {"/api/incidents", "/api/tasks", "/api/audit", "/api/deliveries", "/api/follow-ups",
            "/api/plan-proposals"} <= set(paths)

    @EXAMPLES
    @given(offset=st.integers())
    @example(offset=10**19)
    @example(offset=2**63)
    @example(offset=10**9 + 1)
    @example(offset=-1)
    def run(offset: int) -> None:
        for path in paths:
            query = httpx.QueryParams({"offset": offset})
            if not path.startswith("/api/"):
                # A page shows a bad offset's first page, a huge one's last.
                assert b.page("admin", "GET", f"{path}?{query}").status_code == 200
                continue
            response = b.api("admin", "GET", f"{path}?{query}")
            if not 0 <= offset <= 10**9:
                assert response.status_code == 422, (path, offset, response.text)

    run()


def stored_json_is_json() -> None:
    """Report figures, step outputs, signals and deliveries on disk are JSON: no NaN or Infinity in them."""
    with session_scope() as session:
        rows = [*session.exec(select(SituationReport.figures)).all(),
                *session.exec(select(DepartmentTask.outputs)).all(),
                *session.exec(select(OutboundDelivery.payload)).all()]
    for value in rows:
        json.dumps(value, allow_nan=False)


# -- regressions: one for each break the issue reproduced -------------------------------------------------------
@BOTH
def test_control_characters_are_refused_at_every_door(baton_in_process: Baton) -> None:
    """Item 4: a U+0001, U+000B or NUL in a title, a place or a signal's area was stored, and broke CAP."""
    b = baton_in_process
    for bad in ("暴雨\x01", "Flood\x0b", "nul\x00"):
        created = b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": bad})
        assert created.status_code == 422 and created.json()["error"]["details"][0]["reason"] == "control_character"
        placed = b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": "ok",
                                                            "location": {"name": bad}})
        assert placed.status_code == 422, placed.text
        signal = b.api(None, "POST", "/api/signals", {"kind": "rainfall", "area": bad, "value": 80},
                       headers={"X-Api-Key": b.signal_key})
        assert signal.status_code == 422, signal.text
        page = b.page("office", "POST", "/office/incidents", {"type": "probe", "level": "IV", "title": bad,
                                                             "key": uuid.uuid4().hex})
        assert page.status_code == 422 and "控制字符" in page.text
    # A newline is no control character in a multi-line text, but a title is one line.
    assert b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": "a\nb"}
                 ).status_code == 422
    described = b.api("office", "POST", "/api/incidents", {"type": "probe", "level": "IV", "title": "e\u0301",
                                                           "description": "one\r\ntwo\tthree"})
    assert described.status_code == 201, described.text
    with session_scope() as session:
        incident = session.get(Incident, described.json()["id"])
        assert incident is not None and incident.title == "é" and incident.description == "one\ntwo\tthree"
        assert session.exec(select(Incident).where(col(Incident.title).contains("\x01"))).first() is None


@BOTH
def test_the_feed_and_the_alerts_survive_a_bad_stored_entry(baton_in_process: Baton,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Item 4: one alert stored with a control character made the public feed answer 500 to everyone."""
    b = baton_in_process
    good, bad, broken = (probe_incident(b, title) for title in ("good", "bad", "broken"))
    ids = {i: b.api("office", "POST", f"/api/incidents/{i}/warnings", WARNING).json()["id"]
           for i in (good, bad, broken)}
    for i in (good, bad, broken):
        assert release_drafts(b, i) == [ids[i]]
    with session_scope() as session:
        # As a warning issued before the input policy was stored it: a headline with U+0001 and U+000B in it, and
        # one that is not XML at all.
        damaged = session.get(CapAlert, ids[bad])
        assert damaged is not None
        identifiers = {i: session.get(CapAlert, ids[i]).identifier for i in (good, bad, broken)}  # type: ignore[union-attr]
        damaged.xml = damaged.xml.replace("暴雨预警", "暴雨\x01预\x0b警")
        session.add(damaged)
        hopeless = session.get(CapAlert, ids[broken])
        assert hopeless is not None
        hopeless.xml = hopeless.xml[:200]
        session.add(hopeless)
    with caplog.at_level(logging.WARNING, logger="baton.sharing"):
        feed = well_formed(b.api(None, "GET", "/public/warnings.atom"))
    entries = {e.text or "" for e in feed.iter(f"{ATOM}id")}
    assert f"urn:oid:{identifiers[bad]}" in entries and f"urn:oid:{identifiers[good]}" in entries  # repaired, kept
    assert f"urn:oid:{identifiers[broken]}" not in entries  # left out
    assert all("\x01" not in (t.text or "") for t in feed.iter(f"{ATOM}title"))
    assert any("not well-formed as stored" in r.message for r in caplog.records)
    assert any("cannot be repaired" in r.message for r in caplog.records)
    CAP_XSD.assertValid(well_formed(b.api(None, "GET", f"/public/warnings/{ids[bad]}.xml")))
    assert b.api(None, "GET", f"/public/warnings/{ids[broken]}.xml").status_code == 404


@BOTH
def test_cap_from_text_stored_before_the_policy_is_well_formed(baton_in_process: Baton) -> None:
    """Item 4: the renderers repair what the policy never saw (a title stored before it): the alert issued now
    is well-formed, valid CAP, and the feed shows it."""
    b = baton_in_process
    incident_id = probe_incident(b, "旧")
    with session_scope() as session:
        session.execute(sql("UPDATE incident SET title = :t, location_name = :p WHERE id = :i"),
                        {"t": "旧\x01标题\x1f", "p": "东\x0b湖", "i": incident_id})
    alert = b.api("office", "POST", f"/api/incidents/{incident_id}/warnings", WARNING)
    assert alert.status_code == 201
    assert release_drafts(b, incident_id) == [alert.json()["id"]]
    with session_scope() as session:
        stored = session.get(CapAlert, alert.json()["id"])
        assert stored is not None
        CAP_XSD.assertValid(etree.fromstring(stored.xml.encode("utf-8")))  # rendered well-formed, not repaired
    cap = well_formed(b.api(None, "GET", f"/public/warnings/{alert.json()['id']}.xml"))
    CAP_XSD.assertValid(cap)
    assert "东湖" in etree.tostring(cap, encoding="unicode")  # the place, repaired (the title is not published)
    well_formed(b.api(None, "GET", "/public/warnings.atom"))
    b.page("office", "GET", f"/office/incidents/{incident_id}")


@BOTH
def test_a_far_future_time_is_refused_and_one_stored_before_still_shows(baton_in_process: Baton) -> None:
    """Item 5: `9999-12-31T23:59:59-12:00` in a step's output was accepted, then every page showing it was 500
    (OverflowError converting it to Baton's time zone); a follow-up due then was 500 at once."""
    b = baton_in_process
    incident_id = probe_incident(b, "远")
    task_id = report_task(incident_id)
    assert task_id is not None
    refused = b.api("meteorology", "POST", f"/api/tasks/{task_id}/complete",
                    {"outputs": {**SAFE_OUTPUTS, "until": FAR_FUTURE}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "form_invalid"
    assert "1900 to 2200" in said_in_english(refused.json()["error"])
    assert complete(b, task_id, SAFE_OUTPUTS)
    with session_scope() as session:
        # As the output was stored before the policy held.
        task = session.get(DepartmentTask, task_id)
        assert task is not None
        task.outputs = {**SAFE_OUTPUTS, "until": FAR_FUTURE}
        session.add(task)
    carry_on(b, incident_id, task_id)
    for who, path in (("meteorology", f"/tasks/{task_id}"), ("office", f"/incidents/{incident_id}/board"),
                      ("water_affairs", f"/tasks/{drive.tasks(incident_id)['assess'].id}")):
        shown = b.page(who, "GET", path)
        assert shown.status_code == 200 and "9999-12-31" in shown.text, path
    assert b.page("manager", "GET", f"/review/incidents/{incident_id}/report").status_code == 200
    assert b.api("manager", "GET", f"/api/incidents/{incident_id}/sitrep").status_code == 200
    lesson = b.api("office", "POST", f"/api/incidents/{incident_id}/lessons", {"text": "教训"}).json()["id"]
    due = b.api("office", "POST", f"/api/lessons/{lesson}/follow-ups",
                {"department": "water_affairs", "title": "整改", "due_at": FAR_FUTURE})
    assert due.status_code == 422 and "1900 to 2200" in said_in_english(due.json()["error"])


@BOTH
def test_huge_offsets_and_naive_times_are_422(baton_in_process: Baton) -> None:
    """Item 6: `offset=10000000000000000000` was 500 on every listing (an integer the database cannot take); a
    `since` without an offset was 500 on the board and the audit trail."""
    b = baton_in_process
    incident_id = probe_incident(b, "页")
    listings = [path for path in listing_paths() if path.startswith("/api/")]
    assert len(listings) >= 6, listings
    for path in listings:
        response = b.api("admin", "GET", f"{path}?offset=10000000000000000000")
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", path
        assert b.api("admin", "GET", f"{path}?offset=1000000000").status_code == 200, path
    assert b.page("admin", "GET", "/admin/audit?offset=10000000000000000000").status_code == 200
    for path in (f"/api/incidents/{incident_id}/board", "/api/audit"):
        naive = b.api("admin", "GET", path, params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and naive.json()["error"]["details"][0]["reason"] == "no_offset", path
        assert b.api("admin", "GET", path, params={"since": "2026-01-01T00:00:00+08:00"}).status_code == 200


@BOTH
def test_nan_and_infinity_never_reach_the_disk(baton_in_process: Baton) -> None:
    """Item 6: NaN and Infinity (also the text "Infinity") were stored in report figures: invalid JSON on disk."""
    b = baton_in_process
    incident_id = probe_incident(b, "数")
    for bad in (float("nan"), float("inf"), float("-inf"), "Infinity", "NaN", 10**30):
        response = b.api("office", "POST", f"/api/incidents/{incident_id}/reports",
                         {"text": "数", "figures": {"n": bad}})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", bad
        signal = b.api(None, "POST", "/api/signals", {"kind": "rainfall", "area": "东湖", "value": bad},
                       headers={"X-Api-Key": b.signal_key})
        assert signal.status_code == 422, bad
    assert b.api("office", "POST", f"/api/incidents/{incident_id}/reports",
                 {"text": "数", "figures": {"n": 2.5}}).status_code == 201
    with session_scope() as session:
        figures = session.exec(select(SituationReport.figures)).all()
    assert figures == [{"n": 2.5}]
    stored_json_is_json()


@BOTH
def test_control_characters_in_the_address_are_refused(baton_in_process: Baton) -> None:
    """PostgreSQL cannot compare a NUL with a key: a NUL in a path or a query is refused before a route reads
    it (422), on the API and on the pages."""
    b = baton_in_process
    for path in ("/api/incidents/%00", "/api/incidents?type=%00", "/api/tasks/a%01b", "/public/warnings/%00.xml"):
        response = b.api("office", "GET", path)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", path
    page = b.page("office", "GET", "/office/incidents/%00")
    assert page.status_code == 422 and "控制字符" in page.text


@BOTH
def test_a_login_with_control_characters_is_refused(baton_in_process: Baton) -> None:
    """A NUL in a user name reached PostgreSQL (the user lookup, the audit entry of the failure)."""
    b = baton_in_process
    for username in ("\x00", "office\x00", "a\x01b"):
        response = b.client.post("/api/auth/token", data={"username": username, "password": "whatever-it-is"})
        assert answered(response).status_code == 422, response.text
    login_form = b.client.get("/login")
    token = csrf_of_login(login_form.text)
    page = answered(b.client.post("/login", data={"username": "office\x00", "password": "x", "csrf": token},
                                  follow_redirects=False))
    assert page.status_code == 422 and "控制字符" in page.text


def csrf_of_login(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


@BOTH
def test_a_plan_proposal_with_a_control_character_is_refused(baton_in_process: Baton) -> None:
    """A YAML escape puts into a plan's text what the file does not show; plan texts are published in CAP."""
    b = baton_in_process
    plan = (PROCESS_DEFS_DIR / "flood.yaml").read_text(encoding="utf-8")
    hidden = plan.replace('zh: "{issuer}发布暴雨{colour}预警信号"', 'zh: "{issuer}发布暴雨{colour}\\x01预警信号"', 1)
    assert hidden != plan
    refused = b.api("office", "POST", "/api/plan-proposals", {"type": "flood", "text": hidden})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "plan_invalid", refused.text
    assert "U+0001" in said_in_english(refused.json()["error"])
    plain = plan.replace('zh: "{issuer}发布暴雨{colour}预警信号"', 'zh: "{issuer}发布暴雨{colour}预警信号（内涝）"', 1)
    assert plain != plan
    assert b.api("office", "POST", "/api/plan-proposals", {"type": "flood", "text": plain}).status_code == 201


def test_a_500_carries_the_security_headers(baton: str) -> None:
    """Item 6: an unhandled error is answered outside the middleware that sets the headers on every answer."""
    failing: FastAPI = create_app()

    @failing.get("/api/fails")
    def fails() -> None:
        raise RuntimeError("a bug")

    with TestClient(failing, raise_server_exceptions=False) as client:
        response = client.get("/api/fails")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_the_policy_rules() -> None:
    """The rules themselves, at their edges."""
    from core.platform import input_policy as policy

    assert policy.text("e\u0301") == "é"
    assert policy.text("a\r\nb\rc", multiline=True) == "a\nb\nc"
    assert policy.text("\u0958" * 100, max_length=200) == "\u0915\u093c" * 100  # NFC can lengthen a text
    with pytest.raises(policy.Violation, match="at most 199"):
        policy.text("\u0958" * 100, max_length=199)
    for character in ("\x00", "\x08", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\ufffe", "\uffff"):
        with pytest.raises(policy.Violation) as refused:
            policy.text(f"a{character}b", multiline=True)
        assert refused.value.reason == "control_character"
    for character in ("\t", "\n"):
        with pytest.raises(policy.Violation):
            policy.text(character)
    aware = datetime(2200, 12, 31, 23, 59, tzinfo=UTC)
    assert policy.moment(aware) == aware
    for moment in (datetime(2201, 1, 1, tzinfo=UTC), datetime(1899, 12, 31, 23, 59, tzinfo=UTC),
                   datetime(2026, 1, 1)):
        with pytest.raises(policy.Violation):
            policy.moment(moment)
    assert policy.moment(datetime(2026, 1, 1), local=UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(policy.Violation):
        policy.moment_text(FAR_FUTURE)
    for value in (float("nan"), float("inf"), True, "1", 10**15 + 1):
        with pytest.raises(policy.Violation):
            policy.number(value)
    assert policy.number(-(10**15)) == -(10**15)
    assert policy.xml_safe("a\x00b\x0bc\ufffed\ud800e\tf\ng") == "abcde\tf\ng"
