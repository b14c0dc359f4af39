"""The bench's stock-Prefect handoff comparison (bench/stock_handoff.py) measures what it says, on a real Prefect
server: each way of waiting for a person carries the department's answer into the flow, a blocking pause holds a
process while it waits and a suspension holds none but starts a new process for every resume; and the report puts
those figures beside Baton's as ratios."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import bench.__main__ as bench_main
from bench import stock_handoff
from bench.__main__ import report_stock_handoffs
from bench.procinfo import tree_of
from bench.stock_handoff import measure
from tests.servers import PrefectServer


@pytest.mark.timeout(300)
def test_pause_and_suspend_handoffs_are_measured_on_a_real_prefect_server(prefect_server: PrefectServer) -> None:
    assert prefect_server.proc is not None
    costs = measure(prefect_server.api_url, tree_of(prefect_server.proc.pid), handoffs=2, pause_polls=(1,))
    pause, suspend = costs["pause_flow_run, 1 s poll"], costs["suspend_flow_run, serve() 1 s poll"]
    for cost in (pause, suspend):
        assert len(cost.latencies) == 2 and all(0 < v < 60 for v in cost.latencies)
        assert cost.cpu_ms["Prefect server"] > 0
    # A paused run is picked up at its next poll, within the poll interval (and some slack for a busy machine).
    assert max(pause.latencies) < 1 + 5
    # The paused run's process stays (tens of MB); a suspended run holds no process while it waits …
    assert pause.waiting_mb > 20 and suspend.waiting_mb == 0
    # … and each resume of it starts a new Python process that imports Prefect and runs the flow from the top.
    assert suspend.cpu_ms["flow processes"] > 5 * pause.cpu_ms["flow processes"]
    assert suspend.cpu_ms["flow processes"] > 500


def test_the_report_gives_stock_figures_as_ratios_to_batons(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = Console(record=True, width=240, file=io.StringIO())
    monkeypatch.setattr(bench_main, "console", wide)
    results = {
        "handoff_within_stage": {"n": 30, "p50": 0.05, "p95": 0.1, "p99": 0.1, "mean": 0.05},
        "sustained": {"cpu_ms_per_handoff": {"api": 30.0, "vm-worker-1": 20.0}},
        "waiting": {"open_incidents": 1000, "processes": {"vm-worker-1": {"rss_mb": 400.0}, "api": {"rss_mb": 300.0},
                                                           "vm-worker-2": {"rss_mb": 600.0}}},
        "stock_handoff": {
            "pause_flow_run, 1 s poll": {"latencies": [1.0, 1.5, 2.0], "cpu_ms_per_handoff": {
                "flow processes": 50.0, "Prefect server": 100.0}, "waiting_mb": 80.0},
            "suspend_flow_run, serve() 1 s poll": {"latencies": [4.0, 4.0], "cpu_ms_per_handoff": {
                "flow processes": 2500.0, "Prefect server": 500.0}, "waiting_mb": 0.0}},
    }
    report_stock_handoffs(results)
    out = wide.export_text()
    pause = next(line for line in out.splitlines() if "pause_flow_run" in line)
    # p50 1.5 s against 0.05 s; 150 ms against 50 ms; 80 MB against 1 MB a waiting incident (1,000 MB / 1,000).
    assert "1.50" in pause and "30.0×" in pause and "150" in pause and "3.0×" in pause and "80.0×" in pause
    suspend = next(line for line in out.splitlines() if "suspend_flow_run" in line)
    assert "80.0×" in suspend and "60.0×" in suspend and "none held" in suspend


def test_the_driver_retries_what_prefect_answers_as_busy_and_raises_on_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's server answers 503 while its SQLite is locked (a CI run failed on one resume): the driver retries
    it, and 429, as Prefect's client does, and still raises on an error that retrying cannot cure."""
    monkeypatch.setattr(stock_handoff.time, "sleep", lambda _s: None)
    answers = {"/api/flow_runs/busy/resume": [503, 429, 200], "/api/flow_runs/gone/resume": [404],
               "/api/flow_runs/locked/resume": [503] * 20}
    seen: list[str] = []

    def prefect(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(answers[request.url.path].pop(0), json={"status": "ACCEPT"})

    driver = stock_handoff._Driver("http://prefect.test/api", [], tmp_path)
    driver.api = httpx.Client(base_url="http://prefect.test/api", transport=httpx.MockTransport(prefect))
    assert driver.call("POST", "/flow_runs/busy/resume").json() == {"status": "ACCEPT"}
    assert seen.count("/api/flow_runs/busy/resume") == 3
    with pytest.raises(httpx.HTTPStatusError, match="404"):
        driver.call("POST", "/flow_runs/gone/resume")
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        driver.call("POST", "/flow_runs/locked/resume")
    assert seen.count("/api/flow_runs/locked/resume") == stock_handoff._RETRIES + 1


def test_a_run_waits_for_a_person_only_once_its_input_schema_is_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect pauses a run before it saves the schema of the input it asks for, and refuses a resume in between
    ("Run input schema not found", seen once in the suite): the driver waits for both."""
    monkeypatch.setattr(stock_handoff.time, "sleep", lambda _s: None)
    schema_reads: list[int] = []
    paused = {"type": "PAUSED", "state_details": {"pause_key": "handoff-0", "run_input_keyset": {
        "description": "d", "response": "r", "schema": "suspended-handoff-0-schema"}}}

    def prefect(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/flow_runs/r1":
            return httpx.Response(200, json={"state": paused})
        assert request.url.path == "/api/flow_runs/r1/input/suspended-handoff-0-schema"
        schema_reads.append(1)
        return httpx.Response(200 if len(schema_reads) == 3 else 404, json={})

    driver = stock_handoff._Driver("http://prefect.test/api", [], tmp_path)
    driver.api = httpx.Client(base_url="http://prefect.test/api", transport=httpx.MockTransport(prefect))
    driver.waiting_at("r1", "handoff-0")
    assert len(schema_reads) == 3
