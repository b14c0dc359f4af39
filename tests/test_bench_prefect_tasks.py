"""bench/prefect_tasks.py: a task run's cost to a real Prefect server is measured, and every task run is counted."""

from __future__ import annotations

import pytest

from bench.prefect_tasks import measure
from tests.servers import PrefectServer

pytestmark = pytest.mark.prefect


def test_task_runs_are_timed_against_a_real_server_which_records_each(prefect_server: PrefectServer) -> None:
    assert prefect_server.proc is not None
    cost = measure(label="first", api_url=prefect_server.api_url, server_pid=prefect_server.proc.pid,
                     postmaster=None, runs=20)
    # The server recorded each of the flow's task runs (the count is read back from its API, not assumed), and
    # both the flow's process and the server spent CPU on them.
    assert (cost.runs, cost.recorded) == (20, 20)
    assert cost.flow_ms > 0 and cost.server_ms > 0 and cost.postgres_ms == 0
    assert cost.total_ms == pytest.approx(cost.flow_ms + cost.server_ms)
