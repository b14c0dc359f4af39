"""The fault matrix, on the server-mode stack: kill -9 each process (the API, each Baton worker, the Prefect
server, PostgreSQL) at several points of incidents' lives, restart it, and check that nothing was lost or
doubled.

"Mid" is approximated by killing while a burst of concurrent requests is in flight, once a chosen number of
them has been answered:

| phase      | the burst                                                       | what the kill interrupts           |
|------------|-----------------------------------------------------------------|------------------------------------|
| trigger    | new incidents, each with its own Idempotency-Key                | opening incidents, first ledger    |
| completion | completions of steps other steps wait for                       | handoffs, fan-out assignments      |
| stage      | completions of the steps that end a stage (gates, last steps)   | stage left / entered, automation   |
| ledger     | acknowledgements (a ledger write each) and completions at once  | ledger appends under a row lock    |

A killed process is restarted as stack_up started it: the API at once (requests in flight are lost), a
worker after the lease time (the other worker takes its incidents over first), the Prefect server after a
few seconds, PostgreSQL (crashed in immediate mode) after two. Once the faults stop, un-answered requests are
retried (triggers with the same key), and then the invariants are checked (see tests/faults/harness.py):
every accepted trigger has exactly one incident, every accepted completion is recorded once, every handoff
has exactly one ledger entry, every ledger verifies, and no task or incident is stuck. `pytest -s` prints
the tables.

An incident whose flow failed while PostgreSQL was down must move again without any restart (its lease lapses
and it is claimed again, see test_worker_recovery.py): nothing here restarts a worker to unstick one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import Say
from tests.faults.harness import (
    STACK_GROUP,
    Driver,
    FaultStack,
    OpenTask,
    check_invariants,
    pending_log,
    wait_for_flow_runs,
    wait_quiet,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.prefect, pytest.mark.xdist_group(STACK_GROUP)]

PHASES = ("trigger", "completion", "stage", "ledger")
# (process, phase) in the order they run: triggers first so that there are incidents, completions before
# stage ends so that incidents reach their gates. Workers are named by their place in the stack.
SCHEDULE: list[tuple[str, str]] = [
    ("api", "trigger"), ("postgres", "trigger"), ("prefect-server", "trigger"), ("worker-2", "trigger"),
    ("api", "completion"), ("postgres", "completion"), ("worker-1", "completion"),
    ("api", "ledger"), ("worker-2", "ledger"), ("postgres", "ledger"),
    ("worker-1", "stage"), ("prefect-server", "stage"), ("postgres", "stage"),
]
TRIGGERS_PER_BURST = 6
TASKS_PER_BURST = 14


@dataclass
class Shot:
    target: str
    phase: str
    burst: int = 0
    struck_at: int = -1
    answers: dict[str, int] = field(default_factory=dict)


def _tasks_for(driver: Driver, phase: str) -> tuple[list[OpenTask], list[OpenTask]]:
    """(tasks to complete, tasks to acknowledge) for a burst of this phase."""
    if phase == "completion":
        return driver.wait_for_tasks(lambda ts: [t for t in ts if not t.stage_ending], 6)[:TASKS_PER_BURST], []
    if phase == "stage":
        return driver.wait_for_tasks(lambda ts: [t for t in ts if t.stage_ending], 3)[:TASKS_PER_BURST], []
    tasks = driver.wait_for_tasks(lambda ts: ts, 6)
    unacked = [t for t in tasks if not t.acknowledged][: TASKS_PER_BURST // 2]
    rest = [t for t in tasks if t not in unacked and not t.stage_ending][: TASKS_PER_BURST // 2]
    return rest, unacked


def _advance_to_gates(driver: Driver) -> None:
    """Without faults, complete the steps that lead to stage ends, so the stage bursts have gates to hit."""
    for _ in range(3):
        tasks = [t for t in driver.wait_for_tasks(lambda ts: ts, 1, timeout=10) if not t.stage_ending]
        if not tasks:
            return
        driver.burst(driver.task_calls(tasks))
        time.sleep(1.0)


@pytest.mark.timeout(1200)  # 20 shots, each a stack restart: 6-8 min on a quiet 2-core machine, 10 on a loaded one
def test_fault_matrix(fault_stack: FaultStack, figures: Say) -> None:
    started = time.monotonic()
    stack = fault_stack
    driver = Driver.for_run(stack, "fault")
    prefix = driver.prefix
    shots: list[Shot] = []
    timers: list[threading.Thread] = []
    serial = 0
    try:
        for target, phase in SCHEDULE:
            name = stack.named(target)
            shot = Shot(target, phase)
            if phase == "stage":
                _advance_to_gates(driver)
            if phase == "trigger":
                keys = [f"{prefix}-{serial + i}" for i in range(TRIGGERS_PER_BURST)]
                serial += TRIGGERS_PER_BURST
                calls = driver.trigger_calls(keys)
            else:
                completing, acknowledging = _tasks_for(driver, phase)
                calls = driver.task_calls(completing) + driver.task_calls(acknowledging, "acknowledge")
            shot.burst = len(calls)
            before = driver.requests

            def fault(name: str = name, target: str = target) -> None:
                stack.kill(name)
                stack.restart_later(target, timers)

            shot.struck_at = driver.burst(calls, kill_after=max(1, len(calls) // 3), fault=fault)
            shot.answers = {"requests": driver.requests - before}
            shots.append(shot)
            # Let the restarted process come back before the next shot, so each fault hits a whole stack.
            for thread in timers:
                thread.join()
            timers.clear()
            stack.wait_healthy()
        faults_done = time.monotonic()
        # The faults stop: answer everything, let the workers catch up, check.
        healthy_after = stack.wait_healthy()
        retried = driver.settle()
        wait_for_flow_runs(prefix)
        quiet_after, pending = wait_quiet(prefix, timeout=60)
        invariants = check_invariants(driver, pending)
    finally:
        for thread in timers:
            thread.join()
        driver.close()

    figures()
    figures(f"fault matrix ({len(shots)} faults; '-' not scheduled; n/m: killed after n of m requests answered)")
    figures(f"{'process':<16}" + "".join(f"{p:>12}" for p in PHASES))
    for target in ("api", "worker-1", "worker-2", "prefect-server", "postgres"):
        cells = []
        for phase in PHASES:
            hit = [s for s in shots if s.target == target and s.phase == phase]
            cells.append(f"{hit[0].struck_at}/{hit[0].burst}" if hit else "-")
        figures(f"{target:<16}" + "".join(f"{c:>12}" for c in cells))
    figures(f"stack log: {'; '.join(stack.log)}")
    figures(f"requests sent {driver.requests} (retries after the faults: {retried}); triggers {len(driver.triggers)}, "
          f"completions {len(driver.completions)}, acknowledgements {len(driver.acks)}")
    figures(f"faults phase {faults_done - started:.0f} s; healthy {healthy_after:.1f} s after; "
          f"quiet {quiet_after:.1f} s after settling")
    figures(invariants.table())
    figures(f"faults injected: {len(shots)}   invariants checked: {invariants.total_checked}   "
          f"violations: {invariants.total_violations}")
    assert len(shots) == len(SCHEDULE) and all(s.burst > 0 for s in shots), [(s.target, s.phase, s.burst)
                                                                               for s in shots]
    assert invariants.total_violations == 0, invariants.table() + pending_log(stack, pending)
