"""Who may do what outside /api, through the app's HTTP interface (in process) with browser sessions: every
page, the API schema and docs, and the public warning feed × every role × own, another department's, or no
such object.

The roles and targets are those of the API matrix (tests/test_access.py). Pages follow one rule: a page a role
may not use reads as missing (404, the same page as for an object that does not exist, so that existence does
not leak); acting on a task the role may read but not act on is 403; nobody logged in is sent to the login form
(303 to /login, with the page to come back to on a GET) and changes nothing. Each user logs in through the
login form; every form is posted with its own session's CSRF token (that one without it is refused is
test_security's). A refused request changes nothing, an allowed write changes something, a read changes
nothing. The public feed and its alerts need no login, by design: they are what the public is warned with.
`pytest -s` prints the table.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, func, select

from api.pages.rendering import PageRoute
from core.platform.db import session_scope
from core.users.models import AccessToken, User
from tests import access_matrix as matrix
from tests.access_matrix import NA, ROLES, Cell, Row, roles
from tests.api_server import (
    PASSWORD,
    Api,
    ApiServer,
    error_of,
    fingerprint,
    page_client,
)
from tests.conftest import Say
from tests.test_access import Target, build_target

LOGIN = 303  # what a role gets where it must log in first (or, logged in, a form's redirect on success)
NOT_FOUND_PAGE = "页面不存在，或您无权查看"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

Form = dict[str, str] | Callable[[Target], dict[str, str]] | None
# A form's file fields (name -> (filename, bytes)): the form is then sent as multipart/form-data.
Files = Callable[[Target], dict[str, tuple[str, bytes]]] | None


@dataclass(frozen=True, kw_only=True)
class PageCase(Row):
    form: Form = None
    files: Files = None
    writes: bool = False
    # Open to anyone (the login form, the public feed): a 2xx/3xx for the anonymous role is then allowed.
    public: bool = False
    # The cell logs in a browser session of its own (logging in and out spends one).
    own_session: bool = False


def task_form(target: Target) -> dict[str, str]:
    """The task's valid outputs as its form posts them (booleans as checked boxes)."""
    out: dict[str, str] = {}
    for key, value in target.outputs.items():
        if value is True:
            out[f"f_{key}"] = "on"
        elif value is not False:
            out[f"f_{key}"] = str(value)
    return out


def new_user(target: Target) -> dict[str, str]:
    return {"username": f"desk-{uuid.uuid4().hex[:8]}", "role": "department", "department": "water_affairs",
            "password": "a-first-password-42", "display_name": "水务值班"}


def new_incident(target: Target) -> dict[str, str]:
    return {"type": "flood", "level": "IV", "title": "页面矩阵 access", "key": uuid.uuid4().hex}


def _confirm_form(target: Target) -> dict[str, str]:
    from tests.access_rows_answers import confirm_form  # after tests.test_access, which loads the rows

    return confirm_form(target)


# Who sees a page: the office console is the office's (and admin's), the inbox every desk that acts for a
# department, review the reviewers'; a task and the situation board follow the API's visibility.
OFFICE_PAGE = roles(LOGIN, 200, 404, 200, 404, 404)
DESK_PAGE = roles(LOGIN, 200, 404, 200, 200, 200)
REVIEW_PAGE = roles(LOGIN, 200, 200, 200, 404, 404)
VISIBLE_PAGE = roles(LOGIN, 200, 200, 200, 200, 404)
MISSING_PAGE = roles(LOGIN, 404, 404, 404, 404, 404)
OFFICE_FORM = roles(LOGIN, 303, 404, 303, 404, 404)
DEPT_FORM = roles(LOGIN, 403, 403, 403, 303, 404)
OFFICE_STEP_FORM = roles(LOGIN, 303, 403, 303, NA, 404)
ADMIN_PAGE = roles(LOGIN, 404, 404, 200, 404, 404)
ADMIN_FORM = roles(LOGIN, 404, 404, 303, 404, 404)
SIGNED_IN = roles(LOGIN, 200, 200, 200, 200, 200)
ANYONE = roles(200, 200, 200, 200, 200, 200)
NOBODY = roles(404, 404, 404, 404, 404, 404)

MATRIX: list[PageCase] = [
    PageCase("GET", "/login", "none", ANYONE, public=True),
    PageCase("POST", "/login", "none", roles(303, 303, 303, 303, 303, 303), writes=True, public=True,
             own_session=True, note="own password"),
    PageCase("POST", "/logout", "none", roles(LOGIN, 303, 303, 303, 303, 303), writes=True, own_session=True),
    PageCase("POST", "/lang", "none", roles(LOGIN, 303, 303, 303, 303, 303), form={"lang": "en", "next": "/"},
             writes=True),
    PageCase("GET", "/", "none", roles(LOGIN, 303, 303, 303, 303, 303)),
    PageCase("GET", "/office", "none", OFFICE_PAGE),
    PageCase("POST", "/office/incidents", "none", OFFICE_FORM, form=new_incident, writes=True),
    *[PageCase("GET", path, target, OFFICE_PAGE if target == "incident" else MISSING_PAGE)
      for path in ("/office/incidents/{incident_id}", "/office/incidents/{incident_id}/progress",
                   "/office/incidents/{incident_id}/duty")
      for target in ("incident", "unknown")],
    # Level decisions: the office records the flood commander's verbal order (see access_rows_law.py).
    PageCase("POST", "/office/incidents/{incident_id}/level", "incident", OFFICE_FORM,
             form={"level": "III", "reason": "雨情加重", "ordered_by": "commander"}, writes=True),
    PageCase("POST", "/office/incidents/{incident_id}/level", "unknown", MISSING_PAGE,
             form={"level": "III", "reason": "雨情加重", "ordered_by": "commander"}, writes=True),
    PageCase("POST", "/office/incidents/{incident_id}/proposals/{proposal_id}", "level_proposal", OFFICE_FORM,
             form={"decision": "decline", "reason": "伤亡系交通事故所致", "ordered_by": "commander"}, writes=True),
    PageCase("POST", "/office/incidents/{incident_id}/proposals/{proposal_id}", "unknown", MISSING_PAGE,
             form={"decision": "decline", "reason": "伤亡系交通事故所致"}, writes=True),
    # Only the commander who gave a verbal order confirms it: the office and admin are refused.
    PageCase("POST", "/office/incidents/{incident_id}/authorisations/{authorisation_id}/confirm", "verbal_order",
             roles(LOGIN, 403, 404, 403, 404, 404), writes=True),
    PageCase("POST", "/office/incidents/{incident_id}/authorisations/{authorisation_id}/confirm", "unknown",
             MISSING_PAGE, writes=True),
    # The office's choices on a hand-back alert (tests/access_rows_handback.py: the API's rows, the target).
    *[PageCase("POST", f"/office/tasks/{{task_id}}/{choice}", target,
               OFFICE_FORM if target != "unknown" else MISSING_PAGE, form=form, writes=True)
      for choice, form in (("reassign", {"department": "meteorology", "reason": "气象局有雷达数据"}),
                           ("take-over", {"reason": "值班室直接办理"}),
                           ("ask-leader", {"position": "commander@flood_control_hq", "reason": "请总指挥定夺"}))
      for target in ("handed_back_task", "unknown")],
    # A leader signs a reviewed draft off from their inbox: only a holder of its signer posts (none of these roles).
    PageCase("POST", "/warnings/{alert_id}/sign", "warning_reviewed", roles(LOGIN, 403, 403, 403, 403, 403),
             writes=True),
    PageCase("POST", "/warnings/{alert_id}/sign", "unknown", roles(LOGIN, 404, 404, 404, 404, 404), writes=True),
    # A chase-up is the office's, of an overdue task only: the matrix's task is not overdue (409, nothing written;
    # tests/test_duty_screen.py chases an overdue one).
    PageCase("POST", "/office/tasks/{task_id}/chase-up", "task", roles(LOGIN, 409, 404, 409, 404, 404), writes=True),
    PageCase("POST", "/office/tasks/{task_id}/chase-up", "unknown", MISSING_PAGE, writes=True),
    PageCase("GET", "/inbox", "none", DESK_PAGE),
    PageCase("GET", "/inbox/list", "none", DESK_PAGE),
    PageCase("GET", "/tasks/{task_id}", "task", VISIBLE_PAGE),
    PageCase("GET", "/tasks/{task_id}", "task_same_incident", VISIBLE_PAGE),
    PageCase("GET", "/tasks/{task_id}", "office_task", roles(LOGIN, 200, 200, 200, NA, 404)),
    PageCase("GET", "/tasks/{task_id}", "unknown", MISSING_PAGE),
    *[PageCase("POST", f"/tasks/{{task_id}}/{action}", target, expect, form=form, writes=True)
      for action, form in (("acknowledge", None), ("complete", task_form),
                           ("hand-back", {"reason": "不属于本部门职责"}),
                           ("decline", {"reason_code": "wrong_area", "reason": "非本辖区"}))
      for target, expect in (("task", DEPT_FORM), ("task_same_incident", DEPT_FORM),
                             ("office_task", OFFICE_STEP_FORM), ("unknown", MISSING_PAGE))],
    PageCase("GET", "/review", "none", REVIEW_PAGE),
    PageCase("GET", "/review/analytics", "none", REVIEW_PAGE),
    *[PageCase("GET", path, target, REVIEW_PAGE if target == "incident" else MISSING_PAGE)
      for path in ("/review/incidents/{incident_id}", "/review/incidents/{incident_id}/report")
      for target in ("incident", "unknown")],
    *[PageCase("GET", path, target, VISIBLE_PAGE if target == "incident" else MISSING_PAGE)
      for path in ("/incidents/{incident_id}/board", "/incidents/{incident_id}/board/items")
      for target in ("incident", "unknown")],
    # The office and the departments on the incident post to its board; managers read it and post nothing.
    PageCase("POST", "/incidents/{incident_id}/reports", "incident", roles(LOGIN, 303, 403, 303, 303, 404),
             form={"text": "两处积水点已排除", "share_with": ""}, writes=True),
    PageCase("POST", "/incidents/{incident_id}/reports", "unknown", roles(LOGIN, 404, 403, 404, 404, 404),
             form={"text": "两处积水点已排除", "share_with": ""}, writes=True),
    # Upward reports: the emergency office's (the office and admin act for it); managers read them; a
    # department's user finds none, even on the incident (tests/access_rows_upward.py: the API's rows, the targets).
    PageCase("GET", "/upward-reports", "none", SIGNED_IN),
    PageCase("GET", "/map", "none", SIGNED_IN),
    # Registers (tests/access_rows_registers.py: the API's rows): every signed-in user reads the shared ones.
    PageCase("GET", "/registers", "none", SIGNED_IN),
    # Prevention (汛前检查, 隐患排查, drills): every signed-in user, scoped to their department's own (the lists'
    # scoping: tests/test_prevention.py; the API's rows: tests/access_rows_prevention.py).
    PageCase("GET", "/prevention", "none", SIGNED_IN),
    PageCase("GET", "/upward-reports/{report_id}", "report", roles(LOGIN, 200, 200, 200, 404, 404)),
    PageCase("GET", "/upward-reports/{report_id}", "unknown", MISSING_PAGE),
    *[PageCase("POST", f"/upward-reports/{{report_id}}/{action}", target,
               roles(LOGIN, 303, 403, 303, 404, 404) if target != "unknown" else MISSING_PAGE, form=form,
               writes=True)
      for action, form, kind in (("edit", {"text": "城东区积水已排除两处。", "c_dead": "0", "c_missing": "0",
                                           "c_injured": "0", "c_moved": "12", "casualty_reason": ""}, "report"),
                                 ("phone", {"note": "电话报告省防指"}, "report"), ("send", None, "signed_report"))
      for target in (kind, "unknown")],
    # Signing off needs a leader's position (签发), which none of the matrix's users holds: 403 for all.
    *[PageCase("POST", "/upward-reports/{report_id}/sign-off", target,
               roles(LOGIN, 403, 403, 403, 404, 404) if target != "unknown" else MISSING_PAGE, writes=True)
      for target in ("report", "unknown")],
    # Administration: administrators only; for everyone else the pages are not there.
    PageCase("GET", "/admin/users", "none", ADMIN_PAGE),
    PageCase("GET", "/admin/users?q=water&offset=50", "none", ADMIN_PAGE, note="searched, paged"),
    PageCase("POST", "/admin/users", "none", ADMIN_FORM, form=new_user, writes=True),
    # One user's page; disabling and ending sessions are confirmed on a page of their own first, and a post
    # without the confirmation only asks again (changes nothing).
    *[PageCase("GET", path, target, ADMIN_PAGE if target != "unknown" else MISSING_PAGE)
      for path in ("/admin/users/{user_id}", "/admin/users/{user_id}/disable", "/admin/users/{user_id}/revoke-tokens")
      for target in ("user", "unknown")],
    *[PageCase("POST", f"/admin/users/{{user_id}}/{action}", target,
               ADMIN_PAGE if target != "unknown" else MISSING_PAGE, form={"reason": "调离岗位"}, note="unconfirmed")
      for action in ("disable", "revoke-tokens") for target in ("user", "unknown")],
    *[PageCase("POST", f"/admin/users/{{user_id}}/{action}", target,
               ADMIN_FORM if target != "unknown" else MISSING_PAGE, form=form, writes=True)
      for action, form, kind in (("disable", {"reason": "调离岗位", "confirm": "yes"}, "user"),
                                 ("enable", None, "disabled_user"), ("unlock", None, "user"),
                                 ("revoke-tokens", {"confirm": "yes"}, "user"),
                                 ("password", {"password": "a-new-password-42"}, "user"),
                                 ("display-name", {"display_name": "水务值班（夜）"}, "user"))
      for target in (kind, "unknown")],
    PageCase("GET", "/admin/audit", "none", ADMIN_PAGE),
    PageCase("GET", "/admin/audit?action=login&offset=x", "none", ADMIN_PAGE, note="filtered"),
    # The API's own description: for anyone logged in, like every API endpoint.
    PageCase("GET", "/openapi.json", "none", roles(401, 200, 200, 200, 200, 200)),
    PageCase("GET", "/docs", "none", SIGNED_IN),
    PageCase("GET", "/redoc", "none", SIGNED_IN),
    # What the public is warned with: published alerts only; a drill's alert is not public.
    PageCase("GET", "/public/warnings.atom", "none", ANYONE, public=True),
    PageCase("GET", "/public/warnings/{alert_id}.xml", "alert", ANYONE, public=True),
    PageCase("GET", "/public/warnings/{alert_id}.xml", "drill_alert", NOBODY, public=True),
    PageCase("GET", "/public/warnings/{alert_id}.xml", "unknown", NOBODY, public=True),
    # The public page (Chinese with English, a map): signed-off warnings of real incidents only, for anyone.
    PageCase("GET", "/public/warnings", "none", ANYONE, public=True),
    PageCase("GET", "/public/warnings/{identifier}", "warning_released", ANYONE, public=True),
    PageCase("GET", "/public/warnings/{identifier}", "drill_warning_released", NOBODY, public=True),
    PageCase("GET", "/public/warnings/{identifier}", "warning_draft", NOBODY, public=True, note="a draft"),
    PageCase("GET", "/public/warnings/{identifier}", "unknown", NOBODY, public=True),
    # Releasing a warning on the office's incident page (tests/access_rows_release.py: the API's rows, the
    # targets): the office reviews and returns; signing off needs a position none of the matrix's users holds.
    *[PageCase("POST", f"/office/incidents/{{incident_id}}/warnings/{{alert_id}}/{act}", target,
               expect if target != "unknown" else MISSING_PAGE, form=form, writes=True)
      for act, kind, expect, form in (("review", "warning_draft", OFFICE_FORM, None),
                                      ("return", "warning_draft", OFFICE_FORM, {"reason": "请核实雨量"}),
                                      ("sign", "warning_reviewed", roles(LOGIN, 403, 404, 403, 404, 404), None))
      for target in (kind, "unknown")],
    *[PageCase("POST", f"/office/incidents/{{incident_id}}/warning-{act}", target,
               OFFICE_FORM if target != "unknown" else MISSING_PAGE, form=form, writes=True)
      for act, form in (("update", {"colour": "orange"}), ("cancel", {"reason": "降雨减弱"}))
      for target in ("warning_released", "unknown")],
    # Resources in incidents (tests/access_rows_resources.py: the API's rows, the targets): who sees a request,
    # who supplies (public_security owns the reserve), who receives (water_affairs asked).
    PageCase("GET", "/resources", "none", SIGNED_IN),
    *[PageCase("GET", "/resources/{request_id}", target, VISIBLE_PAGE if target != "unknown" else MISSING_PAGE)
      for target in ("resource_request", "unknown")],
    PageCase("POST", "/resources/{request_id}/act", "resource_request", DEPT_FORM, form={"step": "approve",
                                                                                        "quantity": "5"},
             writes=True),
    PageCase("POST", "/resources/{request_id}/act", "resource_mine_dispatched", DEPT_FORM,
             form={"step": "receive", "quantity": "20"}, writes=True),
    PageCase("POST", "/resources/{request_id}/act", "unknown", MISSING_PAGE, form={"step": "approve"}, writes=True),
    # 叫应: an answer link's page needs no login, the link being the credential (tests/access_rows_answers.py): a
    # good link shows its confirm page to anyone and is answered once; an unknown link is not there for anybody.
    PageCase("GET", "/answer/{token}", "answer_link", ANYONE, public=True),
    PageCase("GET", "/answer/{token}", "unknown", NOBODY, public=True),
    PageCase("POST", "/answer/{token}", "answer_link", ANYONE, public=True, writes=True, form=_confirm_form),
    PageCase("POST", "/answer/{token}", "unknown", NOBODY, public=True, writes=True, form=_confirm_form),
]


# Further areas add their page rows in tests/access_rows_<area>.py as `PAGE_ROWS`, a list of PageCase's keyword
# arguments (that module is imported by tests.test_access, before PageCase exists).
for _module in sorted(Path(__file__).resolve().parent.glob("access_rows_*.py")):
    MATRIX.extend(PageCase(**row) for row in getattr(importlib.import_module(f"tests.{_module.stem}"), "PAGE_ROWS", []))


# -- the world the matrix runs against ----------------------------------------------------------------------


def _alert_target(kind: str, drill: bool) -> Target:
    """A rainstorm warning drafted, reviewed and signed off: published, or (a drill's) an exercise."""
    from tests.access_rows_release import warning_target  # after tests.test_access, which loads the rows

    return warning_target(kind, "issued", drill=drill)


def page_target(kind: str) -> Target:
    if kind in ("alert", "drill_alert"):
        return _alert_target(kind, drill=kind == "drill_alert")
    return build_target(kind)


def page_fingerprint() -> tuple[Any, ...]:
    """fingerprint() and what pages also change: sessions issued and revoked, each user's language."""
    with session_scope() as session:
        issued = int(session.exec(select(func.count()).select_from(AccessToken)).one())
        langs = tuple(sorted(tuple(row) for row in session.execute(select(User.username, User.lang)).all()))
    return fingerprint(), issued, langs


def reset_langs() -> None:
    with session_scope() as session:
        for user in session.exec(select(User).where(col(User.lang) != "zh")).all():
            user.lang = "zh"
            session.add(user)


class Browsers:
    """A logged-in browser (cookie jar) per user, made through the login form, and CSRF tokens read from pages."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.by_user: dict[str, httpx.Client] = {}
        self.made: list[httpx.Client] = []
        self.tokens: dict[tuple[int, tuple[tuple[str, str | None], ...]], str] = {}

    def new(self, username: str | None) -> httpx.Client:
        client = page_client(self.server, username) if username else self.server.client()
        self.made.append(client)
        return client

    def of(self, username: str | None) -> httpx.Client:
        key = username or ""
        if key not in self.by_user:
            self.by_user[key] = self.new(username)
        return self.by_user[key]

    def csrf(self, client: httpx.Client) -> str:
        # Every page of a session carries its CSRF token (the header's logout and language forms). It is bound to the
        # session, so it is read once per session (a page costs a tenth of a second; the matrix posts hundreds).
        session = (id(client), tuple(sorted((c.name, c.value) for c in client.cookies.jar)))
        if session not in self.tokens:
            found = CSRF.search(client.get("/", follow_redirects=True).text)
            self.tokens[session] = found.group(1) if found else ""
        return self.tokens[session]

    def close(self) -> None:
        for client in self.made:
            client.close()


def run_cell(browsers: Browsers, case: PageCase, role: str, shared: dict[str, Target]) -> Cell:
    cell = Cell(case, role, case.expect[role])
    if cell.expected is None:
        return cell
    anonymous = role == "anonymous"
    allowed = cell.expected < 400 and (case.public or not anonymous)
    target = page_target(case.target) if case.writes and allowed else shared[case.target]
    username = {"anonymous": None, "dept_owner": target.owner, "dept_other": target.other}.get(role, role)
    login_form = case.route == ("POST", "/login")
    client = browsers.new(None if login_form else username) if case.own_session else browsers.of(username)
    data: dict[str, str] | None = None
    files = case.files(target) if case.files is not None else None
    if case.method == "POST":
        if login_form:
            token = CSRF.search(client.get("/login").text)
            data = {"username": username or "manager", "password": PASSWORD, "next": "/",
                    "csrf": token.group(1) if token else ""}
        else:
            data = {**(case.form(target) if callable(case.form) else case.form or {}),
                    "csrf": "" if anonymous else browsers.csrf(client)}
    before = page_fingerprint()
    requested = case.path.format_map(target.params)
    response = client.request(case.method, requested, data=data, files=files)
    cell.got = response.status_code
    check_response(cell, response, anonymous and not case.public, requested)
    matrix.check_change(cell, writes=case.writes, allowed=allowed, changed=page_fingerprint() != before)
    if case.route == ("POST", "/lang"):
        reset_langs()
    return cell


def check_response(cell: Cell, response: httpx.Response, sent_to_login: bool, requested: str) -> None:
    if "frame-ancestors 'none'" not in response.headers.get("Content-Security-Policy", ""):
        cell.problems.append("no CSP header")
    location = response.headers.get("location", "")
    if sent_to_login and response.status_code == 303:
        # A GET comes back to the page asked for (its query too) after the login; a POST to nothing.
        parts = urlsplit(location)
        back = parse_qs(parts.query).get("next", [None])[0]
        if parts.path != "/login" or back != (requested if cell.case.method == "GET" else None):
            cell.problems.append(f"anonymous sent to {location!r}, not the login form coming back to {requested}")
    kind = response.headers.get("content-type", "")
    if response.status_code >= 400:
        if kind.startswith("text/html"):
            # The refusal is a page in the reader's language; missing reads exactly as not there.
            if response.status_code == 404 and NOT_FOUND_PAGE not in response.text:
                cell.problems.append("a 404 that does not read as 'no such page'")
        else:
            try:
                error_of(response, response.status_code)
            except (AssertionError, ValueError) as exc:
                cell.problems.append(f"error body: {exc}")


@pytest.fixture
def browsers(api: Api) -> Iterator[Browsers]:
    made = Browsers(api.server)
    yield made
    made.close()


def test_page_access_matrix(browsers: Browsers, figures: Say) -> None:
    shared = {kind: page_target(kind) for kind in {case.target for case in MATRIX}}
    cells = [run_cell(browsers, case, role, shared) for case in MATRIX for role in ROLES]
    matrix.print_table(cells, figures, heading="route [target]", summary="pages and other routes outside /api: ")
    matrix.assert_no_violations(cells)


def test_every_route_outside_the_api_is_in_the_matrix() -> None:
    routes = matrix.app_routes(lambda path, route: path != "/api" and not path.startswith("/api/"))
    pages = matrix.app_routes(lambda path, route: isinstance(route, PageRoute))
    assert len(pages) >= 20 and pages < routes, routes
    matrix.assert_every_route_has_a_row(routes, MATRIX, "routes outside /api")
