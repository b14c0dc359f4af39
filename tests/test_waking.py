"""How a worker wakes an incident's flow when something it waits for changes (flows/waking.py, the worker's wake
poll in flows/worker.py):

- the flow arms its wake-up before it reads the database, so a write that lands while it reads still wakes
  the wait that follows (armed after the read, that wake would be cleared and the flow would sleep until its
  re-check, five minutes later);
- the wake poll's windows overlap by five seconds, so a write committed late, stamped with an earlier time
  (its transaction began before the last poll), is still seen, and seen once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from sqlmodel import col, update

from core.incidents.models import Incident
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from flows.waking import RUNTIME, Runtime, Waker
from tests import engine_driver as drive
from tests.api_server import FORECAST


def test_a_wake_after_arming_is_kept_for_the_wait_and_spent_by_the_next_arming() -> None:
    async def scenario() -> None:
        waker = Waker()
        waker.wake("i")  # nobody is waiting: nothing is kept
        event = waker.arm("i")
        assert not await waker.wait(event, 0.01)
        event = waker.arm("i")
        waker.wake("i")  # a write lands while the flow reads, before it waits
        assert await waker.wait(event, 0.01)
        event = waker.arm("i")  # the next read sees that write: its wake is spent
        assert not await waker.wait(event, 0.05)
        waker.forget("i")
        waker.wake("i")
        assert "i" not in waker.events

    asyncio.run(scenario())


def lease(incident_id: str, worker_id: str, woken_at: datetime | None = None) -> None:
    values: dict[str, Any] = {"lease_owner": worker_id, "lease_expires_at": utcnow() + timedelta(minutes=5)}
    if woken_at is not None:
        values["woken_at"] = woken_at
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id).values(**values))


def test_the_wake_poll_sees_a_late_write_stamped_earlier_once(baton: str) -> None:
    from flows.worker import BatonWorker

    incident_id = drive.open_("flood")
    lease(incident_id, "w-wake", woken_at=utcnow() - timedelta(minutes=1))

    async def scenario() -> tuple[bool, bool, bool]:
        worker = BatonWorker(settings=get_settings(), worker_id="w-wake")
        loop = asyncio.create_task(worker._wake_loop())
        try:
            await asyncio.sleep(5 * worker.settings.wake_interval)  # several polls, nothing new
            event = worker.waker.arm(incident_id)
            # Committed now, stamped three seconds ago: older than the last poll's start.
            lease(incident_id, "w-wake", woken_at=utcnow() - timedelta(seconds=3))
            seen = await worker.waker.wait(event, 2.0)
            # Later polls overlap the window it fell in, but the same wake is not delivered again.
            event = worker.waker.arm(incident_id)
            again = await worker.waker.wait(event, 10 * worker.settings.wake_interval)
            # A new write wakes it again.
            event = worker.waker.arm(incident_id)
            lease(incident_id, "w-wake", woken_at=utcnow())
            new = await worker.waker.wait(event, 2.0)
            return seen, again, new
        finally:
            worker.stop()
            await loop

    assert asyncio.run(scenario()) == (True, False, True)


@pytest.mark.prefect
def test_a_write_that_lands_while_the_flow_reads_wakes_its_next_wait(
        prefect_server: Any, baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow's first read assigns the forecast; meteorology completes it right after that read, before the
    flow waits, and the wake poll wakes the incident. The flow goes on at once (the forecast's deadline is an hour
    away and its re-check five minutes)."""
    import flows.incident as incident_flow_module

    incident_id = drive.open_("flood")
    lease(incident_id, "w-race")  # as the worker's claim loop would
    waker = Waker()
    reads: list[str] = []
    real_in_transaction = incident_flow_module.in_transaction

    async def in_transaction(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        if fn is incident_flow_module._reconcile:
            reads.append(incident_id)
        result = await real_in_transaction(fn, **kwargs)
        if fn is incident_flow_module._reconcile and len(reads) == 1:
            drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
            waker.wake(incident_id)  # what the worker's wake poll does on seeing woken_at move
        return result

    monkeypatch.setattr(incident_flow_module, "in_transaction", in_transaction)

    async def scenario() -> float:
        token = RUNTIME.set(Runtime(worker_id="w-race", waker=waker))
        # Calling an async flow gives a coroutine (Prefect's types say otherwise).
        flow_run = cast(Coroutine[Any, Any, Any], incident_flow_module.incident_flow("flood")(incident_id=incident_id))
        run = asyncio.create_task(flow_run)
        started = time.monotonic()
        try:
            while "flood_risk_assessment" not in drive.open_tasks(incident_id):
                assert not run.done(), run.result()
                assert time.monotonic() - started < 60, "the flow slept through the wake"
                await asyncio.sleep(0.1)
            return time.monotonic() - started
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            RUNTIME.reset(token)

    asyncio.run(scenario())
    assert len(reads) >= 2


@pytest.mark.parametrize("db_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_on_postgresql_a_committed_wake_is_notified_at_once_and_a_rolled_back_one_never(baton: str) -> None:
    """LISTEN/NOTIFY, with the wake poll not running: a completion's transaction wakes the worker holding the
    incident when it commits (the notification is sent in it); a transaction that rolls back wakes nobody; and the
    poll, which sees the same woken_at afterwards, does not wake the flow a second time."""
    from flows.worker import BatonWorker

    incident_id = drive.open_("flood")
    drive.step(incident_id)
    lease(incident_id, "w-notify")

    async def scenario() -> tuple[bool, bool, bool, float]:
        worker = BatonWorker(settings=get_settings(), worker_id="w-notify")
        worker.running[incident_id] = cast(Any, asyncio.get_running_loop().create_future())
        listening = asyncio.create_task(worker._notify_loop())
        try:
            await asyncio.sleep(1.0)  # connected and listening
            event = worker.waker.arm(incident_id)

            def wake_then_fail() -> None:
                with session_scope() as session:
                    row = session.get(Incident, incident_id)
                    assert row is not None
                    row.wake()
                    session.add(row)
                    session.flush()
                    raise RuntimeError("the handoff failed")

            def rolled_back() -> None:
                with pytest.raises(RuntimeError):
                    wake_then_fail()

            await asyncio.to_thread(rolled_back)
            woken_by_rollback = await worker.waker.wait(event, 1.0)
            event = worker.waker.arm(incident_id)
            started = time.monotonic()
            await asyncio.to_thread(drive.complete_step, incident_id, "rainstorm_forecast", FORECAST)
            woken = await worker.waker.wait(event, 2.0)
            latency = time.monotonic() - started
            # The poll reads the woken_at the notification carried: no second wake.
            event = worker.waker.arm(incident_id)
            polling = asyncio.create_task(worker._wake_loop())
            again = await worker.waker.wait(event, 5 * worker.settings.wake_interval)
            worker.stop()
            await polling
            return woken_by_rollback, woken, again, latency
        finally:
            worker.stop()
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    woken_by_rollback, woken, again, latency = asyncio.run(scenario())
    assert not woken_by_rollback
    assert woken and latency < 1.0
    assert not again


@pytest.mark.prefect
def test_a_database_outage_does_not_fail_the_flow_it_waits_and_goes_on(
        prefect_server: Any, baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is out of reach for the flow's first two reconciliations (as when PostgreSQL restarts): the run
    neither fails nor backs off as from a bug (a worker's back-off grows with each failure in a row, and the fault
    matrix once saw an incident that had lived through several faults wait past the end of the run); it pauses,
    tries again, and assigns the first task once the database answers."""
    from sqlalchemy.exc import OperationalError

    import flows.incident as incident_flow_module

    incident_id = drive.open_("flood")
    lease(incident_id, "w-outage")
    attempts: list[str] = []
    pauses: list[int] = []
    real_in_transaction = incident_flow_module.in_transaction

    async def in_transaction(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        if fn is incident_flow_module._reconcile:
            attempts.append(incident_id)
            if len(attempts) <= 2:
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return await real_in_transaction(fn, **kwargs)

    def pause(attempt: int) -> float:
        pauses.append(attempt)
        return 0.05

    monkeypatch.setattr(incident_flow_module, "in_transaction", in_transaction)
    monkeypatch.setattr(incident_flow_module, "outage_pause", pause)

    async def scenario() -> None:
        token = RUNTIME.set(Runtime(worker_id="w-outage", waker=Waker()))
        flow_run = cast(Coroutine[Any, Any, Any], incident_flow_module.incident_flow("flood")(incident_id=incident_id))
        run = asyncio.create_task(flow_run)
        started = time.monotonic()
        try:
            while "rainstorm_forecast" not in drive.open_tasks(incident_id):
                assert not run.done(), f"the flow run ended: {run.result()}"
                assert time.monotonic() - started < 60, "the flow did not go on after the outage"
                await asyncio.sleep(0.1)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            RUNTIME.reset(token)

    asyncio.run(scenario())
    assert pauses == [1, 2]  # the count of outages in a row, reset by the reconciliation that went through
    assert len(attempts) >= 3


@pytest.mark.parametrize("db_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_on_postgresql_a_new_incident_is_claimed_at_once_and_the_polls_slow_down_while_notified(
        baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the worker listens, a new incident is claimed the moment the transaction that opened it commits (the
    claim poll, the fallback, set here to 30 s, could not have), and while nothing happens the polls run at the
    fallback's pace; for a few seconds after something did, and while the listening connection is lost, they run
    at their own."""
    import flows.worker as worker_module
    from core.incidents import leases

    monkeypatch.setenv("BATON_NOTIFIED_POLL_INTERVAL", "30")
    get_settings.cache_clear()
    claims: list[float] = []
    real_in_transaction = worker_module.in_transaction

    async def in_transaction(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        if fn is leases.claim:
            claims.append(time.monotonic())
        return await real_in_transaction(fn, **kwargs)

    monkeypatch.setattr(worker_module, "in_transaction", in_transaction)

    async def scenario() -> tuple[float, int, int, int, bool]:
        worker = worker_module.BatonWorker(settings=get_settings(), worker_id="w-claim")
        started: dict[str, float] = {}

        async def run_incident(incident_id: str) -> None:  # the flow run itself is not this test's business
            started[incident_id] = time.monotonic()
            await worker.stopping.wait()

        monkeypatch.setattr(worker, "_run_incident", run_incident)
        listening = asyncio.create_task(worker._notify_loop())
        claiming = asyncio.create_task(worker._claim_loop())
        try:
            while not worker.listening:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            quiet = len(claims)
            incident_id = await asyncio.to_thread(drive.open_, "flood")
            # From the opening transaction's commit (the call returns after it): the call itself may take seconds
            # on a loaded machine (the first one in a process loads the plans), and is not the claim's latency.
            # A claim as early as the commit itself counts as at once; the poll would have taken 30 s.
            committed_at = time.monotonic()
            while incident_id not in started:
                assert time.monotonic() - committed_at < 10, "the new incident was not claimed"
                await asyncio.sleep(0.01)
            latency = started[incident_id] - committed_at
            # Something happened here: for a few seconds the polls keep their own pace, as handoffs flow.
            before = len(claims)
            await asyncio.sleep(1.0)
            busy = len(claims) - before
            assert worker.listening
            # The listening connection is lost: the claim poll is back at its own pace (0.1 s) at once.
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            assert not worker.listening
            worker.claim_now.set()
            before = len(claims)
            await asyncio.sleep(1.0)
            return latency, quiet, busy, len(claims) - before, worker.listening
        finally:
            worker.stop()
            listening.cancel()
            await asyncio.gather(claiming, listening, return_exceptions=True)

    latency, quiet, busy, unlistened, still_listening = asyncio.run(scenario())
    assert latency < 1.0
    # Listening and idle: the pass on connecting (what was opened before it) and none after, in a second of 0.1 s
    # polls; busy, or not listening, every 0.1 s.
    assert quiet <= 2
    assert busy >= 5
    assert unlistened >= 5 and not still_listening
