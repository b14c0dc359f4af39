"""A refreshing duty desk's inbox (`GET /api/tasks`): answered with an ETag; sent back as If-None-Match it gets 304
and no body while the inbox is unchanged, a new body and ETag once it changed; and an ETag never carries one
reader's inbox to another."""

from __future__ import annotations

from tests import engine_driver as drive
from tests.api_server import FORECAST
from tests.fixtures.api import Api

INBOX = "/api/tasks?open=true"


def test_an_unchanged_inbox_answers_304_and_a_changed_one_a_new_etag(api: Api) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    first = api.call("meteorology", "GET", INBOX)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and "private" in first.headers["cache-control"]
    assert [i["step_key"] for i in first.json()["items"]] == ["rainstorm_forecast"]

    again = api.call("meteorology", "GET", INBOX, headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b"" and again.headers["etag"] == tag
    # Among others a client kept, as If-None-Match may list several.
    assert api.call("meteorology", "GET", INBOX, headers={"If-None-Match": f'W/"0", {tag}'}).status_code == 304

    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    changed = api.call("meteorology", "GET", INBOX, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert changed.json()["items"] == []
    # Water affairs' inbox changed too (the assessment is its now), and is not answered from its old ETag.
    water = api.call("water_affairs", "GET", INBOX)
    drive.step(incident_id)
    after = api.call("water_affairs", "GET", INBOX, headers={"If-None-Match": water.headers["etag"]})
    assert after.status_code == 200
    assert "flood_risk_assessment" in [i["step_key"] for i in after.json()["items"]]


def test_an_etag_does_not_carry_one_readers_inbox_to_another(api: Api) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    office = api.call("office", "GET", INBOX)
    met = api.call("meteorology", "GET", INBOX)
    water = api.call("water_affairs", "GET", INBOX)
    assert met.headers["etag"] != water.headers["etag"]
    # A tag is the answer's own: two readers share one only when they read the very same thing (the office, which
    # sees every department's, and meteorology hold the same single task here).
    assert (office.headers["etag"] == met.headers["etag"]) == (office.content == met.content)
    # Another reader's ETag is no proof of this reader's inbox: the full, scoped answer comes back.
    for tag in (office.headers["etag"], met.headers["etag"]):
        answer = api.call("water_affairs", "GET", INBOX, headers={"If-None-Match": tag})
        assert answer.status_code == 200
        assert all(i["department"] == "water_affairs" for i in answer.json()["items"])
        assert "rainstorm_forecast" not in [i["step_key"] for i in answer.json()["items"]]
    # Without a token, nothing: not a 304 either.
    assert api.call(None, "GET", INBOX, headers={"If-None-Match": met.headers["etag"]}).status_code == 401
