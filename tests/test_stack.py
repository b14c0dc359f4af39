"""Server mode end to end: `baton stack up` (PostgreSQL, Prefect on PostgreSQL, two Baton workers, the API
under two uvicorn workers, each its own process on loopback), driven over HTTP like real users, with one
worker killed while incidents are in flight."""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.learning.simulation import sample_value, satisfy_checks
from flows.stack import alive, free_port, read_stack, stack_down, stack_up
from process_defs.schema import FieldCheck, FormField
from tests.fixtures.system import postgres_available, require
from tests.servers import seed_stack_cluster

_RNG = random.Random(11)
pytestmark = [pytest.mark.postgres, pytest.mark.prefect]
INCIDENTS = 6
FIXED = {"lift_warning": {"decision": "respond"},
         "flood_risk_assessment": {"hot_spots": 3, "pumps_deployed": 5, "river_level_high": False}}


def sample(field: dict[str, Any]) -> Any:
    """A valid answer for a form field as the API shows it (the same simulation the demo and drills use)."""
    return sample_value(FormField.model_validate(field), _RNG)


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    require("PostgreSQL", postgres_available())
    # PostgreSQL runs as the postgres user, who must be able to enter the folder (pytest's are private).
    data_dir = Path(tempfile.mkdtemp(prefix="baton-stack-"))
    data_dir.chmod(0o755)
    saved = {k: os.environ.get(k) for k in ("BATON_DATABASE_URL", "BATON_PREFECT_API_URL", "BATON_DATA_DIR")}
    os.environ["BATON_DATA_DIR"] = str(data_dir)
    os.environ["BATON_LEASE_SECONDS"] = "4"
    from core.platform.settings import get_settings

    get_settings.cache_clear()
    seed_stack_cluster(data_dir)
    state = stack_up(data_dir, workers=2, api_workers=2, api_port=free_port(), prefect_port=free_port(),
                     pg_port=free_port())
    get_settings.cache_clear()
    try:
        yield {**state, "data_dir": data_dir}
    finally:
        stack_down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.environ.pop("BATON_LEASE_SECONDS", None)
        get_settings.cache_clear()


def _users(departments: list[str]) -> dict[str, str]:
    from core.platform.db import session_scope
    from core.users.service import add_user

    passwords = {}
    with session_scope() as session:
        add_user(session, username="office", role="office", password="office-password")
        passwords["office"] = "office-password"
        for dept in departments:
            add_user(session, username=dept, role="department", department=dept, password=f"{dept}-password")
            passwords[dept] = f"{dept}-password"
    return passwords


def _token(client: httpx.Client, user: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/token", data={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _work_inbox(client: httpx.Client, headers: dict[str, str], office: bool = False) -> int:
    done = 0
    params: dict[str, Any] = {"open": "true", "limit": 500}
    if office:
        params["department"] = "emergency_office"  # the office reads every inbox but works its own
    inbox = client.get("/api/tasks", params=params, headers=headers).json()["items"]
    for item in inbox:
        detail = client.get(f"/api/tasks/{item['id']}", headers=headers).json()
        outputs = FIXED.get(item["step_key"]) or satisfy_checks(
            [FieldCheck.model_validate(c) for c in detail["checks"]],
            {f["key"]: sample(f) for f in detail["form"] if f["required"]})
        response = client.post(f"/api/tasks/{item['id']}/complete", json={"outputs": outputs}, headers=headers)
        assert response.status_code in (200, 409), response.text  # 409: another client got there first
        done += response.status_code == 200
    return done


def test_incidents_survive_the_loss_of_a_worker_in_server_mode(stack: dict[str, Any], tmp_path: Path) -> None:
    from core.plans.store import current_plan_text, parse_plan_text

    plan = parse_plan_text(current_plan_text("flood"), "flood.yaml")
    departments = sorted({s.department for _, s in plan.steps() if s.kind == "human"} - {"emergency_office"})
    passwords = _users(departments)
    with httpx.Client(base_url=stack["api_url"], timeout=30) as client:
        health = client.get("/api/health").json()
        assert health == {"database": "ok", "prefect": "ok", "ok": True}
        tokens = {user: _token(client, user, pw) for user, pw in passwords.items()}
        ids = []
        for i in range(INCIDENTS):
            response = client.post("/api/incidents", json={"type": "flood", "level": "IV", "title": f"stack {i}"},
                                   headers={**tokens["office"], "Idempotency-Key": f"stack-{i}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        # Let both workers take incidents, do some work, then kill the worker holding the most.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _work_inbox(client, tokens["meteorology"]):
                break
            time.sleep(0.2)
        from sqlmodel import select

        from core.incidents.models import Incident
        from core.platform.db import session_scope

        with session_scope() as session:
            owners = Counter(row.lease_owner for row in session.exec(select(Incident)).all() if row.lease_owner)
        assert owners, "no worker has claimed the incidents"
        victim_name = owners.most_common(1)[0][0]
        victim_pid = read_stack(stack["data_dir"])["processes"][victim_name]
        os.killpg(victim_pid, signal.SIGKILL)
        for _ in range(50):
            if not alive(victim_pid):
                break
            time.sleep(0.1)
        # Everyone keeps working; the surviving worker takes the dead one's incidents over.
        deadline = time.monotonic() + 300
        closed = 0
        while time.monotonic() < deadline:
            for user, headers in tokens.items():
                _work_inbox(client, headers, office=user == "office")
            closed = client.get("/api/incidents", params={"status": "closed"}, headers=tokens["office"]).json()["total"]
            if closed == INCIDENTS:
                break
            time.sleep(0.3)
        assert closed == INCIDENTS, f"only {closed} of {INCIDENTS} incidents closed"
        flow_runs = set()
        for incident_id in ids:
            verify = client.get(f"/api/incidents/{incident_id}/ledger/verify", headers=tokens["office"]).json()
            assert verify["valid"], verify
            entries = client.get(f"/api/incidents/{incident_id}/ledger", headers=tokens["office"]).json()["entries"]
            assigned = Counter(e["step_key"] for e in entries if e["kind"] == "task.assigned")
            assert max(assigned.values()) == 1, assigned  # nothing was assigned twice across the takeover
            incident = client.get(f"/api/incidents/{incident_id}", headers=tokens["office"]).json()
            flow_runs.add(incident["flow_run_id"])
        assert len(flow_runs) == INCIDENTS and None not in flow_runs
        with session_scope() as session:
            holders = {row.lease_owner for row in session.exec(select(Incident)).all()}
        assert victim_name not in holders


def test_a_kept_cluster_is_durable_unless_asked_otherwise() -> None:
    """Server mode keeps its cluster in a folder; whoever restarts it through PostgresCluster(root=…) (the
    stack, `baton stack down`, the fault tests) must not start it with fsync off and lose acknowledged
    commits in a crash. Throwaway test clusters trade durability for speed."""
    from flows.stack import PostgresCluster

    # Not pytest's tmp_path: PostgreSQL runs as its own user, who must be able to enter the folders.
    base = Path(tempfile.mkdtemp(prefix="baton-kept-"))
    base.chmod(0o755)
    throwaway = PostgresCluster()
    try:
        kept = PostgresCluster(root=base / "pg", port=free_port())
        assert kept.durable and "fsync=off" not in kept._options()
        assert "fsync=off" in PostgresCluster(root=base / "fast", durable=False)._options()
        assert not throwaway.durable and "fsync=off" in throwaway._options()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(throwaway.root, ignore_errors=True)
