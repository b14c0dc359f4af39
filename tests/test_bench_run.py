"""`python -m bench` end to end on a small run: the stack up (PostgreSQL, Prefect on it, two workers, the API under
two uvicorn workers), every phase over HTTP, and the figures written, the floor's prices and the drain's records
among them. The figures' values are the benchmark's business; here, that each was measured and is sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.system import postgres_available, require

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def test_a_small_bench_run_measures_every_figure(tmp_path: Path) -> None:
    require("PostgreSQL", postgres_available())
    env = {**os.environ, "BATON_BENCH_RESULTS": str(tmp_path)}
    (tmp_path / "prefect_tasks.json").write_text(json.dumps({"total_ms": 8.0, "measured": "a test's price"}))
    env.pop("BATON_DATA_DIR", None)
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--incidents", "12", "--samples", "2",
                          "--sustain-seconds", "4", "--pace", "15"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # A small run misses the province's targets (the rate, the ten thousand): exit 1 names them; 2+ is a failure.
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.svg").read_text().startswith("<svg")
    assert results["waiting"]["first_tasks_assigned"] == 12 and results["waiting"]["open_incidents"] >= 12
    run_ = results["sustained"]
    assert run_["handoffs"] > 0 and run_["per_second"] <= 15 * 1.2  # paced
    assert run_["requests_per_handoff"] >= 1.0  # the completion at least, and the desks' reads
    assert run_["driver_cpu_ms_per_handoff"] > 0
    assert all(ms > 0 for name, ms in run_["cpu_ms_per_handoff"].items() if name != "postgresql")
    assert set(run_["drained_after_s"]) == {"baton", "prefect"}
    assert all(0 <= seconds < 60 for seconds in run_["drained_after_s"].values())
    floor = results["request_floor"]
    assert floor["requests"] == 1000 and floor["cpu_ms_per_request"]["api"] > 0
    assert floor["cpu_ms_per_transaction"]["writer"] > 0
    assert results["prefect_events_dropped"] == 0
    assert "handoffs per second" in " ".join(results["missed"])  # 15 a second offered: named as missed
    # The floor is printed with bench.prefect_tasks' price of a task run, read from where that bench writes it.
    assert results["prefect_task_run"]["total_ms"] == 8.0
    assert "The least a handoff costs" in run.stdout and "Targets missed" in run.stdout
