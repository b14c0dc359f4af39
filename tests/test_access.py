"""Who may do what, through the app's HTTP interface (in process): every API endpoint × every role × own or
another department's object.

The matrix is data (MATRIX): a row is a method, a path template, a target and the status each role must get.
Roles are anonymous, office, manager, admin, and two department users chosen by the target: the department
that owns it and one that does not. A department reads and acts on its own department's tasks and reads the
incidents it is on; anything else is 404 so that existence does not leak; a role that may not do something
at all gets 403; nobody logged in gets 401. A refused request changes nothing. `pytest -s` prints the table.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlmodel import select

from core.incidents.models import DepartmentTask, Incident
from core.outbox.models import OutboundDelivery
from core.platform.db import session_scope
from core.signals.intake import add_source
from tests import engine_driver as drive
from tests.access_matrix import (
    NA,
    ROLES,
    Cell,
    Row,
    app_routes,
    assert_every_route_has_a_row,
    assert_no_violations,
    check_change,
    print_table,
    roles,
)
from tests.api_server import (
    ASSESSMENT,
    LIFT,
    NEW_INCIDENT,
    PASSWORD,
    Api,
    FloodIncident,
    error_of,
    fingerprint,
    flood,
    issued_token,
    ledger_count,
    login,
    make_user,
    standard_api,
)
from tests.conftest import Say
from tests.fixtures.api import ApiWith
from tests.servers import PrefectServer

Body = dict[str, Any] | Callable[["Target"], dict[str, Any]] | None


@dataclass(frozen=True)
class Target:
    """What a row's path points at, and which department users own it and do not."""

    kind: str
    params: dict[str, str]
    owner: str | None
    other: str
    outputs: dict[str, Any] = field(default_factory=dict)
    api_key: str = ""


@dataclass(frozen=True, kw_only=True)
class Case(Row):
    json: Body = None
    form: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None  # a multipart upload
    headers: Callable[[Target], dict[str, str]] | None = None
    # A write must change something when allowed and nothing when refused. An allowed write gets a fresh target
    # unless `reuse` says the target is not used up (and `fresh_token`, a token of its own to spend).
    writes: bool = False
    reuse: bool = False
    fresh_token: bool = False
    # The error code a role's refusal carries where it is not the status's usual one (ERROR_CODES), e.g. a
    # department refused a level change for want of a position: 403 position_required.
    codes: dict[str, str] = field(default_factory=dict)


def outputs(target: Target) -> dict[str, Any]:
    return {"outputs": target.outputs}


# The office records the flood commander's verbal order (the standard cast's `commander` holds the position).
LEVEL = {"level": "III", "reason": "雨情加重", "ordered_by": "commander"}
NO_POSITION = {"dept_owner": "position_required"}
HAND_BACK = {"reason": "不属于本部门职责"}
REPORT = {"text": "两处积水点已排除", "figures": {"points_cleared": 2}}
WARNING = {"event": {"zh": "暴雨内涝", "en": "Rainstorm waterlogging"},
           "headline": {"zh": "暴雨内涝预警", "en": "Rainstorm and waterlogging warning"},
           "instruction": {"zh": "远离低洼地带", "en": "Keep away from low-lying areas"}}
SIGNAL = {"kind": "rainfall", "area": "城东区", "value": 12.5, "unit": "mm"}  # under every threshold: ignored

# Reading: everyone logged in; the incident's own departments; the reviewers (office, manager, admin).
EVERYONE = roles(401, 200, 200, 200, 200, 200)
VISIBLE = roles(401, 200, 200, 200, 200, 404)
MISSING = roles(401, 404, 404, 404, 404, 404)
REVIEW = roles(401, 200, 200, 200, 403, 403)
REVIEW_MISSING = roles(401, 404, 404, 404, 403, 403)
# Acting on a task: only its department (the office and admin act for the emergency office).
DEPT_ACTS = roles(401, 403, 403, 403, 200, 404)
OFFICE_ACTS = roles(401, 200, 403, 200, NA, 404)
ACT_MISSING = roles(401, 404, 403, 404, 404, 404)

MATRIX: list[Case] = [
    Case("POST", "/api/auth/token", "none", roles(200, 200, 200, 200, 200, 200),
         form={"username": "manager", "password": PASSWORD}),
    Case("GET", "/api/auth/me", "none", EVERYONE),
    Case("POST", "/api/auth/revoke", "none", roles(401, 204, 204, 204, 204, 204), writes=True, fresh_token=True),
    Case("POST", "/api/incidents", "none", roles(401, 201, 403, 201, 403, 403), json=NEW_INCIDENT, writes=True),
    Case("GET", "/api/incidents", "none", EVERYONE),
    Case("GET", "/api/incidents/{incident_id}", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}", "unknown", MISSING),
    # A department on the incident is refused for want of a position (only the office records verbal orders);
    # one not on it does not learn that the incident exists.
    Case("POST", "/api/incidents/{incident_id}/level", "incident", roles(401, 200, 403, 200, 403, 404), json=LEVEL,
         writes=True, codes=NO_POSITION),
    Case("POST", "/api/incidents/{incident_id}/level", "unknown", roles(401, 404, 403, 404, 404, 404), json=LEVEL,
         writes=True),
    Case("GET", "/api/incidents/{incident_id}/timeline", "incident", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/timeline", "unknown", REVIEW_MISSING),
    Case("GET", "/api/incidents/{incident_id}/ledger", "incident", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/ledger", "unknown", REVIEW_MISSING),
    Case("GET", "/api/incidents/{incident_id}/ledger/verify", "incident", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/ledger/verify", "unknown", REVIEW_MISSING),
    Case("GET", "/api/incidents/{incident_id}/shared", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/shared", "unknown", MISSING),
    Case("GET", "/api/tasks", "none", EVERYONE),
    Case("GET", "/api/tasks?incident={incident_id}", "incident", VISIBLE),
    Case("GET", "/api/tasks?incident={incident_id}", "unknown", MISSING),
    Case("GET", "/api/tasks/{task_id}", "task", VISIBLE),
    Case("GET", "/api/tasks/{task_id}", "task_same_incident", VISIBLE),
    Case("GET", "/api/tasks/{task_id}", "office_task", roles(401, 200, 200, 200, NA, 404)),
    Case("GET", "/api/tasks/{task_id}", "unknown", MISSING),
    *[Case("POST", f"/api/tasks/{{task_id}}/{action}", target, expect, json=body, writes=True)
      for action, body in (("acknowledge", None), ("complete", outputs), ("hand-back", HAND_BACK))
      for target, expect in (("task", DEPT_ACTS), ("task_same_incident", DEPT_ACTS), ("office_task", OFFICE_ACTS),
                             ("unknown", ACT_MISSING))],
    Case("GET", "/api/process-defs", "none", EVERYONE),
    Case("GET", "/api/process-defs/{type_key}", "none", EVERYONE),
    Case("GET", "/api/process-defs/{type_key}", "unknown", MISSING),
    Case("GET", "/api/departments", "none", EVERYONE),
    Case("GET", "/api/health", "none", roles(200, 200, 200, 200, 200, 200)),
    # Information sharing: the board and situation report follow the incident's visibility; reports come from
    # whoever acts for a department on it; warnings are the office's; the delivery log is for reviewers.
    Case("GET", "/api/incidents/{incident_id}/board", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/board", "unknown", MISSING),
    Case("GET", "/api/incidents/{incident_id}/sitrep", "incident", VISIBLE),
    Case("GET", "/api/incidents/{incident_id}/sitrep", "unknown", MISSING),
    Case("POST", "/api/incidents/{incident_id}/reports", "incident", roles(401, 201, 403, 201, 201, 404), json=REPORT,
         writes=True),
    Case("POST", "/api/incidents/{incident_id}/reports", "unknown", roles(401, 404, 403, 404, 404, 404), json=REPORT,
         writes=True),
    Case("GET", "/api/incidents/{incident_id}/warnings", "incident", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/warnings", "unknown", REVIEW_MISSING),
    Case("POST", "/api/incidents/{incident_id}/warnings", "incident", roles(401, 201, 403, 201, 403, 403),
         json=WARNING, writes=True),
    Case("POST", "/api/incidents/{incident_id}/warnings", "unknown", roles(401, 404, 403, 404, 403, 403),
         json=WARNING, writes=True),
    Case("GET", "/api/deliveries", "none", roles(401, 200, 200, 200, 403, 403)),
    Case("GET", "/api/deliveries/{delivery_id}", "delivery", roles(401, 200, 200, 200, 403, 403)),
    Case("GET", "/api/deliveries/{delivery_id}", "unknown", roles(401, 404, 404, 404, 403, 403)),
    Case("POST", "/api/deliveries/{delivery_id}/replay", "delivery", roles(401, 200, 403, 200, 403, 403), writes=True),
    Case("POST", "/api/deliveries/{delivery_id}/replay", "unknown", roles(401, 404, 403, 404, 403, 403),
         writes=True),
    # Monitoring signals authenticate by the source's API key, not a user: a user's token alone is 401.
    Case("POST", "/api/signals", "source", roles(401, 401, 401, 401, 401, 401), json=SIGNAL, writes=True,
         note="no key"),
    Case("POST", "/api/signals", "source", roles(401, 401, 401, 401, 401, 401), json=SIGNAL, writes=True,
         headers=lambda target: {"X-Api-Key": "bts_" + "0" * 43}, note="wrong key"),
    Case("POST", "/api/signals", "source", roles(201, 201, 201, 201, 201, 201), json=SIGNAL, writes=True,
         reuse=True, headers=lambda target: {"X-Api-Key": target.api_key}, note="source key"),
]

# Further areas add their rows and target kinds in tests/access_rows_<area>.py (a list `ROWS` of Case and a dict
# `TARGETS` of kind -> builder), so work on one area never edits this list.
EXTRA_TARGETS: dict[str, Callable[[], Target]] = {}
for _module_path in sorted(Path(__file__).resolve().parent.glob("access_rows_*.py")):
    _module = importlib.import_module(f"tests.{_module_path.stem}")
    MATRIX.extend(_module.ROWS)
    EXTRA_TARGETS.update(getattr(_module, "TARGETS", {}))

# What each status's error body must say (503: the PDF row where Chromium is not installed).
ERROR_CODES = {401: "not_authenticated", 403: "forbidden", 404: "not_found", 503: "pdf_unavailable"}


# -- the world the matrix runs against ----------------------------------------------------------------------


def _task_target(kind: str, incident: FloodIncident, step: str, owner: str | None, other: str,
                 filled: dict[str, Any]) -> Target:
    return Target(kind, {"incident_id": incident.id, "task_id": incident.tasks[step], "type_key": "flood"},
                  owner, other, filled)


class NoSuchObjects(dict[str, str]):
    """The path parameters of the 'unknown' target: any id asked for is a fresh UUID that names nothing."""

    def __missing__(self, key: str) -> str:
        self[key] = str(uuid.uuid4())
        return self[key]


def build_target(kind: str) -> Target:
    """A target of `kind`, built fresh. Incidents are floods at level IV in their warning stage: meteorology has
    finished its forecast, water_affairs holds the risk assessment, public_security is not on the incident.
    A delivery is a dead-lettered notice on such an incident; a source is a monitoring system's API key."""
    if kind in EXTRA_TARGETS:
        return EXTRA_TARGETS[kind]()
    if kind == "none":
        return Target(kind, {"type_key": "flood"}, "water_affairs", "public_security")
    if kind == "unknown":
        return Target(kind, NoSuchObjects(type_key="volcano"), "water_affairs", "public_security", ASSESSMENT)
    if kind == "source":
        with session_scope() as session:
            key = add_source(session, name="meteorology", actor="test:setup")
        return Target(kind, {}, "water_affairs", "public_security", api_key=key)
    if kind == "delivery":
        # A dead-lettered notice to water_affairs' system about its task.
        target = build_target("task")
        with session_scope() as session:
            delivery = OutboundDelivery(incident_id=target.params["incident_id"], idempotency_key=str(uuid.uuid4()),
                                        purpose="assigned", target="water_affairs", endpoint="water_affairs",
                                        payload={"task": target.params["task_id"]}, payload_digest="0" * 64,
                                        attempts=4, last_status=503, outcome="failed")
            session.add(delivery)
            session.flush()
            return Target(kind, {**target.params, "delivery_id": delivery.id}, "water_affairs", "public_security")
    if kind == "office_task":
        # The emergency office's own step: no department owns it; water_affairs is on the incident.
        return _task_target(kind, flood("lift"), "lift_warning", None, "water_affairs", LIFT)
    incident = flood("assessment")
    if kind == "incident":
        return _task_target(kind, incident, "flood_risk_assessment", "water_affairs", "public_security", ASSESSMENT)
    if kind == "task":
        return _task_target(kind, incident, "flood_risk_assessment", "water_affairs", "public_security", ASSESSMENT)
    if kind == "task_same_incident":
        # The other department is on the same incident (it did the forecast) but the task is not its own.
        return _task_target(kind, incident, "flood_risk_assessment", "water_affairs", "meteorology", ASSESSMENT)
    raise AssertionError(f"no target kind {kind}")


def run_cell(api: Api, case: Case, role: str, shared: dict[str, Target]) -> Cell:
    cell = Cell(case, role, case.expect[role])
    if cell.expected is None:
        return cell
    allowed = cell.expected < 400
    target = build_target(case.target) if case.writes and allowed and not case.reuse else shared[case.target]
    username = {"anonymous": None, "dept_owner": target.owner, "dept_other": target.other}.get(role, role)
    token = None
    if username is not None:
        token = issued_token(username) if case.fresh_token else api.tokens[username]
    body = case.json(target) if callable(case.json) else case.json
    headers = case.headers(target) if case.headers else None
    before = fingerprint()
    response = api.server.request(case.method, case.path.format_map(target.params), token, json=body,
                                  data=case.form, files=case.files, headers=headers)
    cell.got = response.status_code
    if response.status_code >= 400:
        try:
            error_of(response, response.status_code, case.codes.get(role) or ERROR_CODES.get(response.status_code))
        except AssertionError as exc:
            cell.problems.append(f"error body: {exc}")
    if "frame-ancestors 'none'" not in response.headers.get("Content-Security-Policy", ""):
        cell.problems.append("no CSP header")
    check_change(cell, writes=case.writes, allowed=allowed, changed=fingerprint() != before)
    return cell


@pytest.fixture
def matrix_api(api_with: ApiWith, prefect_server: PrefectServer) -> Iterator[Api]:
    """The API with Prefect reachable, so that health is 200 for everyone."""
    with api_with({"BATON_PREFECT_API_URL": prefect_server.api_url}) as server:
        yield standard_api(server, via_login=True)


@pytest.mark.prefect
def test_access_matrix(matrix_api: Api, figures: Say) -> None:
    shared = {kind: build_target(kind) for kind in {case.target for case in MATRIX}}
    cells = [run_cell(matrix_api, case, role, shared) for case in MATRIX for role in ROLES]
    print_table(cells, figures, heading="endpoint [target]", summary="")
    assert_no_violations(cells)


def api_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the app under /api."""
    return app_routes(lambda path, route: isinstance(route, APIRoute) and (path == "/api" or path.startswith("/api/")))


def test_every_api_route_is_in_the_matrix() -> None:
    routes = api_routes()
    assert len(routes) >= 20, routes
    assert_every_route_has_a_row(routes, MATRIX, "API routes")


# -- lists and shared data ----------------------------------------------------------------------------------------


@pytest.fixture
def response_stage() -> FloodIncident:
    """A flood in its response stage: public_security has closed roads (shared with emergency_office,
    transport, water_affairs and subdistrict, not meteorology); water_affairs is draining."""
    incident = flood("lift")
    drive.complete_step(incident.id, "lift_warning", {"decision": "respond"})
    drive.step(incident.id)
    drive.complete_step(incident.id, "activate_command", {"command_post": "城东区防汛指挥部", "commander": "张三"})
    drive.step(incident.id)
    drive.complete_step(incident.id, "traffic_control", {"roads_closed": 3, "underpasses_closed": 2})
    drive.step(incident.id)
    for key, task in drive.open_tasks(incident.id).items():
        incident.tasks[key] = task.id
    return incident


DEPARTMENTS = ("meteorology", "water_affairs", "public_security")


def test_a_department_never_sees_another_departments_tasks_in_lists(api: Api,
                                                                     response_stage: FloodIncident) -> None:
    others = [flood("forecast"), flood("assessment"), flood("lift")]
    with session_scope() as session:
        human = session.exec(select(DepartmentTask).where(DepartmentTask.kind == "human")).all()
        incident_ids = {i.id for i in session.exec(select(Incident)).all()}
    assert len(incident_ids) == 4 and others
    for department in (*DEPARTMENTS, "fire_rescue"):
        if department == "fire_rescue":  # a department on no incident at all
            make_user("fire_rescue", "department", "fire_rescue")
            api.tokens["fire_rescue"] = login(api.server, "fire_rescue")
        own = {t.id for t in human if t.department == department}
        on = {t.incident_id for t in session_tasks(department)}
        seen: set[str] = set()
        queries = ["", "?open=true", "?status=completed", "?status=assigned", "?department=water_affairs",
                   "?department=emergency_office", *[f"?incident={i}" for i in sorted(on)]]
        for query in queries:
            page = api.call(department, "GET", f"/api/tasks{query}").json()
            assert {t["department"] for t in page["items"]} <= {department}, (department, query)
            assert page["total"] == len(page["items"]), (department, query)
            seen |= {t["id"] for t in page["items"]}
        assert seen == own, department
        # Paging one at a time finds the same tasks, and the totals count only the department's own.
        paged = [api.call(department, "GET", f"/api/tasks?limit=1&offset={n}").json() for n in range(len(own) + 1)]
        assert {p["total"] for p in paged} == {len(own)}
        assert {t["id"] for p in paged for t in p["items"]} == own and paged[-1]["items"] == []
        incidents = api.call(department, "GET", "/api/incidents").json()
        assert {i["id"] for i in incidents["items"]} == on and incidents["total"] == len(on), department
        for incident_id in incident_ids - on:
            error_of(api.call(department, "GET", f"/api/incidents/{incident_id}"), 404, "not_found")
            error_of(api.call(department, "GET", f"/api/tasks?incident={incident_id}"), 404, "not_found")
    # The reviewers see every department's tasks.
    for who in ("office", "manager", "admin"):
        assert api.call(who, "GET", "/api/tasks?limit=500").json()["total"] == len(human)
        assert api.call(who, "GET", "/api/incidents").json()["total"] == 4


def session_tasks(department: str) -> list[DepartmentTask]:
    with session_scope() as session:
        return list(session.exec(select(DepartmentTask).where(DepartmentTask.department == department)).all())


def test_a_department_reads_only_what_was_shared_with_it(api: Api, response_stage: FloodIncident) -> None:
    path = f"/api/incidents/{response_stage.id}/shared"
    everything = {item["step"] for item in api.call("manager", "GET", path).json()["items"]}
    assert {"rainstorm_forecast", "flood_risk_assessment", "activate_command", "traffic_control"} <= everything
    seen = {d: {item["step"]: item for item in api.call(d, "GET", path).json()["items"]} for d in DEPARTMENTS}
    # Traffic control is shared with water_affairs (and the office); meteorology reads only its one public
    # field (the roads closed, which the press release publishes), never the underpasses.
    assert seen["meteorology"]["traffic_control"]["outputs"] == {"roads_closed": 3}
    assert seen["water_affairs"]["traffic_control"]["outputs"] == {"roads_closed": 3, "underpasses_closed": 2}
    assert "traffic_control" in seen["public_security"]
    for department in DEPARTMENTS:
        assert {"rainstorm_forecast", "flood_risk_assessment", "activate_command"} <= set(seen[department])
        assert set(seen[department]) <= everything
    # A task shows its department the inputs its plan step names, and only those fields.
    detail = api.call("water_affairs", "GET", f"/api/tasks/{response_stage.tasks['drainage_operations']}").json()
    assert {(i["step"], tuple(f["key"] for f in i["fields"])) for i in detail["inputs"]} == {
        ("flood_risk_assessment", ("hot_spots",)), ("rainstorm_forecast", ("rainfall_1h",))}
    # And a department that is not on the incident reads nothing of it.
    make_user("health", "department", "health_commission")
    token = login(api.server, "health")
    error_of(api.server.request("GET", path, token), 404, "not_found")


def test_refused_actions_leave_the_task_and_ledger_as_they_were(api: Api) -> None:
    """The matrix checks this cell by cell; here the whole sequence on one task, then its owner acts."""
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    before = ledger_count(incident.id)
    # Nobody logged in: 401; a role that never acts for a department: 403; a department that may not see the
    # task (meteorology is on the incident, public_security is not): 404.
    refusal = {None: 401, "office": 403, "manager": 403, "admin": 403, "meteorology": 404, "public_security": 404}
    for who, status in refusal.items():
        for action in ("acknowledge", "complete", "hand-back"):
            body = {"outputs": ASSESSMENT} if action == "complete" else HAND_BACK if action == "hand-back" else None
            response = api.call(who, "POST", f"/api/tasks/{task_id}/{action}", json=body)
            assert response.status_code == status, (who, action, response.status_code)
    assert ledger_count(incident.id) == before
    with session_scope() as session:
        row = session.get(DepartmentTask, task_id)
        assert row is not None and row.status == "assigned" and row.acknowledged_at is None and row.outputs is None
    response = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": ASSESSMENT})
    assert response.status_code == 200 and ledger_count(incident.id) == before + 1
