"""Load with faults: many incidents worked over HTTP by concurrent clients (often two at the same task) while
the stack's processes are killed -9 and restarted in turn, ending with a reconciliation of the requests the
API accepted against the records Baton stored: nothing lost, nothing doubled.

The run lasts BATON_SOAK_SECONDS of load (default 40: the short version, always on in `make test`); a long
soak is the same test with a bigger number, e.g.

    BATON_SOAK_SECONDS=1800 .venv/bin/python -m pytest -s tests/faults/test_soak.py

(or `make soak`: 1800 s unless SOAK_SECONDS says). A fault strikes every BATON_SOAK_FAULT_EVERY seconds
(default 4.5), going round the API, each worker, the Prefect server and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Say
from tests.faults.harness import (
    STACK_GROUP,
    Driver,
    FaultStack,
    OpenTask,
    check_invariants,
    db_retry,
    open_tasks,
    pending_log,
    reconcile,
    wait_for_flow_runs,
    wait_quiet,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.prefect, pytest.mark.xdist_group(STACK_GROUP)]

SOAK_SECONDS = float(os.environ.get("BATON_SOAK_SECONDS", "40"))
FAULT_EVERY = float(os.environ.get("BATON_SOAK_FAULT_EVERY", "4.5"))
CLIENTS = 4
OPEN_INCIDENTS = 8  # keep about this many incidents open; trigger a new one when fewer are
RESTART_AFTER = {"api": 0.5, "worker": 4.0, "prefect-server": 3.0, "postgres": 2.0}


class Snapshot:
    """The open tasks of the run, re-read in the background (clients pick from it, so two often pick the same)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks: list[OpenTask] = []
        self.incidents = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from sqlmodel import col, func, select

        from core.incidents.models import Incident

        def open_incidents(session: Any) -> int:
            return int(session.exec(select(func.count()).select_from(Incident).where(
                col(Incident.title).startswith(self.prefix), Incident.status == "open")).one())

        while not self.stop.is_set():
            try:
                self.tasks = open_tasks(self.prefix)
                self.incidents = db_retry(open_incidents)
            except Exception:  # PostgreSQL down longer than db_retry waits: try again
                pass
            self.stop.wait(0.5)


def client_loop(driver: Driver, snapshot: Snapshot, until: float, serial: Counter[str], seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        if snapshot.incidents < OPEN_INCIDENTS and rng.random() < 0.3:
            with driver.lock:
                serial["n"] += 1
                snapshot.incidents += 1  # counted until the next read, so the clients do not all trigger at once
                key = f"{driver.prefix}-{serial['n']}"
            driver.trigger(key)
            continue
        tasks = snapshot.tasks
        if not tasks:
            time.sleep(0.2)
            continue
        task = rng.choice(tasks)
        if not task.acknowledged and rng.random() < 0.3:
            driver.acknowledge(task)
        else:
            driver.complete(task)
        time.sleep(rng.random() * 0.1)


def fault_loop(stack: FaultStack, until: float, stop: threading.Event, struck: list[str]) -> None:
    targets = stack.targets
    index = 0
    while not stop.wait(FAULT_EVERY) and time.monotonic() < until:
        name = targets[index % len(targets)]
        index += 1
        # Each fault hits a whole, started stack (a Prefect server or a worker killed in its start-up by a
        # database crash stays down: see the report in test_worker_recovery.py).
        stack.wait_healthy(60)
        stack.kill(name)
        struck.append(name)
        time.sleep(RESTART_AFTER["worker" if "-worker-" in name else name])
        stack.restart(name)


def test_soak_with_faults_loses_and_doubles_nothing(fault_stack: FaultStack, figures: Say) -> None:
    stack = fault_stack
    stack.wait_healthy()
    started = time.monotonic()
    driver = Driver.for_run(stack, "soak")
    prefix = driver.prefix
    snapshot = Snapshot(prefix)
    snapshot.thread.start()
    until = time.monotonic() + SOAK_SECONDS
    stop = threading.Event()
    struck: list[str] = []
    faults = threading.Thread(target=fault_loop, args=(stack, until - 1, stop, struck), daemon=True)
    serial: Counter[str] = Counter()
    try:
        faults.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for result in [pool.submit(client_loop, driver, snapshot, until, serial, seed) for seed in range(CLIENTS)]:
                result.result()
        stop.set()
        faults.join()
        load_seconds = time.monotonic() - started
        stack.wait_healthy()
        retried = driver.settle()
        wait_for_flow_runs(prefix)
        quiet_after, pending = wait_quiet(prefix, timeout=60)
        invariants = check_invariants(driver, pending)
    finally:
        stop.set()
        snapshot.stop.set()
        driver.close()

    def count(book: dict[str, list[int | None]], what: str) -> int:
        if what == "accepted":
            return sum(1 for got in book.values() if any(s in (200, 201) for s in got))
        if what == "unanswered":
            return sum(1 for got in book.values() for s in got if s is None or s >= 500)
        return sum(len(got) for got in book.values())

    stored = db_retry(lambda session: reconcile(session, prefix))
    rows = [
        ("triggers", count(driver.triggers, "requests"), count(driver.triggers, "unanswered"),
         count(driver.triggers, "accepted"), stored["incidents"], stored["duplicate_incidents"]),
        ("completions", count(driver.completions, "requests"), count(driver.completions, "unanswered"),
         count(driver.completions, "accepted"), stored["completed"], stored["duplicate_completed"]),
        ("acknowledgements", count(driver.acks, "requests"), count(driver.acks, "unanswered"),
         count(driver.acks, "accepted"), stored["acknowledged"], stored["duplicate_acknowledged"]),
    ]
    figures()
    figures(f"soak: {load_seconds:.0f} s of load by {CLIENTS} clients, faults every {FAULT_EVERY:g} s: "
          f"{', '.join(struck)}; settled with {retried}; quiet {quiet_after:.1f} s later; "
          f"{stored['closed']} of {stored['incidents']} incidents closed")
    figures(f"{'':<18}{'requests':>10}{'no answer/5xx':>15}{'accepted':>10}{'stored':>8}{'doubled':>9}")
    for name, *numbers in rows:
        figures(f"{name:<18}" + "".join(f"{n:>{w}}" for n, w in zip(numbers, (10, 15, 10, 8, 9), strict=True)))
    # Stored beyond accepted is only what committed while its answer was lost (a retry then got 409).
    lost_answers = {
        "completions": stored["completed_ids"] - {t for t, got in driver.completions.items() if 200 in got},
        "acknowledgements": stored["acknowledged_ids"] - {t for t, got in driver.acks.items() if 200 in got},
    }
    for name, ids in lost_answers.items():
        book = driver.completions if name == "completions" else driver.acks
        invariants.check(f"stored {name} beyond the accepted had their answer lost",
                         all(any(s is None or s >= 500 for s in book.get(i, [])) for i in ids), str(ids))
        figures(f"{name} stored whose answer was lost in a fault: {len(ids)}")
    invariants.check("accepted triggers = incidents stored", rows[0][3] == stored["incidents"], str(rows[0]))
    invariants.check("nothing stored twice", stored["duplicate_incidents"] == stored["duplicate_completed"]
                     == stored["duplicate_acknowledged"] == 0, str(stored))
    figures(invariants.table())
    figures(f"faults injected: {len(struck)}   invariants checked: {invariants.total_checked}   "
          f"violations: {invariants.total_violations}")
    assert struck and count(driver.completions, "accepted") > 0
    assert invariants.total_violations == 0, invariants.table() + pending_log(stack, pending)
