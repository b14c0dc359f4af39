"""Counts per ledgered handoff: the SQL statements the API and the worker issue, and the Prefect API calls (and
client-side events) the worker makes, for each handoff of a flood incident driven through its warning stage into
the response.

    python -m bench.counts [--postgres] [--no-prefect]

A handoff here is one completion through the API (`POST /api/tasks/{id}/complete`) that wakes the incident's
flow, which advances the incident and assigns the next tasks (running the automated steps that fall due). The
two sides are measured one after the other, so neither is charged with the other's statements: the API's
request while the flow waits, then the worker's wake-up (one wake poll, then the flow's work until it waits
again). They are counts, not timings, so they hold on a busy machine; `tests/test_handoff_counts.py` keeps
them under a ceiling.

Counting: a SQLAlchemy `before_cursor_execute` listener on the application's engine, and a wrapper around the
Prefect client's `send` (every HTTP request to the Prefect API from this process) and `EventsClient.emit`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import random
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, event

from bench import RESULTS

# Completed in this order, each when it is open: the warning stage's people's steps (two automated steps fall
# due with the first), its gate (a stage boundary), then the response's first step (a fan-out).
ORDER = ["rainstorm_forecast", "flood_risk_assessment", "school_suspension", "underground_space_check",
         "lift_warning", "activate_command"]
FIXED: dict[str, dict[str, Any]] = {"lift_warning": {"decision": "respond"}}


def _shape(statement: str) -> str:
    """A statement's first words with literals and parameter lists dropped: what repeats shows up as one line."""
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"\(\s*(%\(\w+\)s|\?|:\w+)(\s*,\s*(%\(\w+\)s|\?|:\w+))*\s*\)", "(…)", text)
    words = text.split(" FROM ", 1)
    head = words[0][:40] + ("…" if len(words[0]) > 40 else "")
    if len(words) > 1:
        table = words[1].split(" ", 1)[0]
        return f"{head} FROM {table}"
    return text[:80]


@dataclass
class Tally:
    sql: int = 0
    prefect: int = 0
    events: int = 0
    statements: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)


class Counting:
    """While entered: every SQL statement on `engine` and every Prefect API request and event from this process
    is counted into the current tally; `take()` returns it and starts a new one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tally = Tally()
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def _sql(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        with self._lock:
            self.tally.sql += 1
            self.tally.statements[_shape(statement)] += 1

    def __enter__(self) -> Counting:
        from prefect.client.base import PrefectHttpxAsyncClient
        from prefect.events.clients import EventsClient

        event.listen(self.engine, "before_cursor_execute", self._sql)
        self._undo.append(lambda: event.remove(self.engine, "before_cursor_execute", self._sql))
        counting = self
        send, emit = PrefectHttpxAsyncClient.send, EventsClient.emit

        async def counted_send(client: Any, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
            path = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", request.url.path)
            with counting._lock:
                counting.tally.prefect += 1
                counting.tally.calls[f"{request.method} {path}"] += 1
            return await send(client, request, *args, **kwargs)

        async def counted_emit(client: Any, item: Any) -> None:
            # Not a flow run's heartbeat: a worker runs its flows without them (flows/worker.py); here Prefect's
            # engine sends its first at the run's start, which a loaded machine may delay into a handoff's count.
            if item.event != "prefect.flow-run.heartbeat":
                with counting._lock:
                    counting.tally.events += 1
                    counting.tally.calls[f"event {item.event}"] += 1
            await emit(client, item)

        PrefectHttpxAsyncClient.send = counted_send  # type: ignore[method-assign,assignment]
        EventsClient.emit = counted_emit  # type: ignore[method-assign,assignment]

        def undo() -> None:
            PrefectHttpxAsyncClient.send = send  # type: ignore[method-assign]
            EventsClient.emit = emit  # type: ignore[method-assign]

        self._undo.append(undo)
        return self

    def __exit__(self, *args: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def take(self) -> Tally:
        with self._lock:
            tally, self.tally = self.tally, Tally()
        return tally


@dataclass
class Handoff:
    step: str
    api_sql: int
    worker_sql: int
    worker_prefect: int
    worker_events: int
    automated_steps: int
    assigned: list[str]
    api_statements: dict[str, int]
    worker_statements: dict[str, int]
    worker_calls: dict[str, int]


@dataclass
class Counts:
    handoffs: list[Handoff]
    start: Handoff
    database: str
    prefect: bool
    prefect_api: str | None = None  # the Prefect API the flow ran against (None: without Prefect)

    def per_handoff(self) -> dict[str, float]:
        n = len(self.handoffs) or 1
        return {"api_sql": sum(h.api_sql for h in self.handoffs) / n,
                "worker_sql": sum(h.worker_sql for h in self.handoffs) / n,
                "worker_prefect": sum(h.worker_prefect for h in self.handoffs) / n,
                "worker_events": sum(h.worker_events for h in self.handoffs) / n,
                "automated_steps": sum(h.automated_steps for h in self.handoffs) / n}

    def as_json(self) -> dict[str, Any]:
        return {"database": self.database, "prefect": self.prefect, "per_handoff": self.per_handoff(),
                "start": asdict(self.start), "handoffs": [asdict(h) for h in self.handoffs]}


Call = Callable[..., httpx.Response]


def _tokens(departments: list[str]) -> dict[str, str]:
    """An office user and one user per department, each with a bearer token issued in the database."""
    from core.platform.db import session_scope
    from core.users.service import add_user, issue_token

    out = {}
    with session_scope() as session:
        for name in ["office", *departments]:
            role, dept = ("office", None) if name == "office" else ("department", name)
            user = add_user(session, username=f"count-{name}", role=role, department=dept,
                            password=f"count-{name}-password-long", actor="bench:counts")
            session.flush()
            out[name] = issue_token(session, user=user).token
    return out


def _open_tasks(incident_id: str) -> dict[str, tuple[str, str]]:
    from sqlmodel import col, select

    from core.incidents.models import OPEN_STATUSES, DepartmentTask
    from core.platform.db import session_scope

    with session_scope() as session:
        rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                         DepartmentTask.kind == "human",
                                                         col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
        return {row.step_key: (row.id, row.department) for row in rows}


def _outputs(step_key: str, rng: random.Random) -> dict[str, Any]:
    from core.learning.simulation import sample_outputs
    from core.plans.store import current_plan_text, parse_plan_text

    plan = parse_plan_text(current_plan_text("flood"), "flood.yaml")
    return sample_outputs(plan.step(step_key), rng) | FIXED.get(step_key, {})


class _FlowSide:
    """The worker's side of a handoff: the incident's flow, woken as the wake poll would wake it."""

    def __init__(self, incident_id: str, worker_id: str, prefect: bool) -> None:
        self.incident_id = incident_id
        self.worker_id = worker_id
        self.prefect = prefect
        self.automated = 0
        self.api_url: str | None = None

    def start(self) -> None:
        pass

    def wake(self) -> None:
        """One wake poll (as the worker's loop runs it), then the flow's work until it waits again."""
        from core.incidents import leases
        from core.platform.clock import utcnow
        from core.platform.db import session_scope

        with session_scope() as session:
            leases.recently_woken(session, worker_id=self.worker_id, since=utcnow())
        self._work()

    def _work(self) -> None:
        """Without Prefect: what the flow body does, minus Prefect (its reconciliation, then each automated step's
        body), until nothing more falls due."""
        from core.platform.db import session_scope
        from core.reporting.schedule import advance_with_reports
        from tasks.actions import ACTION_TASKS

        while True:
            with session_scope() as session:
                result = advance_with_reports(session, incident_id=self.incident_id, worker_id=self.worker_id)
            if not result.actions:
                return
            for task_id in result.actions:
                asyncio.run(ACTION_TASKS[result.action_of[task_id]].fn(task_id))
                self.automated += 1

    def stop(self) -> None:
        pass


class _PrefectFlowSide(_FlowSide):
    """The real flow run (Prefect's engine, in-process as a worker runs it) on a thread of its own."""

    def start(self) -> None:
        from flows.waking import RUNTIME, Runtime, Waker

        side = self
        self.idle = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

        class Watched(Waker):
            async def wait(self, event: asyncio.Event, timeout: float) -> bool:
                side.idle.set()
                try:
                    return await super().wait(event, timeout)
                finally:
                    side.idle.clear()

        self.waker = Watched()
        self.loop = asyncio.new_event_loop()

        async def main() -> None:
            from prefect.settings import PREFECT_API_URL

            import flows.incident as incident_flows

            side.api_url = PREFECT_API_URL.value()
            real = incident_flows.ACTION_TASKS
            RUNTIME.set(Runtime(worker_id=self.worker_id, waker=self.waker))

            class Tracking(dict[str, Any]):
                def __getitem__(inner, key: str) -> Any:  # noqa: N805
                    side.automated += 1
                    return real[key]

            incident_flows.ACTION_TASKS = Tracking(real)
            try:
                await incident_flows.incident_flow("flood")(incident_id=self.incident_id)  # type: ignore[misc]
            finally:
                incident_flows.ACTION_TASKS = real

        def run() -> None:
            try:
                self.loop.run_until_complete(main())
            except BaseException as exc:  # reported by the driver
                self.error = exc
            finally:
                self.done.set()

        # The thread runs in a copy of this context: Prefect's settings (the API to report to) live in a context
        # variable, and a bare thread would see only those read at import, and start an ephemeral server of its own.
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
        self.thread.start()
        self._until_idle(120)
        self.settle()

    def _until_idle(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not self.idle.is_set():
            if self.done.is_set():
                raise RuntimeError(f"the flow ended: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the flow did not come to wait")
            time.sleep(0.005)

    def _work(self) -> None:
        self.idle.clear()
        self.loop.call_soon_threadsafe(self.waker.wake, self.incident_id)
        self._until_idle(60)
        self.settle()

    def settle(self) -> None:
        """Until nothing the flow set off beside it (deliveries run as tasks of their own) is still busy."""
        import time

        def waits_for_a_wake(item: asyncio.Task[Any]) -> bool:
            # The flow's own wait: asyncio.wait_for runs the waker's `Event.wait()` as a task of its own.
            frame = getattr(item.get_coro(), "cr_frame", None)
            return frame is not None and any(frame.f_locals.get("self") is event
                                             for event in list(self.waker.events.values()))

        def busy() -> int:
            return sum(1 for item in asyncio.all_tasks(self.loop) if not item.done() and not waits_for_a_wake(item))

        deadline = time.monotonic() + 30
        while busy() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        for item in asyncio.all_tasks(self.loop) if not self.loop.is_closed() else ():
            self.loop.call_soon_threadsafe(item.cancel)
        self.thread.join(timeout=10)


def measure(call: Call, *, prefect: bool, steps: list[str] | None = None, seed: int = 7) -> Counts:
    """Open a flood incident through the API, then hand off `steps` one by one, counting each side.

    `call(method, path, token=..., **kwargs)` reaches the API (in-process or over HTTP, in this process so its
    statements are counted). With `prefect` the flow runs under Prefect's engine on `PREFECT_API_URL`."""
    from sqlalchemy import update
    from sqlmodel import col

    from core.incidents.models import Incident
    from core.platform.clock import utcnow
    from core.platform.db import get_engine, session_scope

    steps = steps or ORDER
    rng = random.Random(seed)
    tokens = _tokens(["meteorology", "water_affairs", "education", "housing"])
    response = call("POST", "/api/incidents", token=tokens["office"],
                    json={"type": "flood", "level": "IV", "title": "counted"})
    response.raise_for_status()
    incident_id = str(response.json()["id"])
    worker_id = "bench-counts"
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id)
                        .values(lease_owner=worker_id, lease_expires_at=utcnow().replace(year=2999)))
    side = (_PrefectFlowSide if prefect else _FlowSide)(incident_id, worker_id, prefect)
    engine = get_engine()
    handoffs: list[Handoff] = []
    with Counting(engine) as counting:
        try:
            # The incident's start (its flow run created and started, the first reconciliation): not a handoff,
            # reported beside them.
            side.start()
            if not prefect:
                side.wake()
            first = counting.take()
            start = Handoff(step="(start)", api_sql=0, worker_sql=first.sql, worker_prefect=first.prefect,
                            worker_events=first.events, automated_steps=side.automated,
                            assigned=sorted(_open_tasks(incident_id)), api_statements={},
                            worker_statements=dict(first.statements.most_common()),
                            worker_calls=dict(first.calls.most_common()))
            for step in steps:
                open_now = _open_tasks(incident_id)
                if step not in open_now:
                    continue  # not active at this level, or skipped by its condition
                task_id, department = open_now[step]
                token = tokens["office" if department == "emergency_office" else department]
                body: dict[str, Any] = {"outputs": _outputs(step, rng)}
                if step == "lift_warning":
                    body |= {"confirm_open_work": True, "open_work_reason": "counted run"}
                counting.take()
                done = call("POST", f"/api/tasks/{task_id}/complete", token=token, json=body)
                api = counting.take()
                if done.status_code != 200:
                    raise RuntimeError(f"completing {step}: {done.status_code} {done.text}")
                before = set(_open_tasks(incident_id))
                side.automated = 0
                counting.take()
                side.wake()
                worker = counting.take()
                assigned = sorted(set(_open_tasks(incident_id)) - before)
                handoffs.append(Handoff(step=step, api_sql=api.sql, worker_sql=worker.sql,
                                        worker_prefect=worker.prefect, worker_events=worker.events,
                                        automated_steps=side.automated, assigned=assigned,
                                        api_statements=dict(api.statements.most_common()),
                                        worker_statements=dict(worker.statements.most_common()),
                                        worker_calls=dict(worker.calls.most_common())))
        finally:
            side.stop()
    return Counts(handoffs=handoffs, start=start, database=engine.dialect.name, prefect=prefect,
                  prefect_api=side.api_url)


@contextmanager
def in_process_api() -> Iterator[Call]:
    """The app in this process through Starlette's test client (its statements are this process's)."""
    from starlette.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=True) as client:

        def call(method: str, path: str, *, token: str, **kwargs: Any) -> httpx.Response:
            return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)

        yield call


def report(counts: Counts) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Per ledgered handoff ({counts.database}, "
                        f"{'Prefect engine' if counts.prefect else 'no Prefect'})")
    for column in ("completed", "API SQL", "worker SQL", "worker Prefect calls", "events", "automated", "assigned"):
        table.add_column(column, justify="left" if column in ("completed", "assigned") else "right")
    for h in [counts.start, *counts.handoffs]:
        table.add_row(h.step, str(h.api_sql), str(h.worker_sql), str(h.worker_prefect), str(h.worker_events),
                      str(h.automated_steps), ", ".join(h.assigned))
    mean = counts.per_handoff()
    table.add_row("mean", f"{mean['api_sql']:.1f}", f"{mean['worker_sql']:.1f}", f"{mean['worker_prefect']:.1f}",
                  f"{mean['worker_events']:.1f}", f"{mean['automated_steps']:.1f}", "", end_section=True)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (a cluster of its own) for Baton")
    parser.add_argument("--no-prefect", action="store_true", help="the flow body without Prefect's engine")
    parser.add_argument("--verbose", action="store_true", help="print each handoff's statements and calls")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="baton-counts-"))
    os.environ["BATON_DATA_DIR"] = str(home)
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    from flows.stack import PostgresCluster, Stack, free_port

    cluster = PostgresCluster().start() if args.postgres else None
    stack = None
    try:
        if cluster is not None:
            os.environ["BATON_DATABASE_URL"] = cluster.create_database("baton")
        from core.platform.migrate import upgrade
        from core.platform.settings import get_settings

        get_settings.cache_clear()
        upgrade()
        if not args.no_prefect:
            port = free_port()
            stack = Stack(home=home, api_url=f"http://127.0.0.1:{port}/api")
            (home / "logs").mkdir(parents=True, exist_ok=True)
            stack.start_prefect(port)
            os.environ["PREFECT_API_URL"] = stack.api_url
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: os.environ.get("PREFECT_API_URL")}), \
                in_process_api() as call:
            counts = measure(call, prefect=not args.no_prefect)
    finally:
        if stack is not None:
            stack.stop()
        if cluster is not None:
            cluster.stop()
    report(counts)
    if args.verbose:
        print(json.dumps(counts.as_json(), indent=1, ensure_ascii=False))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "counts.json").write_text(json.dumps(counts.as_json(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
