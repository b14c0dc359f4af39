"""`make bench` names every target it misses, against issue 19's targets (bench/targets.py), and nothing it meets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from bench.__main__ import floor_of, prefect_events_dropped, report


def _latency(p95: float) -> dict[str, float]:
    return {"n": 30, "p50": p95 / 2, "p95": p95, "p99": p95, "mean": p95 / 2}


def _results(**changes: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "trigger_to_first_task": _latency(0.25), "handoff_within_stage": _latency(0.08),
        "handoff_across_stage": _latency(0.09), "inbox_read_50_clients": _latency(0.015),
        "sustained": {"handoffs": 6000, "per_second": 210.0, "idle_again_after_s": 3.0,
                      "drained_after_s": {"baton": 1.5, "prefect": 2.5}, "busy_after_s": {"api": 2.0},
                      "cpu_ms_per_handoff": {"api": 4.0, "worker-1": 2.5, "worker-2": 2.5}},
        "waiting": {"open_incidents": 10_000, "triggered": 10_000, "first_tasks_assigned": 10_000,
                    "ramp_seconds": 900.0, "total_rss_mb": 7000.0,
                    "processes": {"api": {"rss_mb": 3000.0, "threads": 20, "idle_cpu_percent": 2.0},
                                  "worker-1": {"rss_mb": 4000.0, "threads": 30, "idle_cpu_percent": 3.0}}},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(results.get(key), dict):
            results[key] = {**results[key], **value}
        else:
            results[key] = value
    return results


def test_a_run_that_meets_every_target_names_no_miss() -> None:
    assert report(_results()) == []


def test_each_missed_target_is_named_with_its_figure() -> None:
    misses = report(_results(trigger_to_first_task=_latency(0.5),
                             sustained={"per_second": 150.0, "drained_after_s": {"baton": 2.0, "prefect": 9.0},
                                        "cpu_ms_per_handoff": {"api": 40.0, "worker-1": 60.0}},
                             waiting={"total_rss_mb": 9000.0}))
    text = "\n".join(misses)
    assert "trigger_to_first_task p95: 0.500 s against a target of 0.3 s" in text
    assert "handoffs per second: 150.000 /s against a target of 200 /s" in text
    assert "backlog drained: 9.000 s against a target of 5 s" in text
    assert "CPU per handoff: 100.000 ms against a target of 10 ms" in text
    assert "memory, all processes: 9000.000 MB against a target of 8000 MB" in text
    assert len(misses) == 5, misses


def test_a_smaller_waiting_run_is_named_as_short_of_the_ten_thousand() -> None:
    """The memory and idle targets are for 10,000 incidents waiting at once: a run with fewer has not shown them."""
    misses = report(_results(waiting={"open_incidents": 1000, "triggered": 1000, "first_tasks_assigned": 1000,
                                      "total_rss_mb": 900.0}))
    assert misses == ["waiting incidents: 1,000 measured, the target is 10,000 (run with --incidents 10000)"]


def test_events_the_prefect_server_dropped_are_counted_from_its_log_and_named_a_miss(tmp_path: Path) -> None:
    """The count reads what Prefect's in-memory event bus really logs when a subscriber is full (its own
    Subscription, filled to its limit, writing through a handler as the server's log file does)."""
    from prefect.server.utilities.messaging.memory import MemoryMessage, Subscription, Topic

    log = tmp_path / "prefect-server.log"
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s - %(message)s"))
    bus_logger = logging.getLogger("prefect.server.utilities.messaging.memory")
    bus_logger.addHandler(handler)

    async def overfill() -> None:
        subscription = Subscription(Topic("bench-drops"), dead_letter_queue_path=tmp_path / "dlq")
        for i in range(subscription._queue.maxsize + 3):
            await subscription.deliver(MemoryMessage(data=str(i), attributes={}))

    try:
        asyncio.run(overfill())
    finally:
        bus_logger.removeHandler(handler)
        handler.close()
    log.write_text(log.read_text(encoding="utf-8") + "12:00:00 | INFO | uvicorn - nothing dropped here\n",
                   encoding="utf-8")
    assert prefect_events_dropped(log) == 3
    assert prefect_events_dropped(tmp_path / "absent.log") == 0
    misses = report(_results(prefect_events_dropped=3))
    assert [m for m in misses if m.startswith("Prefect events dropped: 3 ")], misses
    assert report(_results(prefect_events_dropped=0)) == []


def test_the_floor_of_a_handoff_is_its_requests_and_task_runs_at_their_measured_prices() -> None:
    """The least a handoff costs, from parts measured apart: each request at the price of an authenticated request
    that does nothing else, the worker's wake at the price of one written row committed, each Prefect task run at
    bench.prefect_tasks' price; none without the prices."""
    results = _results(sustained={"requests_per_handoff": 2.5, "task_runs_per_handoff": 1.2},
                       request_floor={"requests": 1000, "cpu_ms_per_request": {"api": 1.6, "postgresql": 0.4},
                                      "cpu_ms_per_transaction": {"writer": 0.5, "postgresql": 0.25}},
                       prefect_task_run={"total_ms": 7.0, "measured": "2026-12-05 10:00 UTC"})
    floor = floor_of(results)
    assert floor is not None
    assert floor["per_request_ms"] == 2.0 and floor["requests_ms"] == 5.0 and floor["prefect_ms"] == 8.4
    assert floor["transaction_ms"] == 0.75
    assert floor["total_ms"] == 14.15 and floor["one_request_ms"] == 11.15
    assert report(results) == []  # printed beside the costs; a floor is an explanation, never a miss of its own
    del results["prefect_task_run"]
    assert floor_of(results) is None


def test_the_drain_is_read_from_the_records_and_from_the_stacks_cpu_only_without_them() -> None:
    """Done when Baton's last assignment and Prefect's last recorded task run are: a stack still busy after both
    (Prefect's own bookkeeping) is printed, not judged; a run without the records is judged by the CPU."""
    busy_after = _results(sustained={"idle_again_after_s": 14.0, "drained_after_s": {"baton": 3.0, "prefect": 4.5}})
    assert report(busy_after) == []
    late = report(_results(sustained={"idle_again_after_s": 14.0, "drained_after_s": {"baton": 6.5, "prefect": 4.0}}))
    assert late == ["backlog drained: 6.500 s against a target of 5 s (over by 1.500 s)"]
    without = _results(sustained={"idle_again_after_s": 14.0})
    del without["sustained"]["drained_after_s"]
    assert report(without) == ["backlog drained: 14.000 s against a target of 5 s (over by 9.000 s)"]
