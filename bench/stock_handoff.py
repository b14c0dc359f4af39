"""Stock Prefect's cost of a human handoff, measured beside Baton's in the same run (issue 19).

In stock Prefect a flow run waits for a person in one of two ways (../shared/notes/prefect-3.9-facts.md §1.2–1.3):

- `pause_flow_run`: the run's process stays and asks the API every `poll_interval` seconds (10 by default) whether
  it was resumed; `resume_flow_run` with the person's answer (`run_input`) lets it go on.
- `suspend_flow_run`: the process exits; `resume_flow_run` schedules the run again and a runner (`serve()`) starts a
  new process that runs the flow from the top, the keys already answered returning at once.

Each way is driven through a few handoffs: the driver waits until the run waits at the handoff's key, resumes it
with the department's answer over the REST API, and times until the flow body has the answer (it writes a marker
file with the time). CPU per handoff is read from /proc, from the moment the run waits at the first key to the
moment it waits at the last: the flow's processes (the runner's tree, with the processes that already exited) and
the Prefect server. Memory is what one waiting run holds (its process's PSS; a suspended run holds none).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procinfo import cpu_seconds, tree_of, usage
from bench.stock_prefect import stop_process

FLOW_SOURCE = '''
import os, sys, time
from pathlib import Path
from prefect import flow
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.runtime import flow_run


def _note(folder, name, text):
    # Written whole or not at all: the driver reads a file as soon as it exists.
    Path(folder, name + ".part").write_text(text)
    os.replace(Path(folder, name + ".part"), Path(folder, name))


def _answered(folder, name, answer):
    if not Path(folder, name).exists():  # a suspended run's flow body runs again from the top on every resume
        _note(folder, name, f"{time.time()} {answer}")


@flow(name="bench-human-pause")
def paused(folder: str, handoffs: int, poll: int) -> None:
    _note(folder, "pause-run", flow_run.id)
    for i in range(handoffs):
        answer = pause_flow_run(wait_for_input=str, key=f"handoff-{i}", poll_interval=poll, timeout=600)
        _answered(folder, f"pause-{i}", answer)


@flow(name="bench-human-suspend", persist_result=True)
def suspended(folder: str, handoffs: int) -> None:
    for i in range(handoffs):
        answer = suspend_flow_run(wait_for_input=str, key=f"handoff-{i}", timeout=600)
        _answered(folder, f"suspend-{i}", answer)


if __name__ == "__main__":
    if sys.argv[1] == "pause":
        paused(folder=sys.argv[2], handoffs=int(sys.argv[3]), poll=int(sys.argv[4]))
    else:
        suspended.serve(name=sys.argv[2])
'''


@dataclass
class HandoffCost:
    """One way of waiting for a person, driven through `handoffs` handoffs."""

    latencies: list[float] = field(default_factory=list)  # resume sent → the flow body has the answer, s
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per handoff: "flow processes", "Prefect server"
    waiting_mb: float = 0.0  # what one waiting run holds (PSS of its processes)

    def as_json(self) -> dict[str, Any]:
        return {"latencies": [round(v, 4) for v in self.latencies], "cpu_ms_per_handoff": self.cpu_ms,
                "waiting_mb": round(self.waiting_mb, 1)}


# Prefect's server answers 503 when its database is busy (a locked SQLite) and 429 when it sheds load, and its own
# client retries both with a back-off (PREFECT_CLIENT_MAX_RETRIES, 5 by default): the driver does the same, so a
# busy machine slows the figure rather than failing the run.
_RETRYABLE = frozenset({429, 503})
_RETRIES = 6


class _Driver:
    def __init__(self, api_url: str, server_pids: list[int], work: Path) -> None:
        self.api = httpx.Client(base_url=api_url, timeout=30)
        self.server_pids = server_pids
        self.work = work

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request to Prefect's REST API, retried as Prefect's client retries it; raises on any other error."""
        attempt = 0
        while True:
            response = self.api.request(method, url, **kwargs)
            if response.status_code not in _RETRYABLE or attempt == _RETRIES:
                return response.raise_for_status()
            time.sleep(float(response.headers.get("Retry-After") or min(0.25 * 2 ** attempt, 4.0)))
            attempt += 1

    def spent(self, root_pid: int) -> tuple[float, float]:
        """CPU seconds so far of the flow's processes (the tree under `root_pid`, with those that exited) and of the
        Prefect server."""
        return (cpu_seconds(tree_of(root_pid), exited_children=True),
                cpu_seconds(self.server_pids, exited_children=True))

    def waiting_at(self, run_id: str, key: str, timeout: float = 120) -> None:
        """Until the run is paused (or suspended) at `key`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("GET", f"/flow_runs/{run_id}").json().get("state") or {}
            details = state.get("state_details") or {}
            if state.get("type") == "PAUSED" and details.get("pause_key") == key and self._asks_input(
                    run_id, details.get("run_input_keyset") or {}):
                return
            if state.get("type") in ("FAILED", "CRASHED", "CANCELLED", "COMPLETED"):
                raise RuntimeError(f"stock Prefect run {run_id} ended {state.get('type')} waiting for {key}")
            time.sleep(0.02)
        raise TimeoutError(f"stock Prefect run {run_id} did not wait at {key} within {timeout:.0f} s")

    def _asks_input(self, run_id: str, keyset: dict[str, str]) -> bool:
        """Whether the run has saved the schema of the input it waits for. Prefect pauses the run first and saves
        the schema after (prefect.flow_runs.suspend_flow_run), and refuses a resume in between ("Run input schema
        not found"), so a run is waiting for a person only once both are done."""
        if "schema" not in keyset:
            return True
        response = self.api.get(f"/flow_runs/{run_id}/input/{keyset['schema']}")
        return response.status_code == 200

    def hand_over(self, run_id: str, i: int, marker: Path) -> float:
        """Resume the run with the department's answer; the time until its flow body has it."""
        sent = time.time()
        response = self.call("POST", f"/flow_runs/{run_id}/resume", json={"run_input": {"value": f"answer-{i}"}})
        if response.json().get("status") != "ACCEPT":
            raise RuntimeError(f"resume of {run_id} at handoff {i}: {response.text}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = marker.read_text().strip() if marker.exists() else ""
            if text:
                at, _, answer = text.partition(" ")
                if answer != f"answer-{i}":  # the flow went on without the department's answer
                    raise RuntimeError(f"stock Prefect run {run_id}: handoff {i} got {answer!r}")
                return float(at) - sent
            time.sleep(0.01)
        raise TimeoutError(f"stock Prefect run {run_id}: handoff {i} was not taken within 120 s")

    def drive(self, run_id: str, flow_pids: list[int] | None, root_pid: int, handoffs: int,
              prefix: str) -> HandoffCost:
        """`handoffs` handoffs; costs counted from the wait at the first key to the wait at the last."""
        cost = HandoffCost()
        self.waiting_at(run_id, "handoff-0")
        cost.waiting_mb = usage(flow_pids).rss_mb if flow_pids else 0.0
        flow_before, server_before = self.spent(root_pid)
        for i in range(handoffs - 1):
            cost.latencies.append(self.hand_over(run_id, i, self.work / f"{prefix}-{i}"))
            self.waiting_at(run_id, f"handoff-{i + 1}")
        flow_after, server_after = self.spent(root_pid)
        measured = handoffs - 1
        cost.cpu_ms = {"flow processes": round(1000 * (flow_after - flow_before) / measured, 1),
                       "Prefect server": round(1000 * (server_after - server_before) / measured, 1)}
        cost.latencies.append(self.hand_over(run_id, handoffs - 1, self.work / f"{prefix}-{handoffs - 1}"))
        return cost


def _deployment_id(api: httpx.Client, name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/deployments/name/bench-human-suspend/{name}")
        if response.status_code == 200:
            return str(response.json()["id"])
        time.sleep(0.2)
    raise TimeoutError(f"deployment bench-human-suspend/{name} did not appear within {timeout:.0f} s")


def measure(api_url: str, server_pids: list[int], handoffs: int = 4,
            pause_polls: tuple[int, ...] = (10, 1)) -> dict[str, HandoffCost]:
    """Stock Prefect's human handoff on the server at `api_url` (whose processes are `server_pids`): a blocking
    pause at each poll interval in `pause_polls`, and a suspension resumed through `serve()` polling every second."""
    if handoffs < 2:
        raise ValueError("at least two handoffs: the costs are counted between the first wait and the last")
    work = Path(tempfile.mkdtemp(prefix="baton-stock-handoff-"))
    source = work / "bench_human.py"
    source.write_text(FLOW_SOURCE)
    env = dict(os.environ, PREFECT_API_URL=api_url, PYTHONPATH=str(work), PREFECT_RUNNER_POLL_FREQUENCY="1",
               PREFECT_LOGGING_TO_API_ENABLED="false")
    driver = _Driver(api_url, server_pids, work)
    results: dict[str, HandoffCost] = {}
    try:
        for poll in pause_polls:
            folder = work / f"pause-poll-{poll}"
            folder.mkdir()
            driver.work = folder
            proc = subprocess.Popen([sys.executable, str(source), "pause", str(folder), str(handoffs), str(poll)],
                                    env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                deadline = time.monotonic() + 120
                while not (folder / "pause-run").exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not (folder / "pause-run").exists():
                    raise RuntimeError(f"the paused flow did not start (exit code {proc.poll()})")
                run_id = (folder / "pause-run").read_text().strip()
                results[f"pause_flow_run, {poll} s poll"] = driver.drive(
                    run_id, tree_of(proc.pid), proc.pid, handoffs, "pause")
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    stop_process(proc)
        folder = work / "suspend"
        folder.mkdir()
        driver.work = folder
        runner = subprocess.Popen([sys.executable, str(source), "serve", "human"], env=env, cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deployment = _deployment_id(driver.api, "human")
            created = driver.call("POST", f"/deployments/{deployment}/create_flow_run", json={
                "parameters": {"folder": str(folder), "handoffs": handoffs}}).json()
            results["suspend_flow_run, serve() 1 s poll"] = driver.drive(
                str(created["id"]), None, runner.pid, handoffs, "suspend")
        finally:
            stop_process(runner)
    finally:
        driver.api.close()
        shutil.rmtree(work, ignore_errors=True)
    return results
