"""Automated steps: signed, retried department notices (department systems mocked at the httpx transport),
CAP 1.2 warnings checked against the OASIS schema, situation summaries, and the action registry."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import respx
import xmlschema
from prefect import flow
from prefect.client.schemas.objects import State
from sqlmodel import col, select

from core.incidents.models import DepartmentTask, Incident
from core.outbox import queue as outbox
from core.outbox.models import DeliveryAttempt, OutboundDelivery
from core.outbox.signing import HEADER, verify
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.sharing.cap import CAP_SCHEMA
from core.sharing.models import CapAlert
from process_defs.actions import ACTIONS
from tasks.actions import ACTION_TASKS, compile_situation_summary, publish_warning
from tasks.delivery import deliver_with_retries
from tests import engine_driver as drive
from tests.fixtures.prefect import read_task_runs
from tests.polling import wait_for

NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
HOOK = "https://met.example.gov.cn/baton/hook"
SECRET = "test-secret-not-real"


@pytest.fixture
def endpoint(baton: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"meteorology": {"url": HOOK, "secret": SECRET}}))
    get_settings.cache_clear()
    return HOOK


def test_every_plan_action_has_a_task() -> None:
    assert set(ACTION_TASKS) == set(ACTIONS)


def _queued(incident_id: str) -> str:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return outbox.queue(session, incident=incident, key=f"{incident_id}:test:notify", purpose="notice",
                            target="meteorology", payload={"message": {"zh": "测试", "en": "test"}}).id


@flow(name="test-delivery")
async def _deliver(delivery_id: str) -> str:
    return await deliver_with_retries(delivery_id)


async def _deliver_state(delivery_id: str) -> State[str]:
    state: State[str] = await _deliver(delivery_id, return_state=True)
    return state


def _attempts(delivery_id: str) -> tuple[OutboundDelivery, list[DeliveryAttempt]]:
    with session_scope() as session:
        delivery = session.get(OutboundDelivery, delivery_id)
        assert delivery is not None
        rows = session.exec(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                            .order_by(col(DeliveryAttempt.number))).all()
        return delivery, list(rows)


@pytest.mark.prefect
def test_notice_is_signed_retried_with_backoff_and_every_attempt_recorded(
        prefect_server: Any, endpoint: str) -> None:
    incident_id = drive.open_("flood")
    delivery_id = _queued(incident_id)
    with respx.mock() as mock:
        mock.route(host="127.0.0.1").pass_through()  # the Prefect server is real
        route = mock.post(endpoint).mock(side_effect=[httpx.Response(500), httpx.ConnectError("refused"),
                                                      httpx.Response(202)])
        assert asyncio.run(_deliver(delivery_id)) == "delivered"
    assert route.call_count == 3
    request = route.calls.last.request
    assert verify(SECRET, request.content, request.headers[HEADER])
    assert not verify("wrong-secret", request.content, request.headers[HEADER])
    assert request.headers["Idempotency-Key"] == f"{incident_id}:test:notify"
    body = json.loads(request.content)
    assert body["incident"]["id"] == incident_id and body["purpose"] == "notice"
    delivery, attempts = _attempts(delivery_id)
    assert (delivery.outcome, delivery.attempts, delivery.last_status) == ("delivered", 3, 202)
    assert [a.status_code for a in attempts] == [500, None, 202]
    assert attempts[1].error is not None and "ConnectError" in attempts[1].error


@pytest.mark.prefect
def test_only_a_message_that_must_be_retried_becomes_a_prefect_task_run(prefect_server: Any, endpoint: str) -> None:
    """A message delivered at its first attempt costs no Prefect task run (its attempt is in the outbox); one that
    has to be retried is Prefect's `deliver`, shown with its retries."""
    first, retried = _queued(drive.open_("flood")), _queued(drive.open_("flood"))
    with respx.mock() as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(HOOK).mock(side_effect=[httpx.Response(202), httpx.Response(503), httpx.Response(202)])
        states = [asyncio.run(_deliver_state(delivery_id)) for delivery_id in (first, retried)]
    assert [asyncio.run(state.aresult()) for state in states] == ["delivered", "delivered"]
    runs = [str(state.state_details.flow_run_id) for state in states]
    # The server records task runs from their events, in order: once the retried one is shown, the first would be.
    shown = wait_for(lambda: asyncio.run(read_task_runs(runs[1])) or None, 30, "the retried delivery in Prefect")
    assert shown == Counter({("deliver", "COMPLETED"): 1})
    assert asyncio.run(read_task_runs(runs[0])) == Counter()
    assert [_attempts(d)[0].attempts for d in (first, retried)] == [1, 2]


@pytest.mark.prefect
def test_notice_that_keeps_failing_is_dead_lettered_after_the_last_retry(prefect_server: Any, endpoint: str) -> None:
    delivery_id = _queued(drive.open_("flood"))
    with respx.mock() as mock:
        mock.route(host="127.0.0.1").pass_through()
        route = mock.post(endpoint).mock(return_value=httpx.Response(503))
        assert asyncio.run(_deliver(delivery_id)) == "failed"
    retries = len(get_settings().retry_delays)
    assert route.call_count == retries + 1
    delivery, attempts = _attempts(delivery_id)
    assert delivery.outcome == "failed" and len(attempts) == retries + 1


@pytest.mark.prefect
def test_a_rejected_notice_is_not_retried(prefect_server: Any, endpoint: str) -> None:
    delivery_id = _queued(drive.open_("flood"))
    with respx.mock() as mock:
        mock.route(host="127.0.0.1").pass_through()
        route = mock.post(endpoint).mock(return_value=httpx.Response(400))
        assert asyncio.run(_deliver(delivery_id)) == "failed"
    assert route.call_count == 1


def test_department_without_an_endpoint_is_recorded_not_called(baton: str) -> None:
    from tasks.delivery import send_once

    delivery_id = _queued(drive.open_("flood"))
    with respx.mock() as mock:
        assert asyncio.run(send_once(delivery_id)) == "no_endpoint"
        assert not mock.calls
    delivery, attempts = _attempts(delivery_id)
    assert delivery.outcome == "no_endpoint" and attempts[0].error == "no endpoint configured"


def _publish_for(incident_id: str) -> CapAlert:
    drive.step(incident_id)  # assigns the forecast
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200,
                                                            "warning_colour": "red",
                                                            "valid_until": drive.VALID_UNTIL})
    from core.incidents.engine import advance

    with session_scope() as session:
        result = advance(session, incident_id=incident_id)
    publish = [t for t in result.actions if drive.tasks(incident_id)["publish_rainstorm_warning"].id == t]
    assert publish, "the warning step should be due"
    asyncio.run(publish_warning.fn(publish[0]))
    with session_scope() as session:
        return session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()


@pytest.mark.parametrize("drill", [False, True])
def test_warning_is_valid_cap_1_2_with_both_languages(baton: str, drill: bool) -> None:
    from core.sharing import warnings as release

    incident_id = drive.open_("flood", level="I", drill=drill, lat=30.25, lon=120.17,
                              location_name="滨江区 <Binjiang> & riverside")
    drafted = _publish_for(incident_id)
    # The step drafts: nothing is published until the office reviews and a leader signs it off.
    assert (drafted.state, drafted.published) == ("draft", False)
    leader = drive.person("met_director", "bureau_director@meteorology", role="department",
                          department="meteorology")
    with session_scope() as session:
        release.review(session, incident_id=incident_id, alert_id=drafted.id, actor="user:office")
        alert = release.sign(session, incident_id=incident_id, alert_id=drafted.id, signer=leader)
    schema = xmlschema.XMLSchema(str(CAP_SCHEMA))
    schema.validate(alert.xml)  # raises with the reason if the document is not valid CAP 1.2
    root = ElementTree.fromstring(alert.xml.encode("utf-8"))

    def find(path: str, node: ElementTree.Element = root) -> list[str]:
        return [e.text or "" for e in node.findall(path, NS)]

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", find("cap:sent")[0])
    assert find("cap:status") == ["Exercise" if drill else "Actual"]
    assert find("cap:msgType") == ["Alert"]
    assert find("cap:info/cap:language") == ["zh-CN", "en-US"]
    assert set(find("cap:info/cap:severity")) == {"Extreme"}
    assert find("cap:info/cap:area/cap:areaDesc")[0] == "滨江区 <Binjiang> & riverside"
    assert find("cap:info/cap:area/cap:circle")[0] == "30.2500,120.1700 5.0"
    assert alert.published is (not drill)
    task = drive.tasks(incident_id)["publish_rainstorm_warning"]
    assert task.status == "completed" and (task.outputs or {})["identifier"] == alert.identifier
    assert (task.outputs or {})["state"] == "draft" and (task.outputs or {})["published"] is False


def test_an_automated_step_records_its_result_without_waking_its_own_incident(baton: str) -> None:
    """The step runs in its incident's flow, which reconciles as soon as its steps are done: a wake (woken_at, and on
    PostgreSQL a notification to the worker) would make that flow reconcile a second time for nothing."""
    incident_id = drive.open_("flood", level="I")
    drafted = _publish_for(incident_id)
    row = drive.incident(incident_id)
    task = drive.tasks(incident_id)["publish_rainstorm_warning"]
    assert task.status == "completed" and (task.outputs or {})["identifier"] == drafted.identifier
    assert task.completed_at is not None and row.updated_at == task.completed_at
    # The forecast's completion (a department's handoff) woke the incident; the step's own result did not.
    assert row.woken_at is not None and row.woken_at < task.completed_at


def test_situation_summary_leaves_out_what_its_audience_may_not_read(baton: str) -> None:
    incident_id = drive.open_("flood", level="III")
    # Walk to the summary step, finishing everything on the way.
    for _ in range(60):
        drive.step(incident_id, real_actions=True)
        tasks = drive.tasks(incident_id)
        if "situation_summary" in tasks:
            break
        for key in sorted(drive.open_tasks(incident_id)):
            outputs: dict[str, Any] | None = {"decision": "respond"} if key == "lift_warning" else None
            if key == "flood_risk_assessment":
                outputs = {"hot_spots": 2, "pumps_deployed": 3, "river_level_high": False}
            drive.complete_step(incident_id, key, outputs)
    with session_scope() as session:
        summary_task = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                                 DepartmentTask.step_key == "situation_summary")
                                    ).one()
    assert summary_task.status == "completed"
    entries = (summary_task.outputs or {})["summary"]["entries"]
    steps = {e["step"] for e in entries}
    assert {"rainstorm_forecast", "drainage_operations"} <= steps
    assert "water_rescue" not in steps  # restricted in the plan
    # The summary goes to every department on the incident: an output shared with a few (the police's road
    # closures, for four departments) is not copied into it, except its field shared with all (public).
    by_step = {e["step"]: e for e in entries}
    assert by_step["traffic_control"]["outputs"].keys() == {"roads_closed"}
    assert by_step["evacuate_residents"]["outputs"].keys() == {"people_evacuated"}
    asyncio.run(compile_situation_summary.fn(summary_task.id))  # a second run changes nothing


@pytest.mark.prefect
def test_an_action_out_of_retries_is_recorded_and_reported_not_left_hanging(
        prefect_server: Any, baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import task

    import flows.incident as incident_flow_module
    from core.incidents.engine import advance

    @task(name="broken_warning", retries=1, retry_delay_seconds=0)
    async def broken(task_id: str) -> dict[str, Any]:
        raise RuntimeError("CAP gateway rejected the document")

    monkeypatch.setitem(incident_flow_module.ACTION_TASKS, "publish_warning", broken)
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200,
                                                            "warning_colour": "red",
                                                            "valid_until": drive.VALID_UNTIL})
    with session_scope() as session:
        result = advance(session, incident_id=incident_id)
    task_id = drive.tasks(incident_id)["publish_rainstorm_warning"].id
    # The reconciliation names the automated step each pending action task runs: the plan step's action.
    assert result.action_of[task_id] == "publish_warning"

    @flow(name="test-action")
    async def run_it() -> None:
        await incident_flow_module._run_action(task_id, result.action_of[task_id])

    asyncio.run(run_it())
    row = drive.tasks(incident_id)["publish_rainstorm_warning"]
    assert row.status == "completed" and (row.outputs or {})["ok"] is False
    assert "rejected" in (row.outputs or {})["error"]
    with session_scope() as session:
        notice = session.exec(select(OutboundDelivery).where(OutboundDelivery.purpose == "action_failed")).one()
        assert notice.target == "emergency_office"
        from core.ledger.models import LedgerEntry

        entry = session.exec(select(LedgerEntry).where(LedgerEntry.step_key == "publish_rainstorm_warning")
                             .where(LedgerEntry.kind == "action.completed")).one()
        assert entry.details["ok"] is False
