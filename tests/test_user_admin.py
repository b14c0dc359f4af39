"""User administration and the audit trail, through the API (in process) and `baton users`: an administrator
adds, disables, enables and unlocks users, sets passwords and ends sessions; each takes effect at once on the
user's tokens and page sessions, is refused with a clear error where it would lock the office out, and leaves an
audit entry (who may call what is the access matrix's, tests/access_rows_users.py)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from core.incidents.service import COMMAND
from core.plans.store import departments_given_tasks
from core.platform.db import session_scope
from core.users.models import User
from core.users.service import departments_without_active_users
from flows.cli import app as cli
from tests.api_server import (
    PASSWORD,
    Api,
    audit_actions,
    csrf_of,
    error_of,
    issued_token,
    make_user,
    page_client,
    said_in_english,
)

NEW_PASSWORD = "a-brand-new-password-7"


def token_for(api: Api, username: str, password: str = PASSWORD) -> httpx.Response:
    return api.server.post("/api/auth/token", data={"username": username, "password": password})


def user_id(api: Api, username: str) -> str:
    users = api.call("admin", "GET", "/api/users").json()["items"]
    return next(u["id"] for u in users if u["username"] == username)


def admin(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return api.call("admin", method, path, **kwargs)


def test_an_administrator_adds_a_user_who_can_then_log_in(api: Api) -> None:
    body = {"username": "water2", "role": "department", "department": "water_affairs", "password": NEW_PASSWORD,
            "display_name": "水务二组"}
    created = admin(api, "POST", "/api/users", json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["department"] == "water_affairs" and user["active"] and not user["locked"]
    assert "password" not in user and "password_hash" not in user
    assert token_for(api, "water2", NEW_PASSWORD).status_code == 200
    # Bad ones are refused with what is wrong, and nothing is added.
    for wrong, says in (({**body, "username": "water3", "department": "no_such_dept"}, "unknown department"),
                        ({**body, "username": "water3", "role": "manager"}, "only department users"),
                        ({**body}, "already exists"),
                        ({**body, "username": "bad name!"}, "letters, digits")):
        assert says in said_in_english(error_of(admin(api, "POST", "/api/users", json=wrong), 422, "user_invalid"))
    error_of(admin(api, "POST", "/api/users", json={**body, "username": "water3", "password": "short"}), 422)
    names = [u["username"] for u in admin(api, "GET", "/api/users").json()["items"]]
    assert "water3" not in names and names.count("water2") == 1
    assert ("user:admin", "user.added", {"username": "water2", "role": "department",
                                         "department": "water_affairs"}) in audit_actions()


def test_disabling_a_user_ends_their_tokens_and_sessions_at_once(api: Api) -> None:
    bearer = api.tokens["meteorology"]
    page = page_client(api.server, "meteorology")
    assert page.get("/inbox").status_code == 200
    target = user_id(api, "meteorology")
    response = admin(api, "POST", f"/api/users/{target}/disable", json={"reason": "调离岗位"})
    assert response.status_code == 200, response.text
    assert response.json()["revoked"] >= 2 and response.json()["user"]["active"] is False
    error_of(api.server.request("GET", "/api/tasks", bearer), 401, "not_authenticated")
    assert page.get("/inbox").headers["location"].startswith("/login")
    error_of(token_for(api, "meteorology"), 401, "authentication_failed")
    # Disabling again changes nothing more; enabling lets the user log in again.
    assert admin(api, "POST", f"/api/users/{target}/disable").json()["revoked"] == 0
    assert admin(api, "POST", f"/api/users/{target}/enable").json()["active"] is True
    assert token_for(api, "meteorology").status_code == 200
    actions = [(a, d) for _, a, d in audit_actions("meteorology") if a in ("user.disabled", "user.enabled")]
    assert actions == [("user.disabled", {"username": "meteorology", "reason": "调离岗位"}),
                       ("user.enabled", {"username": "meteorology"})], actions


def test_the_office_cannot_be_locked_out_by_its_own_administrator(api: Api) -> None:
    """No administrator disables themselves (through the API the last one standing is always the caller; the
    terminal's refusal of the last one is tested below)."""
    me = user_id(api, "admin")
    refused = error_of(admin(api, "POST", f"/api/users/{me}/disable"), 409, "user_state_conflict")
    assert "your own account" in said_in_english(refused) and refused["details"] == {"reason": "self"}
    assert admin(api, "GET", "/api/users").status_code == 200  # still an administrator
    # Another administrator may disable this one; its token ends with it.
    make_user("admin2", "admin")
    second = issued_token("admin2")
    assert api.server.request("POST", f"/api/users/{me}/disable", second).status_code == 200
    error_of(admin(api, "GET", "/api/users"), 401, "not_authenticated")


def test_unlock_lifts_a_lockout_before_it_runs_out(api: Api) -> None:
    for _ in range(5):
        error_of(token_for(api, "water_affairs", "wrong-password"), 401, "authentication_failed")
    error_of(token_for(api, "water_affairs"), 401, "authentication_failed")
    target = user_id(api, "water_affairs")
    listed = next(u for u in admin(api, "GET", "/api/users").json()["items"] if u["id"] == target)
    assert listed["locked"] is True and [x["source"] for x in listed["lockouts"]] == ["127.0.0.1"]
    assert admin(api, "POST", f"/api/users/{target}/unlock").json()["locked"] is False
    assert token_for(api, "water_affairs").status_code == 200
    assert ("user.unlocked", {"username": "water_affairs", "was_locked": True, "sources": ["127.0.0.1"]}) in \
        [(a, d) for _, a, d in audit_actions("water_affairs")]


def test_a_new_password_ends_the_old_ones_sessions_and_is_never_recorded(api: Api) -> None:
    old_bearer = api.tokens["public_security"]
    target = user_id(api, "public_security")
    response = admin(api, "POST", f"/api/users/{target}/password", json={"password": NEW_PASSWORD})
    assert response.status_code == 200 and response.json()["revoked"] >= 1
    error_of(api.server.request("GET", "/api/tasks", old_bearer), 401)
    error_of(token_for(api, "public_security"), 401, "authentication_failed")
    assert token_for(api, "public_security", NEW_PASSWORD).status_code == 200
    error_of(admin(api, "POST", f"/api/users/{target}/password", json={"password": "short"}), 422)
    trail = admin(api, "GET", "/api/audit?limit=500").text
    assert NEW_PASSWORD not in trail and PASSWORD not in trail


def test_revoking_a_users_tokens_leaves_the_account_usable(api: Api) -> None:
    tokens = [issued_token("manager") for _ in range(3)]
    target = user_id(api, "manager")
    assert admin(api, "POST", f"/api/users/{target}/revoke-tokens").json()["revoked"] >= 3
    for token in tokens:
        error_of(api.server.request("GET", "/api/auth/me", token), 401)
    assert token_for(api, "manager").status_code == 200


def test_the_audit_trail_lists_logins_and_changes_newest_first_with_filters(api: Api) -> None:
    error_of(token_for(api, "office", "wrong-password"), 401)
    assert token_for(api, "office").status_code == 200
    admin(api, "POST", f"/api/users/{user_id(api, 'manager')}/revoke-tokens")
    everything = admin(api, "GET", "/api/audit?limit=500").json()
    ids = [e["id"] for e in everything["items"]]
    assert ids == sorted(ids, reverse=True) and everything["total"] == len(ids)
    logins = admin(api, "GET", "/api/audit?action=login&limit=500").json()["items"]
    assert {e["action"] for e in logins} >= {"login", "login.failed"}
    assert all(e["action"] == "login" or e["action"].startswith("login.") for e in logins)
    # A family is a whole word: `log` finds nothing; `_` and `%` are literal, not wildcards.
    for pattern in ("log", "login_", "%", "login%"):
        assert admin(api, "GET", f"/api/audit?action={pattern}").json()["total"] == 0, pattern
    mine = admin(api, "GET", "/api/audit?actor=user:admin&limit=500").json()["items"]
    assert mine and {e["actor"] for e in mine} == {"user:admin"} and mine[0]["action"] == "tokens.revoked"
    first, second = (admin(api, "GET", f"/api/audit?limit=2&offset={n}").json()["items"] for n in (0, 2))
    assert [e["id"] for e in first + second] == ids[:4]
    newest = everything["items"][0]["at"]
    assert admin(api, "GET", "/api/audit", params={"since": newest}).json()["total"] >= 1
    assert admin(api, "GET", "/api/audit", params={"since": "2199-01-01T00:00:00+08:00"}).json()["total"] == 0
    error_of(admin(api, "GET", "/api/audit?since=yesterday"), 422)


runner = CliRunner()


def baton(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


@pytest.mark.usefixtures("baton")
def test_baton_users_administers_from_a_terminal() -> None:
    make_user("desk1", "office")
    make_user("root1", "admin")
    issued_token("desk1")
    code, out = baton("users", "disable", "desk1", "--reason", "换岗")
    assert code == 0 and "1 token(s)" in out, out
    code, out = baton("users", "list")
    assert re.search(r"desk1 .*office .*no", out), out
    code, out = baton("users", "enable", "desk1")
    assert code == 0
    code, out = baton("users", "password", "desk1", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert code == 0 and "password of desk1 set" in out
    code, out = baton("users", "password", "desk1")
    assert code == 2 and "--password-stdin" in out
    code, out = baton("users", "unlock", "nobody")
    assert code == 1 and "[not_found]" in out and "no user 'nobody'" in out
    code, out = baton("users", "disable", "root1")
    assert code == 1 and "[user_state_conflict]" in out and "last active administrator" in out
    code, out = baton("users", "revoke-tokens", "desk1")
    assert code == 0 and "0 token(s)" in out
    code, out = baton("users", "audit", "--action", "user")
    assert code == 0 and "user.disabled" in out and "user.password_set" in out and "user.enabled" in out
    assert "换岗" in out and NEW_PASSWORD not in out
    assert "tokens.revoked" not in out  # another family


# -- the administration pages ----------------------------------------------------------------------------


def test_the_administration_pages_do_what_the_api_does(api: Api) -> None:
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")  # one a session: it holds for every form of this one
    listing = page.get("/admin/users")
    assert listing.status_code == 200 and 'data-user="meteorology"' in listing.text
    assert 'href="/admin/users"' in page.get("/office").text  # in the admin's menu
    assert 'href="/admin/users"' not in page_client(api.server, "office").get("/office").text
    me = user_id(api, "admin")
    assert f'action="/admin/users/{me}/disable"' not in listing.text  # no button to disable oneself
    # Add a user; a bad one is refused with the reason and the form keeps what was typed.
    form = {"username": "water9", "display_name": "<script>alert(1)</script>", "role": "department",
            "department": "water_affairs", "password": NEW_PASSWORD}
    refused = page.post("/admin/users", data={**form, "department": "", "csrf": token})
    assert refused.status_code == 422 and "部门用户须选择所属部门。" in refused.text
    assert 'value="water9"' in refused.text
    taken = page.post("/admin/users", data={**form, "username": "meteorology", "csrf": token})
    assert taken.status_code == 422 and "已有同名用户。" in taken.text
    added = page.post("/admin/users", data={**form, "csrf": token})
    assert added.status_code == 303 and added.headers["location"] == "/admin/users?done=added"
    shown = page.get("/admin/users?done=added").text
    assert "用户已添加。" in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>alert" not in shown
    assert token_for(api, "water9", NEW_PASSWORD).status_code == 200
    # Disable with a reason (confirmed): the user's logins end; the audit page shows who did it and why.
    target = user_id(api, "water9")
    done = page.post(f"/admin/users/{target}/disable", data={"reason": "调离岗位", "confirm": "yes", "csrf": token})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/users/{target}?done=disable"
    error_of(token_for(api, "water9", NEW_PASSWORD), 401)
    assert 'data-user="water9"' in (text := page.get("/admin/users").text) and "已停用" in text
    assert page.post(f"/admin/users/{target}/enable", data={"csrf": token}).status_code == 303
    short = page.post(f"/admin/users/{target}/password", data={"password": "short", "csrf": token})
    assert short.status_code == 422 and "密码须为 10 至 1024 个字符。" in short.text
    own = page.post(f"/admin/users/{me}/disable", data={"confirm": "yes", "csrf": token})
    assert own.status_code == 409 and "不能停用自己的账号。" in own.text
    audit = page.get("/admin/audit?action=user").text
    assert 'data-action="user.disabled"' in audit and "调离岗位" in audit and "user:admin" in audit
    assert 'data-action="login"' not in audit
    logins = page.get("/admin/audit", params={"action": "login", "actor": "user:admin"}).text
    assert 'data-action="login"' in logins and 'data-action="user.added"' not in logins
    # Ending one's own sessions from the page ends this one too: back to the login form.
    out = page.post(f"/admin/users/{me}/revoke-tokens", data={"confirm": "yes", "csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert page.get("/admin/users").headers["location"].startswith("/login")


def test_the_audit_page_pages_through_the_trail(api: Api) -> None:
    for _ in range(4):
        error_of(token_for(api, "nobody-at-all", "wrong-password"), 401)
    page = page_client(api.server, "admin")
    with_paging = page.get("/admin/audit?action=login").text
    total = len(re.findall(r'data-action="login', with_paging))
    assert total >= 5 and "较早" not in with_paging  # all on one page
    # From an offset: a link back to the newer events, and the rest of them.
    first = page.get("/admin/audit?action=login&offset=0").text
    assert 'href="/admin/audit?action=login&amp;offset=' not in first
    second = page.get("/admin/audit?action=login&offset=2").text
    assert 'href="/admin/audit?action=login&amp;offset=0"' in second  # "newer"
    assert len(re.findall(r'data-action="login', second)) == total - 2
    assert page.get("/admin/audit?offset=not-a-number").status_code == 200
    # A user added (by the fixtures) reads with its department's name; a user without one says nothing of it.
    added = page.get("/admin/audit?action=user.added").text
    assert "department: 市水务局" in added and "department: None" not in added and "department: water_affairs" \
        not in added


# -- administration that scales: finding users, a page at a time, one user at a time, confirmations ----------


def add_via_api(api: Api, username: str, display_name: str, role: str = "department",
                department: str | None = "water_affairs") -> str:
    body = {"username": username, "role": role, "department": department, "password": NEW_PASSWORD,
            "display_name": display_name}
    created = admin(api, "POST", "/api/users", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def found(api: Api, **params: Any) -> list[str]:
    response = admin(api, "GET", "/api/users", params=params)
    assert response.status_code == 200, response.text
    return [u["username"] for u in response.json()["items"]]


def test_users_are_found_by_name_display_name_department_and_role(api: Api) -> None:
    add_via_api(api, "zhang.san", "张三")
    add_via_api(api, "li.si", "李四", department="public_security")
    # Display name, user name (any case), department (its key, or its name in either language), role.
    assert found(api, q="张三") == ["zhang.san"]
    assert found(api, q="ZHANG") == ["zhang.san"]
    assert set(found(api, q="水务")) == {"water_affairs", "zhang.san"}
    assert set(found(api, q="Water Affairs Bureau")) == {"water_affairs", "zhang.san"}
    assert set(found(api, q="公安")) == {"public_security", "li.si"}
    assert found(api, q="系统管理员") == ["admin"] and "manager" in found(api, q="manager")
    assert found(api, q="nobody-like-this") == []
    assert found(api, q="%") == [] and found(api, q="g_s") == []  # literal, not wildcards (g_s is not zhang.san)
    # Without a search: everyone, by user name.
    everyone = found(api)
    assert everyone == sorted(everyone) and {"zhang.san", "li.si", "admin"} <= set(everyone)
    # The page finds the same, and names each by the name people know them by.
    page = page_client(api.server, "admin")
    shown = page.get("/admin/users", params={"q": "水务"}).text
    assert 'data-user="zhang.san"' in shown and 'data-user="water_affairs"' in shown
    assert 'data-user="li.si"' not in shown and 'data-user="admin"' not in shown and "张三" in shown
    assert 'value="水务"' in shown  # the search box keeps what was typed
    by_name = page.get("/admin/users", params={"q": "李四"}).text
    assert 'data-user="li.si"' in by_name and 'data-user="zhang.san"' not in by_name
    assert "没有符合条件的用户。" in page.get("/admin/users", params={"q": "nobody-like-this"}).text


def test_the_users_listing_is_paged_within_bounds(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    everyone = found(api)
    total = len(everyone)
    first, second = (admin(api, "GET", "/api/users", params={"limit": 3, "offset": n}).json() for n in (0, 3))
    assert first["total"] == second["total"] == total and first["limit"] == 3 and second["offset"] == 3
    assert [u["username"] for u in first["items"] + second["items"]] == everyone[:6]
    assert found(api, limit=200) == everyone and found(api, limit=1) == everyone[:1]
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": -1}, {"limit": "x"}, {"offset": -1}):
        refused = error_of(admin(api, "GET", "/api/users", params=bad), 422, "invalid_request")
        assert refused["details"][0]["field"] in ("query.limit", "query.offset"), refused
    # The page: a page at a time, the search carried to the next and previous pages.
    monkeypatch.setattr("api.pages.admin.USERS_PAGE", 2)
    page = page_client(api.server, "admin")
    one = page.get("/admin/users").text
    rows = re.findall(r'<tr data-user="([^"]+)"', one)
    assert rows == everyone[:2] and 'href="/admin/users?offset=2" rel="next"' in one and 'rel="prev"' not in one
    assert f"第 1 至 2 个用户，共 {total} 个。" in one
    two = page.get("/admin/users?offset=2").text
    assert re.findall(r'<tr data-user="([^"]+)"', two) == everyone[2:4]
    assert 'href="/admin/users?offset=0" rel="prev"' in two
    searched = page.get("/admin/users", params={"q": "e"}).text
    assert 'href="/admin/users?q=e&amp;offset=2" rel="next"' in searched
    assert re.findall(r'<tr data-user="([^"]+)"', page.get("/admin/users?offset=bad").text) == everyone[:2]


def test_the_listing_links_to_each_user_and_acts_on_none(api: Api) -> None:
    """Actions are on one user's own page: the listing has no form but the one that adds a user."""
    page = page_client(api.server, "admin")
    listing = page.get("/admin/users").text
    target = user_id(api, "meteorology")
    assert f'href="/admin/users/{target}"' in listing
    assert re.findall(r'<form method="post" action="([^"]+)"', listing) == ["/lang", "/logout", "/admin/users"]
    own = page.get(f"/admin/users/{target}")
    assert own.status_code == 200 and 'data-user="meteorology"' in own.text
    actions = set(re.findall(r'<form method="post" action="([^"]+)"', own.text))
    assert actions == {"/lang", "/logout", f"/admin/users/{target}/display-name", f"/admin/users/{target}/password"}
    # Disabling and ending sessions are links to a confirmation, not buttons that act.
    assert f'href="/admin/users/{target}/disable"' in own.text
    assert f'href="/admin/users/{target}/revoke-tokens"' in own.text
    me = user_id(api, "admin")
    assert f'href="/admin/users/{me}/disable"' not in page.get(f"/admin/users/{me}").text
    assert page.get("/admin/users/no-such-user").status_code == 404


def active(username: str) -> bool:
    with session_scope() as session:
        return session.exec(select(User).where(User.username == username)).one().active


def test_disabling_from_the_page_asks_first_and_only_the_confirmation_disables(api: Api) -> None:
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")
    target = user_id(api, "meteorology")
    bearer = api.tokens["meteorology"]
    asked = page.get(f"/admin/users/{target}/disable")
    assert asked.status_code == 200 and "停用 meteorology？" in asked.text
    assert f'action="/admin/users/{target}/disable"' in asked.text and 'name="confirm" value="yes"' in asked.text
    assert f'href="/admin/users/{target}"' in asked.text  # "no, go back"
    assert active("meteorology")
    # A post that is not the confirmation asks again (keeping the reason) and changes nothing.
    again = page.post(f"/admin/users/{target}/disable", data={"reason": "调离岗位", "csrf": token})
    assert again.status_code == 200 and 'name="confirm" value="yes"' in again.text and 'value="调离岗位"' in again.text
    assert active("meteorology") and api.server.request("GET", "/api/tasks", bearer).status_code == 200
    assert not [a for _, a, _ in audit_actions("meteorology") if a == "user.disabled"]
    # The confirmation disables.
    done = page.post(f"/admin/users/{target}/disable", data={"reason": "调离岗位", "confirm": "yes", "csrf": token})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/users/{target}?done=disable"
    assert not active("meteorology")
    error_of(api.server.request("GET", "/api/tasks", bearer), 401, "not_authenticated")
    assert "用户已停用，其所有登录已失效。" in page.get(done.headers["location"]).text
    # One's own account: the confirmation page says no, and offers no button.
    me = user_id(api, "admin")
    own = page.get(f"/admin/users/{me}/disable").text
    assert "不能停用自己的账号。" in own and 'name="confirm"' not in own


def test_logging_out_everywhere_asks_first_then_ends_every_session(api: Api) -> None:
    desk = page_client(api.server, "water_affairs")
    bearer = api.tokens["water_affairs"]
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")
    target = user_id(api, "water_affairs")
    asked = page.get(f"/admin/users/{target}/revoke-tokens")
    assert asked.status_code == 200 and "强制 water_affairs 退出全部登录？" in asked.text
    unconfirmed = page.post(f"/admin/users/{target}/revoke-tokens", data={"csrf": token})
    assert unconfirmed.status_code == 200 and 'name="confirm" value="yes"' in unconfirmed.text
    assert desk.get("/inbox").status_code == 200
    assert api.server.request("GET", "/api/tasks", bearer).status_code == 200
    done = page.post(f"/admin/users/{target}/revoke-tokens", data={"confirm": "yes", "csrf": token})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/users/{target}?done=revoke-tokens"
    assert desk.get("/inbox").headers["location"].startswith("/login")
    error_of(api.server.request("GET", "/api/tasks", bearer), 401, "not_authenticated")
    assert token_for(api, "water_affairs").status_code == 200  # the account stays usable
    assert ("tokens.revoked", "water_affairs") in [(a, d.get("username")) for _, a, d in audit_actions()]


def field_error(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="err-{name}"[^>]*>([^<]*)</p>', html)
    assert found, f"no error beside {name}"
    return found.group(1)


def test_a_refused_field_is_said_beside_it_in_the_readers_language(api: Api) -> None:
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")
    form = {"username": "bad name!", "display_name": "", "role": "department", "department": "water_affairs",
            "password": NEW_PASSWORD, "csrf": token}
    refused = page.post("/admin/users", data=form)
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert field_error(refused.text, "username") == "用户名只能包含字母、数字、“.”、“-”和“_”（最多 64 个字符）。"
    assert 'id="username" name="username" value="bad name!" maxlength="64" required aria-invalid="true" ' \
           'aria-describedby="err-username"' in refused.text
    assert 'id="problem"' not in refused.text  # beside the field, not a banner
    department = page.post("/admin/users", data={**form, "username": "ok.name", "role": "manager"})
    assert field_error(department.text, "department") == "只有部门用户才归属部门。"
    long_name = page.post("/admin/users", data={**form, "username": "ok.name", "display_name": "名" * 101})
    assert field_error(long_name.text, "display_name") == "显示名称须为一行，最多 100 个字符。"
    target = user_id(api, "manager")
    short = page.post(f"/admin/users/{target}/password", data={"password": "short", "csrf": token})
    assert short.status_code == 422 and field_error(short.text, "password") == "密码须为 10 至 1024 个字符。"
    # In English when the reader chose it.
    assert page.post("/lang", data={"lang": "en", "next": "/admin/users", "csrf": token}).status_code == 303
    english = page.post("/admin/users", data=form)
    assert field_error(english.text, "username") == \
        "The user name may hold letters, digits, '.', '-' and '_' (at most 64)."
    renamed = page.post(f"/admin/users/{target}/display-name", data={"display_name": "a\nb", "csrf": token})
    assert renamed.status_code == 422
    assert field_error(renamed.text, "display_name") == "The display name must be one line of at most 100 characters."


def test_display_names_are_shown_and_edited_where_users_are_listed(api: Api) -> None:
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")
    target = user_id(api, "public_security")
    renamed = page.post(f"/admin/users/{target}/display-name", data={"display_name": " 王五 ", "csrf": token})
    assert renamed.status_code == 303 and renamed.headers["location"] == f"/admin/users/{target}?done=display-name"
    shown = page.get(renamed.headers["location"]).text
    assert "显示名称已保存。" in shown and 'value="王五"' in shown
    assert "王五" in page.get("/admin/users").text and found(api, q="王五") == ["public_security"]
    # Through the API too; empty stands for the user name.
    patched = admin(api, "PATCH", f"/api/users/{target}", json={"display_name": "赵六"})
    assert patched.status_code == 200 and patched.json()["display_name"] == "赵六"
    assert admin(api, "PATCH", f"/api/users/{target}", json={"display_name": ""}).json()["display_name"] == \
        "public_security"
    error_of(admin(api, "PATCH", f"/api/users/{target}", json={"display_name": "x" * 101}), 422)
    error_of(admin(api, "PATCH", "/api/users/no-such-user", json={"display_name": "x"}), 404, "not_found")
    renames = [d for _, a, d in audit_actions() if a == "user.renamed"]
    assert {"username": "public_security", "display_name": "王五", "was": "public_security"} in renames
    # The audit page names who acted by their display name, beside the actor as recorded.
    admin(api, "PATCH", f"/api/users/{user_id(api, 'admin')}", json={"display_name": "管理员甲"})
    audit = page.get("/admin/audit?action=user").text
    assert "管理员甲" in audit and "user:admin" in audit


def test_the_admin_page_warns_of_a_department_given_tasks_that_no_active_user_works_for(api: Api) -> None:
    """`housing` has steps in the flood plan (and others) and no user among the standard ones; water_affairs has
    one; the emergency office is worked for by the office and administrators."""
    page = page_client(api.server, "admin")
    token = csrf_of(page, "/admin/users")
    listing = page.get("/admin/users").text
    assert 'id="unstaffed"' in listing and 'data-unstaffed="housing"' in listing
    warned = listing[listing.index('data-unstaffed="housing"'):]
    assert "市住房和城乡建设局" in warned[:warned.index("</li>")] and "城市内涝" in warned[:warned.index("</li>")]
    assert 'data-unstaffed="water_affairs"' not in listing and 'data-unstaffed="emergency_office"' not in listing
    # Also on a page of search results: it is about the departments, not the users shown.
    assert 'data-unstaffed="housing"' in page.get("/admin/users", params={"q": "admin"}).text
    added = page.post("/admin/users", data={"username": "housing1", "display_name": "住建值班", "role": "department",
                                            "department": "housing", "password": NEW_PASSWORD, "csrf": token})
    assert added.status_code == 303
    assert 'data-unstaffed="housing"' not in page.get("/admin/users").text
    # Disabled, the user works for nobody: the warning is back.
    target = user_id(api, "housing1")
    page.post(f"/admin/users/{target}/disable", data={"confirm": "yes", "csrf": token})
    assert 'data-unstaffed="housing"' in page.get("/admin/users").text


def test_departments_without_active_users_counts_only_active_users_who_work_for_them(api: Api) -> None:
    with session_scope() as session:
        given = departments_given_tasks(session)
        assert "flood" in given["housing"] and "flood" in given["water_affairs"]
        assert departments_without_active_users(session, departments=["housing", "water_affairs", COMMAND,
                                                                      "housing"], command=COMMAND) == ["housing"]
        # Without office users and administrators, nobody works for the emergency office.
        assert departments_without_active_users(session, departments=[COMMAND], command="none") == [COMMAND]
    with session_scope() as session:
        for user in session.exec(select(User).where(col(User.role).in_(["office", "admin"]))).all():
            user.active = False
            session.add(user)
    with session_scope() as session:
        assert departments_without_active_users(session, departments=[COMMAND], command=COMMAND) == [COMMAND]
