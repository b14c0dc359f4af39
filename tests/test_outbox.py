"""The outbox's orphans: pending deliveries of closed incidents (a late share, a replayed dead letter) that no
flow will send. `claim_orphans` leases them to one worker at a time; a worker's outbox loop sends them to a
real department system on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from core.incidents.models import Incident, IncidentStatus
from core.outbox import queue as outbox
from core.outbox.models import DeliveryAttempt, DeliveryOutcome, OutboundDelivery
from core.outbox.service import replay
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from flows.worker import BatonWorker
from tests import engine_driver as drive
from tests.receiver import Receiver, running_receiver

SECRET = "outbox-secret-for-tests"


@pytest.fixture
def receiver(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with running_receiver(SECRET) as rec:
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"meteorology": {"url": rec.url, "secret": SECRET}}))
        get_settings.cache_clear()
        yield rec


def queued(incident_id: str, key: str) -> str:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return outbox.queue(session, incident=incident, key=f"{incident_id}:{key}", purpose="shared",
                            target="meteorology", payload={"shared": {"note": key}}).id


def set_outcome(delivery_id: str, outcome: DeliveryOutcome) -> None:
    with session_scope() as session:
        row = session.get(OutboundDelivery, delivery_id)
        assert row is not None
        row.outcome = outcome
        session.add(row)


def close(incident_id: str) -> None:
    # Closed as the engine closes it; how it got there does not matter to the outbox.
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        row.status = IncidentStatus.closed
        row.closed_at = utcnow()
        session.add(row)


def deliveries(*ids: str) -> dict[str, OutboundDelivery]:
    with session_scope() as session:
        rows = session.exec(select(OutboundDelivery).where(col(OutboundDelivery.id).in_(ids))).all()
        return {row.id: row for row in rows}


def test_orphans_are_the_closed_incidents_pending_deliveries_leased_to_one_worker(receiver: Receiver) -> None:
    closed = drive.open_("flood")
    late_share = queued(closed, "late-share")
    delivered = queued(closed, "delivered")
    set_outcome(delivered, DeliveryOutcome.delivered)
    dead = queued(closed, "dead")
    set_outcome(dead, DeliveryOutcome.failed)
    close(closed)
    still_open = drive.open_("flood")
    its_flows = queued(still_open, "open")  # the incident's own flow sends this one

    moment = utcnow()
    with session_scope() as session:
        assert outbox.claim_orphans(session, worker_id="w1", now=moment, lease_seconds=300) == [late_share]
    row = deliveries(late_share)[late_share]
    assert row.lease_owner == "w1" and row.lease_expires_at == moment + timedelta(seconds=300)
    # Leased: another worker polling meanwhile gets nothing, nor does the first get it twice in its own loop.
    with session_scope() as session:
        assert outbox.claim_orphans(session, worker_id="w2", now=moment + timedelta(seconds=299)) == []
        assert outbox.claim_orphans(session, worker_id="w1", now=moment + timedelta(seconds=299)) == []
    # The first worker died: once its lease lapses another worker takes the message over.
    with session_scope() as session:
        assert outbox.claim_orphans(session, worker_id="w2", now=moment + timedelta(seconds=301)) == [late_share]
    assert deliveries(late_share)[late_share].lease_owner == "w2"
    # A replayed dead letter of the closed incident is an orphan again; the open incident's never is.
    with session_scope() as session:
        replay(session, delivery_id=dead, actor="user:office1")
    with session_scope() as session:
        assert outbox.claim_orphans(session, worker_id="w3", now=moment + timedelta(seconds=302)) == [dead]
    rows = deliveries(its_flows, delivered)
    assert rows[its_flows].lease_owner is None and rows[its_flows].outcome == DeliveryOutcome.pending
    assert rows[delivered].lease_owner is None


async def run_outbox_loop(worker: BatonWorker, done: Any, timeout: float) -> None:
    loop = asyncio.create_task(worker._outbox_loop())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(loop, 10)


@pytest.mark.prefect
def test_the_outbox_loop_sends_what_no_flow_will(prefect_server: Any, receiver: Receiver) -> None:
    closed = drive.open_("flood")
    late_share = queued(closed, "late-share")
    dead = queued(closed, "dead")
    set_outcome(dead, DeliveryOutcome.failed)
    close(closed)
    with session_scope() as session:
        replay(session, delivery_id=dead, actor="user:office1")
    still_open = drive.open_("flood")
    its_flows = queued(still_open, "open")

    def settled() -> bool:
        rows = deliveries(late_share, dead)
        return all(row.outcome != DeliveryOutcome.pending for row in rows.values())

    asyncio.run(run_outbox_loop(BatonWorker(worker_id="outbox-loop"), settled, timeout=60))
    rows = deliveries(late_share, dead, its_flows)
    assert {rows[late_share].outcome, rows[dead].outcome} == {DeliveryOutcome.delivered}
    assert rows[late_share].lease_owner == rows[dead].lease_owner == "outbox-loop"
    # Sent once each, signed, under the message id it was queued with (a replay keeps it); the open incident's
    # message is left to its flow.
    assert sorted(receiver.message_ids()) == sorted([late_share, dead])
    assert receiver.bad_signatures == 0 and receiver.duplicates == 0
    assert rows[its_flows].outcome == DeliveryOutcome.pending and rows[its_flows].attempts == 0
    with session_scope() as session:
        attempts = session.exec(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == late_share)).all()
        assert [(a.number, a.status_code) for a in attempts] == [(1, 202)]
