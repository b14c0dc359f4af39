"""A worker's leases (flows/lease_keeper.py, flows/worker.py): kept while the worker is alive however busy its event
loop is, and, once another worker has taken an incident, given up without touching the flow run it now runs.

The fault suites' soak, on a loaded 2-core machine, saw two workers lose their leases to each other every lease
period: each one's renewals waited behind its busy event loop, each takeover made the taker as busy, and 40 of 72
incidents were left behind their completions. A worker that lost a lease also forced the flow run Crashed in
Prefect while the other worker was running it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

import pytest
from prefect import get_client
from prefect.exceptions import Abort
from sqlmodel import col, update

from core.incidents import leases
from core.incidents.models import Incident
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from flows.waking import RUNTIME, Runtime, Waker
from tests import engine_driver as drive


def lease(incident_id: str, worker_id: str, seconds: float) -> None:
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id)
                        .values(lease_owner=worker_id, lease_expires_at=utcnow() + timedelta(seconds=seconds)))


def claim(worker_id: str) -> list[str]:
    with session_scope() as session:
        return leases.claim(session, worker_id=worker_id, limit=10, lease_seconds=60)


def test_a_worker_whose_event_loop_is_stuck_past_its_lease_keeps_its_incidents(baton: str) -> None:
    """The loop is held (as by dozens of flow runs starting at once on a starved machine) for 2.5 lease periods:
    the keeper's thread renews regardless, and another worker finds nothing to claim."""
    from flows.worker import BatonWorker

    incident_id = drive.open_("flood")
    lease_seconds = 1.2
    lease(incident_id, "w-busy", lease_seconds)
    worker = BatonWorker(settings=get_settings().model_copy(update={"lease_seconds": lease_seconds}),
                         worker_id="w-busy")

    async def scenario() -> tuple[list[str], int]:
        worker.running[incident_id] = asyncio.create_task(asyncio.sleep(60))
        keeper = worker.lease_keeper(asyncio.get_running_loop())
        keeper.start()
        try:
            time.sleep(2.5 * lease_seconds)  # the event loop does nothing else meanwhile
            return claim("w-other"), keeper.renewals
        finally:
            keeper.stop()
            worker.running[incident_id].cancel()

    taken, renewals = asyncio.run(scenario())
    assert taken == []
    assert renewals >= 3
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None and row.lease_owner == "w-busy"


def test_a_lease_taken_by_another_worker_stops_the_flow_once(baton: str) -> None:
    """The keeper reports each incident another worker holds; the worker cancels that flow once and marks it
    lost (so that the flow stops without a word to Prefect); incidents it still holds run on."""
    from flows.worker import BatonWorker

    kept_id, taken_id = drive.open_("flood"), drive.open_("flood")
    lease(kept_id, "w-a", 60)
    lease(taken_id, "w-b", 60)  # w-b claimed it after w-a's lease ran out
    worker = BatonWorker(settings=get_settings(), worker_id="w-a")

    async def scenario() -> tuple[bool, bool, set[str], set[str]]:
        loop = asyncio.get_running_loop()
        for incident_id in (kept_id, taken_id):
            worker.running[incident_id] = asyncio.create_task(asyncio.sleep(60))
        keeper = worker.lease_keeper(loop)
        lost_marks: set[str] = set()
        kept = await asyncio.to_thread(keeper.renew_once)
        await asyncio.sleep(0.05)  # the loop runs what the keeper's thread handed it
        lost_marks |= worker.lost
        await asyncio.to_thread(keeper.renew_once)  # reported again: nothing more happens
        await asyncio.sleep(0.05)
        taken_cancelled = worker.running[taken_id].cancelled()
        kept_running = not worker.running[kept_id].done()
        worker.running[kept_id].cancel()
        return taken_cancelled, kept_running, kept, lost_marks

    taken_cancelled, kept_running, kept, lost_marks = asyncio.run(scenario())
    assert kept == {kept_id}
    assert taken_cancelled and kept_running
    assert lost_marks == {taken_id}


def test_an_incident_that_has_just_closed_is_still_held_but_its_lease_not_extended(baton: str) -> None:
    """Its flow is finishing (sending what is left, reporting Completed to Prefect): taken for lost, it was
    cancelled and its run shown Crashed (seen in test_flows' takeover test on a loaded machine)."""
    from core.incidents.models import IncidentStatus

    incident_id = drive.open_("flood")
    lease(incident_id, "w-a", 30)
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id)
                        .values(status=IncidentStatus.closed))
    with session_scope() as session:
        before = session.get(Incident, incident_id)
        assert before is not None and before.lease_expires_at is not None
        expires = before.lease_expires_at
        kept = leases.renew(session, worker_id="w-a", incident_ids=[incident_id], lease_seconds=300)
    assert kept == {incident_id}
    with session_scope() as session:
        after = session.get(Incident, incident_id)
        assert after is not None and after.lease_expires_at == expires


async def _flow_run_state(flow_run_id: UUID) -> str:
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    assert run.state is not None
    return run.state.type.value


@pytest.mark.prefect
@pytest.mark.parametrize("how", ["cancelled by the keeper", "refused by the engine"])
def test_a_flow_that_lost_its_incident_stops_without_touching_its_flow_run(
        prefect_server: Any, baton: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker holds the incident and runs the same Prefect flow run. The flow here stops with Prefect's
    Abort, which proposes no state: the run stays Running for the worker that runs it, where a crash would force
    it Crashed and a failure would mark it Failed."""
    from prefect.context import FlowRunContext

    import flows.incident as incident_flow_module

    incident_id = drive.open_("flood")
    lease(incident_id, "w-a", 60)
    runs: list[UUID] = []
    follow_level = incident_flow_module.follow_level

    async def noting_the_run(level: str) -> None:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        runs.append(context.flow_run.id)
        await follow_level(level)

    monkeypatch.setattr(incident_flow_module, "follow_level", noting_the_run)

    async def scenario() -> tuple[BaseException | None, str]:
        runtime = Runtime(worker_id="w-a", waker=Waker())
        token = RUNTIME.set(runtime)
        flow_run = cast(Coroutine[Any, Any, Any], incident_flow_module.incident_flow("flood")(incident_id=incident_id))
        run = asyncio.create_task(flow_run)
        try:
            started = time.monotonic()
            while not runs or "rainstorm_forecast" not in drive.open_tasks(incident_id):
                assert not run.done() and time.monotonic() - started < 60, "the flow did not start"
                await asyncio.sleep(0.1)
            lease(incident_id, "w-b", 60)  # taken over
            if how == "cancelled by the keeper":
                runtime.lost.add(incident_id)
                run.cancel()
            else:
                runtime.waker.wake(incident_id)  # its next reconciliation finds w-b holding the incident
            outcome = (await asyncio.gather(run, return_exceptions=True))[0]
        finally:
            RUNTIME.reset(token)
        return cast(BaseException | None, outcome), await _flow_run_state(runs[0])

    outcome, state = asyncio.run(scenario())
    assert isinstance(outcome, Abort), outcome
    assert state == "RUNNING"


@pytest.mark.prefect
def test_a_worker_process_that_loses_a_lease_stops_that_flow_and_leaves_its_run_running(
        workers: Callable[..., subprocess.Popen[bytes]], tmp_path: Any) -> None:
    """End to end, a real worker process: its lease is taken from under it; within a renewal it stops the flow,
    says so in its log, and the Prefect run is left Running for the worker that took the incident."""
    workers("w-real", BATON_LEASE_SECONDS="3")
    incident_id = drive.open_("flood")
    started = time.monotonic()
    while "rainstorm_forecast" not in drive.open_tasks(incident_id):
        assert time.monotonic() - started < 60, "the worker did not start the flow"
        time.sleep(0.1)
    flow_run_id = drive.incident(incident_id).flow_run_id
    assert flow_run_id is not None
    lease(incident_id, "w-thief", 600)
    log = tmp_path / "w-real.log"
    while "stopped here" not in log.read_text(encoding="utf-8"):
        assert time.monotonic() - started < 60, log.read_text(encoding="utf-8")[-3000:]
        time.sleep(0.1)
    text = log.read_text(encoding="utf-8")
    # Whichever notices first says why: the lease keeper's renewal, or the flow's own check at its next write.
    assert (f"incident {incident_id}: lease lost to another worker" in text
            or (f"incident {incident_id}: stopped here: incident FLD-" in text and "is held by w-thief" in text)), text
    assert "Crash detected" not in text
    assert asyncio.run(_flow_run_state(UUID(flow_run_id))) == "RUNNING"
    assert drive.incident(incident_id).lease_owner == "w-thief"


def test_a_stopping_worker_frees_its_leases_over_a_busy_moment(baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release at a stop is tried again when the database is busy (SQLite's writer lock held by another
    process): the incident is free at once for the next worker, not after its lease lapses."""
    from sqlalchemy.exc import OperationalError

    from flows import worker as worker_module

    incident_id = drive.open_("flood")
    lease(incident_id, "w-stop", 600)
    real = worker_module.in_transaction
    tries: list[int] = []

    async def busy_twice(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        tries.append(1)
        if len(tries) <= 2:
            raise OperationalError("UPDATE incident", {}, Exception("database is locked"))
        return await real(fn, **kwargs)

    monkeypatch.setattr(worker_module, "in_transaction", busy_twice)
    stopping = worker_module.BatonWorker(settings=get_settings(), worker_id="w-stop")
    asyncio.run(stopping._release_leases())
    assert len(tries) == 3 and drive.incident(incident_id).lease_owner is None
    # Busy throughout: it gives up after its attempts, and the lease is left to lapse.
    lease(incident_id, "w-stop", 600)

    async def busy(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        tries.append(1)
        raise OperationalError("UPDATE incident", {}, Exception("database is locked"))

    monkeypatch.setattr(worker_module, "in_transaction", busy)
    tries.clear()
    asyncio.run(stopping._release_leases(attempts=2))
    assert len(tries) == 2 and drive.incident(incident_id).lease_owner == "w-stop"
