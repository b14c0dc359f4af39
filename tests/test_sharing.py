"""Information sharing: scoping of shared outputs, signed webhooks to department systems (a real receiver on
loopback that fails, hangs and recovers), CAP alerts, updates and cancellations, and monitoring signals."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import xmlschema
from sqlmodel import select

from core.incidents import grading
from core.incidents.models import Incident
from core.incidents.reads import shared_with
from core.outbox.models import OutboundDelivery
from core.outbox.service import NotReplayable, list_deliveries, replay
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.sharing import warnings as release
from core.sharing.board import ReportInvalid, board, post_report
from core.sharing.cap import CAP_SCHEMA
from core.sharing.models import CapAlert
from core.sharing.warnings import WarningStateConflict, active_public
from core.signals.intake import SignalRejected, add_source, receive, source_for_key
from core.signals.models import Signal, SignalSource
from process_defs.actions import PublishWarningParams
from process_defs.schema import Text
from tests import engine_driver as drive
from tests.conftest import StartWorker
from tests.polling import wait_for
from tests.receiver import Receiver, running_receiver

EVACUATION = {"people_evacuated": 320, "shelters_open": 4}


def to_evacuation(level: str = "III") -> str:
    """A flood incident whose sub-district has reported its evacuation figures."""
    incident_id = drive.open_("flood", level=level)
    fills: dict[str, dict[str, Any]] = {"lift_warning": {"decision": "respond"}, "evacuate_residents": EVACUATION,
             "flood_risk_assessment": {"hot_spots": 5, "pumps_deployed": 3, "river_level_high": True},
             "water_rescue": {"people_rescued": 3, "casualties": 2}}
    for _ in range(40):
        drive.step(incident_id)
        tasks = drive.tasks(incident_id)
        if tasks.get("evacuate_residents") and tasks["evacuate_residents"].status == "completed" \
                and tasks.get("water_rescue") and tasks["water_rescue"].status == "completed":
            return incident_id
        for key in sorted(drive.open_tasks(incident_id)):
            drive.complete_step(incident_id, key, fills.get(key))
    raise AssertionError("did not reach the evacuation report")


def visible_steps(incident_id: str, reader: str | None) -> set[str]:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return {item["step"] for item in shared_with(session, incident, reader)}


def board_items(incident_id: str, reader: str | None) -> list[dict[str, Any]]:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return board(session, incident, reader)


def test_police_see_the_evacuation_figures_the_health_commission_only_the_public_one(baton: str) -> None:
    incident_id = to_evacuation()
    evacuation_id = drive.tasks(incident_id)["evacuate_residents"].id

    def fields(reader: str | None) -> dict[str, Any] | None:
        found = [i for i in board_items(incident_id, reader) if i.get("id") == evacuation_id]
        return {f["key"]: f["value"] for f in found[0]["fields"]} if found else None

    assert fields("public_security") == EVACUATION
    # The step is restricted to four departments; its head count alone is public (its field's own share).
    assert fields("health_commission") == {"people_evacuated": 320}
    assert fields(None) == EVACUATION
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        health = {item["step"]: item for item in shared_with(session, incident, "health_commission")}
    assert health["evacuate_residents"]["outputs"] == {"people_evacuated": 320}
    assert health["evacuate_residents"]["classification"] == "public"
    # Restricted and shared with the office and the health commission, not with "all" (which opens it to nobody).
    assert "water_rescue" in visible_steps(incident_id, None)
    assert "water_rescue" in visible_steps(incident_id, "fire_rescue")
    assert "water_rescue" in visible_steps(incident_id, "health_commission")
    assert "water_rescue" not in visible_steps(incident_id, "public_security")
    # Public and internal outputs shared with all reach every department on the incident.
    assert "rainstorm_forecast" in visible_steps(incident_id, "health_commission")


def test_ad_hoc_reports_reach_their_scope_only(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    with session_scope() as session:
        post_report(session, incident_id=incident_id, department="subdistrict", author="user:s1",
                    text="东岸低洼区积水 40 cm <b>注意</b>", figures={"depth_cm": 40}, share_with=["public_security"],
                    classification="restricted")
        post_report(session, incident_id=incident_id, department="water_affairs", author="user:w1",
                    text="All pumps running", figures={"pumps": 12})
    police = [i for i in board_items(incident_id, "public_security") if i["kind"] == "report"]
    health = [i for i in board_items(incident_id, "health_commission") if i["kind"] == "report"]
    assert {i["department"] for i in police} == {"subdistrict", "water_affairs"}
    assert {i["department"] for i in health} == {"water_affairs"}
    assert [i["department"] for i in police] == ["water_affairs", "subdistrict"]  # newest first
    assert police[1]["text"].endswith("<b>注意</b>")  # stored as written; pages escape it
    for bad in ({"text": " "}, {"text": "x", "classification": "secret"}, {"text": "x", "share_with": ["nobody"]},
                {"text": "x", "classification": "restricted"}, {"text": "x", "figures": {"n": "many"}}):
        with pytest.raises(ReportInvalid), session_scope() as session:
            post_report(session, incident_id=incident_id, department="subdistrict", author="user:s1",
                        **bad)


def _params() -> PublishWarningParams:
    return PublishWarningParams(event=Text(zh="暴雨", en="Rainstorm"), headline=Text(zh="暴雨预警", en="Rainstorm"),
                                instruction=Text(zh="远离低洼地带", en="Keep away from low ground"))


def _released(incident_id: str, key: str) -> CapAlert:
    """The office's warning drafted, reviewed and signed off by the emergency management bureau's director."""
    leader = drive.person("em_director", "bureau_director@emergency_office")
    with session_scope() as session:
        alert = release.draft(session, incident_id=incident_id, params=_params(), department="emergency_office",
                              actor="user:o", key=key)
        assert alert is not None and alert.state == "draft" and not alert.published
        release.review(session, incident_id=incident_id, alert_id=alert.id, actor="user:o")
        return release.sign(session, incident_id=incident_id, alert_id=alert.id, signer=leader)


def test_warnings_are_issued_updated_and_cancelled_as_valid_cap(baton: str) -> None:
    schema = xmlschema.XMLSchema(str(CAP_SCHEMA))
    incident_id = drive.open_("flood", level="II")
    drill_id = drive.open_("flood", level="II", drill=True)
    office = drive.person("duty_officer", role="office")
    with session_scope() as session, pytest.raises(WarningStateConflict):  # nothing released yet to update
        release.update(session, incident_id=incident_id, user=office, key="u0", colour="red")
    first = _released(incident_id, "a1")
    with session_scope() as session:
        again = release.draft(session, incident_id=incident_id, params=_params(), department="emergency_office",
                              actor="user:o", key="a1")
        assert again is not None and again.id == first.id  # a retried request drafts nothing new
        update = release.update(session, incident_id=incident_id, user=office, key="u1", colour="red")
    drill = _released(drill_id, "d1")
    with session_scope() as session:
        active = [a.id for a in active_public(session)]
        assert active == [update.id]  # the update replaced the alert; the drill is never public
        cancel = release.cancel(session, incident_id=incident_id, user=office, key="c1", reason="降雨减弱")
        assert active_public(session) == []
        for alert in (first, update, drill, cancel):
            schema.validate(alert.xml)
        assert update.references is not None and first.identifier in update.references
        assert cancel.references is not None and update.identifier in cancel.references
        assert first.identifier not in cancel.references
        assert drill.published is False and drill.status == "Exercise"
        assert (first.colour, update.colour, cancel.colour) == ("orange", "red", "red")  # level II's, then chosen


def test_public_feed_and_alert_documents(baton: str) -> None:
    from fastapi.testclient import TestClient

    from api.app import app

    incident_id = drive.open_("flood", level="I")
    drill_id = drive.open_("flood", level="I", drill=True)
    with session_scope() as session:
        unsigned = release.draft(session, incident_id=incident_id, params=_params(), department="emergency_office",
                                 actor="user:o", key="p0")
        assert unsigned is not None
    alert = _released(incident_id, "p1")
    drill = _released(drill_id, "p2")
    client = TestClient(app)
    feed = client.get("/public/warnings.atom")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    assert alert.identifier in feed.text and drill.identifier not in feed.text
    assert unsigned.identifier not in feed.text  # a draft is never public
    doc = client.get(f"/public/warnings/{alert.id}.xml")
    assert doc.status_code == 200
    xmlschema.XMLSchema(str(CAP_SCHEMA)).validate(doc.text)
    assert client.get(f"/public/warnings/{drill.id}.xml").status_code == 404
    assert client.get(f"/public/warnings/{unsigned.id}.xml").status_code == 404
    assert client.get("/public/warnings/nope.xml").json()["error"]["code"] == "not_found"


def _source(name: str) -> tuple[SignalSource, str]:
    with session_scope() as session:
        key = add_source(session, name=name, actor="test")
    with session_scope() as session:
        return source_for_key(session, key), key


def _signal(source: SignalSource, payload: dict[str, Any]) -> tuple[Signal, Incident | None]:
    with session_scope() as session:
        result = receive(session, source=source, payload=payload)
        return result.signal, result.incident


def test_rainfall_signals_open_merge_and_propose_a_higher_level_for_a_flood_incident(baton: str) -> None:
    """The flood plan's grading (its criteria on signal 'rainfall') gives a signal's level; a later signal that
    grades higher proposes the level to the office and does not raise it by itself."""
    source, key = _source("hydrology_network")
    assert key.startswith("bts_")
    low, none = _signal(source, {"kind": "rainfall", "area": "滨江", "value": 12})
    assert low.outcome == "ignored" and none is None
    first, incident = _signal(source, {"kind": "rainfall", "area": "滨江", "value": 55, "lat": 30.2, "lon": 120.2})
    assert first.outcome == "opened" and incident is not None
    assert (incident.type, incident.level, incident.signal_id) == ("flood", "III", first.id)
    second, same = _signal(source, {"kind": "rainfall", "area": "滨江", "value": 52})
    assert second.outcome == "merged" and same is not None and same.id == incident.id
    third, proposed = _signal(source, {"kind": "rainfall", "area": "滨江", "value": 120})
    assert third.outcome == "proposed" and proposed is not None and proposed.level == "III"
    with session_scope() as session:
        [proposal] = grading.open_proposals(session, incident.id)
        assert (proposal.level, proposal.from_level, proposal.source) == ("I", "III", f"signal:{third.id}")
        assert proposal.basis["met"] == [{"measure": "signal:rainfall.value", "op": "ge", "value": 100.0,
                                          "observed": 120}]
    # The same again proposes nothing more: the office has it before it.
    fourth, _ = _signal(source, {"kind": "rainfall", "area": "滨江", "value": 130})
    assert fourth.outcome == "merged"
    other, elsewhere = _signal(source, {"kind": "rainfall", "area": "西湖", "value": 35})
    assert other.outcome == "opened" and elsewhere is not None and elsewhere.id != incident.id
    with session_scope() as session:
        assert len(session.exec(select(Incident)).all()) == 2
    for payload, message in (({"kind": "volcano"}, "no rule"), ({"area": "x"}, "needs a 'kind'"),
                             ({"kind": "rainfall", "value": 60}, "lacks 'area'"),
                             ({"kind": "rainfall", "area": "a", "value": "lots"}, "must be a number")):
        with pytest.raises(SignalRejected, match=message):
            _signal(source, payload)
    hospital, _ = _source("hospital_surveillance")
    with pytest.raises(SignalRejected, match="may not send"):
        _signal(hospital, {"kind": "rainfall", "area": "a", "value": 90})


def test_a_meteorological_cap_alert_opens_a_typhoon_incident_at_its_severity(baton: str) -> None:
    source, _ = _source("meteorology")
    incident_id = drive.open_("flood", level="II")
    xml = _released(incident_id, "m1").xml
    signal_row, incident = _signal(source, {"kind": "typhoon_cap", "xml": xml})
    assert signal_row.outcome == "opened" and incident is not None
    assert incident.type == "typhoon" and incident.level == "II"  # Severe → II
    with pytest.raises(SignalRejected, match="DOCTYPE"):
        _signal(source, {"kind": "typhoon_cap", "xml": '<!DOCTYPE x [<!ENTITY a "b">]><alert/>'})
    with pytest.raises(SignalRejected, match="well-formed"):
        _signal(source, {"kind": "typhoon_cap", "xml": "<alert"})


# -- webhooks to department systems, through a real worker ---------------------------------------------------
SECRET = "receiver-secret-for-tests"


@pytest.fixture
def receiver(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver(SECRET) as rec:
        endpoints = {name: {"url": rec.url, "secret": SECRET} for name in
                     ("water_affairs", "public_security", "health_commission", "meteorology")}
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps(endpoints))
        monkeypatch.setenv("BATON_HTTP_TIMEOUT", "1")
        monkeypatch.setenv("BATON_RETRY_DELAYS", "[0.2, 0.4, 0.8, 1.6, 3.2]")
        get_settings.cache_clear()
        yield rec


@pytest.fixture
def worker(workers: StartWorker, receiver: Receiver) -> subprocess.Popen[bytes]:
    return workers("w-share")


@pytest.mark.prefect
def test_department_systems_get_signed_assignments_and_shares_through_failures(
        receiver: Receiver, worker: subprocess.Popen[bytes]) -> None:
    receiver.fail_next = 2  # the water-affairs system is down at first …
    receiver.hang_next = 1  # … then hangs once past Baton's timeout, then recovers
    incident_id = drive.open_("flood", level="III")
    wait_for(lambda: "rainstorm_forecast" in drive.open_tasks(incident_id), 60, "first assignment")
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 190,
                                                            "warning_colour": "red",
                                                            "valid_until": drive.VALID_UNTIL})
    assignment = wait_for(lambda: [m for m in receiver.received if m["purpose"] == "assignment"
                                     and m["task"]["step"] == "flood_risk_assessment"], 60,
                            "the signed assignment to water affairs")[0]
    assert assignment["incident"]["id"] == incident_id and assignment["drill"] is False
    assert assignment["task"]["inputs"]["rainstorm_forecast"]["warning_colour"] == "red"
    # The forecast (public, shared with all) goes to every department system on the incident.
    wait_for(lambda: [m for m in receiver.received if m["purpose"] == "shared"], 60, "the shared forecast")
    assert receiver.bad_signatures == 0

    def settled() -> list[OutboundDelivery] | None:
        with session_scope() as session:
            rows = list_deliveries(session, incident_id=incident_id).items
        return rows if rows and all(d.outcome != "pending" for d in rows) else None

    rows = wait_for(settled, 60, "every delivery to settle")
    delivered = [d for d in rows if d.outcome == "delivered"]
    # The notify step's sub-district has no system: recorded as such, never called.
    assert {(d.target, d.outcome) for d in rows if d.outcome != "delivered"} == {("subdistrict", "no_endpoint")}
    # Two failures and a hang were retried; every attempt is recorded.
    assert sum(d.attempts for d in delivered) >= len(delivered) + 3, [(d.purpose, d.attempts) for d in rows]
    # Nothing delivered twice to a receiver that de-duplicates, nothing lost.
    ids = receiver.message_ids()
    assert len(ids) == len(set(ids))
    assert set(ids) >= {d.id for d in delivered}


def test_dead_letters_can_be_replayed_once_failed(baton: str, receiver: Receiver) -> None:
    from tasks.delivery import send_once

    receiver.fail_next = 100
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    with session_scope() as session:
        delivery = session.exec(select(OutboundDelivery).where(OutboundDelivery.purpose == "assignment")).first()
        assert delivery is not None
        delivery_id = delivery.id
    import asyncio

    with pytest.raises(Exception, match="HTTP 500"):
        asyncio.run(send_once(delivery_id))
    with pytest.raises(NotReplayable), session_scope() as session:
        replay(session, delivery_id=delivery_id, actor="user:o")
    with session_scope() as session:
        row = session.get(OutboundDelivery, delivery_id)
        assert row is not None
        row.outcome = "failed"  # what the flow records after the last retry
        session.add(row)
    with session_scope() as session:
        replay(session, delivery_id=delivery_id, actor="user:o")
    receiver.fail_next = 0
    assert asyncio.run(send_once(delivery_id)) == "delivered"
    assert receiver.message_ids() == [delivery_id]
