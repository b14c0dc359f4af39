"""The JSON API, in process (tests/fixtures/api.py), and over real HTTP where only a server shows it (a body
over the limit, read as it arrives; a response sent before its transaction commits): every endpoint's success
path and the errors it gives, idempotent triggers, double actions, the ledger, login throttling, health,
the error format and the security headers. Who may do what is in test_access.py."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.signals.intake import add_source
from core.users.models import User
from core.users.service import issue_token
from flows.stack import free_port
from tests import engine_driver as drive
from tests.api_server import (
    ASSESSMENT,
    FORECAST,
    LIFT,
    NEW_INCIDENT,
    PASSWORD,
    Api,
    audit_actions,
    error_of,
    expired_token,
    flood,
    issued_token,
    ledger_count,
    ledger_kinds,
    said_in_english,
    serve_api,
    standard_api,
    task_row,
)
from tests.fixtures.api import ApiWith
from tests.servers import PrefectServer

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)


def trigger(api: Api, who: str = "office", key: str | None = None, **fields: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.call(who, "POST", "/api/incidents", json={**NEW_INCIDENT, **fields}, headers=headers)


def fields_named(error: dict[str, Any]) -> set[str]:
    return {str(d["field"]) for d in error.get("details") or []}


# -- authentication ---------------------------------------------------------------------------------------


def test_login_gives_a_bearer_token_and_me_names_the_user(api: Api) -> None:
    response = api.server.post("/api/auth/token", data={"username": "water_affairs", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 8 * 3600 and len(body["access_token"]) > 30
    me = api.server.request("GET", "/api/auth/me", body["access_token"])
    assert me.status_code == 200
    assert me.json() == {"username": "water_affairs", "display_name": "water_affairs", "role": "department",
                         "department": "water_affairs", "lang": "zh"}
    for name, role in (("office", "office"), ("manager", "manager"), ("admin", "admin")):
        assert api.call(name, "GET", "/api/auth/me").json()["role"] == role


@pytest.mark.production_hashing
def test_a_password_hashed_at_a_lower_cost_is_upgraded_at_the_first_login(api: Api) -> None:
    """What a user whose password was hashed under an older, cheaper setting meets: the first login hashes it again
    at today's cost, and later logins check that hash."""
    from argon2 import PasswordHasher

    from core.users.models import User

    def stored() -> str:
        with session_scope() as session:
            return session.exec(select(User.password_hash).where(User.username == "water_affairs")).one()

    today = PasswordHasher()
    before = stored()
    assert today.check_needs_rehash(before)  # the test cast is hashed at a low cost
    logins = []
    for _ in range(2):
        response = api.server.post("/api/auth/token", data={"username": "water_affairs", "password": PASSWORD})
        assert response.status_code == 200, response.text
        logins.append(stored())
    upgraded, kept = logins
    assert upgraded != before and not today.check_needs_rehash(upgraded) and today.verify(upgraded, PASSWORD)
    assert kept == upgraded  # the second login checked the new hash and left it


def test_login_form_must_be_complete(api: Api) -> None:
    error = error_of(api.server.post("/api/auth/token", data={"username": "office"}), 422, "invalid_request")
    assert "password" in fields_named(error)
    # The password flow takes a form, not JSON.
    error_of(api.server.post("/api/auth/token", json={"username": "office", "password": PASSWORD}), 422,
             "invalid_request")
    error = error_of(api.server.post("/api/auth/token",
                                data={"username": "office", "password": PASSWORD, "grant_type": "client_credentials"}),
                     422, "invalid_request")
    assert "grant_type" in fields_named(error)


def test_a_failed_login_is_refused_and_audited(api: Api) -> None:
    error_of(api.server.post("/api/auth/token", data={"username": "office", "password": "wrong-password"}),
             401, "authentication_failed")
    error_of(api.server.post("/api/auth/token", data={"username": "nobody", "password": "wrong-password"}),
             401, "authentication_failed")
    assert [(actor, action) for actor, action, _ in audit_actions("office")][-1] == ("user:office", "login.failed")
    unknown = [(actor, action) for actor, action, _ in audit_actions("nobody")]
    assert unknown == [("anonymous:127.0.0.1", "login.failed")]


def test_five_failed_logins_lock_the_account(api: Api) -> None:
    for _ in range(5):
        error_of(api.server.post("/api/auth/token", data={"username": "manager", "password": "not-it-at-all"}),
                 401, "authentication_failed")
    # Locked for this address: even the right password is refused now, as a wrong one is (tests/test_abuse.py
    # has the lockout's other addresses and the back-off).
    error_of(api.server.post("/api/auth/token", data={"username": "manager", "password": PASSWORD}), 401,
             "authentication_failed")
    actions = [action for _, action, _ in audit_actions("manager") if action.startswith("login")]
    assert actions == ["login.failed"] * 5 + ["login.locked"]
    # Other users log in as before; the manager's existing token still works (lockout is about logins).
    assert api.server.post("/api/auth/token", data={"username": "office", "password": PASSWORD}).status_code == 200
    assert api.call("manager", "GET", "/api/auth/me").status_code == 200


def test_requests_without_a_valid_token_are_401(api: Api) -> None:
    revoked = issued_token("office")
    assert api.server.request("POST", "/api/auth/revoke", revoked).status_code == 204
    ways: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "no token": ({}, {}),
        "garbage": ({"Authorization": "Bearer not-a-token"}, {}),
        "empty": ({"Authorization": "Bearer"}, {}),
        "basic": ({"Authorization": "Basic b2ZmaWNlOmJhdG9uLXRlc3QtcGFzc3dvcmQ="}, {}),
        "expired": ({"Authorization": f"Bearer {expired_token('office')}"}, {}),
        "revoked": ({"Authorization": f"Bearer {revoked}"}, {}),
        # A bearer token is not a page session: sent as the session cookie it does not count.
        "bearer as cookie": ({}, {"baton_session": api.tokens["office"]}),
    }
    for how, (headers, cookies) in ways.items():
        with api.server.client(headers=headers, cookies=cookies) as client:
            for method, path in (("GET", "/api/auth/me"), ("GET", "/api/incidents"), ("POST", "/api/incidents"),
                                 ("GET", "/api/tasks"), ("GET", "/api/process-defs"), ("POST", "/api/auth/revoke")):
                response = client.request(method, path, json=NEW_INCIDENT if method == "POST" else None)
                assert response.status_code == 401, (how, method, path, response.text)
                error_of(response, 401, "not_authenticated")
                assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 0


def test_revoking_a_token_ends_it_and_only_it(api: Api) -> None:
    first = api.server.post("/api/auth/token", data={"username": "office", "password": PASSWORD}).json()
    second = api.server.post("/api/auth/token", data={"username": "office", "password": PASSWORD}).json()
    response = api.server.request("POST", "/api/auth/revoke", first["access_token"])
    assert response.status_code == 204 and response.content == b""
    error_of(api.server.request("GET", "/api/auth/me", first["access_token"]), 401, "not_authenticated")
    error_of(api.server.request("POST", "/api/auth/revoke", first["access_token"]), 401, "not_authenticated")
    assert api.server.request("GET", "/api/auth/me", second["access_token"]).status_code == 200
    assert ("user:office", "token.revoked") in [(a, b) for a, b, _ in audit_actions()]


@BOTH
def test_a_change_is_committed_before_its_response_is_sent(loopback_api: Api) -> None:
    """Revoke, then use the token at once: a client that got 204 must find the token revoked. On SQLite every
    transaction takes the write lock first, which hides an early answer; on PostgreSQL it shows. Over real HTTP:
    a server may send the answer before the app returns, which a client in process never sees."""
    api = loopback_api
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "office")).one()
        tokens = [issue_token(session, user=user).token for _ in range(300)]
    still_valid = 0
    with api.server.client() as client:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            assert client.post("/api/auth/revoke", headers=headers).status_code == 204
            still_valid += client.get("/api/auth/me", headers=headers).status_code != 401
    assert still_valid == 0, f"{still_valid} of {len(tokens)} revoked tokens still worked right after revocation"


# -- incidents ------------------------------------------------------------------------------------------------


def test_roles_that_may_not_do_something_get_403(api: Api) -> None:
    incident = flood("assessment")
    task = incident.tasks["flood_risk_assessment"]
    count = ledger_count(incident.id)
    refused = [
        ("manager", "POST", "/api/incidents", NEW_INCIDENT, "admin or office"),
        ("water_affairs", "POST", "/api/incidents", NEW_INCIDENT, "admin or office"),
        ("manager", "POST", f"/api/incidents/{incident.id}/level", {"level": "I", "reason": "x"},
         "admin or department or office"),
        ("water_affairs", "GET", f"/api/incidents/{incident.id}/timeline", None, "manager"),
        ("water_affairs", "GET", f"/api/incidents/{incident.id}/ledger", None, "manager"),
        ("water_affairs", "GET", f"/api/incidents/{incident.id}/ledger/verify", None, "manager"),
        ("manager", "POST", f"/api/tasks/{task}/acknowledge", None, "department"),
        ("manager", "POST", f"/api/tasks/{task}/complete", {"outputs": ASSESSMENT}, "department"),
        ("manager", "POST", f"/api/tasks/{task}/hand-back", {"reason": "x"}, "department"),
        # The office and admin read every task but act only for the emergency office.
        ("office", "POST", f"/api/tasks/{task}/complete", {"outputs": ASSESSMENT}, "water_affairs"),
        ("admin", "POST", f"/api/tasks/{task}/acknowledge", None, "water_affairs"),
    ]
    for who, method, path, body, named in refused:
        error = error_of(api.call(who, method, path, json=body), 403, "forbidden")
        assert named in said_in_english(error), (who, path, error)
    assert ledger_count(incident.id) == count and task_row(task).status == "assigned"
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 1



def test_trigger_opens_an_incident_and_its_ledger(api: Api) -> None:
    response = trigger(api, level="III", title="城东暴雨", description="低洼地带积水",
                       location={"name": "城东区", "lat": 31.2, "lon": 121.5}, drill=True)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"].startswith("FLD-") and body["code"].endswith("-0001")
    assert (body["type"], body["level"], body["status"], body["stage"], body["drill"]) == \
           ("flood", "III", "open", "warning", True)
    assert body["location"] == {"name": "城东区", "lat": 31.2, "lon": 121.5}
    assert body["flow_run_id"] is None and body["plan_version"] == 2  # the plans as rewritten by law
    assert "Idempotent-Replayed" not in response.headers
    assert ledger_kinds(body["id"]) == [("incident.opened", None), ("stage.entered", None)]
    for ref in (body["id"], body["code"]):
        got = api.call("manager", "GET", f"/api/incidents/{ref}")
        assert got.status_code == 200 and got.json() == body


TRIGGER_FIELD_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"level": "V"}, {"level"}),
    ({"level": 4}, {"level"}),
    ({"title": ""}, {"title"}),
    ({"title": 5}, {"title"}),
    ({"title": "x" * 201}, {"title"}),
    ({"type": ""}, {"type"}),
    ({"drill": "maybe"}, {"drill"}),
    ({"location": {"name": "", "lat": 91, "lon": 0}}, {"location.name", "location.lat"}),
    ({"location": {"name": "x", "lon": 181}}, {"location.lon"}),
    ({"colour": "red"}, {"colour"}),
]


def test_trigger_names_each_bad_field(api: Api) -> None:
    for payload, fields in TRIGGER_FIELD_CASES:
        error = error_of(trigger(api, **payload), 422, "invalid_request")
        assert fields_named(error) == fields, payload
        for name in fields:
            assert name.split(".")[-1] in said_in_english(error)
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 0


def test_trigger_needs_type_level_and_title(api: Api) -> None:
    error = error_of(api.call("office", "POST", "/api/incidents", json={}), 422, "invalid_request")
    assert fields_named(error) == {"type", "level", "title"}


def test_trigger_of_an_unknown_type_is_422(api: Api) -> None:
    for key in ("volcano", "departments"):
        error_of(trigger(api, type=key), 422, "unknown_incident_type")
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 0


def test_trigger_type_must_be_a_plan_key_not_a_path(api: Api) -> None:
    error_of(trigger(api, type="../process_defs/flood"), 422, "unknown_incident_type")


def test_trigger_with_a_body_that_is_not_a_json_object(api: Api) -> None:
    raw = json.dumps(NEW_INCIDENT).encode()
    as_json = {"Content-Type": "application/json"}
    for body, headers in ((raw[:-5], as_json), (b'["flood", "IV"]', as_json), (b"null", as_json), (b"", as_json)):
        error_of(api.call("office", "POST", "/api/incidents", content=body, headers=headers), 422, "invalid_request")
    # JSON sent as another media type (or none) is not read as JSON: 415, or 422 as FastAPI answers.
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        response = api.call("office", "POST", "/api/incidents", content=raw, headers=headers)
        error_of(response, response.status_code,
                 "unsupported_media_type" if response.status_code == 415 else "invalid_request")
        assert response.status_code in (415, 422), headers
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 0


@BOTH
def test_trigger_is_idempotent_per_user_and_key(api: Api) -> None:
    first = trigger(api, key="storm-0719")
    again = trigger(api, key="storm-0719", title="a retry with other words", level="I")
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json()  # the first answer, not the retry's words
    assert again.headers["Idempotent-Replayed"] == "true"
    listing = api.call("office", "GET", "/api/incidents").json()
    assert listing["total"] == 1 and [i["id"] for i in listing["items"]] == [first.json()["id"]]
    assert ledger_kinds(first.json()["id"]).count(("incident.opened", None)) == 1
    # Keys belong to the user who sent them: the admin's same key is another incident.
    other = trigger(api, who="admin", key="storm-0719")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in other.headers
    # Without a key every trigger is a new incident.
    assert trigger(api).json()["id"] != trigger(api).json()["id"]
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 4


@BOTH
def test_concurrent_triggers_with_one_key_open_one_incident(api: Api) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: trigger(api, key="retry-storm"), range(8)))
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert api.call("office", "GET", "/api/incidents").json()["total"] == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7


@BOTH
def test_the_longest_idempotency_key_allowed_works(api: Api) -> None:
    key = "k" * 200
    first = trigger(api, key=key)
    assert first.status_code == 201, first.text[:300]
    assert trigger(api, key=key).json()["id"] == first.json()["id"]


def test_an_idempotency_key_over_200_characters_is_422(api: Api) -> None:
    error = error_of(trigger(api, key="k" * 201), 422, "invalid_request")
    assert fields_named(error) == {"header.idempotency-key"}


def test_list_incidents_filters_and_pages(api: Api) -> None:
    ids = [trigger(api, level=level).json()["id"] for level in ("IV", "III", "II")]
    typhoon = trigger(api, type="typhoon", level="III").json()["id"]
    closed = drive.open_("flood", level="IV")
    drive.run_to_end(closed, {"rainstorm_forecast": FORECAST, "flood_risk_assessment": ASSESSMENT,
                              "lift_warning": LIFT})

    def listed(query: str) -> dict[str, Any]:
        response = api.call("manager", "GET", f"/api/incidents{query}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = listed("")
    assert everything["total"] == 5 and (everything["limit"], everything["offset"]) == (50, 0)
    # Newest first.
    assert [i["id"] for i in everything["items"]] == [closed, typhoon, *reversed(ids)]
    assert {i["id"] for i in listed("?type=flood")["items"]} == {*ids, closed}
    assert {i["id"] for i in listed("?level=III")["items"]} == {ids[1], typhoon}
    assert {i["id"] for i in listed("?status=closed")["items"]} == {closed}
    assert listed("?status=open")["total"] == 4
    assert {i["id"] for i in listed("?stage=learning")["items"]} == {closed}
    assert listed("?stage=warning&type=typhoon&level=III")["total"] == 1
    assert listed("?type=volcano") == {"items": [], "total": 0, "limit": 50, "offset": 0}
    page = listed("?limit=2&offset=1")
    assert [i["id"] for i in page["items"]] == [typhoon, ids[2]] and page["total"] == 5
    assert [i["id"] for i in listed("?limit=2&offset=4")["items"]] == [ids[0]]
    assert listed("?offset=99")["items"] == []
    assert len(listed("?limit=200")["items"]) == 5 and len(listed("?limit=1")["items"]) == 1


def test_list_incidents_refuses_bad_filters(api: Api) -> None:
    for query, field in (("limit=0", "query.limit"), ("limit=201", "query.limit"), ("limit=ten", "query.limit"),
                         ("offset=-1", "query.offset"), ("offset=x", "query.offset"),
                         ("status=pending", "query.status"), ("stage=rescue", "query.stage"),
                         ("level=V", "query.level"), (f"type={'x' * 65}", "query.type")):
        error = error_of(api.call("office", "GET", f"/api/incidents?{query}"), 422, "invalid_request")
        assert fields_named(error) == {field}, query


def test_unknown_incident_is_404_on_every_incident_endpoint(api: Api) -> None:
    for method, path, body in (("GET", "", None), ("POST", "/level", {"level": "III", "reason": "rain"}),
                               ("GET", "/timeline", None), ("GET", "/ledger", None), ("GET", "/ledger/verify", None),
                               ("GET", "/shared", None)):
        for ref in ("00000000-0000-0000-0000-000000000000", "FLD-2026-9999"):
            error_of(api.call("office", method, f"/api/incidents/{ref}{path}", json=body), 404, "not_found")
    error_of(api.call("office", "GET", "/api/tasks?incident=FLD-2026-9999"), 404, "not_found")


def test_level_change_is_recorded_in_timeline_and_ledger(api: Api) -> None:
    incident = flood("forecast")
    before = task_row(incident.tasks["rainstorm_forecast"]).due_at
    response = api.call("commander", "POST", f"/api/incidents/{incident.id}/level",
                        json={"level": "II", "reason": "雨量超过预期"})
    assert response.status_code == 200, response.text
    assert response.json()["level"] == "II" and response.json()["id"] == incident.id
    # Raising the level tightens the open deadline (PT1H at IV, PT30M at II).
    after = task_row(incident.tasks["rainstorm_forecast"]).due_at
    assert before is not None and after is not None and after < before
    timeline = api.call("manager", "GET", f"/api/incidents/{incident.code}/timeline").json()
    assert [(c["from"], c["to"], c["actor"], c["reason"]) for c in timeline["level_changes"]] == \
           [("IV", "II", "user:commander", "雨量超过预期")]
    entries = api.call("manager", "GET", f"/api/incidents/{incident.id}/ledger").json()["entries"]
    changed = [e for e in entries if e["kind"] == "level.changed"]
    assert len(changed) == 1
    assert changed[0]["details"] == {"from": "IV", "to": "II", "reason": "雨量超过预期",
                                     "authority": {"act": "raise", "level": "II", "authorised_by": "commander",
                                                   "position": "commander@flood_control_hq",
                                                   "recorded_by": "user:commander", "verbal": False}}
    assert (changed[0]["actor"], changed[0]["from_party"], changed[0]["to_party"]) == \
           ("user:commander", "user:commander", "emergency_office")
    # The same level again changes nothing.
    count = ledger_count(incident.id)
    assert api.call("admin", "POST", f"/api/incidents/{incident.id}/level",
                    json={"level": "II", "reason": "again"}).json()["level"] == "II"
    assert ledger_count(incident.id) == count
    verify = api.call("manager", "GET", f"/api/incidents/{incident.id}/ledger/verify").json()
    assert verify == {"valid": True, "entries": count, "first_bad_seq": None, "reason": None}


def test_level_change_refuses_bad_input(api: Api) -> None:
    incident = flood("forecast")
    count = ledger_count(incident.id)
    for body, code, fields in (
        ({"level": "V", "reason": "x"}, "invalid_request", {"level"}),
        ({"level": "iii", "reason": "x"}, "invalid_request", {"level"}),
        ({"level": "III"}, "invalid_request", {"reason"}),
        ({"level": "III", "reason": ""}, "invalid_request", {"reason"}),
        ({"level": "III", "reason": "r" * 2001}, "invalid_request", {"reason"}),
        ({"level": "III", "reason": "   "}, "reason_required", set()),
        ({"reason": "rain"}, "invalid_request", {"level"}),
        ({"level": "III", "reason": "rain", "by": "me"}, "invalid_request", {"by"}),
        ({"level": ["III"], "reason": 3}, "invalid_request", {"level", "reason"}),
    ):
        error = error_of(api.call("office", "POST", f"/api/incidents/{incident.id}/level", json=body), 422, code)
        assert fields_named(error) == fields, body
    assert ledger_count(incident.id) == count
    assert api.call("office", "GET", f"/api/incidents/{incident.id}").json()["level"] == "IV"


def test_level_change_on_a_closed_incident_is_409(api: Api) -> None:
    incident_id = drive.open_("flood", level="IV")
    drive.run_to_end(incident_id, {"rainstorm_forecast": FORECAST, "flood_risk_assessment": ASSESSMENT,
                                   "lift_warning": LIFT})
    count = ledger_count(incident_id)
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/level", json={"level": "I", "reason": "late"}),
             409, "incident_closed")
    assert ledger_count(incident_id) == count


def test_timeline_ledger_and_verify(api: Api) -> None:
    incident = flood("assessment")
    timeline = api.call("office", "GET", f"/api/incidents/{incident.id}/timeline").json()
    assert timeline["code"] == incident.code and timeline["closed_at"] is None
    assert [s["stage"] for s in timeline["stages"]] == ["warning"] and timeline["stages"][0]["left_at"] is None
    steps = {s["step"]: s for s in timeline["steps"]}
    assert steps["rainstorm_forecast"]["status"] == "completed"
    assert steps["flood_risk_assessment"]["status"] == "assigned"
    assert steps["flood_risk_assessment"]["department"] == "water_affairs"
    assert steps["notify_subdistricts"]["kind"] == "action" and steps["notify_subdistricts"]["status"] == "completed"
    assert timeline["deadlines_by_department"] == [
        {"department": "meteorology", "met": 1, "missed": 0, "open": 0},
        {"department": "water_affairs", "met": 0, "missed": 0, "open": 1}]
    view = api.call("office", "GET", f"/api/incidents/{incident.code}/ledger").json()
    assert (view["incident_id"], view["code"]) == (incident.id, incident.code)
    entries = view["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]
    completed = [e for e in entries if e["kind"] == "task.completed"]
    assert [(e["step_key"], e["from_party"], e["to_party"]) for e in completed] == \
           [("rainstorm_forecast", "meteorology", "emergency_office")]
    assert completed[0]["digest"] == ledger.digest_of({"outputs": FORECAST, "note": None})
    verify = api.call("office", "GET", f"/api/incidents/{incident.id}/ledger/verify")
    assert verify.json() == {"valid": True, "entries": len(entries), "first_bad_seq": None, "reason": None}


def test_ledger_verify_names_the_first_tampered_entry(api: Api) -> None:
    incident = flood("assessment")
    with session_scope() as session:
        session.execute(text("DROP TRIGGER ledger_entry_no_update"))
        session.execute(text("UPDATE ledger_entry SET actor = 'someone else' WHERE incident_id = :i AND seq = 4"),
                        {"i": incident.id})
    verify = api.call("manager", "GET", f"/api/incidents/{incident.id}/ledger/verify").json()
    assert verify["valid"] is False and verify["first_bad_seq"] == 4 and verify["reason"]


def test_shared_lists_completed_outputs(api: Api) -> None:
    incident = flood("assessment")
    shared = api.call("office", "GET", f"/api/incidents/{incident.id}/shared").json()
    assert shared["incident_id"] == incident.id
    assert [(i["step"], i["department"], i["classification"], i["outputs"]) for i in shared["items"]] == \
           [("rainstorm_forecast", "meteorology", "public", FORECAST)]
    # The department it was shared with (all of them) sees it too.
    assert api.call("water_affairs", "GET", f"/api/incidents/{incident.id}/shared").json() == shared


# -- tasks ----------------------------------------------------------------------------------------------------


def test_task_inbox_filters_and_pages(api: Api) -> None:
    first = flood("assessment")
    second = flood("forecast")

    def listed(who: str, query: str = "") -> dict[str, Any]:
        response = api.call(who, "GET", f"/api/tasks{query}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = listed("office")
    assert everything["total"] == 3 and (everything["limit"], everything["offset"]) == (100, 0)
    assert {(t["step_key"], t["status"]) for t in everything["items"]} == {
        ("rainstorm_forecast", "completed"), ("flood_risk_assessment", "assigned"), ("rainstorm_forecast", "assigned")}
    item = next(t for t in everything["items"] if t["id"] == first.tasks["flood_risk_assessment"])
    assert item["incident_code"] == first.code and item["title"]["en"].startswith("Assess waterlogging")
    assert item["overdue"] is False and item["due_at"] and item["outputs"] is None
    assert {t["id"] for t in listed("office", "?open=true")["items"]} == {
        first.tasks["flood_risk_assessment"], second.tasks["rainstorm_forecast"]}
    assert {t["id"] for t in listed("office", "?status=completed")["items"]} == {first.tasks["rainstorm_forecast"]}
    assert {t["id"] for t in listed("manager", f"?incident={first.code}")["items"]} == set(first.tasks.values())
    assert {t["id"] for t in listed("admin", f"?incident={second.id}&open=true")["items"]} == \
           {second.tasks["rainstorm_forecast"]}
    assert {t["id"] for t in listed("office", "?department=meteorology")["items"]} == {
        first.tasks["rainstorm_forecast"], second.tasks["rainstorm_forecast"]}
    assert listed("office", "?department=fire_rescue")["total"] == 0
    # A department's inbox: its own tasks, whatever department it asks for.
    assert {t["id"] for t in listed("meteorology", "?department=water_affairs")["items"]} == {
        first.tasks["rainstorm_forecast"], second.tasks["rainstorm_forecast"]}
    assert [t["id"] for t in listed("water_affairs", "?open=true")["items"]] == [first.tasks["flood_risk_assessment"]]
    page = listed("office", "?limit=2&offset=2")
    assert len(page["items"]) == 1 and page["total"] == 3 and page["limit"] == 2
    assert listed("office", "?offset=3")["items"] == []
    assert len(listed("office", "?limit=500")["items"]) == 3


def test_task_inbox_refuses_bad_filters(api: Api) -> None:
    for query, field in (("limit=0", "query.limit"), ("limit=501", "query.limit"), ("offset=-1", "query.offset"),
                         ("status=done", "query.status"), ("open=maybe", "query.open"),
                         (f"department={'d' * 65}", "query.department"), (f"incident={'i' * 65}", "query.incident")):
        error = error_of(api.call("office", "GET", f"/api/tasks?{query}"), 422, "invalid_request")
        assert fields_named(error) == {field}, query


def test_task_detail_shows_the_form_and_shared_inputs(api: Api) -> None:
    incident = flood("assessment")
    response = api.call("water_affairs", "GET", f"/api/tasks/{incident.tasks['flood_risk_assessment']}")
    assert response.status_code == 200
    detail = response.json()
    assert (detail["step_key"], detail["department"], detail["status"]) == \
           ("flood_risk_assessment", "water_affairs", "assigned")
    assert [f["key"] for f in detail["form"]] == ["hot_spots", "pumps_deployed", "river_level_high", "hot_spot_map"]
    assert [(i["step"], i["department"]) for i in detail["inputs"]] == [("rainstorm_forecast", "meteorology")]
    fields = {f["key"]: (f["value"], f["unit"]) for f in detail["inputs"][0]["fields"]}
    assert fields["rainfall_1h"] == (60, "mm") and fields["warning_colour"] == ("orange", None)
    done = api.call("office", "GET", f"/api/tasks/{incident.tasks['rainstorm_forecast']}").json()
    assert done["status"] == "completed" and done["outputs"] == FORECAST and done["inputs"] == []


def test_unknown_task_is_404_on_every_task_endpoint(api: Api) -> None:
    for method, path, body in (("GET", "", None), ("POST", "/acknowledge", None),
                               ("POST", "/complete", {"outputs": FORECAST}),
                               ("POST", "/hand-back", {"reason": "not ours"})):
        for who in ("office", "meteorology"):
            error_of(api.call(who, method, f"/api/tasks/no-such-task{path}", json=body), 404, "not_found")


def test_acknowledge_once_then_409(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    response = api.call("meteorology", "POST", f"/api/tasks/{task_id}/acknowledge")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "acknowledged" and response.json()["acknowledged_at"]
    count = ledger_count(incident.id)
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/acknowledge"), 409, "task_state_conflict")
    assert ledger_count(incident.id) == count
    assert ledger_kinds(incident.id).count(("task.acknowledged", "rainstorm_forecast")) == 1
    # Acknowledged, it can still be completed.
    assert api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete",
                    json={"outputs": FORECAST}).status_code == 200


@BOTH
def test_complete_once_then_409_and_never_a_second_handoff(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    response = api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete",
                        json={"outputs": FORECAST, "note": "雷达回波增强"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["outputs"] == FORECAST and body["completed_at"]
    count = ledger_count(incident.id)
    for action, payload in (("complete", {"outputs": FORECAST}), ("acknowledge", None),
                            ("hand-back", {"reason": "too late"})):
        error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/{action}", json=payload), 409,
                 "task_state_conflict")
    assert ledger_count(incident.id) == count
    assert ledger_kinds(incident.id).count(("task.completed", "rainstorm_forecast")) == 1
    row = task_row(task_id)
    assert (row.completed_by, row.note) == ("user:meteorology", "雷达回波增强")
    # The completion is a real handoff: the engine assigns what depended on it.
    drive.step(incident.id)
    assert "flood_risk_assessment" in drive.open_tasks(incident.id)


@BOTH
def test_concurrent_completions_give_one_handoff(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(
            lambda _: api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": FORECAST}),
            range(6)))
    assert Counter(r.status_code for r in responses) == {200: 1, 409: 5}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            error_of(response, 409, "task_state_conflict")
    assert ledger_kinds(incident.id).count(("task.completed", "rainstorm_forecast")) == 1
    with session_scope() as session:
        assert ledger.verify_incident(session, incident.id).valid


def test_office_acts_on_the_emergency_office_steps(api: Api) -> None:
    incident = flood("lift")
    task_id = incident.tasks["lift_warning"]
    response = api.call("office", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": LIFT})
    assert response.status_code == 200 and response.json()["department"] == "emergency_office"
    error_of(api.call("admin", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": LIFT}), 409,
             "task_state_conflict")
    assert drive.step(incident.id).stage == "response"


def test_complete_names_every_bad_form_field(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    count = ledger_count(incident.id)
    outputs = {"rainfall_1h": "heavy", "warning_colour": "purple", "valid_until": "2026-07-20T18:00:00",
               "wind": 7}
    error = error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": outputs}),
                     422, "form_invalid")
    problems = {d["field"]: d["message"] for d in error["details"]}
    assert set(problems) == {"rainfall_1h", "rainfall_24h", "warning_colour", "valid_until", "wind"}
    assert problems["rainfall_24h"] == "is required"
    assert "number" in problems["rainfall_1h"] and "orange" in problems["warning_colour"]
    assert "offset" in problems["valid_until"] and "not a field" in problems["wind"]
    for name in problems:
        assert name in said_in_english(error)
    assert task_row(task_id).status == "assigned" and ledger_count(incident.id) == count
    # Other field types: a boolean, a number given as a boolean, an attachment reference.
    second = flood("assessment")
    error = error_of(api.call("water_affairs", "POST",
                              f"/api/tasks/{second.tasks['flood_risk_assessment']}/complete",
                              json={"outputs": {**ASSESSMENT, "hot_spots": True, "river_level_high": "yes",
                                                "hot_spot_map": 5}}), 422, "form_invalid")
    assert fields_named(error) == {"hot_spots", "river_level_high", "hot_spot_map"}


def test_complete_refuses_answers_the_domain_forbids_with_a_stable_code_per_field(api: Api) -> None:
    """-5 mm of rain, a forecast valid until 2020 or beyond its horizon, more rain in an hour than in the day,
    2.5 waterlogged points and -3 pump trucks: refused, each with its code and the bound it broke."""
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    count = ledger_count(incident.id)
    url = f"/api/tasks/{task_id}/complete"
    # A client reads the bounds and the checks with the form.
    detail = api.call("meteorology", "GET", f"/api/tasks/{task_id}").json()
    assert detail["checks"] == [{"field": "rainfall_1h", "op": "le", "other": "rainfall_24h"}]
    rain = next(f for f in detail["form"] if f["key"] == "rainfall_1h")
    assert (rain["min"], rain["max"], rain["integer"]) == (0, 500, False)

    def refusals(outputs: dict[str, Any], by: str = "meteorology", at: str = url) -> dict[str, dict[str, Any]]:
        error = error_of(api.call(by, "POST", at, json={"outputs": outputs}), 422, "form_invalid")
        return {d["field"]: d for d in error["details"]}

    found = refusals({**FORECAST, "rainfall_1h": -5, "valid_until": "2020-07-20T18:00:00+08:00"})
    assert set(found) == {"rainfall_1h", "valid_until"}
    assert found["rainfall_1h"] == {"field": "rainfall_1h", "code": "below_min", "bound": 0, "unit": "mm",
                                    "message": "must be at least 0 mm"}
    assert found["valid_until"]["code"] == "in_the_past"
    assert datetime.fromisoformat(found["valid_until"]["bound"]) > datetime(2026, 1, 1, tzinfo=UTC)
    far = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    assert refusals({**FORECAST, "valid_until": far})["valid_until"]["code"] == "beyond_horizon"
    found = refusals({**FORECAST, "rainfall_1h": 200, "rainfall_24h": 100})
    assert found == {"rainfall_1h": {"field": "rainfall_1h", "code": "check_failed", "op": "le",
                                     "other": "rainfall_24h", "bound": 100,
                                     "message": "must be at most rainfall_24h (100)"}}
    assert task_row(task_id).status == "assigned" and ledger_count(incident.id) == count
    second = flood("assessment")
    found = refusals({**ASSESSMENT, "hot_spots": 2.5, "pumps_deployed": -3}, "water_affairs",
                     f"/api/tasks/{second.tasks['flood_risk_assessment']}/complete")
    assert (found["hot_spots"]["code"], found["pumps_deployed"]["code"]) == ("not_integer", "below_min")
    # A count given as 4.0 is stored as the whole number 4; the forecast within its bounds is taken.
    done = api.call("water_affairs", "POST", f"/api/tasks/{second.tasks['flood_risk_assessment']}/complete",
                    json={"outputs": {**ASSESSMENT, "hot_spots": 4.0}})
    assert done.status_code == 200, done.text
    assert task_row(second.tasks["flood_risk_assessment"]).outputs == ASSESSMENT


def test_complete_refuses_a_malformed_body(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    count = ledger_count(incident.id)
    for body, fields in (({}, {"outputs"}), ({"outputs": [1, 2]}, {"outputs"}), ({"outputs": "done"}, {"outputs"}),
                         ({"outputs": None}, {"outputs"}), ({"outputs": FORECAST, "note": "n" * 10_001}, {"note"}),
                         ({"outputs": FORECAST, "note": 5}, {"note"}), ({"outputs": FORECAST, "by": "me"}, {"by"})):
        error = error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete", json=body), 422,
                         "invalid_request")
        assert fields_named(error) == fields, body
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/complete", content=b"{",
                      headers={"Content-Type": "application/json"}), 422, "invalid_request")
    assert task_row(task_id).status == "assigned" and ledger_count(incident.id) == count


def test_hand_back_once_then_409(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    response = api.call("meteorology", "POST", f"/api/tasks/{task_id}/hand-back", json={"reason": "雷达故障"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "handed_back"
    row = task_row(task_id)
    assert (row.hand_back_reason, row.handed_back_by) == ("雷达故障", "user:meteorology")
    assert ledger_kinds(incident.id).count(("task.handed_back", "rainstorm_forecast")) == 1
    count = ledger_count(incident.id)
    for action, payload in (("hand-back", {"reason": "again"}), ("complete", {"outputs": FORECAST}),
                            ("acknowledge", None)):
        error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/{action}", json=payload), 409,
                 "task_state_conflict")
    assert ledger_count(incident.id) == count


def test_hand_back_needs_a_reason(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    count = ledger_count(incident.id)
    for body, fields in (({}, {"reason"}), ({"reason": ""}, {"reason"}), ({"reason": None}, {"reason"}),
                         ({"reason": 7}, {"reason"}), ({"reason": "r" * 2001}, {"reason"}),
                         ({"reason": "x", "to": "fire_rescue"}, {"to"})):
        error = error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/hand-back", json=body), 422,
                         "invalid_request")
        assert fields_named(error) == fields, body
    assert task_row(task_id).status == "assigned" and ledger_count(incident.id) == count


def test_hand_back_with_a_blank_reason_is_422(api: Api) -> None:
    incident = flood("forecast")
    task_id = incident.tasks["rainstorm_forecast"]
    error_of(api.call("meteorology", "POST", f"/api/tasks/{task_id}/hand-back", json={"reason": "   "}), 422,
             "reason_required")


# -- plans and departments -------------------------------------------------------------------------------------


def test_process_defs_and_departments(api: Api) -> None:
    plans = api.call("meteorology", "GET", "/api/process-defs").json()
    by_key = {p["key"]: p for p in plans}
    assert {"flood", "typhoon", "highrise_fire", "hazmat_leak", "epidemic", "crowd_crush",
            "power_outage"} <= set(by_key)
    assert by_key["flood"]["name"] == {"zh": "城市内涝", "en": "Urban flood and waterlogging"}
    assert (by_key["flood"]["code_prefix"], by_key["flood"]["default_level"]) == ("FLD", "IV")
    assert by_key["flood"]["steps"] > 10 and "departments" not in by_key
    plan = api.call("manager", "GET", "/api/process-defs/flood").json()
    assert plan["key"] == "flood" and set(plan["stages"]) == {"warning", "response", "recovery", "learning"}
    for key in ("volcano", "departments"):
        error_of(api.call("manager", "GET", f"/api/process-defs/{key}"), 404, "not_found")
    departments = api.call("water_affairs", "GET", "/api/departments").json()
    keys = {d["key"] for d in departments}
    assert {"emergency_office", "meteorology", "water_affairs", "fire_rescue"} <= keys
    assert all("endpoint" not in d for d in departments)


# -- health ---------------------------------------------------------------------------------------------------


@pytest.mark.prefect
def test_health_is_200_when_database_and_prefect_answer(api_with: ApiWith, prefect_server: PrefectServer) -> None:
    with api_with({"BATON_PREFECT_API_URL": prefect_server.api_url}) as server:
        response = server.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "prefect": "ok", "ok": True}


def test_health_is_503_when_prefect_is_unreachable(api_with: ApiWith) -> None:
    with api_with({"BATON_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}) as server:
        response = server.get("/api/health")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "prefect": "error: ConnectError", "ok": False}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_health_is_503_when_the_database_is_unreachable(api_with: ApiWith) -> None:
    env = {"BATON_DATABASE_URL": f"postgresql://baton@127.0.0.1:{free_port()}/baton",
           "BATON_PREFECT_API_URL": None, "PREFECT_API_URL": None}
    with api_with(env) as server:
        response = server.get("/api/health")
    assert response.status_code == 503
    assert response.json() == {"database": "error: OperationalError", "prefect": "not configured", "ok": False}


def test_health_without_prefect_configured_is_503(api_with: ApiWith) -> None:
    with api_with({"BATON_PREFECT_API_URL": None, "PREFECT_API_URL": None}) as server:
        response = server.get("/api/health")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "prefect": "not configured", "ok": False}


# -- oversized bodies, the error format, security headers ---------------------------------------------------


@pytest.fixture
def small_api(baton: str) -> Iterator[Api]:
    """The API with a 10 kB body limit, over real HTTP: the limit is met while uvicorn reads the body."""
    with serve_api({"BATON_MAX_BODY_BYTES": "10000"}) as server:
        yield standard_api(server, {"office": ("office", None), "meteorology": ("department", "meteorology")})


def padded_incident(size: int) -> bytes:
    """A valid trigger body of `size` bytes (JSON allows the whitespace)."""
    raw = json.dumps(NEW_INCIDENT).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_an_oversized_body_is_413(small_api: Api) -> None:
    incident = flood("forecast")
    headers = {"Content-Type": "application/json"}
    assert small_api.call("office", "POST", "/api/incidents", content=padded_incident(10_000),
                          headers=headers).status_code == 201
    for who, path, raw in (("office", "/api/incidents", padded_incident(10_001)),
                           ("meteorology", f"/api/tasks/{incident.tasks['rainstorm_forecast']}/complete",
                            json.dumps({"outputs": FORECAST, "note": "n" * 10_000}).encode()),
                           (None, "/api/auth/token", b"username=office&password=" + b"p" * 10_000)):
        response = small_api.call(who, "POST", path, content=raw, headers=headers)
        error = error_of(response, 413, "body_too_large")
        assert "10000" in said_in_english(error)
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert small_api.call("office", "GET", "/api/incidents").json()["total"] == 2  # flood() and the first
    assert task_row(incident.tasks["rainstorm_forecast"]).status == "assigned"


def test_an_oversized_chunked_body_is_413(small_api: Api) -> None:
    raw = padded_incident(50_000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(raw), 4096):
            yield raw[start:start + 4096]

    response = small_api.call("office", "POST", "/api/incidents", content=chunks(),
                              headers={"Content-Type": "application/json"})
    error_of(response, 413, "body_too_large")


EXPECTED_CODES = {401: {"not_authenticated", "authentication_failed"}, 403: {"forbidden"}, 404: {"not_found"},
                  405: {"method_not_allowed"}, 409: {"task_state_conflict", "incident_closed"},
                  413: {"body_too_large"}, 415: {"unsupported_media_type"},
                  422: {"invalid_request", "form_invalid", "unknown_incident_type", "invalid_level", "reason_required"},
                  429: {"login_throttled", "signal_rate_limited"}}


def some_responses(api: Api) -> list[httpx.Response]:
    """One response of each kind the API gives, successes and errors."""
    incident = flood("forecast")
    task = incident.tasks["rainstorm_forecast"]
    out = [
        api.call("office", "GET", "/api/incidents"),
        trigger(api),
        api.call("meteorology", "POST", f"/api/tasks/{task}/complete", json={"outputs": FORECAST}),
        api.call("meteorology", "POST", f"/api/tasks/{task}/complete", json={"outputs": FORECAST}),
        api.call(None, "GET", "/api/incidents"),
        api.call("manager", "POST", "/api/incidents", json=NEW_INCIDENT),
        api.call("meteorology", "GET", f"/api/incidents/{incident.id}/ledger"),
        api.call("water_affairs", "GET", f"/api/tasks/{task}"),
        api.call("office", "GET", "/api/no-such-thing"),
        api.call("office", "DELETE", f"/api/incidents/{incident.id}"),
        api.call("office", "POST", "/api/incidents", content=padded_incident(1_000_001),
                 headers={"Content-Type": "application/json"}),
        api.call("office", "POST", "/api/incidents", content=b"{", headers={"Content-Type": "application/json"}),
        trigger(api, type="volcano"),
        api.call("office", "POST", f"/api/incidents/{incident.id}/level", json={"level": "II", "reason": " "}),
        api.call("public_security", "POST", "/api/auth/revoke"),
        api.call(None, "GET", "/api/health"),
    ]
    for _ in range(6):
        out.append(api.server.post("/api/auth/token", data={"username": "admin", "password": "wrong-wrong"}))
    # A monitoring source past its burst of signals (10 by default, refilled at one every 2 s) gets 429.
    with session_scope() as session:
        key = add_source(session, name="hydrology_network", actor="test:setup")
    for _ in range(20):
        out.append(api.call(None, "POST", "/api/signals", json={"kind": "rainfall", "area": "城东", "value": 1},
                            headers={"X-Api-Key": key}))
    return out


def test_every_error_is_in_the_error_format_with_a_stable_code(api: Api) -> None:
    statuses = set()
    for response in some_responses(api):
        statuses.add(response.status_code)
        if response.status_code < 400 or response.request.url.path == "/api/health":
            continue
        error = error_of(response, response.status_code)
        assert error["code"] in EXPECTED_CODES[response.status_code], (response.status_code, error)
        assert response.headers["content-type"] == "application/json"
    assert {401, 403, 404, 405, 409, 413, 422, 429} <= statuses


def test_security_headers_are_on_every_response(api: Api) -> None:
    statuses = set()
    for response in some_responses(api):
        statuses.add(response.status_code)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (response.request.url, csp)
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
        assert response.headers.get("X-Frame-Options") == "DENY"
        assert response.headers.get("Cache-Control") == "no-store"
    assert {200, 201, 204, 401, 403, 404, 405, 409, 413, 422, 429} <= statuses
