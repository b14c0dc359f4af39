"""The information-sharing story end to end, every part a real process on loopback: a rainfall signal opens a
flood incident, its warning stage drafts the meteorology bureau's CAP alert, which reaches the public feed only once
the office has reviewed it and the bureau's director signed it off (schema-valid CAP 1.2), water affairs' system
receives its signed assignment, and the police see the evacuation figures the sub-district shared with them
while the health commission, outside the scope, does not."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import xmlschema

from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.sharing.cap import CAP_SCHEMA
from core.signals.intake import add_source
from tests import engine_driver as drive
from tests.api_server import ApiServer, issued_token, make_user, run_api
from tests.conftest import StartWorker
from tests.polling import wait_for
from tests.receiver import Receiver, running_receiver

pytestmark = pytest.mark.prefect
SECRET = "water-affairs-system-secret"
FILLS: dict[str, dict[str, Any]] = {
    "rainstorm_forecast": {"rainfall_1h": 75, "rainfall_24h": 210, "warning_colour": "orange",
                           "valid_until": drive.VALID_UNTIL},
    "flood_risk_assessment": {"hot_spots": 6, "pumps_deployed": 20, "river_level_high": True},
    "lift_warning": {"decision": "respond"},
    "activate_command": {"command_post": {"name": "滨江区应急指挥中心"}, "commander": "王主任"},
    "evacuate_residents": {"people_evacuated": 412, "shelters_open": 5},
}


@pytest.fixture
def world(baton: str, prefect_server: Any, workers: StartWorker, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[ApiServer, Receiver]]:
    with running_receiver(SECRET) as receiver:
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"water_affairs": {"url": receiver.url, "secret": SECRET}}))
        monkeypatch.setenv("BATON_PREFECT_API_URL", prefect_server.api_url)
        get_settings.cache_clear()
        worker = workers("w-e2e")
        try:
            with run_api() as server:
                yield server, receiver
        finally:
            # Stopped before the receiver goes, so that no delivery is attempted to a closed port.
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=20)


def test_a_rainfall_signal_to_shared_evacuation_figures(world: tuple[ApiServer, Receiver]) -> None:
    server, receiver = world
    users = {"office": ("office", None)} | {d: ("department", d) for d in
                                            ("meteorology", "water_affairs", "subdistrict", "public_security",
                                             "health_commission")}
    tokens = {}
    for name, (role, department) in users.items():
        make_user(name, role, department)
        tokens[name] = issued_token(name)
    make_user("met_director", "department", "meteorology", positions=["bureau_director@meteorology"])
    tokens["met_director"] = issued_token("met_director")
    with session_scope() as session:
        key = add_source(session, name="hydrology_network", actor="test")

    response = server.request("POST", "/api/signals", json={"kind": "rainfall", "area": "滨江区", "value": 75},
                              headers={"X-Api-Key": key})
    assert response.status_code == 201, response.text
    opened = response.json()
    assert opened["outcome"] == "opened" and opened["level"] == "II" and opened["code"].startswith("FLD-")
    incident_id = opened["incident_id"]

    def work(department: str) -> list[str]:
        who = "office" if department == "emergency_office" else department
        params: dict[str, Any] = {"open": "true", "incident": incident_id}
        if who == "office":
            params["department"] = "emergency_office"
        listing = server.request("GET", "/api/tasks", tokens[who], params=params)
        if listing.status_code == 404:  # not on the incident yet
            return []
        done = []
        for item in listing.json()["items"]:
            if item["step_key"] in FILLS:
                body: dict[str, Any] = {"outputs": FILLS[item["step_key"]]}
                if item["step_key"] == "lift_warning":
                    # Education's and housing's warning-stage tasks are still open (nobody works them here):
                    # the office is shown them and goes on only by confirming with a reason.
                    refused = server.request("POST", f"/api/tasks/{item['id']}/complete", tokens[who], json=body)
                    assert refused.status_code == 409 and refused.json()["error"]["code"] == "open_work", refused.text
                    assert "school_suspension" in {t["step"] for t in refused.json()["error"]["details"]["open"]}
                    body.update(confirm_open_work=True, open_work_reason="教育、住建两局的预警任务转入响应阶段跟进")
                answer = server.request("POST", f"/api/tasks/{item['id']}/complete", tokens[who], json=body)
                assert answer.status_code == 200, answer.text
                done.append(item["step_key"])
        return done

    finished: list[str] = []

    def progress() -> bool:
        for department in ("meteorology", "water_affairs", "emergency_office", "subdistrict"):
            finished.extend(work(department))
        return "evacuate_residents" in finished

    wait_for(progress, 120, f"the evacuation report (done so far: {finished})")

    # The warning stage drafted the meteorology bureau's alert: nothing is public until it is reviewed and signed.
    drafts = wait_for(lambda: server.request("GET", f"/api/incidents/{incident_id}/warnings", tokens["office"]
                                          ).json()["items"], 30, "the warning's draft")
    assert [(d["state"], d["colour"], d["published"]) for d in drafts] == [("draft", "orange", False)]
    assert opened["code"] not in server.request("GET", "/public/warnings.atom").text
    base = f"/api/incidents/{incident_id}/warnings/{drafts[0]['id']}"
    assert server.request("POST", f"{base}/review", tokens["office"]).status_code == 200
    signed = server.request("POST", f"{base}/sign", tokens["met_director"])
    assert signed.status_code == 200 and signed.json()["published"] is True, signed.text
    feed = server.request("GET", "/public/warnings.atom")
    assert feed.status_code == 200 and opened["code"] in feed.text
    page = server.request("GET", "/public/warnings")
    assert page.status_code == 200 and "市气象台发布暴雨橙色预警信号" in page.text
    link = feed.text.split('type="application/cap+xml" href="')[1].split('"')[0]
    alert = server.request("GET", link.replace(server.url, ""))
    assert alert.status_code == 200
    xmlschema.XMLSchema(str(CAP_SCHEMA)).validate(alert.text)

    # Water affairs' system received its assignment, signed with its secret.
    assignment = wait_for(lambda: [m for m in receiver.received if m["purpose"] == "assignment"
                                and m["task"]["step"] == "flood_risk_assessment"], 30, "the assignment")[0]
    assert assignment["incident"]["id"] == incident_id and receiver.bad_signatures == 0

    # The police see the sub-district's evacuation figures; the health commission does not.
    police = server.request("GET", f"/api/incidents/{incident_id}/board", tokens["public_security"])
    assert police.status_code == 200
    figures = [item for item in police.json()["items"] if item["kind"] == "step"
               and {f["key"] for f in item["fields"]} >= {"people_evacuated"}]
    assert figures and {f["key"]: f["value"] for f in figures[0]["fields"]}["people_evacuated"] == 412
    # The health commission holds no task on this incident (nobody was hurt): the incident is missing to it.
    health = server.request("GET", f"/api/incidents/{incident_id}/board", tokens["health_commission"])
    assert health.status_code == 404 and health.json()["error"]["code"] == "not_found", health.text
    shared = server.request("GET", f"/api/incidents/{incident_id}/shared", tokens["public_security"]).json()
    assert "evacuate_residents" in {item["step"] for item in shared["items"]}
