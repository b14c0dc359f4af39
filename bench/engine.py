"""Engine benchmark: trigger → first task, handoff latency, and many incidents waiting at once.

    python -m bench.engine [--incidents 1000] [--samples 40] [--workers 1] [--sqlite]

Starts its own PostgreSQL cluster (Baton's database and Prefect's), a Prefect server and Baton workers,
drives incidents the way the office and departments do (services in this process, the same transactions
the API runs), and prints p50/p95/p99 and resource figures; JSON goes to bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench import RESULTS

console = Console()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=1000, help="open incidents to hold waiting at once")
    parser.add_argument("--samples", type=int, default=40, help="incidents timed one by one")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true", help="SQLite for Baton and Prefect instead of PostgreSQL")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    os.environ["BATON_DATA_DIR"] = str(home)
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    cluster = None
    from flows.stack import PostgresCluster, Stack, free_port

    prefect_db = None
    if not args.sqlite:
        cluster = PostgresCluster().start()
        os.environ["BATON_DATABASE_URL"] = cluster.create_database("baton")
        cluster.create_database("prefect")
        prefect_db = f"postgresql+asyncpg://postgres@127.0.0.1:{cluster.port}/prefect"
    from core.platform.migrate import upgrade
    from core.platform.settings import get_settings

    get_settings.cache_clear()
    upgrade()
    port = free_port()
    stack = Stack(home=home, api_url=f"http://127.0.0.1:{port}/api")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": vars(args)}
    try:
        with console.status("starting Prefect server and workers"):
            stack.start_prefect(port, database_url=prefect_db)
            os.environ["PREFECT_API_URL"] = stack.api_url
            for i in range(args.workers):
                stack.start_worker(f"bench-worker-{i + 1}")
        results.update(run(args, stack, cluster))
    finally:
        stack.stop()
        if cluster is not None:
            cluster.stop()
    report(results)


def run(args: argparse.Namespace, stack: Any, cluster: Any) -> dict[str, Any]:
    from sqlmodel import col, func, select

    from bench.procinfo import tree_of, usage
    from core.incidents.handoffs import complete
    from core.incidents.models import DepartmentTask, TaskStatus
    from core.incidents.service import open_incident
    from core.platform.clock import utcnow
    from core.platform.db import session_scope

    def open_one(i: int) -> str:
        with session_scope() as session:
            return open_incident(session, type_key="flood", level="IV", title=f"bench {i}",
                                 actor="bench:office").incident.id

    def assigned(incident_id: str, step: str) -> DepartmentTask | None:
        with session_scope() as session:
            return session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                             DepartmentTask.step_key == step,
                                                             DepartmentTask.status == TaskStatus.assigned)).first()

    def wait_assigned(incident_id: str, step: str, timeout: float = 60) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if assigned(incident_id, step) is not None:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise TimeoutError(f"{step} was not assigned within {timeout} s")

    def complete_and_time(incident_id: str, step: str, outputs: dict[str, Any], then: str) -> float:
        task = assigned(incident_id, step)
        assert task is not None
        with session_scope() as session:
            complete(session, task_id=task.id, actor="bench:dept", outputs=outputs)
        return wait_assigned(incident_id, then)

    forecast = {"rainfall_1h": 50, "rainfall_24h": 120, "warning_colour": "yellow",
                "valid_until": (utcnow() + timedelta(hours=24)).isoformat(timespec="seconds")}
    assessment = {"hot_spots": 2, "pumps_deployed": 4, "river_level_high": False}
    trigger, within, across = [], [], []
    # Warm up: the first run of a flow type pays for registering the flow.
    warm = open_one(-1)
    wait_assigned(warm, "rainstorm_forecast", 120)
    with Progress(console=console) as progress:
        bar = progress.add_task("timed incidents", total=args.samples)
        for i in range(args.samples):
            incident_id = open_one(i)
            trigger.append(wait_assigned(incident_id, "rainstorm_forecast"))
            within.append(complete_and_time(incident_id, "rainstorm_forecast", forecast, "flood_risk_assessment"))
            within.append(complete_and_time(incident_id, "flood_risk_assessment", assessment, "lift_warning"))
            across.append(complete_and_time(incident_id, "lift_warning", {"decision": "respond"}, "activate_command"))
            progress.advance(bar)

    with session_scope() as session:
        already = session.exec(select(func.count()).select_from(DepartmentTask)
                               .where(DepartmentTask.status == TaskStatus.assigned)).one()
    target = args.incidents
    opened_ids: list[str] = []
    ramp_started = time.perf_counter()
    with Progress(console=console) as progress:
        bar = progress.add_task(f"opening {target} incidents", total=target)
        for i in range(target):
            opened_ids.append(open_one(10_000 + i))
            progress.advance(bar)
            if i % 20 == 19:
                time.sleep(0.5)  # about 40 triggers a second, a heavy emergency
        bar2 = progress.add_task("waiting for every first assignment", total=target)
        deadline = time.perf_counter() + 900
        waiting = 0
        while time.perf_counter() < deadline:
            with session_scope() as session:
                waiting = session.exec(select(func.count()).select_from(DepartmentTask).where(
                    col(DepartmentTask.incident_id).in_(opened_ids),
                    DepartmentTask.status == TaskStatus.assigned)).one()
            progress.update(bar2, completed=waiting)
            if waiting >= target:
                break
            time.sleep(1)
    ramp_seconds = time.perf_counter() - ramp_started
    time.sleep(5)
    pids = {name: tree_of(proc.pid) for name, proc in stack.processes.items()}
    if cluster is not None:
        pid_file = cluster.data / "postmaster.pid"
        pids["postgresql"] = tree_of(int(pid_file.read_text().split()[0]))
    before = {name: usage(p) for name, p in pids.items()}
    idle_window = 20.0
    time.sleep(idle_window)
    after = {name: usage(p) for name, p in pids.items()}
    # Wake-up latency with everything waiting: one more handoff on a loaded worker.
    loaded = []
    for incident_id in opened_ids[:20]:
        loaded.append(complete_and_time(incident_id, "rainstorm_forecast", forecast, "flood_risk_assessment"))
    processes = {name: {"rss_mb": round(after[name].rss_mb, 1), "threads": after[name].threads,
                        "idle_cpu_percent": round(100 * (after[name].cpu_seconds - before[name].cpu_seconds)
                                                  / idle_window, 2)} for name in pids}
    return {
        "trigger_to_first_task_s": summary(trigger),
        "handoff_within_stage_s": summary(within),
        "handoff_across_stage_s": summary(across),
        "handoff_with_all_waiting_s": summary(loaded),
        "waiting": {"open_incidents": target + args.samples + 1 + int(already), "ramp_seconds": round(ramp_seconds, 1),
                    "assigned_first_tasks": int(waiting),
                    "total_rss_mb": round(sum(p["rss_mb"] for p in processes.values()), 1),
                    "processes": processes},
    }


def report(results: dict[str, Any]) -> None:
    table = Table(title="Baton engine benchmark", show_lines=False)
    table.add_column("measure")
    table.add_column("n", justify="right")
    table.add_column("p50 s", justify="right")
    table.add_column("p95 s", justify="right")
    table.add_column("p99 s", justify="right")
    table.add_column("target")
    targets = {"trigger_to_first_task_s": "p95 < 1 s", "handoff_within_stage_s": "p95 < 1 s",
               "handoff_across_stage_s": "p95 < 1 s", "handoff_with_all_waiting_s": "p95 < 1 s"}
    for key, target in targets.items():
        if key in results:
            row = results[key]
            table.add_row(key, str(row["n"]), f"{row['p50']:.3f}", f"{row['p95']:.3f}", f"{row['p99']:.3f}", target)
    console.print(table)
    if "waiting" in results:
        waiting = results["waiting"]
        procs = Table(title=f"{waiting['open_incidents']} incidents open and waiting "
                            f"(ramp {waiting['ramp_seconds']} s)")
        procs.add_column("process")
        procs.add_column("RSS MB", justify="right")
        procs.add_column("threads", justify="right")
        procs.add_column("idle CPU %", justify="right")
        for name, row in waiting["processes"].items():
            procs.add_row(name, f"{row['rss_mb']:.0f}", str(row["threads"]), f"{row['idle_cpu_percent']:.1f}")
        procs.add_row("total", f"{waiting['total_rss_mb']:.0f}", "", "", end_section=True)
        console.print(procs)
        console.print("target: every process together under 4,000 MB resident")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(results, indent=2, default=str))
    console.print(f"written {RESULTS / 'engine.json'}")


if __name__ == "__main__":
    main()
