"""The exact fault matrix: every process of the server-mode stack killed -9 at each of four points of an
incident's life, reached for certain through failpoints (core/platform/failpoints.py) rather than by timing.

| phase      | points (who runs them)                    | what a kill there interrupts                        |
|------------|-------------------------------------------|-----------------------------------------------------|
| trigger    | `incident.opened` (API)                   | an incident and its first entries, not committed    |
|            | `flow.created` (worker)                   | a flow run created in Prefect, its id not stored    |
| completion | `task.completed` (API)                    | a completion and its entry, not committed           |
|            | `task.assigned` (worker)                  | the fan-out the completion causes, not committed    |
| stage      | `stage.left` (worker)                     | one stage left, the next not entered                |
| ledger     | `ledger.appended` (API or worker)         | an entry written and the head moved, not committed  |

A process that runs the point is killed there (`crash`: it kills itself inside its open transaction; the
API's other uvicorn workers go with it, as in a kill -9 of the API). Processes that do not run Baton's code
(the Prefect server, PostgreSQL), and the API at a worker's point, are killed while the process that runs it
stands at the point with its transaction open (`hold`). Each case fails unless its point was reached.

Then, as in test_fault_matrix.py: un-answered requests are retried, the workers catch up, and every
invariant is checked, with one more: each incident has exactly one Prefect flow run, the one it names.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.platform.failpoints import POINTS
from tests.conftest import Say
from tests.faults.harness import (
    Driver,
    FaultStack,
    OpenTask,
    check_invariants,
    open_tasks,
    pending_log,
    running,
    wait_for_flow_runs,
    wait_quiet,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.prefect,
              pytest.mark.xdist_group("faults-crash-points")]

PHASES = ("trigger", "completion", "stage", "ledger")
TARGETS = ("api", "worker-1", "worker-2", "prefect-server", "postgres")
HOLD_SECONDS = 2.0
REACH_TIMEOUT = 180.0  # a point behind a stage's gate takes several rounds of completions; slow on a loaded machine
OPEN_INCIDENTS = 6  # keep about this many open while driving towards a point


@dataclass(frozen=True)
class Case:
    target: str  # the process killed
    phase: str
    point: str
    scope: str | None  # the process that must reach the point ("api", "worker-1"), or None: any
    action: str  # crash: the target dies at the point; hold: the target is killed while another stands there


CASES = [
    Case("api", "trigger", "incident.opened", "api", "crash"),
    Case("worker-1", "trigger", "flow.created", "worker-1", "crash"),
    Case("worker-2", "trigger", "flow.created", "worker-2", "crash"),
    Case("prefect-server", "trigger", "flow.created", None, "hold"),
    Case("postgres", "trigger", "incident.opened", "api", "hold"),
    Case("api", "completion", "task.completed", "api", "crash"),
    Case("worker-1", "completion", "task.assigned", "worker-1", "crash"),
    Case("worker-2", "completion", "task.assigned", "worker-2", "crash"),
    Case("prefect-server", "completion", "task.assigned", None, "hold"),
    Case("postgres", "completion", "task.completed", "api", "hold"),
    Case("api", "stage", "stage.left", None, "hold"),
    Case("worker-1", "stage", "stage.left", "worker-1", "crash"),
    Case("worker-2", "stage", "stage.left", "worker-2", "crash"),
    Case("prefect-server", "stage", "stage.left", None, "hold"),
    Case("postgres", "stage", "stage.left", None, "hold"),
    Case("api", "ledger", "ledger.appended", "api", "crash"),
    Case("worker-1", "ledger", "ledger.appended", "worker-1", "crash"),
    Case("worker-2", "ledger", "ledger.appended", "worker-2", "crash"),
    Case("prefect-server", "ledger", "ledger.appended", "worker-1", "hold"),
    Case("postgres", "ledger", "ledger.appended", "api", "hold"),
]


@dataclass
class Outcome:
    case: Case
    reached_after: float  # seconds of driving until a process claimed the point
    claimed_by: str  # the stack process that reached it
    back_after: float  # seconds from the claim until the whole stack was healthy again
    requests: int


def _arm(stack: FaultStack, case: Case) -> Path:
    scope = stack.named(case.scope) if case.scope else None
    armed = stack.failpoint_dir / (f"{case.point}@{scope}" if scope else case.point)
    action = "crash" if case.action == "crash" else f"hold {HOLD_SECONDS}"
    staging = armed.with_name(f".{armed.name}.tmp")
    staging.write_text(action)
    staging.rename(armed)  # whole, at once: a process never reads half an action
    return armed


def _claimed(armed: Path) -> tuple[str, int] | None:
    """Who reached the armed point (`api` or the worker's id) and its pid, once one has."""
    for hit in armed.parent.glob(f"{armed.name}.hit-*"):
        who, _, pid = hit.name.removeprefix(f"{armed.name}.hit-").rpartition("-")
        return who, int(pid)
    return None


def _round(driver: Driver, case: Case, serial: list[int]) -> list[object]:
    """The next requests that take incidents towards the case's point: new incidents (always for a trigger
    point, else while few are open), completions of open tasks, and acknowledgements for ledger writes."""
    tasks: list[OpenTask] = open_tasks(driver.prefix)
    calls: list[object] = []
    incidents = {t.incident_id for t in tasks}
    if case.phase == "trigger" or len(incidents) < OPEN_INCIDENTS:
        keys = [f"{driver.prefix}-{serial[0] + i}" for i in range(3)]
        serial[0] += len(keys)
        calls += driver.trigger_calls(keys)
    unacknowledged = [t for t in tasks if not t.acknowledged][:8]
    if case.phase == "ledger" and case.scope == "api" and unacknowledged:
        # The API's ledger writes with no completion beside them: acknowledgements.
        calls += driver.task_calls(unacknowledged, "acknowledge")
    elif case.phase != "trigger":
        calls += driver.task_calls(tasks[:12])
    return calls


def _strike(stack: FaultStack, case: Case, claimant: int, timers: list[threading.Thread]) -> None:
    """Kill the case's target: at once for a hold (the claimant stands at the point), or after the claimant
    killed itself there for a crash. Restart it as stack_up did, after the target's delay."""
    name = stack.named(case.target)
    if case.action == "crash":
        deadline = time.monotonic() + 10
        while running(claimant) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running(claimant), f"{case}: pid {claimant} reached the point but did not die"
    stack.kill(name)
    stack.restart_later(case.target, timers)


def _drive_to(stack: FaultStack, driver: Driver, case: Case, serial: list[int]) -> Outcome:
    armed = _arm(stack, case)
    started = time.monotonic()
    before = driver.requests
    timers: list[threading.Thread] = []
    owner = ""
    reached = 0.0
    try:
        with ThreadPoolExecutor(8) as pool:
            while not owner:
                if time.monotonic() - started > REACH_TIMEOUT:
                    raise AssertionError(f"{case}: the point was not reached in {REACH_TIMEOUT:.0f} s of driving")
                futures: list[Future[int | None]] = [pool.submit(call) for call in _round(driver, case, serial)]  # type: ignore[arg-type]
                # Watch for the claim while the round is in flight, and a little after (the workers react).
                quiet_until = time.monotonic() + 1.0
                while not owner and (any(not f.done() for f in futures) or time.monotonic() < quiet_until):
                    claim = _claimed(armed)
                    if claim is not None:
                        owner, pid = claim
                        reached = time.monotonic()
                        _strike(stack, case, pid, timers)
                    time.sleep(0.02)
                for future in futures:
                    future.result()
    finally:
        with contextlib.suppress(FileNotFoundError):
            armed.unlink()  # not reached: disarm it before the next case
        for thread in timers:
            thread.join()
    stack.wait_healthy()
    return Outcome(case, reached - started, owner, time.monotonic() - reached, driver.requests - before)


# Every process at every point is about nine minutes alone on a busy 2-core machine (the stack's start included):
# the suite's ten-minute limit per test would cut a correct run short there.
@pytest.mark.timeout(1800)
def test_every_process_killed_at_every_point(fault_stack: FaultStack, figures: Say) -> None:
    stack = fault_stack
    stack.wait_healthy()
    started = time.monotonic()
    driver = Driver.for_run(stack, "points")
    prefix = driver.prefix
    outcomes: list[Outcome] = []
    serial = [0]
    try:
        for case in CASES:
            outcomes.append(_drive_to(stack, driver, case, serial))
        faults_done = time.monotonic()
        retried = driver.settle()
        wait_for_flow_runs(prefix)
        quiet_after, pending = wait_quiet(prefix, timeout=60)
        invariants = check_invariants(driver, pending)
    finally:
        driver.close()

    for outcome in outcomes:
        case = outcome.case
        expected = stack.named(case.scope) if case.scope else None
        invariants.check("the point was reached by the process it was armed for",
                         expected is None or outcome.claimed_by == expected,
                         f"{case.point}@{expected} reached by {outcome.claimed_by}")

    figures()
    figures(f"exact fault matrix ({len(outcomes)} kills -9 at failpoints; cell: point, how, seconds to reach it, "
            f"seconds until healthy again)")
    figures(f"{'process':<16}" + "".join(f"{p:>30}" for p in PHASES))
    for target in TARGETS:
        cells = []
        for phase in PHASES:
            hit = [o for o in outcomes if o.case.target == target and o.case.phase == phase]
            cells.append(f"{hit[0].case.point} {hit[0].case.action} {hit[0].reached_after:.1f}/{hit[0].back_after:.0f}s"
                         if hit else "-")
        figures(f"{target:<16}" + "".join(f"{c:>30}" for c in cells))
    figures(f"requests sent {driver.requests} (retries after the faults: {retried}); triggers {len(driver.triggers)}, "
            f"completions {len(driver.completions)}, acknowledgements {len(driver.acks)}; faults phase "
            f"{faults_done - started:.0f} s; quiet {quiet_after:.1f} s after settling")
    figures(invariants.table())
    figures(f"faults injected: {len(outcomes)}   invariants checked: {invariants.total_checked}   "
            f"violations: {invariants.total_violations}")
    assert [o.case for o in outcomes] == CASES
    assert {c.point for c in CASES} == set(POINTS), "every failpoint is tried"
    assert invariants.total_violations == 0, invariants.table() + pending_log(stack, pending)
