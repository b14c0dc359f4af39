"""Plans by law over real HTTP: a grading proposal on the incident's API, page and board, decided by the
office; level changes refused without the position the plan names (403 with a stable code), on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from core.ledger import chain as ledger
from core.ledger.models import LedgerEntry
from core.platform.db import session_scope
from tests import engine_driver as drive
from tests.api_server import (  # noqa: F401
    ASSESSMENT,
    FORECAST,
    LIFT,
    Api,
    api_fixture,
    api_server_fixture,
    error_of,
    fingerprint,
    flood_with_proposal,
    issued_token,
    page_client,
)


def entries(incident_id: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(ledger.read_chain(session, incident_id))


BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)


@BOTH
def test_a_proposal_is_shown_on_the_incident_page_and_board_and_the_office_decides_it(api: Api) -> None:
    incident_id, proposal_id = flood_with_proposal()
    [shown] = api.call("office", "GET", f"/api/incidents/{incident_id}/proposals").json()
    assert (shown["id"], shown["level"], shown["from_level"], shown["status"]) == (proposal_id, "II", "IV", "open")
    assert shown["basis"]["met"][0]["measure"] == "casualty_report.deaths"
    # The board shows it to the command, not to a department on the incident.
    board = api.call("manager", "GET", f"/api/incidents/{incident_id}/board").json()
    assert [i["level"] for i in board["items"] if i["kind"] == "proposal"] == ["II"]
    board = api.call("water_affairs", "GET", f"/api/incidents/{incident_id}/board").json()
    assert not [i for i in board["items"] if i["kind"] == "proposal"]
    browser = page_client(api.server, "office")
    text = browser.get(f"/office/incidents/{incident_id}").text
    browser.close()
    assert f'data-proposal="{proposal_id}"' in text and "建议调整为Ⅱ级" in text
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                      json={"decision": "decline", "reason": " "}), 422, "reason_required")
    # Accepting II is the commander's decision: the office alone is refused, naming the position.
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                      json={"decision": "accept"}), 403, "position_required")
    api.tokens["commander"] = issued_token(drive.person().username)
    decided = api.call("commander", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                       json={"decision": "accept"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "accepted" and drive.incident(incident_id).level == "II"
    error_of(api.call("commander", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                      json={"decision": "accept"}), 409, "level_proposal_conflict")


def responding_flood(level: str = "IV") -> str:
    incident_id = drive.open_("flood", level=level)
    drive.step(incident_id)
    for key, outputs in (("rainstorm_forecast", FORECAST), ("flood_risk_assessment", ASSESSMENT),
                         ("lift_warning", LIFT)):
        drive.complete_step(incident_id, key, outputs)
        drive.step(incident_id)
    return incident_id


@BOTH
def test_at_level_iv_a_department_user_cannot_raise_to_ii_and_the_commander_can(api: Api) -> None:
    incident_id = responding_flood("IV")
    # The standard water_affairs user, made the bureau's director: a position, but not the one needed.
    drive.person("water_affairs", "bureau_director@water_affairs", role="department", department="water_affairs")
    commander = drive.person()
    api.tokens["commander"] = issued_token(commander.username)
    before = fingerprint()
    refused = api.call("water_affairs", "POST", f"/api/incidents/{incident_id}/level",
                       json={"level": "II", "reason": "河道超保证水位"})
    error = error_of(refused, 403, "position_required")
    assert error["details"]["needs"] == ["commander@flood_control_hq"] and error["details"]["act"] == "raise"
    assert "市防汛抗旱指挥部总指挥" in error["message"]  # named as people say it, in the reader's language
    assert fingerprint() == before  # nothing half-written
    # The office without the position is refused too, and so is an order from someone without it.
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/level",
                      json={"level": "II", "reason": "x"}), 403, "position_required")
    error = error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/level",
                              json={"level": "II", "reason": "x", "ordered_by": "water_affairs"}), 403,
                     "position_required")
    assert error["details"]["reason"] == "order_giver_lacks"
    assert fingerprint() == before
    done = api.call("commander", "POST", f"/api/incidents/{incident_id}/level",
                    json={"level": "II", "reason": "河道超保证水位"})
    assert done.status_code == 200, done.text
    assert done.json()["level"] == "II"
    [changed] = [e for e in entries(incident_id) if e.kind == "level.changed"]
    assert changed.actor == "user:commander"
    assert changed.details["authority"] == {"act": "raise", "level": "II", "authorised_by": "commander",
                                            "position": "commander@flood_control_hq",
                                            "recorded_by": "user:commander", "verbal": False}


@BOTH
def test_the_office_records_a_verbal_order_at_night_and_the_commander_confirms_it(api: Api) -> None:
    incident_id = responding_flood("IV")
    commander = drive.person()
    api.tokens["commander"] = issued_token(commander.username)
    done = api.call("office", "POST", f"/api/incidents/{incident_id}/level",
                    json={"level": "III", "reason": "雨情加重", "ordered_by": "commander"})
    assert done.status_code == 200, done.text
    rows = api.call("manager", "GET", f"/api/incidents/{incident_id}/authorisations").json()
    [verbal] = [r for r in rows if r["verbal"]]
    assert (verbal["act"], verbal["level"], verbal["authorised_by"], verbal["recorded_by"]) == (
        "raise", "III", "commander", "user:office")
    assert verbal["awaiting_confirmation"] is True
    # Flagged on the command's board until confirmed.
    board = api.call("office", "GET", f"/api/incidents/{incident_id}/board").json()["items"]
    assert verbal["id"] in {i["id"] for i in board if i["kind"] == "authorisation"}
    # Only the commander who gave the order confirms it.
    error = error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/authorisations/{verbal['id']}"
                                                "/confirm"), 403, "position_required")
    assert error["details"]["reason"] == "not_the_order_giver"
    confirmed = api.call("commander", "POST", f"/api/incidents/{incident_id}/authorisations/{verbal['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["awaiting_confirmation"] is False and confirmed.json()["confirmed_by"] == "commander"
    [entry] = [e for e in entries(incident_id) if e.kind == "level.confirmed"]
    assert entry.actor == "user:commander" and entry.details["recorded_by"] == "user:office"
    error_of(api.call("commander", "POST", f"/api/incidents/{incident_id}/authorisations/{verbal['id']}/confirm"),
             409, "authorisation_conflict")
    # The response itself was started at the gate by a simulated office: flagged until a holder confirms it.
    [start] = [r for r in rows if r["act"] == "start"]
    assert start["authorised_by"] is None and start["awaiting_confirmation"] is True


def test_the_cli_refuses_a_level_change_without_the_position(baton: str) -> None:
    from tests.test_cli import run_baton

    incident_id = responding_flood("IV")
    code = drive.incident(incident_id).code
    drive.person("water_affairs", "bureau_director@water_affairs", role="department", department="water_affairs")
    drive.person()
    status, out = run_baton("incident", "level", code, "II", "--reason", "河道超保证水位", "--as", "water_affairs")
    assert status == 1 and "[position_required]" in out and "总指挥" in out
    assert drive.incident(incident_id).level == "IV"
    status, out = run_baton("incident", "level", code, "II", "--reason", "河道超保证水位", "--as", "commander")
    assert status == 0 and "level II" in out
