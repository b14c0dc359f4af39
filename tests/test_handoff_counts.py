"""What one ledgered handoff costs, counted (bench/counts.py): SQL statements in the API's completion and in the
worker's wake-up that assigns the next tasks, and the worker's Prefect API calls. Counts hold on a busy machine
where timings do not; a change that adds statements to the hot path fails here, with the statements named."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from bench.counts import Counts, measure
from tests.fixtures.api import Api

# Ceilings: today's counts (docs/scaling.md, "What one handoff costs"), with a little room.
# Every completion: a gate with its authority 13 on PostgreSQL and 14 on SQLite on 2026-12-03; 11 on both on 2026-12-05
# (the API locks the task before it checks who may act, and the handoff takes the rows it locked: read once).
API_SQL_CEILING = 12
# Averaged over the handoffs driven (one fans out four tasks, one runs two actions): 33.2 on PostgreSQL on 2026-12-03;
# 29.2 on PostgreSQL and 33.5 on SQLite late on 2026-12-04; 27.8 and 32.5 on 2026-12-05.
WORKER_SQL_MEAN_CEILING = 34
# Any one handoff: the command post's fan-out of four tasks, with 叫应's reconciliation and the registers' area
# lookup for the evacuation step (75 on PostgreSQL on 2026-12-02, up from 46 before those landed); since 2026-12-03
# the forecast with its two automated steps is the largest: 64, then 51 on PostgreSQL and 59 on SQLite late on
# 2026-12-04 (its steps run without reading their task and incident again; 叫应's check in one statement); 57 on
# SQLite on 2026-12-05.
WORKER_SQL_CEILING = 60


def _call(api: Api) -> Any:
    def call(method: str, path: str, *, token: str, **kwargs: Any) -> httpx.Response:
        return api.server.request(method, path, token, **kwargs)

    return call


def _explain(counts: Counts) -> str:
    return json.dumps(counts.as_json(), indent=1, ensure_ascii=False)


def _check(counts: Counts) -> None:
    assert [h.step for h in counts.handoffs] == ["rainstorm_forecast", "flood_risk_assessment", "lift_warning",
                                                 "activate_command"], _explain(counts)
    # The handoffs really handed off: each assigned the next step(s).
    assert all(h.assigned for h in counts.handoffs), _explain(counts)
    assert counts.handoffs[0].automated_steps == 2
    assert max(h.api_sql for h in counts.handoffs) <= API_SQL_CEILING, _explain(counts)
    assert max(h.worker_sql for h in counts.handoffs) <= WORKER_SQL_CEILING, _explain(counts)
    assert counts.per_handoff()["worker_sql"] <= WORKER_SQL_MEAN_CEILING, _explain(counts)


def test_a_handoff_costs_few_statements(api: Api) -> None:
    counts = measure(_call(api), prefect=False)
    _check(counts)
    assert counts.database == "sqlite"


@pytest.mark.parametrize("db_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_handoff_costs_few_statements_and_no_prefect_round_trip(prefect_server: Any, api: Api) -> None:
    """Under Prefect's engine on PostgreSQL, as a worker runs a flow: the automated steps are task runs reported by
    events (over the events socket), not HTTP round trips; a handoff with no automated step touches Prefect not
    at all."""
    counts = measure(_call(api), prefect=True)
    _check(counts)
    assert counts.database == "postgresql"
    # On the session's server, not an ephemeral one the flow's thread would start for itself.
    assert counts.prefect_api == prefect_server.api_url
    # Prefect's event worker names the flow in each task run's events and reads it once per process to do so
    # (`prefect.events.related`, cached): the first automated step of a process whose cache a test before it
    # did not fill pays that one read. Any other call, or that one twice, is a round trip per handoff.
    calls: Counter[str] = Counter()
    for handoff in counts.handoffs:
        calls.update({call: n for call, n in handoff.worker_calls.items() if not call.startswith("event ")})
    calls -= Counter({"GET /api/flows/{id}": 1})
    assert not calls, _explain(counts)
    # Each automated step is one task run: its Pending, Running and Completed events.
    assert counts.handoffs[0].worker_events <= 3 * counts.handoffs[0].automated_steps + 3, _explain(counts)
