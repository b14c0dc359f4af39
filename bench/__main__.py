"""`make bench`: Baton in server mode, driven over HTTP like its users, against its targets and stock Prefect.

    python -m bench [--incidents 1000] [--samples 30] [--workers 2] [--api-workers 2] [--quick]

Starts `baton stack up` in a temporary folder (PostgreSQL, Prefect on it, Baton workers, the API), creates
an office user and one user per department, and measures:
  - trigger → first department task visible in that department's inbox (p50/p95/p99);
  - handoff: completion → dependent task visible, within a stage and across a stage boundary;
  - open incidents waiting at once, with resident memory, threads and idle CPU of every process;
  - sustained ledgered handoffs per second, and inbox read latency under 50 concurrent department clients;
  - stock Prefect's trigger → running (`run_deployment` to `serve()` and to a process worker, default and 1 s
    polling) on the same Prefect server, as ratios to Baton's trigger → first task;
  - stock Prefect's human handoff (`pause_flow_run` at 10 s and 1 s polling, `suspend_flow_run` resumed through
    `serve()`; bench/stock_handoff.py): resume → the flow has the answer, CPU per handoff and memory held while
    waiting, as ratios to Baton's handoff, CPU per handoff and memory per waiting incident.
Prints a table (a missed target is named, with by how much), writes bench/results/bench.json and .svg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench import RESULTS
from bench.chart import bar_chart_svg
from bench.procinfo import tree_of, usage
from bench.profile import Recording, by_package, hot_frames
from bench.targets import (
    CPU_MS_PER_HANDOFF,
    DRAIN_SECONDS,
    HANDOFFS_PER_SECOND,
    IDLE_CPU_PERCENT,
    LATENCY_P95,
    WAITING_INCIDENTS,
    WAITING_MEMORY_MB,
)
from core.learning.simulation import sample_value, satisfy_checks
from core.platform.clock import utcnow
from process_defs.schema import FieldCheck, FormField

console = Console()
_RNG = random.Random(11)
FIXED = {"lift_warning": {"decision": "respond"},
         "flood_risk_assessment": {"hot_spots": 3, "pumps_deployed": 5, "river_level_high": False},
         "rainstorm_forecast": {"rainfall_1h": 50, "rainfall_24h": 120, "warning_colour": "yellow",
                                "valid_until": (utcnow() + timedelta(hours=24)).isoformat(timespec="seconds")}}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "mean": statistics.fmean(values) if values else float("nan")}


def sample(field: dict[str, Any]) -> Any:
    """A valid answer for a form field as the API shows it (the same simulation the demo and drills use)."""
    return sample_value(FormField.model_validate(field), _RNG)


def answers(detail: dict[str, Any]) -> dict[str, Any]:
    """Simulated answers to a task's required fields (as the API shows them), its checks between fields kept."""
    return satisfy_checks([FieldCheck.model_validate(c) for c in detail.get("checks", [])],
                          {f["key"]: sample(f) for f in detail["form"] if f["required"]})


class Users:
    def __init__(self, client: httpx.Client, passwords: dict[str, str]) -> None:
        self.headers = {}
        for user, password in passwords.items():
            response = client.post("/api/auth/token", data={"username": user, "password": password})
            response.raise_for_status()
            self.headers[user] = {"Authorization": f"Bearer {response.json()['access_token']}"}


def wait_visible(client: httpx.Client, headers: dict[str, str], incident_id: str, step: str,
                 timeout: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        # The inbox as the department sees it (it cannot name an incident it is not yet on).
        items = client.get("/api/tasks", params={"open": "true", "limit": 500}, headers=headers).json()
        if any(item["step_key"] == step and item["incident_id"] == incident_id for item in items["items"]):
            return time.perf_counter() - started
        time.sleep(0.01)
    raise TimeoutError(f"{step} not visible within {timeout} s")


def complete(client: httpx.Client, headers: dict[str, str], incident_id: str, step: str) -> bool:
    items = client.get("/api/tasks", params={"open": "true", "limit": 500}, headers=headers).json()
    for item in items["items"]:
        if item["step_key"] == step and item["incident_id"] == incident_id:
            outputs = FIXED.get(step)
            if outputs is None:
                outputs = answers(client.get(f"/api/tasks/{item['id']}", headers=headers).json())
            response = client.post(f"/api/tasks/{item['id']}/complete", json={"outputs": outputs}, headers=headers)
            return response.status_code == 200
    return False


def trigger(client: httpx.Client, users: Users, title: str) -> str:
    response = client.post("/api/incidents", json={"type": "flood", "level": "IV", "title": title},
                           headers=users.headers["office"])
    response.raise_for_status()
    return str(response.json()["id"])


def timed_incidents(client: httpx.Client, users: Users, samples: int, database_url: str,
                    prefect_api_url: str) -> dict[str, list[float]]:
    """Per sample incident: trigger → first task in the inbox, trigger →
    its flow run running in Prefect (started by a worker), and the handoffs after that. The first completion
    waits for the flow run: a handoff's latency is that of a running incident's flow (one completed within the
    second or so a worker takes to start the run waits for it; `trigger_to_flow_run` says how long that is)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    met, water, office = users.headers["meteorology"], users.headers["water_affairs"], users.headers["office"]
    out: dict[str, list[float]] = {"trigger_to_first_task": [], "trigger_to_flow_run": [],
                                   "handoff_within_stage": [], "handoff_across_stage": []}
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("timed incidents", total=samples)
        for i in range(samples):
            started = time.perf_counter()
            incident_id = trigger(client, users, f"timed {i}")
            triggered = time.perf_counter() - started
            out["trigger_to_first_task"].append(triggered + wait_visible(client, met, incident_id,
                                                                         "rainstorm_forecast"))
            while time.perf_counter() - started < 120:  # the run created, then Running in Prefect
                with engine.connect() as conn:
                    run = conn.execute(text("SELECT flow_run_id FROM incident WHERE id = :id"),
                                       {"id": incident_id}).scalar_one()
                if run is not None and httpx.get(f"{prefect_api_url}/flow_runs/{run}",
                                                 timeout=30).json()["state_type"] == "RUNNING":
                    break
                time.sleep(0.01)
            out["trigger_to_flow_run"].append(time.perf_counter() - started)
            complete(client, met, incident_id, "rainstorm_forecast")
            out["handoff_within_stage"].append(wait_visible(client, water, incident_id, "flood_risk_assessment"))
            complete(client, water, incident_id, "flood_risk_assessment")
            out["handoff_within_stage"].append(wait_visible(client, office, incident_id, "lift_warning"))
            complete(client, office, incident_id, "lift_warning")
            out["handoff_across_stage"].append(wait_visible(client, office, incident_id, "activate_command"))
            progress.advance(bar)
    return out


def processes(state: dict[str, Any]) -> dict[str, list[int]]:
    out = {name: tree_of(pid) for name, pid in state["processes"].items()}
    pid_file = Path(state["postgres"]["root"]) / "data" / "postmaster.pid"
    if pid_file.exists():
        out["postgresql"] = tree_of(int(pid_file.read_text().split()[0]))
    return out


def wait_until_idle(state: dict[str, Any], *, below: float = 0.5, every: float = 2.0, most: float = 180.0,
                    busy: dict[str, float] | None = None) -> float:
    """Until the stack uses less than `below` of one core (the work a burst left behind is done); returns the
    seconds waited. A measurement taken while the workers still catch up would charge that work to it. `busy`, if
    given, gets for each process the seconds until the end of the last interval in which it used a fifth of a core
    or more: which process the wait was for."""
    trees = processes(state)
    started = time.perf_counter()
    while time.perf_counter() - started < most:
        before = {name: usage(pids).cpu_seconds for name, pids in trees.items()}
        time.sleep(every)
        used = {name: (usage(pids).cpu_seconds - before[name]) / every for name, pids in trees.items()}
        if busy is not None:
            busy.update({name: round(time.perf_counter() - started, 1) for name, share in used.items() if share >= 0.2})
        if sum(used.values()) < below:
            break
    return round(time.perf_counter() - started, 1)


def ramp(client: httpx.Client, users: Users, state: dict[str, Any], target: int,
         database_url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"triggering {target} incidents over HTTP", total=target)
        with ThreadPoolExecutor(8) as pool:
            for _ in pool.map(lambda i: trigger(client, users, f"ramp {i}"), range(target)):
                progress.advance(bar)
        waiting = 0
        bar2 = progress.add_task("waiting for every first assignment", total=target)
        # At the ramp's natural pace (issue 19): starts are CPU-bound on two cores, about 3-5 a second, so the wait
        # grows with the target (10,000 incidents: up to 100 minutes) rather than cutting a large run short.
        deadline = time.perf_counter() + max(1200.0, 0.6 * target)
        while time.perf_counter() < deadline:
            with engine.connect() as conn:
                waiting = conn.execute(text("SELECT count(*) FROM department_task WHERE step_key = "
                                            "'rainstorm_forecast' AND status = 'assigned'")).scalar_one()
            progress.update(bar2, completed=min(waiting, target))
            if waiting >= target:
                break
            time.sleep(1)
        ramp_seconds = time.perf_counter() - started
        # Waiting means each incident's flow run started and waiting: the workers start them after the first
        # assignments (made when each was opened), and the idle figures below must not be charged with that.
        bar3 = progress.add_task("waiting for every flow run to start", total=target)
        while time.perf_counter() < deadline:
            with engine.connect() as conn:
                without = conn.execute(text("SELECT count(*) FROM incident WHERE status = 'open' "
                                            "AND flow_run_id IS NULL")).scalar_one()
            progress.update(bar3, completed=max(target - without, 0))
            if without == 0:
                break
            time.sleep(1)
        with engine.connect() as conn:
            open_incidents = conn.execute(text("SELECT count(*) FROM incident WHERE status = 'open'")).scalar_one()
    flows_seconds = time.perf_counter() - started
    time.sleep(5)
    trees = processes(state)
    before = {name: usage(pids) for name, pids in trees.items()}
    window = 20.0
    time.sleep(window)
    after = {name: usage(pids) for name, pids in trees.items()}
    per_process = {name: {"rss_mb": round(after[name].rss_mb, 1), "threads": after[name].threads,
                          "idle_cpu_percent": round(100 * (after[name].cpu_seconds - before[name].cpu_seconds)
                                                    / window, 2)} for name in trees}
    return {"open_incidents": int(open_incidents), "triggered": target, "first_tasks_assigned": int(waiting),
            "ramp_seconds": round(ramp_seconds, 1), "flow_runs_started_seconds": round(flows_seconds, 1),
            "total_rss_mb": round(sum(p["rss_mb"] for p in per_process.values()), 1), "processes": per_process}


def sustained(base_url: str, users: Users, seconds: float, clients: int, pace: float = 0.0) -> dict[str, Any]:
    """Departments work their inboxes as fast as they can: each department's desk reads its inbox and hands
    what it finds to `clients` completers (a desk reads once and completes many tasks; every completer
    re-reading every inbox would measure inbox reads, not handoffs). Counts completions answered 200. `pace`, if
    given, is the most completions a second the completers send between them (a load the stack can carry)."""
    import queue

    stop = time.perf_counter() + seconds
    next_slot = time.perf_counter()
    count = 0
    requests = 0  # every request the desks and completers made: what the stack served for the handoffs counted
    lock = threading.Lock()
    departments = [u for u in users.headers if u != "office"]
    work: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=clients * 4)
    queued: set[str] = set()

    def desk(user: str) -> None:
        nonlocal requests
        headers = users.headers[user]
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while time.perf_counter() < stop:
                items = client.get("/api/tasks", params={"open": "true", "limit": 200}, headers=headers).json()
                fresh = [item for item in items["items"] if item["id"] not in queued]
                with lock:
                    requests += 1
                    queued.update(item["id"] for item in fresh)
                for item in fresh:
                    while time.perf_counter() < stop:
                        try:
                            work.put((user, item), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                if not fresh:
                    time.sleep(0.1)

    def complete() -> None:
        nonlocal count, requests, next_slot
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while time.perf_counter() < stop:
                try:
                    user, item = work.get(timeout=0.2)
                except queue.Empty:
                    continue
                headers = users.headers[user]
                if pace:
                    with lock:
                        slot = next_slot = max(time.perf_counter(), next_slot + 1.0 / pace)
                    time.sleep(max(0.0, slot - time.perf_counter()))
                outputs = FIXED.get(item["step_key"])
                made = 1  # the completion, and the task's form read first when its answers are not fixed
                if outputs is None:
                    outputs = answers(client.get(f"/api/tasks/{item['id']}", headers=headers).json())
                    made = 2
                response = client.post(f"/api/tasks/{item['id']}/complete", json={"outputs": outputs},
                                       headers=headers)
                with lock:
                    requests += made
                    if response.status_code == 200 and time.perf_counter() < stop:
                        count += 1

    with ThreadPoolExecutor(len(departments) + clients) as pool:
        jobs = [pool.submit(desk, user) for user in departments] + [pool.submit(complete) for _ in range(clients)]
        for job in jobs:
            job.result()
    return {"handoffs": count, "seconds": seconds, "per_second": round(count / seconds, 1), "clients": clients,
            "desks": len(departments), "requests_per_handoff": round(requests / max(1, count), 2)}


def drained_after(state: dict[str, Any], window_end: datetime) -> dict[str, float]:
    """Seconds after the window's end at which, by their own records, Baton's workers had assigned the last task and
    finished the last automated step the window's handoffs set off, and Prefect's server had recorded the last task
    run (its `updated`, read back over its API); read once the stack is idle. Where the drain's time goes."""
    from sqlalchemy import create_engine, text

    engine = create_engine(state["database_url"])
    try:
        with engine.connect() as conn:
            baton = conn.execute(text(
                "SELECT max(greatest(assigned_at, CASE WHEN kind = 'action' THEN completed_at END)) "
                "FROM department_task WHERE assigned_at > :end OR (kind = 'action' AND completed_at > :end)"),
                {"end": window_end}).scalar_one()
    finally:
        engine.dispose()
    response = httpx.post(f"{state['prefect_api_url']}/task_runs/filter",
                          json={"sort": "END_TIME_DESC", "limit": 200}, timeout=30)
    response.raise_for_status()
    recorded = [datetime.fromisoformat(run["updated"]) for run in response.json() if run.get("updated")]
    prefect = max(recorded, default=None)

    def after(moment: datetime | None) -> float:
        if moment is None:
            return 0.0
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # stored in UTC either way
        return round(max(0.0, (moment - window_end).total_seconds()), 1)

    return {"baton": after(baton), "prefect": after(prefect)}


def request_floor(state: dict[str, Any], users: Users, requests: int = 1000) -> dict[str, Any]:
    """Two prices measured on the quiet stack, one after another, apart from any handoff: an authenticated request
    that does nothing else (`GET /api/auth/me`: uvicorn, FastAPI, Baton's middlewares, the token checked in
    PostgreSQL; the API's and PostgreSQL's CPU), the least any request of a handoff costs; and a transaction that
    writes one row and commits (SQLAlchemy Core and psycopg, as the workers use them, into a temporary table; this
    process's and PostgreSQL's CPU), the least the worker's wake after a handoff costs."""
    from sqlalchemy import create_engine, text

    wait_until_idle(state)
    trees = {name: pids for name, pids in processes(state).items() if name in ("api", "postgresql")}
    before = {name: usage(pids).cpu_seconds for name, pids in trees.items()}
    with httpx.Client(base_url=state["api_url"], timeout=30) as client:
        for _ in range(requests):
            client.get("/api/auth/me", headers=users.headers["office"]).raise_for_status()
    after = {name: usage(pids).cpu_seconds for name, pids in trees.items()}
    spent = {name: round(1000 * (after[name] - before[name]) / requests, 2) for name in trees}
    engine = create_engine(state["database_url"])
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE floor_probe (n integer, at timestamptz)"))
            conn.commit()
            database_before, writer_before = usage(trees["postgresql"]).cpu_seconds, driver_cpu_seconds()
            insert = text("INSERT INTO floor_probe VALUES (:n, now())")
            for n in range(requests):
                conn.execute(insert, {"n": n})
                conn.commit()
            writer = driver_cpu_seconds() - writer_before
            database = usage(trees["postgresql"]).cpu_seconds - database_before
    finally:
        engine.dispose()
    return {"requests": requests, "cpu_ms_per_request": spent,
            "cpu_ms_per_transaction": {"writer": round(1000 * writer / requests, 2),
                                       "postgresql": round(1000 * database / requests, 2)}}


def driver_cpu_seconds() -> float:
    """CPU this process (the benchmark's own HTTP clients, every thread) has used so far."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def task_runs_recorded(prefect_api_url: str) -> int:
    """How many task runs the Prefect server has recorded."""
    response = httpx.post(f"{prefect_api_url}/task_runs/count", json={}, timeout=30)
    response.raise_for_status()
    return int(response.json())


# What Prefect's server logs when it throws an event away: its in-memory event bus when a subscriber's queue is full
# (`prefect.server.utilities.messaging.memory`: 10,000 messages a subscriber), and the event persister when its own
# queue is full or a write failed too often. Each is an automated step or a state Prefect's UI may not show.
PREFECT_DROP_MARKERS = ("Subscription queue is full, dropping message", "Event queue full (", "Max flush retries (")


def prefect_events_dropped(log: Path) -> int:
    """Lines in the Prefect server's log that say it dropped events."""
    if not log.exists():
        return 0
    with log.open(encoding="utf-8", errors="replace") as lines:
        return sum(1 for line in lines if any(marker in line for marker in PREFECT_DROP_MARKERS))


def sustained_with_costs(state: dict[str, Any], users: Users, args: argparse.Namespace) -> dict[str, Any]:
    """The sustained handoff run, then the wait until the workers have done what it set off; what each process
    spent on CPU over both, per handoff accepted; with `--profile`, py-spy's record of the same span."""
    trees = processes(state)
    before = {name: usage(pids).cpu_seconds for name, pids in trees.items()}
    runs_before = task_runs_recorded(state["prefect_api_url"])
    recording: Recording | None = None
    if args.profile:
        recording = Recording(RESULTS / "profile", {name: pids[0] for name, pids in trees.items()
                                                    if name != "postgresql"})
        shutil.rmtree(recording.folder, ignore_errors=True)
    with recording or nullcontext():
        driver_before = driver_cpu_seconds()
        result = sustained(state["api_url"], users, args.sustain_seconds, clients=16, pace=args.pace)
        window_end = datetime.now(UTC)
        driver = driver_cpu_seconds() - driver_before
        with console.status("waiting for the workers to finish what the handoff run left them"):
            busy: dict[str, float] = {}
            result["idle_again_after_s"] = wait_until_idle(state, busy=busy)
            result["busy_after_s"] = busy
    after = {name: usage(pids).cpu_seconds for name, pids in trees.items()}
    handoffs = max(1, result["handoffs"])
    result["cpu_ms_per_handoff"] = {name: round(1000 * (after[name] - before[name]) / handoffs, 1)
                                    for name in trees}
    # The desks and completers are threads of this process, on the same two cores as the stack: not in the stack's
    # total, but what they take is not the stack's to use (the machine's limit, docs/scaling.md).
    result["driver_cpu_ms_per_handoff"] = round(1000 * driver / handoffs, 1)
    # The automated steps the run set off, each a Prefect task run: what Prefect's share per handoff is made of
    # (bench.prefect_tasks prices one). The server records them a second or so after their events.
    time.sleep(2.0)
    result["task_runs_per_handoff"] = round((task_runs_recorded(state["prefect_api_url"]) - runs_before) / handoffs, 2)
    result["drained_after_s"] = drained_after(state, window_end)
    if recording is not None:
        result["profile"] = {"folder": str(recording.folder), "errors": recording.errors, "processes": {}}
        for name in recording.running:
            raw = recording.folder / f"{name}.txt"
            if not raw.exists():
                continue
            samples, hot = hot_frames(raw)
            result["profile"]["processes"][name] = {
                "samples": samples, "packages": {k: round(v, 3) for k, v in list(by_package(raw).items())[:10]},
                "hot": [{"function": h.function, "self": round(h.self_share, 3),
                         "inclusive": round(h.inclusive_share, 3)} for h in hot]}
    return result


def inbox_latency(base_url: str, users: Users, clients: int, seconds: float, every: float = 1.0) -> list[float]:
    """`clients` department duty desks each refreshing their inbox every `every` seconds (asyncio, so the
    measuring side is not a thread pool fighting over the GIL). A desk that refreshes every second is a busy
    one; a closed loop with no pause would measure the machine's saturation, not a desk's wait."""
    departments = [u for u in users.headers if u != "office"]

    async def main() -> list[float]:
        stop = time.perf_counter() + seconds
        samples: list[float] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

            async def read(index: int) -> None:
                headers = users.headers[departments[index % len(departments)]]
                await asyncio.sleep(every * index / clients)  # desks do not all refresh at the same instant
                while time.perf_counter() < stop:
                    started = time.perf_counter()
                    response = await client.get("/api/tasks", params={"open": "true", "limit": 50}, headers=headers)
                    response.raise_for_status()
                    elapsed = time.perf_counter() - started
                    samples.append(elapsed)
                    await asyncio.sleep(max(0.0, every - elapsed))

            await asyncio.gather(*(read(i) for i in range(clients)))
        return samples

    return asyncio.run(main())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from flows.stack import free_port, stack_down, stack_up

    data_dir = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    data_dir.chmod(0o755)
    os.environ["BATON_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    # The workers together hold every incident the run opens (the timed samples besides the ramp's): at the default
    # capacity two workers hold 10,000, and a 10,000-incident run left its last samples' worth unclaimed.
    room = -(-(args.incidents + 4 * args.samples + 100) // max(1, args.workers))
    os.environ.setdefault("BATON_WORKER_CAPACITY", str(max(5000, room)))
    from core.platform.settings import get_settings

    get_settings.cache_clear()
    results: dict[str, Any] = {"config": vars(args)}
    with console.status("baton stack up (PostgreSQL, Prefect, workers, API)"):
        state: dict[str, Any] = stack_up(data_dir, workers=args.workers, api_workers=args.api_workers,
                                         api_port=free_port(), prefect_port=free_port(), pg_port=free_port())
    get_settings.cache_clear()
    try:
        from core.plans.store import current_plan_text, parse_plan_text
        from core.platform.db import session_scope
        from core.users.service import add_user

        plan = parse_plan_text(current_plan_text("flood"), "flood.yaml")
        departments = sorted({s.department for _, s in plan.steps() if s.kind == "human"} - {"emergency_office"})
        passwords = {"office": "bench-office-pw"}
        with session_scope() as session:
            add_user(session, username="office", role="office", password=passwords["office"])
            for dept in departments:
                passwords[dept] = f"bench-{dept}-pw"
                add_user(session, username=dept, role="department", department=dept, password=passwords[dept])
        with httpx.Client(base_url=state["api_url"], timeout=30) as client:
            users = Users(client, passwords)
            timed = timed_incidents(client, users, args.samples, state["database_url"], state["prefect_api_url"])
            results.update({k: summary(v) for k, v in timed.items()})
            results["waiting"] = ramp(client, users, state, args.incidents, state["database_url"])
            # Fresh work for the handoff run: its first tasks are already waiting in the inboxes.
            results["sustained"] = sustained_with_costs(state, users, args)
            results["inbox_read_50_clients"] = summary(inbox_latency(state["api_url"], users, 50, 15))
            results["request_floor"] = request_floor(state, users)
        task_run = RESULTS / "prefect_tasks.json"  # written by `python -m bench.prefect_tasks`, run first by make
        if task_run.exists():
            results["prefect_task_run"] = json.loads(task_run.read_text())
        if not args.quick:
            from bench.stock_prefect import measure

            with console.status("stock Prefect: run_deployment to serve() and a process worker"):
                try:
                    stock = measure(state["prefect_api_url"], samples=args.stock_samples)
                    results["stock_prefect"] = {k: summary(v) for k, v in stock.items()}
                except (OSError, TimeoutError, subprocess.SubprocessError) as exc:
                    # Baton's own figures stand without the comparison; say why it is missing.
                    results["stock_prefect_error"] = f"{type(exc).__name__}: {exc}"
                    console.print(f"[red]stock Prefect comparison failed:[/red] {exc}")
            from bench.stock_handoff import measure as measure_handoffs

            with console.status("stock Prefect: human handoffs through pause_flow_run and suspend_flow_run"):
                try:
                    costs = measure_handoffs(state["prefect_api_url"], processes(state)["prefect-server"])
                    results["stock_handoff"] = {k: v.as_json() for k, v in costs.items()}
                except (OSError, TimeoutError, RuntimeError, subprocess.SubprocessError, httpx.HTTPError) as exc:
                    results["stock_handoff_error"] = f"{type(exc).__name__}: {exc}"
                    console.print(f"[red]stock Prefect handoff comparison failed:[/red] {exc}")
    finally:
        stack_down(data_dir)
        # The processes' logs of the last run stay beside its results, for when a figure needs explaining.
        shutil.rmtree(RESULTS / "logs", ignore_errors=True)
        if (data_dir / "logs").is_dir():
            shutil.copytree(data_dir / "logs", RESULTS / "logs")
        results["prefect_events_dropped"] = prefect_events_dropped(data_dir / "logs" / "prefect-server.log")
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> list[str]:  # noqa: C901  (one line per figure of the printed report)
    misses: list[str] = []
    table = Table(title="Baton benchmark (server mode, over HTTP)")
    for column in ("measure", "n", "p50", "p95", "p99", "target", "met"):
        table.add_column(column, justify="left" if column in ("measure", "target") else "right")

    def check(name: str, value: float, limit: float, unit: str, higher_is_better: bool = False) -> str:
        ok = value >= limit if higher_is_better else value <= limit
        if not ok:
            misses.append(f"{name}: {value:.3f} {unit} against a target of {limit:g} {unit} "
                          f"({'short' if higher_is_better else 'over'} by {abs(value - limit):.3f} {unit})")
        return "[green]yes[/green]" if ok else "[red]NO[/red]"

    for key, limit in LATENCY_P95.items():
        if key not in results:
            continue
        row = results[key]
        unit = "s"
        table.add_row(key, str(row["n"]), f"{row['p50']:.3f}", f"{row['p95']:.3f}", f"{row['p99']:.3f}",
                      f"p95 ≤ {limit:g} s", check(f"{key} p95", row["p95"], limit, unit))
    if "trigger_to_flow_run" in results:  # no target: part of trigger → first task
        row = results["trigger_to_flow_run"]
        table.add_row("trigger_to_flow_run", str(row["n"]), f"{row['p50']:.3f}", f"{row['p95']:.3f}",
                      f"{row['p99']:.3f}", "", "")
    if "sustained" in results:
        rate = results["sustained"]["per_second"]
        table.add_row("ledgered handoffs / s", str(results["sustained"]["handoffs"]), f"{rate:.1f}", "", "",
                      f"≥ {HANDOFFS_PER_SECOND:g}",
                      check("handoffs per second", rate, HANDOFFS_PER_SECOND, "/s", higher_is_better=True))
        # What the window's handoffs set off is done when Baton has made its last assignment or automated step and
        # Prefect has recorded its last task run (their own records); a run that has not read them is judged by the
        # stack's CPU, which also waits for Prefect's bookkeeping (its event feed) and its periodic services.
        records = results["sustained"].get("drained_after_s", {})
        if records or "idle_again_after_s" in results["sustained"]:
            drain = float(max(records.values())) if records else float(results["sustained"]["idle_again_after_s"])
            table.add_row("backlog drained after the window, s", "", f"{drain:.1f}", "", "", f"≤ {DRAIN_SECONDS:g} s",
                          check("backlog drained", drain, DRAIN_SECONDS, "s"))
            for name, seconds in records.items():
                what = {"baton": "… Baton's last assignment or automated step",
                        "prefect": "… Prefect's last task run recorded"}.get(name, name)
                table.add_row(what, "", f"{seconds:.1f}", "", "", "", "")
            if records and "idle_again_after_s" in results["sustained"]:
                table.add_row("the stack idle again after the window, s", "",
                              f"{results['sustained']['idle_again_after_s']:.1f}", "", "", "", "")
    console.print(table)
    if results.get("sustained", {}).get("busy_after_s"):
        console.print("After the window, each process busy (a fifth of a core or more) until: " + ", ".join(
            f"{name} {seconds:.0f} s" for name, seconds in results["sustained"]["busy_after_s"].items()))
    if "cpu_ms_per_handoff" in results.get("sustained", {}):
        report_costs(results["sustained"], check)
        report_floor(results)
    if "waiting" in results:
        waiting = results["waiting"]
        procs = Table(title=f"{waiting['open_incidents']} incidents open and waiting "
                            f"(triggered and assigned in {waiting['ramp_seconds']} s, their flow runs started in "
                            f"{waiting.get('flow_runs_started_seconds', '?')} s)")
        for column in ("process", "memory MB (PSS)", "threads", "idle CPU %"):
            procs.add_column(column, justify="left" if column == "process" else "right")
        for name, row in waiting["processes"].items():
            procs.add_row(name, f"{row['rss_mb']:.0f}", str(row["threads"]), f"{row['idle_cpu_percent']:.1f}")
        idle = sum(row["idle_cpu_percent"] for row in waiting["processes"].values())
        procs.add_row("total", f"{waiting['total_rss_mb']:.0f}", "", f"{idle:.1f}")
        console.print(procs)
        memory = check("memory, all processes", waiting["total_rss_mb"], WAITING_MEMORY_MB, "MB")
        console.print(f"memory ≤ {WAITING_MEMORY_MB:,.0f} MB: {memory}; whole stack idle ≤ {IDLE_CPU_PERCENT:g} % "
                      f"of a core: {check('idle CPU', idle, IDLE_CPU_PERCENT, '%')}")
        if waiting["open_incidents"] < WAITING_INCIDENTS:
            # The memory and idle targets are for WAITING_INCIDENTS at once: a smaller run has not shown them.
            misses.append(f"waiting incidents: {waiting['open_incidents']:,} measured, the target is "
                          f"{WAITING_INCIDENTS:,} (run with --incidents {WAITING_INCIDENTS})")
        if waiting["first_tasks_assigned"] < waiting["triggered"]:
            misses.append(f"only {waiting['first_tasks_assigned']} of {waiting['triggered']} triggered incidents "
                          "got their first task")
    if "prefect_events_dropped" in results:
        # Prefect shows every incident's flow run and every automated step only if its server keeps every event.
        dropped = int(results["prefect_events_dropped"])
        verdict = "[red]NO[/red]" if dropped else "[green]none[/green]"
        console.print(f"Prefect server: events dropped {dropped} (target 0: {verdict})")
        if dropped:
            misses.append(f"Prefect events dropped: {dropped} log lines of the Prefect server say it threw events "
                          "away (its in-memory event bus was full): some automated steps may be missing in its UI")
    if "stock_prefect" in results and "trigger_to_first_task" in results:
        ours = results["trigger_to_first_task"]["p50"]
        stock = Table(title="Trigger → running: stock Prefect against Baton's trigger → first task (p50)")
        for column in ("stock Prefect", "n", "p50 s", "p95 s", "Baton p50 s", "ratio"):
            stock.add_column(column, justify="left" if column == "stock Prefect" else "right")
        for name, row in results["stock_prefect"].items():
            stock.add_row(name, str(row["n"]), f"{row['p50']:.2f}", f"{row['p95']:.2f}", f"{ours:.3f}",
                          f"{row['p50'] / ours:.0f}×")
        console.print(stock)
    if "stock_handoff" in results:
        report_stock_handoffs(results)
    if misses:
        console.print("[red]Targets missed:[/red]")
        for miss in misses:
            console.print(f"  - {miss}")
    else:
        console.print("[green]Every target met.[/green]")
    return misses


def report_costs(sustained_run: dict[str, Any], check: Callable[[str, float, float, str], str]) -> None:
    """CPU per handoff per process (over the run and the drain after it), and the profile's hottest code."""
    costs = Table(title=f"CPU per accepted handoff ({sustained_run['handoffs']} handoffs, the run and the "
                        f"{sustained_run.get('idle_again_after_s', 0)} s drain after it)")
    for column in ("process", "CPU ms / handoff"):
        costs.add_column(column, justify="left" if column == "process" else "right")
    spent = sustained_run["cpu_ms_per_handoff"]
    for name, ms in spent.items():
        costs.add_row(name, f"{ms:.1f}")
    total = sum(spent.values())
    costs.add_row("total", f"{total:.1f}  (target ≤ {CPU_MS_PER_HANDOFF:g}: "
                           f"{check('CPU per handoff', total, CPU_MS_PER_HANDOFF, 'ms')})")
    console.print(costs)
    if "driver_cpu_ms_per_handoff" in sustained_run:
        console.print(f"The benchmark's own desks and completers (HTTP clients on the same cores, not in the total): "
                      f"{sustained_run['driver_cpu_ms_per_handoff']:.1f} ms per handoff")
    if "task_runs_per_handoff" in sustained_run:
        console.print(f"Prefect task runs (automated steps, and deliveries being retried) per handoff: "
                      f"{sustained_run['task_runs_per_handoff']:.2f}")
    for name, found in sustained_run.get("profile", {}).get("processes", {}).items():
        hot = Table(title=f"py-spy, {name}: {found['samples']} on-CPU samples; by package (self): "
                          + ", ".join(f"{k} {v:.0%}" for k, v in list(found["packages"].items())[:6]))
        for column in ("function (self time, top 12)", "self", "inclusive"):
            hot.add_column(column, justify="left" if column.startswith("function") else "right")
        for row in found["hot"]:
            hot.add_row(row["function"][:110], f"{row['self']:.1%}", f"{row['inclusive']:.1%}")
        console.print(hot)
    for name, error in sustained_run.get("profile", {}).get("errors", {}).items():
        console.print(f"[red]py-spy could not record {name}:[/red] {error}")


def floor_of(results: dict[str, Any]) -> dict[str, float] | None:
    """The least a handoff of this run can cost the stack, from parts measured apart from Baton's handoff code: its
    requests, each at the price of an authenticated request that does nothing else (`request_floor`), and its
    Prefect task runs, each at the price `bench.prefect_tasks` measured on this machine (client, server and
    PostgreSQL). None when a part was not measured. Baton's own work (the handoff's transaction, the worker's wake
    and reconciliation) comes on top."""
    run = results.get("sustained", {})
    request = results.get("request_floor")
    task_run = results.get("prefect_task_run")
    if not request or not task_run or "requests_per_handoff" not in run or "task_runs_per_handoff" not in run:
        return None
    per_request = sum(request["cpu_ms_per_request"].values())
    transaction = sum(request.get("cpu_ms_per_transaction", {}).values())  # the worker's one wake
    requests = float(run["requests_per_handoff"]) * per_request
    prefect = float(run["task_runs_per_handoff"]) * float(task_run["total_ms"])
    return {"per_request_ms": round(per_request, 2), "requests_ms": round(requests, 2),
            "transaction_ms": round(transaction, 2), "task_run_ms": float(task_run["total_ms"]),
            "prefect_ms": round(prefect, 2), "total_ms": round(requests + transaction + prefect, 2),
            "one_request_ms": round(per_request + transaction + prefect, 2)}


def report_floor(results: dict[str, Any]) -> None:
    floor = floor_of(results)
    if floor is None:
        return
    run = results["sustained"]
    console.print(
        f"The least a handoff costs before Baton's own work (parts measured apart): "
        f"{run['requests_per_handoff']:.2f} requests × {floor['per_request_ms']:.2f} ms (an authenticated request that "
        f"does nothing else: API and PostgreSQL) + one wake's transaction at {floor['transaction_ms']:.2f} ms (a row "
        f"written and committed) + {run['task_runs_per_handoff']:.2f} Prefect task runs × "
        f"{floor['task_run_ms']:.2f} ms (bench.prefect_tasks, {results['prefect_task_run'].get('measured', '?')}) = "
        f"{floor['total_ms']:.1f} ms; with the completion its only request, {floor['one_request_ms']:.1f} ms. "
        f"Two cores at {floor['total_ms']:.1f} ms carry at most {2000 / floor['total_ms']:.0f} handoffs/s "
        f"(target {CPU_MS_PER_HANDOFF:g} ms, {HANDOFFS_PER_SECOND:g} /s).")


def report_stock_handoffs(results: dict[str, Any]) -> None:
    """Stock Prefect's human handoff (pause or suspend, then resume with the answer) against Baton's: the time
    until the flow has the answer, the CPU it costs, and what a run waiting for a person holds, as ratios."""
    ours = results.get("handoff_within_stage", {}).get("p50")
    ours_cpu = sum(results.get("sustained", {}).get("cpu_ms_per_handoff", {}).values()) or None
    waiting = results.get("waiting", {})
    worker_mb = sum(row["rss_mb"] for name, row in waiting.get("processes", {}).items() if "worker" in name)
    ours_mb = worker_mb / waiting["open_incidents"] if waiting.get("open_incidents") else None
    table = Table(title="A human handoff: stock Prefect against Baton (completion → dependent task visible, p50; "
                        "CPU of all processes per handoff; memory held by one waiting run)")
    for column in ("stock Prefect", "n", "p50 s", "× Baton", "CPU ms", "× Baton", "waiting MB", "× Baton"):
        table.add_column(column, justify="left" if column == "stock Prefect" else "right")

    def times(value: float, base: float | None) -> str:
        return f"{value / base:.1f}×" if base else "–"

    for name, row in results["stock_handoff"].items():
        p50 = statistics.median(row["latencies"])
        cpu = sum(row["cpu_ms_per_handoff"].values())
        table.add_row(name, str(len(row["latencies"])), f"{p50:.2f}", times(p50, ours), f"{cpu:.0f}",
                      times(cpu, ours_cpu), f"{row['waiting_mb']:.1f}",
                      times(row["waiting_mb"], ours_mb) if row["waiting_mb"] else "none held")
    table.add_row("Baton", "", f"{ours:.3f}" if ours else "–", "1×", f"{ours_cpu:.0f}" if ours_cpu else "–", "1×",
                  f"{ours_mb:.2f}" if ours_mb else "–", "1×", end_section=True)
    console.print(table)


def main(argv: list[str] | None = None, runner: Callable[[argparse.Namespace], dict[str, Any]] = run) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--sustain-seconds", type=float, default=30.0)
    parser.add_argument("--stock-samples", type=int, default=3)
    parser.add_argument("--pace", type=float, default=0.0,
                        help="offer at most this many handoffs a second in the sustained run (default: as fast as "
                             "the desks and completers can)")
    parser.add_argument("--quick", action="store_true", help="skip the stock Prefect comparison")
    parser.add_argument("--profile", action="store_true",
                        help="record the processes with py-spy during the sustained handoff run (slows them: "
                             "read that run's rate as perturbed); stacks in bench/results/profile/")
    args = parser.parse_args(argv)
    results = runner(args)
    misses = report(results)
    results["missed"] = misses
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / "bench.svg").write_text(bar_chart_svg(results))
    console.print(f"written {RESULTS / 'bench.json'} and {RESULTS / 'bench.svg'}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
