"""A worker starts a bounded number of incidents at once (flows/worker.py, `worker_start_concurrency`).

Each start is a few calls to Prefect over one client of 16 connections. The 10,000-incident bench showed a worker
that claimed thousands at once queue them all on that pool: those that waited past its timeout failed
(`PoolTimeout`), backed off and came back, and the ramp slowed to a crawl. Here a real worker (in process, on a real
Prefect server) claims eight incidents and starts at most two at a time; each start ends once the flow body runs
(or the start fails), so every incident gets its first task, even when one start fails."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import flows.incident as incident_flows
from core.platform.settings import get_settings
from flows.worker import BatonWorker
from tests import engine_driver as drive

pytestmark = pytest.mark.prefect


def test_a_worker_starts_at_most_its_start_concurrency_at_once(
        prefect_server: Any, baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    incidents = [drive.open_("flood") for _ in range(8)]
    starting: set[str] = set()  # between the start's first call to Prefect and the flow body running
    peak = [0]
    failed_once: list[str] = []
    real_walk = incident_flows._walk

    async def walk(incident_id: str, *args: Any) -> Any:
        starting.discard(incident_id)  # the flow body runs: this start is over
        return await real_walk(incident_id, *args)

    monkeypatch.setattr(incident_flows, "_walk", walk)

    async def scenario() -> float:
        worker = BatonWorker(settings=get_settings().model_copy(update={"worker_start_concurrency": 2}),
                             worker_id="w-starts")
        real_ensure = worker.ensure_flow_run

        async def ensure(info: dict[str, Any]) -> Any:
            starting.add(info["id"])
            peak[0] = max(peak[0], len(starting))
            await asyncio.sleep(0.3)  # a slow Prefect: without a bound every claimed start would be in here at once
            if not failed_once:
                failed_once.append(info["id"])
                starting.discard(info["id"])
                raise RuntimeError("Prefect refused the run")  # a failed start gives its place up
            return await real_ensure(info)

        async def no_pause(seconds: float, until: asyncio.Event | None = None) -> None:
            await asyncio.sleep(0.05)

        worker.ensure_flow_run = ensure  # type: ignore[method-assign]
        worker._sleep = no_pause  # type: ignore[method-assign]
        serving = asyncio.create_task(worker.serve())
        started = time.monotonic()
        try:
            while not all(drive.open_tasks(i) for i in incidents):
                assert not serving.done(), serving.result()
                assert time.monotonic() - started < 120, "not every incident got its first task"
                await asyncio.sleep(0.2)
            return time.monotonic() - started
        finally:
            worker.stop()
            await serving

    asyncio.run(scenario())
    assert failed_once, "the failing start was not tried"
    assert peak[0] == 2, f"{peak[0]} incidents were being started at once"
