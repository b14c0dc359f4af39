"""What one task run costs a Prefect server (and its PostgreSQL): Baton's automated steps are Prefect task runs,
and the issue keeps every one of them shown in Prefect (issue 19).

    python -m bench.prefect_tasks [--runs 300]

A PostgreSQL cluster of its own and, one after the other, two Prefect servers on it: stock (Prefect's defaults)
and as Baton starts its servers (flows.stack.PREFECT_SERVER_TUNING). Against each, a flow runs `--runs` trivial
async tasks in a row, in a process of its own, as a Baton worker runs an automated step; the servers' and the
database's CPU is read from /proc until the server has digested every event (it records task runs from the
events the client sends, after the flow has ended). Printed: CPU per task run of the flow's process, the
Prefect server and PostgreSQL, and how many task runs the server recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import RESULTS
from bench.procinfo import cpu_seconds, tree_of

TUNED = "as Baton starts it"

FLOW_SOURCE = '''
import asyncio, json, sys, time
from prefect import flow, task


@task(name="step")
async def step(i: int) -> int:
    return i


@flow(name="bench-task-runs")
async def many(n: int) -> None:
    for i in range(n):
        await step(i)


asyncio.run(many(3))  # the first runs pay for imports and the flow's registration, outside the count
print("ready", flush=True)
sys.stdin.readline()
started = time.process_time()
asyncio.run(many(int(sys.argv[1])))
print(json.dumps({"cpu_s": time.process_time() - started}), flush=True)
'''
@dataclass
class TaskRunCost:
    """Per task run, ms of CPU: the flow's process, the Prefect server, PostgreSQL; and what the server recorded."""

    label: str
    runs: int
    recorded: int
    flow_ms: float
    server_ms: float
    postgres_ms: float

    @property
    def total_ms(self) -> float:
        return round(self.flow_ms + self.server_ms + self.postgres_ms, 2)


def _until_idle(pids: list[int], every: float = 2.0, most: float = 120.0) -> float:
    """CPU seconds of `pids` once they stop using any (the server digests events after the flow has ended)."""
    last = cpu_seconds(pids)
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        time.sleep(every)
        now = cpu_seconds(pids)
        if now - last < 0.02 * every:
            return now
        last = now
    return last


def _recorded(api_url: str) -> int:
    response = httpx.post(f"{api_url}/task_runs/count", json={}, timeout=30)
    response.raise_for_status()
    return int(response.json())


def _database_cpu(postmaster: int | None) -> float:
    # The backends come and go with the server's connections: the tree is read anew each time.
    return cpu_seconds(tree_of(postmaster)) if postmaster else 0.0


def measure(*, label: str, api_url: str, server_pid: int, postmaster: int | None, runs: int) -> TaskRunCost:
    """`runs` task runs against the server at `api_url` (process `server_pid`; its PostgreSQL's postmaster, when it
    has one)."""
    work = Path(tempfile.mkdtemp(prefix="baton-bench-tasks-"))
    source = work / "bench_task_runs.py"
    source.write_text(FLOW_SOURCE)
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_LOGGING_TO_API_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, str(source), str(runs)], env=env, cwd=work, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the benchmark's flow did not start (exit code {proc.wait(timeout=30)})")
        server = tree_of(server_pid)
        server_before = _until_idle(server)
        database_before = _database_cpu(postmaster)
        recorded_before = _recorded(api_url)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        flow_cpu = float(json.loads(proc.stdout.readline())["cpu_s"])
        server_after = _until_idle(server)
        database_after = _database_cpu(postmaster)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return TaskRunCost(label=label, runs=runs, recorded=_recorded(api_url) - recorded_before,
                       flow_ms=round(1000 * flow_cpu / runs, 2),
                       server_ms=round(1000 * (server_after - server_before) / runs, 2),
                       postgres_ms=round(1000 * (database_after - database_before) / runs, 2))


def compare(*, runs: int) -> list[TaskRunCost]:
    """Stock Prefect's server and Baton's, each on a database of its own in one PostgreSQL cluster."""
    from flows.stack import PostgresCluster, Stack, free_port

    home = Path(tempfile.mkdtemp(prefix="baton-bench-tasks-"))
    (home / "logs").mkdir()
    cluster = PostgresCluster().start()
    costs = []
    try:
        postmaster = cluster.pid()
        for tuned in (False, True):
            name = "prefect_tuned" if tuned else "prefect_stock"
            cluster.create_database(name, extensions=("pg_trgm",))
            port = free_port()
            stack = Stack(home=home, api_url=f"http://127.0.0.1:{port}/api")
            try:
                stack.start_prefect(port, database_url=cluster.url(name, driver="asyncpg"), tuned=tuned)
                costs.append(measure(label=TUNED if tuned else "stock", api_url=stack.api_url,
                                     server_pid=stack.processes["prefect-server"].pid, postmaster=postmaster,
                                     runs=runs))
            finally:
                stack.stop()
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="task runs timed against each server")
    args = parser.parse_args(argv)
    costs = compare(runs=args.runs)
    for cost in costs:
        print(f"Prefect server {cost.label}: {cost.recorded} of {cost.runs} task runs recorded; CPU per task run "
              f"{cost.total_ms} ms (flow {cost.flow_ms}, server {cost.server_ms}, PostgreSQL {cost.postgres_ms})")
    print(json.dumps([asdict(cost) for cost in costs]))
    # The price of one task run as Baton runs its server, for `python -m bench` to count Prefect's part of a handoff.
    tuned = [cost for cost in costs if cost.label == TUNED]
    if tuned:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "prefect_tasks.json").write_text(json.dumps(
            {**asdict(tuned[0]), "total_ms": tuned[0].total_ms,
             "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
