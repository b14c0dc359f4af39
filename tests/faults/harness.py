"""What the fault tests share: the server-mode stack with a way to kill -9 and restart each of its processes,
a driver that works incidents over HTTP like real users and records what the API answered, and the checks of
the invariants against Baton's database once the faults stop.

The driver keeps, for every request it made, every answer it got (a status, or None when no answer came).
Un-answered or failed requests are retried once the faults are over (a trigger with the same Idempotency-Key),
so that at the end each trigger was accepted (2xx) and each completion either accepted (200) or refused (409:
already done, or the task was cancelled). The invariants then say: nothing the API accepted is lost, nothing
is doubled, every ledger verifies, and every incident stands where its completions put it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from core.platform.tls import tls_context
from flows.stack import STACK_FILE, PostgresCluster, alive, prefect_env

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent.parent
TITLE = "fault"
# A choice that keeps the incident going (the warning can also be lifted, which closes it early).
FIXED: dict[str, dict[str, Any]] = {"lift_warning": {"decision": "respond"}}
ACCEPTED_TRIGGER = (200, 201)
# How long a killed process stays down before the fault matrices restart it: a worker past its lease, so the
# other worker takes its incidents over first.
RESTART_AFTER = {"api": 0.0, "worker": 5.0, "prefect-server": 3.0, "postgres": 2.0}
# The xdist group (`make test`) of the fault matrix, the soak and the worker recoveries: they run one after the
# other in one process, on one stack (the package-scoped `fault_stack`), as in a run without xdist; the exact
# matrix (test_crash_points.py, the longest) runs beside them on a stack of its own. Two stacks instead of four
# leave the rest of the suite two stack start-ups' worth of CPU (PostgreSQL, a Prefect server, two workers, the
# API's three processes), and three stacks' idling, on the 2-core machine.
STACK_GROUP = "faults-shared-stack"


def running(pid: int) -> bool:
    """Whether the process runs: a child of ours that exited is reaped here (a zombie is not running)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return alive(pid)
    return state not in ("Z", "X")


def db_retry(fn: Callable[[Session], T], timeout: float = 60) -> T:
    """Run `fn` in a read transaction of the application database, retrying while PostgreSQL is down."""
    from core.platform.db import get_engine

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Session(get_engine(), expire_on_commit=False) as session:
                # Closing (not rolling back) ends the transaction and keeps the loaded objects readable.
                return fn(session)
        except (OperationalError, DBAPIError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# -- the stack and its processes ---------------------------------------------------------------------------------


@dataclass
class FaultStack:
    """A stack from `flows.stack.stack_up`, with each process killable by name and restartable the way
    stack_up started it (same command, same environment, same port), its new pid written to stack.json."""

    data_dir: Path
    state: dict[str, Any]
    api_workers: int = 2
    log: list[str] = field(default_factory=list)
    # Workers restarted whose start-up (which migrates the database first) is not yet logged as done: name → the
    # size of its log when it was restarted.
    starting: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    @property
    def workers(self) -> list[str]:
        return sorted(name for name in self.state["processes"] if "-worker-" in name)

    @property
    def targets(self) -> list[str]:
        """Every process a fault can hit: the API, each worker, the Prefect server, PostgreSQL."""
        return ["api", *self.workers, "prefect-server", "postgres"]

    def named(self, target: str) -> str:
        """The process a test names by its place: `worker-2` is the stack's second worker; others as they are."""
        if target.startswith("worker-"):
            return self.workers[int(target.split("-")[1]) - 1]
        return target

    def pid(self, name: str) -> int:
        return int(self.state["processes"][name])

    def cluster(self) -> PostgresCluster:
        pg = self.state["postgres"]
        # durable, as stack_up made it: a test cluster's fsync=off would lose acknowledged commits in a crash.
        return PostgresCluster(root=Path(pg["root"]), port=int(pg["port"]), durable=True)

    def save(self) -> None:
        (self.data_dir / STACK_FILE).write_text(json.dumps(self.state, indent=2))

    def kill(self, name: str) -> None:
        """kill -9 the process (and its children: uvicorn's workers, Prefect's services); PostgreSQL crashes
        in immediate mode."""
        self.log.append(f"{time.strftime('%H:%M:%S')} kill {name}")
        if name == "postgres":
            self.cluster().kill()
            return
        pid = self.pid(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def lines_about(self, needles: Iterable[str], limit: int = 80) -> str:
        """The processes' log lines that name any of `needles` (incident ids or codes), the last `limit` of them
        with their file's name: what a failed invariant's message carries, since CI keeps no files."""
        wanted = [n for n in needles if n]
        if not wanted:
            return ""
        found: list[str] = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            with path.open(encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
            for number, line in enumerate(lines):
                if any(n in line for n in wanted):
                    # A traceback's lines follow the line that names the incident: keep a few of them.
                    tail = [t.rstrip() for t in lines[number + 1:number + 12] if t.startswith((" ", "Traceback"))
                            or "Error" in t]
                    found.append(f"{path.name}: {line.rstrip()}" + "".join(f"\n    {t}" for t in tail))
        return f"\nlog lines about {', '.join(wanted)} (last {limit}):\n" + "\n".join(found[-limit:])

    @property
    def failpoint_dir(self) -> Path:
        return self.data_dir / "failpoints"

    def _env(self) -> dict[str, str]:
        env = prefect_env(self.data_dir, self.state["prefect_api_url"])
        env.update({"BATON_DATA_DIR": str(self.data_dir), "BATON_DATABASE_URL": self.state["database_url"],
                    "BATON_PREFECT_API_URL": self.state["prefect_api_url"],
                    "BATON_FAILPOINT_DIR": str(self.failpoint_dir)})
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str], log_name: str) -> None:
        log = (self.data_dir / "logs" / log_name).open("ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        self.state["processes"][name] = proc.pid
        self.save()

    def restart(self, name: str) -> None:
        """Start the process again (do not wait for it: `wait_healthy` does)."""
        self.log.append(f"{time.strftime('%H:%M:%S')} restart {name}")
        if name == "postgres":
            deadline = time.monotonic() + 30
            while True:
                try:
                    self.cluster().restart()
                    return
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        if name == "api":
            port = self.api_url.rsplit(":", 1)[1]
            self._spawn(name, [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", port,
                               "--workers", str(self.api_workers), "--no-proxy-headers"], self._env(), "api.log")
        elif name == "prefect-server":
            env = prefect_env(self.data_dir)
            env.pop("PREFECT_API_URL", None)
            pg = self.state["postgres"]
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:{pg['port']}/prefect"
            env["PREFECT_UI_ENABLED"] = env.get("PREFECT_UI_ENABLED", "true")
            port = self.state["prefect_api_url"].split(":")[-1].split("/")[0]
            self._spawn(name, [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", port], env, "prefect-server.log")
        else:
            env = self._env()
            env["BATON_WORKER_ID"] = name
            log = self.data_dir / "logs" / f"{name}.log"
            self.starting[name] = log.stat().st_size if log.exists() else 0
            self._spawn(name, [sys.executable, "-m", "flows.cli", "worker"], env, f"{name}.log")

    def restart_later(self, target: str, timers: list[threading.Thread]) -> None:
        """Restart the process a test names by its place (`worker-2`) after its RESTART_AFTER delay, on a
        thread added to `timers` (at once, here, when the delay is nothing)."""
        name = self.named(target)
        delay = RESTART_AFTER["worker" if target.startswith("worker-") else target]
        if delay == 0:
            self.restart(name)
            return

        def later() -> None:
            time.sleep(delay)
            self.restart(name)

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        timers.append(thread)

    def wait_workers_started(self, timeout: float = 60) -> None:
        """Until every restarted worker has logged that it started. (A worker that starts while PostgreSQL is
        down exits: see test_worker_start.py; the faults here wait for start-ups so as not to hit that.)"""
        deadline = time.monotonic() + timeout
        for name, offset in list(self.starting.items()):
            log = self.data_dir / "logs" / f"{name}.log"
            while True:
                with log.open("rb") as handle:
                    handle.seek(offset)
                    if f"Baton worker {name} started".encode() in handle.read():
                        break
                if not running(self.pid(name)):
                    raise AssertionError(f"{name} died while starting; see {log}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start within {timeout:.0f} s; see {log}")
                time.sleep(0.2)
            del self.starting[name]

    def wait_healthy(self, timeout: float = 180) -> float:
        """Until PostgreSQL, Prefect and the API answer (`/api/health` is 200) and every process is alive;
        returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        last = ""
        while time.monotonic() < deadline:
            dead = [name for name in self.state["processes"] if not running(self.pid(name))]
            if dead:
                raise AssertionError(f"processes died by themselves: {dead}; see {self.data_dir / 'logs'}")
            try:
                response = httpx.get(f"{self.api_url}/api/health", timeout=5, verify=tls_context())
                last = response.text
                if response.status_code == 200:
                    self.wait_workers_started(max(deadline - time.monotonic(), 1))
                    return time.monotonic() - started
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise AssertionError(f"the stack is not healthy after {timeout:.0f} s: {last}")


# -- users ---------------------------------------------------------------------------------------------------------


def make_users(departments: Iterable[str], tag: str) -> tuple[dict[str, dict[str, str]], str]:
    """An office user and one user per department, each with a long-lived bearer token (issued in the database,
    as a login would). Returns the headers per department (the office's under emergency_office) and the
    office user's id (Idempotency-Keys are scoped by user)."""
    from tests.api_server import issued_token, make_user

    headers: dict[str, dict[str, str]] = {}
    office_id = make_user(f"{tag}-office", "office")
    headers["emergency_office"] = {"Authorization": f"Bearer {issued_token(f'{tag}-office', timedelta(days=1))}"}
    for dept in sorted(set(departments) - {"emergency_office"}):
        name = f"{tag}-{dept}".replace("_", "-")
        make_user(name, "department", dept)
        headers[dept] = {"Authorization": f"Bearer {issued_token(name, timedelta(days=1))}"}
    return headers, office_id


def plan_departments(type_key: str = "flood", level: str = "IV") -> set[str]:
    from core.plans.store import current_plan_text, parse_plan_text

    plan = parse_plan_text(current_plan_text(type_key), f"{type_key}.yaml")
    return {s.department for _, s in plan.steps() if s.kind == "human" and s.active_at(level)}


# -- the driver ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTask:
    id: str
    incident_id: str
    step_key: str
    department: str
    status: str
    acknowledged: bool
    stage_ending: bool
    outputs: dict[str, Any]


def _stage_ending(plan: Any, stage: str, step_key: str) -> bool:
    """Whether completing this step may end its stage: the stage's gate, or a human step no other step of
    the stage depends on."""
    stage_def = plan.stages.get(stage)
    if stage_def.gate is not None:
        return bool(stage_def.gate == step_key)
    return not any(step_key in s.depends_on for s in stage_def.steps)


def open_tasks(prefix: str) -> list[OpenTask]:
    """Open human tasks of the incidents whose title starts with `prefix`, with the form values to complete
    each (valid for its step)."""
    from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident
    from core.learning.simulation import sample_outputs
    from core.plans.store import plan_for_version

    def read(session: Session) -> list[OpenTask]:
        rows = session.exec(
            select(DepartmentTask, Incident)
            .join(Incident, col(Incident.id) == DepartmentTask.incident_id)
            .where(col(Incident.title).startswith(prefix), col(Incident.status) == "open",
                   DepartmentTask.kind == "human", col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
        out = []
        for task, incident in rows:
            plan = plan_for_version(session, incident.plan_version_id)
            step = plan.step(task.step_key)
            outputs = FIXED.get(task.step_key) or sample_outputs(step, random.Random(task.id))
            out.append(OpenTask(task.id, task.incident_id, task.step_key, task.department, task.status,
                                task.acknowledged_at is not None, _stage_ending(plan, task.stage, task.step_key),
                                outputs))
        return out

    return db_retry(read)


Attempts = dict[str, list[int | None]]


@dataclass
class Driver:
    """Acts over HTTP as the office and the departments, recording every answer."""

    stack: FaultStack
    headers: dict[str, dict[str, str]]
    office_id: str
    prefix: str
    level: str = "IV"
    triggers: Attempts = field(default_factory=lambda: defaultdict(list))
    completions: Attempts = field(default_factory=lambda: defaultdict(list))
    acks: Attempts = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    _client: httpx.Client | None = None

    @classmethod
    def for_run(cls, stack: FaultStack, tag: str) -> Driver:
        """A driver for one test run: its incidents' titles start with a fresh `tag-…` prefix, and it acts
        as an office user and one user per department of the flood plan, made for the run."""
        prefix = f"{tag}-{uuid.uuid4().hex[:6]}"
        headers, office_id = make_users(plan_departments(), prefix)
        return cls(stack=stack, headers=headers, office_id=office_id, prefix=prefix)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.stack.api_url, timeout=20,
                                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=0))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _post(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> int | None:
        assert self._client is not None
        with self.lock:
            self.requests += 1
        try:
            return self._client.post(path, json=body, headers=headers).status_code
        except httpx.HTTPError:
            return None

    def _record(self, book: Attempts, key: str, status: int | None) -> int | None:
        with self.lock:
            book[key].append(status)
        return status

    def trigger(self, key: str) -> int | None:
        body = {"type": "flood", "level": self.level, "title": f"{self.prefix} {key}"}
        headers = {**self.headers["emergency_office"], "Idempotency-Key": key}
        return self._record(self.triggers, key, self._post("/api/incidents", headers, body))

    def complete(self, task: OpenTask) -> int | None:
        status = self._post(f"/api/tasks/{task.id}/complete", self.headers[task.department],
                            {"outputs": task.outputs})
        return self._record(self.completions, task.id, status)

    def acknowledge(self, task: OpenTask) -> int | None:
        status = self._post(f"/api/tasks/{task.id}/acknowledge", self.headers[task.department], {})
        return self._record(self.acks, task.id, status)

    # -- bursts ----------------------------------------------------------------------------------------------------

    def burst(self, calls: list[Callable[[], int | None]], *, kill_after: int | None = None,
              fault: Callable[[], None] | None = None, threads: int = 8) -> int:
        """Send the calls concurrently; once `kill_after` of them have been answered (or failed), run `fault`
        while the rest are in flight. Returns how many were done when the fault struck."""
        done = 0
        struck = -1
        with ThreadPoolExecutor(threads) as pool:
            pending: set[Future[int | None]] = {pool.submit(call) for call in calls}
            if fault is not None and (kill_after or 0) <= 0:
                fault()
                struck = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                done += len(finished)
                if fault is not None and struck < 0 and done >= (kill_after or 0):
                    struck = done
                    fault()
        return struck

    def trigger_calls(self, keys: Iterable[str]) -> list[Callable[[], int | None]]:
        return [lambda key=key: self.trigger(key) for key in keys]  # type: ignore[misc]

    def task_calls(self, tasks: Iterable[OpenTask], action: str = "complete") -> list[Callable[[], int | None]]:
        if action == "complete":
            return [lambda t=t: self.complete(t) for t in tasks]  # type: ignore[misc]
        return [lambda t=t: self.acknowledge(t) for t in tasks]  # type: ignore[misc]

    def wait_for_tasks(self, want: Callable[[list[OpenTask]], list[OpenTask]], count: int,
                       timeout: float = 20) -> list[OpenTask]:
        """Open tasks chosen by `want`, waiting up to `timeout` for at least `count` of them to be assigned."""
        deadline = time.monotonic() + timeout
        chosen: list[OpenTask] = []
        while time.monotonic() < deadline:
            chosen = want(open_tasks(self.prefix))
            if len(chosen) >= count:
                break
            time.sleep(0.3)
        return chosen

    # -- after the faults ------------------------------------------------------------------------------------------

    def settle(self, timeout: float = 120) -> dict[str, int]:
        """Retry what got no answer or a server error until the API answers it: triggers with their key,
        completions and acknowledgements of tasks still open. Returns how many retries each needed."""
        retried: Counter[str] = Counter()
        deadline = time.monotonic() + timeout
        while True:
            triggers = [k for k, got in self.triggers.items() if got[-1] not in ACCEPTED_TRIGGER]
            completions = [t for t, got in self.completions.items() if got[-1] is None or got[-1] >= 500]
            acks = [t for t, got in self.acks.items() if got[-1] is None or got[-1] >= 500]
            if not (triggers or completions or acks):
                return dict(retried)
            if time.monotonic() > deadline:
                raise AssertionError(f"still un-answered after {timeout:.0f} s: {len(triggers)} triggers, "
                                     f"{len(completions)} completions, {len(acks)} acknowledgements")
            for key in triggers:
                retried["triggers"] += 1
                self.trigger(key)
            tasks = {t.id: t for t in open_tasks(self.prefix)}
            for task_id in completions:
                retried["completions"] += 1
                if task_id in tasks:
                    self.complete(tasks[task_id])
                else:  # no longer open: a lost answer to a completion that committed, or cancelled by its stage
                    self._record(self.completions, task_id, self._retry_closed(task_id, "complete"))
            for task_id in acks:
                retried["acknowledgements"] += 1
                if task_id in tasks:
                    self.acknowledge(tasks[task_id])
                else:
                    self._record(self.acks, task_id, self._retry_closed(task_id, "acknowledge"))
            time.sleep(0.5)

    def _retry_closed(self, task_id: str, action: str) -> int | None:
        """Send the action again for a task that is no longer open; the API must refuse it with 409."""
        from core.incidents.models import DepartmentTask

        department = db_retry(lambda s: s.exec(select(DepartmentTask.department)
                                               .where(DepartmentTask.id == task_id)).one())
        body: dict[str, Any] = {"outputs": {}} if action == "complete" else {}
        return self._post(f"/api/tasks/{task_id}/{action}", self.headers[department], body)

    def work_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Complete every open task as it appears until `done()` (no faults now)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            tasks = open_tasks(self.prefix)
            if tasks:
                self.burst(self.task_calls(tasks))
            else:
                time.sleep(0.3)
        return done()


# -- invariants ----------------------------------------------------------------------------------------------------


@dataclass
class Invariants:
    checked: Counter[str] = field(default_factory=Counter)
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def check(self, name: str, ok: bool, detail: str | Callable[[], str] = "") -> None:
        self.checked[name] += 1
        if not ok:
            self.violations[name].append(detail() if callable(detail) else detail)

    @property
    def total_checked(self) -> int:
        return sum(self.checked.values())

    @property
    def total_violations(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def table(self) -> str:
        width = max([len(n) for n in self.checked] + [9])
        lines = [f"{'invariant':<{width}}  {'checked':>8}  {'violations':>10}"]
        for name, count in self.checked.items():
            lines.append(f"{name:<{width}}  {count:>8}  {len(self.violations.get(name, [])):>10}")
        for name, found in self.violations.items():
            for detail in found[:10]:
                lines.append(f"  ! {name}: {detail}")
        return "\n".join(lines)


def dry_run_progress(session: Session, incident_id: str) -> str | None:
    """What one more reconciliation would still do for the incident (None: it stands where its completions
    put it). Runs `advance` and rolls it back."""
    from core.incidents.engine import advance
    from core.incidents.models import Incident

    incident = session.get(Incident, incident_id)
    if incident is None:
        return "missing"
    if incident.status != "open":
        return None
    before = (incident.ledger_head_seq, incident.stage)
    try:
        result = advance(session, incident_id=incident_id)
        after = (incident.ledger_head_seq, result.stage)
        pending = list(result.actions)
    finally:
        session.rollback()
    if after != before:
        return f"would move from {before} to {after}"
    if pending:
        return f"{len(pending)} automated step(s) not run"
    return None


def wait_quiet(prefix: str, timeout: float = 120) -> tuple[float, dict[str, str]]:
    """Until no incident of the run has anything left that its completions call for (or timeout); returns
    the seconds it took and what was still pending at the end."""
    from core.incidents.models import Incident

    started = time.monotonic()
    deadline = started + timeout
    pending: dict[str, str] = {}
    while True:
        def scan(session: Session) -> dict[str, str]:
            ids = session.exec(select(Incident.id).where(col(Incident.title).startswith(prefix))).all()
            found = {}
            for incident_id in ids:
                reason = dry_run_progress(session, incident_id)
                if reason:
                    found[incident_id] = reason
            return found

        pending = db_retry(scan)
        if not pending or time.monotonic() > deadline:
            return time.monotonic() - started, pending
        time.sleep(1.0)


def pending_log(stack: FaultStack, pending: dict[str, str]) -> str:
    """The log lines about the incidents `wait_quiet` left pending (by id and by code), for a failure's message."""
    from core.incidents.models import Incident

    if not pending:
        return ""
    codes = db_retry(lambda session: list(session.exec(select(Incident.code)
                                                       .where(col(Incident.id).in_(list(pending)))).all()))
    return stack.lines_about([*pending, *codes])


def check_invariants(driver: Driver, quiet_pending: dict[str, str]) -> Invariants:  # noqa: C901
    """Every invariant, over every incident, task and request of the run (after `settle` and `wait_quiet`)."""
    from api.deps import idempotency_digest
    from core.incidents.models import DepartmentTask, Incident, TaskStatus
    from core.ledger.chain import verify_incident
    from core.ledger.models import LedgerEntry

    inv = Invariants()
    prefix = driver.prefix

    def load(session: Session) -> tuple[list[Incident], list[DepartmentTask], list[LedgerEntry], dict[str, Any]]:
        incidents = list(session.exec(select(Incident).where(col(Incident.title).startswith(prefix))).all())
        ids = [i.id for i in incidents]
        tasks = list(session.exec(select(DepartmentTask).where(col(DepartmentTask.incident_id).in_(ids))).all())
        entries = list(session.exec(select(LedgerEntry).where(col(LedgerEntry.incident_id).in_(ids))
                                    .order_by(col(LedgerEntry.id))).all())
        verified = {i: verify_incident(session, i) for i in ids}
        return incidents, tasks, entries, verified

    incidents, tasks, entries, verified = db_retry(load)
    by_key = Counter(i.idempotency_key for i in incidents)
    # 1. Every accepted trigger has exactly one incident; no incident without an accepted trigger.
    digests = {}
    for key, got in driver.triggers.items():
        digest = idempotency_digest(driver.office_id, key)
        digests[digest] = key
        accepted = any(s in ACCEPTED_TRIGGER for s in got)
        inv.check("trigger accepted (after retries)", accepted, f"{key}: {got}")
        inv.check("accepted trigger → exactly one incident", by_key[digest] == 1 or not accepted,
                  f"{key}: {by_key[digest]} incidents")
    inv.check("incidents = accepted triggers", len(incidents) == len(driver.triggers),
              f"{len(incidents)} incidents for {len(driver.triggers)} triggers")
    for incident in incidents:
        inv.check("incident opened by a known trigger", incident.idempotency_key in digests, incident.code)

    entries_of: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        if entry.incident_id is not None:
            entries_of[entry.incident_id].append(entry)
    tasks_by_id = {t.id: t for t in tasks}
    keyed = Counter(e.idempotency_key for e in entries)
    kinds_of_task: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        task_id, _, _ = entry.idempotency_key.partition(":")
        if task_id in tasks_by_id:
            kinds_of_task[task_id][entry.kind] += 1

    # 2. Every accepted completion recorded once: the task completed, one task.completed entry.
    for task_id, got in driver.completions.items():
        task = tasks_by_id.get(task_id)
        accepted = 200 in got
        if accepted:
            inv.check("accepted completion → task completed", task is not None and task.status == "completed",
                      f"{task_id}: {task.status if task else 'missing'}")
            inv.check("accepted completion → one task.completed entry",
                      kinds_of_task[task_id]["task.completed"] == 1,
                      f"{task_id}: {kinds_of_task[task_id]['task.completed']}")
        inv.check("completion answered 200 or 409 (after retries)", got[-1] in (200, 409),
                  f"{task_id}: {got}")
        inv.check("at most one 200 per completion", got.count(200) <= 1, f"{task_id}: {got}")
    for task_id, got in driver.acks.items():
        task = tasks_by_id.get(task_id)
        if 200 in got:
            inv.check("accepted acknowledgement → recorded once",
                      task is not None and task.acknowledged_at is not None
                      and kinds_of_task[task_id]["task.acknowledged"] == 1,
                      f"{task_id}: {dict(kinds_of_task[task_id])}")
        inv.check("acknowledgement answered 200 or 409 (after retries)", got[-1] in (200, 409),
                  f"{task_id}: {got}")

    # 3. Every handoff has exactly one ledger entry.
    inv.check("no duplicate ledger idempotency keys", all(n == 1 for n in keyed.values()),
              lambda: str([k for k, n in keyed.items() if n > 1][:5]))
    for task in tasks:
        kinds = kinds_of_task[task.id]
        if task.kind == "human":
            inv.check("completed human task ↔ one task.completed entry",
                      kinds["task.completed"] == (1 if task.status == "completed" else 0),
                      f"{task.id} {task.step_key} {task.status}: {dict(kinds)}")
        else:
            done = kinds["action.completed"] + kinds["warning.published"]
            inv.check("finished action ↔ one result entry", done == (1 if task.status == "completed" else 0),
                      f"{task.id} {task.step_key} {task.status}: {dict(kinds)}")
        handed = kinds["task.assigned"] + kinds["task.reassigned"]
        inv.check("assigned task ↔ one assignment entry", handed == (1 if task.assigned_at is not None else 0),
                  f"{task.id} {task.step_key}: {dict(kinds)}")
        inv.check("cancelled task ↔ one task.cancelled entry",
                  kinds["task.cancelled"] == (1 if task.status == "cancelled" else 0),
                  f"{task.id} {task.step_key} {task.status}: {dict(kinds)}")
    for incident in incidents:
        chain = entries_of[incident.id]
        seqs = sorted(e.seq for e in chain)
        inv.check("ledger seq continuous 1..head", seqs == list(range(1, incident.ledger_head_seq + 1)),
                  f"{incident.code}: {len(seqs)} entries, head {incident.ledger_head_seq}")
        result = verified[incident.id]
        inv.check("ledger verifies", result.valid, f"{incident.code}: {result.first_bad_seq} {result.reason}")
        per_step = Counter((e.details.get("stage"), e.kind) for e in chain if e.kind.startswith("stage.")
                           or e.kind in ("incident.opened", "incident.closed"))
        inv.check("one entry per (stage, kind)", all(n == 1 for n in per_step.values()),
                  f"{incident.code}: {per_step}")
        stages = Counter(e.details.get("stage") for e in chain if e.kind == "stage.entered")
        inv.check("each stage entered once", all(n == 1 for n in stages.values()), f"{incident.code}: {stages}")
        attempts = Counter((t.step_key, t.attempt) for t in tasks if t.incident_id == incident.id)
        inv.check("one task per (step, attempt)", all(n == 1 for n in attempts.values()), incident.code)

    # 4. No task stuck; every incident where its completions put it.
    allowed = {TaskStatus.assigned, TaskStatus.acknowledged, TaskStatus.escalated, TaskStatus.completed,
               TaskStatus.skipped, TaskStatus.cancelled, TaskStatus.handed_back}
    for task in tasks:
        inv.check("task in a settled state", task.status in allowed and not (
            task.kind == "action" and task.status == "pending"), f"{task.id} {task.step_key} {task.status}")
    for incident in incidents:
        inv.check("incident at the stage its completions justify", incident.id not in quiet_pending,
                  f"{incident.code}: {quiet_pending.get(incident.id)}")
        inv.check("open incident has a flow run", incident.status != "open" or incident.flow_run_id is not None,
                  incident.code)

    # 5. One Prefect flow run per incident (named by its code), whatever died between creating it and storing
    # its id, and it is the one the incident names.
    runs = flow_runs_named(driver.stack.state["prefect_api_url"], [i.code for i in incidents])
    for incident in incidents:
        found = runs.get(incident.code, [])
        inv.check("one Prefect flow run per incident, the one it names",
                  found == ([incident.flow_run_id] if incident.flow_run_id else []), f"{incident.code}: {found}")
    return inv


def flow_runs_named(prefect_api_url: str, names: list[str]) -> dict[str, list[str]]:
    """The ids of the Prefect flow runs with these names, read from the Prefect server's API."""
    found: dict[str, list[str]] = defaultdict(list)
    with httpx.Client(base_url=prefect_api_url, timeout=30) as client:
        for start in range(0, len(names), 100):
            body = {"flow_runs": {"name": {"any_": names[start:start + 100]}}, "limit": 200}
            response = client.post("/flow_runs/filter", json=body)
            response.raise_for_status()
            for run in response.json():
                found[run["name"]].append(run["id"])
    return found


def wait_for_flow_runs(prefix: str, timeout: float = 60) -> None:
    """Until every incident of the run has its flow run recorded (a worker took it up)."""
    from core.incidents.models import Incident

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = db_retry(lambda s: s.exec(select(Incident.id).where(col(Incident.title).startswith(prefix),
                                                                      col(Incident.flow_run_id).is_(None))).all())
        if not missing:
            return
        time.sleep(0.5)


def reconcile(session: Session, prefix: str) -> dict[str, Any]:
    """What Baton stored for the run's incidents: incidents, completions and acknowledgements (with their
    ledger entries), and how many of each were stored twice."""
    from core.incidents.models import DepartmentTask, Incident
    from core.ledger.models import LedgerEntry

    incidents = list(session.exec(select(Incident).where(col(Incident.title).startswith(prefix))).all())
    ids = [i.id for i in incidents]
    tasks = list(session.exec(select(DepartmentTask).where(col(DepartmentTask.incident_id).in_(ids),
                                                           DepartmentTask.kind == "human")).all())
    entries = Counter((e.idempotency_key.partition(":")[0], e.kind) for e in session.exec(
        select(LedgerEntry).where(col(LedgerEntry.incident_id).in_(ids),
                                  col(LedgerEntry.kind).in_(["task.completed", "task.acknowledged"]))).all())
    completed = {t.id for t in tasks if t.status == "completed"}
    acknowledged = {t.id for t in tasks if t.acknowledged_at is not None}
    keys = Counter(i.idempotency_key for i in incidents)
    return {
        "incidents": len(incidents), "closed": sum(i.status == "closed" for i in incidents),
        "duplicate_incidents": sum(n - 1 for n in keys.values() if n > 1),
        "completed": len(completed), "completed_ids": completed,
        "duplicate_completed": sum(n - 1 for (_, kind), n in entries.items() if kind == "task.completed" and n > 1),
        "acknowledged": len(acknowledged), "acknowledged_ids": acknowledged,
        "duplicate_acknowledged": sum(n - 1 for (_, kind), n in entries.items()
                                      if kind == "task.acknowledged" and n > 1),
    }
