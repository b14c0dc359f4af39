"""Two recoveries the fault matrix found failing (now fixed), each reproduced on its own, deterministically:

- a worker (re)started while PostgreSQL is down exits (on the fault tests' stack, after the matrix and the
  soak: it stops the database for a few seconds and adds a worker of its own, removed after);
- an incident whose flow failed while PostgreSQL was down stays leased to its (live) worker, which renews the
  lease but never runs the flow again, so the incident is stuck until that worker restarts (on a PostgreSQL
  cluster and a worker of its own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.platform.settings import get_settings
from flows.stack import PostgresCluster
from tests import engine_driver as drive
from tests.api_server import FORECAST
from tests.faults.harness import STACK_GROUP, FaultStack, running
from tests.servers import PrefectServer

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.prefect, pytest.mark.xdist_group(STACK_GROUP)]


def test_a_worker_started_while_the_database_is_down_waits_for_it(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.wait_healthy(90)
    name = "vm-worker-late"
    stack.kill("postgres")
    try:
        stack.restart(name)  # starts it: the same command and environment as the stack's workers
        pid = stack.pid(name)
        time.sleep(5)
        survived_outage = running(pid)
    finally:
        stack.restart("postgres")
    try:
        assert survived_outage, f"the worker exited while the database was down; see {stack.data_dir}/logs/{name}.log"
        stack.wait_workers_started(60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stack.pid(name), signal.SIGKILL)
        del stack.state["processes"][name]
        stack.save()
        stack.starting.pop(name, None)


@pytest.fixture
def own_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own (it is crashed and restarted), with Baton's database on it."""
    from core.plans.store import forget_plans
    from core.platform.migrate import upgrade

    cluster = PostgresCluster(durable=True).start()
    try:
        url = cluster.create_database("baton")
        monkeypatch.setenv("BATON_DATABASE_URL", url)
        monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path / "baton"))
        get_settings.cache_clear()
        forget_plans()
        upgrade()
        yield cluster
    finally:
        cluster.stop()
        get_settings.cache_clear()


def test_an_incident_whose_flow_failed_in_a_database_outage_is_run_again(
        own_postgres: PostgresCluster, prefect_server: PrefectServer, tmp_path: Path) -> None:
    incident_id = drive.open_("flood")
    log = tmp_path / "worker.log"
    # A long lease (it outlives the outage) and a short re-check (the waiting flow reads the database during it).
    env = dict(os.environ, BATON_WORKER_ID="w-outage", PREFECT_API_URL=prefect_server.api_url,
               BATON_LEASE_SECONDS="10", BATON_RECHECK_SECONDS="0.5")
    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(step: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if step in drive.open_tasks(incident_id):
                return True
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        return False

    try:
        assert wait_for("rainstorm_forecast", 90), log.read_text()[-3000:]
        own_postgres.kill()
        time.sleep(4)  # the flow re-checks, fails; its lease cannot be released
        own_postgres.restart()
        drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
        # Two lease periods later at the latest, some flow must have handed the assessment over.
        assert wait_for("flood_risk_assessment", 15), \
            "the incident did not move after the outage; worker log:\n" + log.read_text()[-2000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_the_api_answers_503_in_the_error_format_while_the_database_is_down(
        own_postgres: PostgresCluster) -> None:
    """Not an unexplained 500: a clear, retryable refusal, and nothing half-stored."""
    import httpx

    from tests.api_server import issued_token, make_user, run_api

    make_user("office", "office")
    token = issued_token("office")
    with run_api() as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert client.get("/api/incidents").status_code == 200
        own_postgres.kill()
        try:
            down = client.post("/api/incidents", headers={"Idempotency-Key": "outage-1"},
                               json={"type": "flood", "level": "IV", "title": "during the outage"})
            read = client.get("/api/incidents")
        finally:
            own_postgres.restart()
        for response in (down, read):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "database_unavailable"
            assert response.headers["Retry-After"] == "2"
        # Once it is back, the same request is answered (the pool's dead connections are replaced).
        deadline = time.monotonic() + 30
        again = None
        while time.monotonic() < deadline:
            again = client.post("/api/incidents", headers={"Idempotency-Key": "outage-1"},
                                json={"type": "flood", "level": "IV", "title": "during the outage"})
            if again.status_code != 503:
                break
            time.sleep(0.5)
        assert again is not None and again.status_code == 201, again.text if again else None
        assert len(client.get("/api/incidents").json()["items"]) == 1
        assert "Exception in ASGI application" not in server.log.read_text()
