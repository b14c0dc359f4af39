"""How long a worker waits before it tries a failing incident again (flows/worker.py, BatonWorker._back_off).

A broken plan or record backs off further each time (2 s … 5 min) so it never spins a worker; a database or
Prefect outage is tried again within seconds, so incidents go on as soon as they are back; and only failures in a
row count, so an incident that lived through several short outages over a night is not left waiting minutes
after the next one (the fault suites' kills showed incidents stuck that way)."""

from __future__ import annotations

import asyncio

import pytest

from flows.outages import OUTAGE_RETRY_MAX
from flows.worker import HEALTHY_RUN_SECONDS, BatonWorker


def _pauses(failures: list[dict[str, object]]) -> list[float]:
    worker = BatonWorker(worker_id="w-backoff")
    slept: list[float] = []

    async def sleep(seconds: float, until: asyncio.Event | None = None) -> None:
        slept.append(seconds)

    worker._sleep = sleep  # type: ignore[method-assign]

    async def fail_each() -> None:
        for failure in failures:
            await worker._back_off("incident-1", "FLD-2026-0001", "boom", **failure)  # type: ignore[arg-type]

    asyncio.run(fail_each())
    return slept


def test_a_broken_incident_backs_off_further_each_time_up_to_five_minutes() -> None:
    assert _pauses([{}] * 10) == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_an_outage_is_tried_again_within_seconds_however_long_it_lasts() -> None:
    pauses = _pauses([{"outage": True}] * 8)
    assert pauses[:3] == [2, 4, 8]
    assert max(pauses) == OUTAGE_RETRY_MAX


@pytest.mark.parametrize("outage", [True, False])
def test_only_failures_in_a_row_count(outage: bool) -> None:
    """Each failure after a run that went on for a while starts from the shortest pause again."""
    after_a_healthy_run: dict[str, object] = {"outage": outage, "ran_for": HEALTHY_RUN_SECONDS + 1}
    in_a_row: dict[str, object] = {"outage": outage}
    pauses = _pauses([in_a_row] * 3 + [after_a_healthy_run] * 3 + [in_a_row])
    assert pauses == [2, 4, 8, 2, 2, 2, 4]


def test_outages_in_a_row_do_not_lengthen_the_pause_after_a_bug() -> None:
    """Five outages, then a failure that is not one: the bug's pause is its first (2 s), not the sixth (64 s)."""
    outage: dict[str, object] = {"outage": True}
    pauses = _pauses([outage] * 5 + [{}] + [outage])
    assert pauses == [2, 4, 8, 8, 8, 2, 8]
