"""Plans by law over real HTTP: a grading proposal on the incident's API, page and board, decided by the
office; level changes refused without the position the plan names (403 with a stable code), on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from tests import engine_driver as drive
from tests.api_server import (  # noqa: F401
    Api,
    api_fixture,
    api_server_fixture,
    error_of,
    flood_with_proposal,
    page_client,
)

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
    assert f'data-proposal="{proposal_id}"' in text and "建议调整为II级" in text
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                      json={"decision": "decline", "reason": " "}), 422, "reason_required")
    decided = api.call("office", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                       json={"decision": "accept"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "accepted" and drive.incident(incident_id).level == "II"
    error_of(api.call("office", "POST", f"/api/incidents/{incident_id}/proposals/{proposal_id}",
                      json={"decision": "accept"}), 409, "level_proposal_conflict")
