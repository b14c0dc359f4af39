"""The Baton worker: one long-lived process running many incident flow runs in its own event loop.

It claims incidents (leases in the application database), creates or resumes each incident's Prefect
flow run (no deployment, named by the incident code), runs it in-process, and wakes the waiting flows
when the database shows that a department acted. Several workers share the work; when one dies its leases
expire and the others take its incidents over, resuming the same flow runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import flow_engine
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import FlowCreate, FlowRunCreate
from prefect.client.schemas.objects import FlowRun
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.exceptions import Abort, ObjectNotFound, TerminationSignal
from prefect.flow_engine import run_flow_async
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Pending, to_state_create
from sqlmodel import Session

from core.incidents import leases
from core.incidents.models import Incident
from core.outbox.queue import claim_orphans
from core.platform.clock import utcnow
from core.platform.db import in_transaction, outage_reason, session_scope
from core.platform.failpoints import afailpoint
from core.platform.heap import freeze_startup_heap
from core.platform.settings import Settings, get_settings
from flows.incident import incident_flow
from flows.lease_keeper import LeaseKeeper
from flows.outages import is_outage, outage_pause
from flows.waking import RUNTIME, Runtime, Waker
from tasks.delivery import deliver_with_retries

log = logging.getLogger("baton.worker")

HEALTHY_RUN_SECONDS = 60.0  # a flow run that lasted this long before failing was not failing in a loop
# After an incident was claimed or woken here, the polls keep their own pace this long although notified.
BUSY_SECONDS = 5.0


@contextlib.contextmanager
def _worker_owns_sigterm() -> Iterator[None]:
    """Keep SIGTERM the worker's own while its flow runs run.

    Prefect's engine puts, for each flow run, a SIGTERM handler of its own in the place of the process's (it raises
    TerminationSignal wherever the main thread happens to be): meant for a process that runs one flow. With
    hundreds of runs in one loop a SIGTERM then tore the loop down under all of them; every run reported its crash
    through a client already closed, with a traceback each (87 and 551 of them in two benchmark stops on
    2026-12-04), and the worker's own stop (cancel the runs, release the leases at once) did not run.
    """
    installed = flow_engine.capture_sigterm
    flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[assignment]
    try:
        yield
    finally:
        flow_engine.capture_sigterm = installed


def _loop_failed(what: str, exc: Exception) -> None:
    """A database outage is expected on a bad night and the loops retry: one line, not a traceback a second."""
    if is_outage(exc):
        reason = outage_reason(exc)
        log.warning("%s: unavailable (%s); retrying", what, reason)
    else:
        log.exception(what, exc_info=exc)


def run_tags(incident: Incident) -> list[str]:
    """The flow run's tags: what Prefect's UI filters by. The level follows changes (flows/incident.py); the
    instance tells two Baton systems on one Prefect server apart."""
    instance = get_settings().resolved_instance_name()
    tags = [f"type:{incident.type}", f"level:{incident.level}", "baton", f"instance:{instance}"]
    if incident.drill:
        tags.append("drill")
    return tags


def _snapshot(session: Session, *, incident_id: str) -> dict[str, Any] | None:
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    return {"id": incident.id, "code": incident.code, "type": incident.type, "status": incident.status,
            "flow_run_id": incident.flow_run_id, "tags": run_tags(incident)}


class BatonWorker:
    def __init__(self, settings: Settings | None = None, worker_id: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.worker_id = worker_id or self.settings.resolved_worker_id()
        self.waker = Waker()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, int] = {}  # failures in a row that were not outages, per incident
        self.outages: dict[str, int] = {}  # outages in a row, per incident
        self.seen: dict[str, Any] = {}
        self.lost: set[str] = set()  # incidents whose lease another worker took while this one ran them
        self._client: PrefectClient | None = None
        self._flow_ids: dict[str, UUID] = {}
        self.stopping = asyncio.Event()
        # PostgreSQL: set while this worker listens for notifications (its polls then run as the fallback only),
        # and `claim_now` when one says an incident was opened.
        self.listening = False
        self.claim_now = asyncio.Event()
        # Until when the polls keep their own pace although notified: while handoffs flow, a notification lost
        # costs one fast poll (0.2 s), not the idle fallback's 2 s.
        self.busy_until = 0.0
        self.starting = asyncio.Semaphore(self.settings.worker_start_concurrency)

    # -- flow runs -----------------------------------------------------------------------------------
    async def _flow_id(self, name: str) -> UUID:
        if name not in self._flow_ids:
            assert self._client is not None
            response = await self._client.request("POST", "/flows/", json=FlowCreate(name=name).model_dump(mode="json"))
            self._flow_ids[name] = UUID(response.json()["id"])
        return self._flow_ids[name]

    async def ensure_flow_run(self, info: dict[str, Any]) -> FlowRun:
        """The incident's flow run: created once (idempotently, keyed by the incident), then resumed."""
        assert self._client is not None
        client = self._client
        run: FlowRun | None = None
        if info["flow_run_id"]:
            try:
                run = await client.read_flow_run(UUID(info["flow_run_id"]))
            except ObjectNotFound:
                # Prefect's database was lost or pruned: the incident goes on in a new run of its flow.
                log.warning("incident %s: flow run %s is gone from Prefect; starting a new one", info["code"],
                            info["flow_run_id"])
                await in_transaction(leases.set_flow_run, incident_id=info["id"], flow_run_id=None)
        if run is None:
            flow_obj = incident_flow(info["type"])
            body = FlowRunCreate(
                flow_id=await self._flow_id(flow_obj.name), name=info["code"],
                parameters={"incident_id": info["id"]}, tags=info["tags"], state=to_state_create(Pending()),
                idempotency_key=f"baton-incident:{info['id']}:{info['flow_run_id'] or 'first'}",
            ).model_dump(mode="json", exclude_unset=True)
            response = await client.request("POST", "/flow_runs/", json=body)
            run = FlowRun.model_validate(response.json())
            await afailpoint("flow.created")
            await in_transaction(leases.set_flow_run, incident_id=info["id"], flow_run_id=str(run.id))
        if run.state is not None and (run.state.is_final() or run.state.is_paused()):
            # The incident is still open, so its run must go on (e.g. it crashed with its old worker). Prefect's
            # Cancel does not end an incident (docs/architecture.md, "What Prefect shows"): only Baton closes one,
            # in its ledger.
            if run.state.is_cancelled():
                log.warning("incident %s: its flow run was cancelled in Prefect; an open incident goes on (close "
                            "it in Baton)", info["code"])
            await client.set_flow_run_state(run.id, Pending(message="resumed by Baton"), force=True)
            run = await client.read_flow_run(run.id)
        return run

    async def _run_incident(self, incident_id: str) -> None:
        started = time.monotonic()
        # Held from the snapshot until the flow body runs (`Runtime.started`), or until this start fails: at most
        # `worker_start_concurrency` runs are being created and started in Prefect at once.
        holding = False

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                self.starting.release()

        try:
            await self.starting.acquire()
            holding = True
            info = await in_transaction(_snapshot, incident_id=incident_id)
            if info is None or info["status"] != "open":
                return
            run = await self.ensure_flow_run(info)
            token = RUNTIME.set(Runtime(worker_id=self.worker_id, waker=self.waker, lost=self.lost, started=release,
                                        stopping=self.stopping.is_set))
            try:
                state = await run_flow_async(incident_flow(info["type"]), flow_run=run,
                                             parameters={"incident_id": incident_id}, return_type="state")
            finally:
                RUNTIME.reset(token)
                release()
            if state is not None and hasattr(state, "is_completed") and not state.is_completed():
                await self._back_off(incident_id, info["code"], f"its flow run ended {state.name}: {state.message}",
                                     ran_for=time.monotonic() - started)
            else:
                self.failures.pop(incident_id, None)
                self.outages.pop(incident_id, None)
        except Abort as exc:
            # Its lease was lost and another worker runs it now, or this worker is stopping and hands it back
            # (flows/incident.py; the stop says so once for all): nothing to retry here.
            log.log(logging.DEBUG if self.stopping.is_set() else logging.WARNING, "incident %s: stopped here: %s",
                    incident_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            release()  # before the back-off: a failed start holds no other start up
            # An outage (the database or Prefect down) is named in one line; anything else with its traceback.
            outage = is_outage(exc)
            await self._back_off(incident_id, incident_id, f"{type(exc).__name__}: {outage_reason(exc)}",
                                 exc_info=not outage, outage=outage, ran_for=time.monotonic() - started)
        finally:
            release()
            self.running.pop(incident_id, None)
            self.lost.discard(incident_id)
            if not self.stopping.is_set():
                with contextlib.suppress(Exception):
                    await in_transaction(leases.release, worker_id=self.worker_id, incident_ids=[incident_id])

    async def _back_off(self, incident_id: str, name: str, why: str, *, exc_info: bool = False, outage: bool = False,
                        ran_for: float = 0.0) -> None:
        """A failing incident is named in the log and retried after a growing pause (2 s … 5 min), so one
        broken plan or record never spins a worker.

        Only failures in a row count: a run that went on for a while before it failed starts the count again, or
        an incident that lived through a few short outages over a night would wait minutes after the next one.
        An outage (the database or Prefect out of reach) is retried at most every OUTAGE_RETRY_MAX seconds, and
        counts apart: outages do not lengthen the pause after a bug (the fault suites saw an incident that had
        lived through four outages in a row wait over a minute after the fifth)."""
        counts = self.outages if outage else self.failures
        count = 1 if ran_for >= HEALTHY_RUN_SECONDS else counts.get(incident_id, 0) + 1
        counts[incident_id] = count
        delay = outage_pause(count) if outage else min(300.0, 2.0 ** count)
        log.error("incident %s (%s) failed, attempt %d; retrying in %.0f s: %s", name, incident_id, count, delay,
                  why, exc_info=exc_info)
        await self._sleep(delay)

    # -- loops ---------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                room = self.settings.worker_capacity - len(self.running)
                if room <= 0:  # full: nothing to ask the database for until an incident ends here
                    await self._sleep(self.settings.claim_interval)
                    continue
                self.claim_now.clear()  # a notification from here on brings the next pass forward
                claimed = await in_transaction(leases.claim, lane="leases", worker_id=self.worker_id,
                                               limit=min(room, 50), lease_seconds=self.settings.lease_seconds)
                if claimed:
                    self.busy()
                for incident_id in claimed:
                    if incident_id not in self.running:
                        self.running[incident_id] = asyncio.create_task(self._run_incident(incident_id))
                delay = 0.0 if len(claimed) >= 50 else self.poll_interval(self.settings.claim_interval)
            except Exception as exc:
                _loop_failed("claim failed", exc)
                delay = 2.0
            await self._sleep(delay, self.claim_now)

    def poll_interval(self, interval: float) -> float:
        """A poll's interval: `interval`; or, on a worker that is told of changes and has had none for a few
        seconds, the longer fallback's (an idle worker's polls were most of its CPU)."""
        if self.listening and time.monotonic() >= self.busy_until:
            return max(interval, self.settings.notified_poll_interval)
        return interval

    def busy(self) -> None:
        """Something happened here (an incident claimed or woken): keep the polls at their own pace a while."""
        self.busy_until = time.monotonic() + BUSY_SECONDS

    def running_ids(self) -> list[str]:
        """The incidents running now (read from the lease keeper's thread as well as the loop)."""
        while True:
            try:
                return list(self.running)
            except RuntimeError:  # the loop changed it while it was copied
                continue

    def lease_keeper(self, loop: asyncio.AbstractEventLoop) -> LeaseKeeper:
        """The thread that renews this worker's leases; what it finds lost is handed to `loop`."""

        def on_lost(incident_id: str) -> None:
            loop.call_soon_threadsafe(self._lease_lost, incident_id)

        return LeaseKeeper(worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds,
                           held=self.running_ids, on_lost=on_lost)

    def _lease_lost(self, incident_id: str) -> None:
        """On the loop: the keeper found another worker holding this incident. Its flow stops at once, and
        without a word to Prefect (the run is the other worker's now)."""
        task = self.running.get(incident_id)
        if task is None or task.done() or incident_id in self.lost:
            return
        log.warning("incident %s: lease lost to another worker; stopping here", incident_id)
        self.lost.add(incident_id)
        task.cancel()

    async def _wake_loop(self) -> None:
        margin = timedelta(seconds=5)
        since = utcnow() - margin
        while not self.stopping.is_set():
            started = utcnow()
            try:
                rows = await in_transaction(leases.recently_woken, lane="leases", worker_id=self.worker_id,
                                            since=since)
                for incident_id, woken_at in rows:
                    if self.seen.get(incident_id) != woken_at:
                        self.seen[incident_id] = woken_at
                        self.waker.wake(incident_id)
                        self.busy()
                # Overlap the windows: a write committed late with an earlier timestamp is still seen.
                since = started - margin
                if len(self.seen) > 4 * max(len(self.running), 100):
                    self.seen = {k: v for k, v in self.seen.items() if k in self.running}
            except Exception as exc:
                _loop_failed("wake poll failed", exc)
            await self._sleep(self.poll_interval(self.settings.wake_interval))

    async def _notify_loop(self) -> None:
        """PostgreSQL: wake a flow the moment a transaction that woke its incident commits (LISTEN/NOTIFY), instead of
        at the next wake poll, and claim a new incident the moment the transaction that opened it commits. The polls
        stay as the fallback, slower while this listens (`notified_poll_interval`): a notification lost while this
        connection was down costs at most one poll interval, and while it is down they poll at their own pace.
        Nothing to do on SQLite."""
        import psycopg

        conninfo = leases.wake_listener_conninfo()
        if conninfo is None:
            return
        while not self.stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {leases.WAKE_CHANNEL}")
                    await conn.execute(f"LISTEN {leases.CLAIM_CHANNEL}")
                    self.listening = True
                    self.claim_now.set()  # what was opened before this listened is claimed now, not a poll later
                    async for note in conn.notifies():
                        if note.channel == leases.CLAIM_CHANNEL:
                            self.claim_now.set()
                            continue
                        woken = leases.parse_wake(note.payload)
                        if woken is None or woken[0] not in self.running:
                            continue
                        # The poll that later reads the same woken_at does not wake the flow a second time.
                        self.seen[woken[0]] = woken[1]
                        self.waker.wake(woken[0])
                        self.busy()
            except Exception as exc:
                _loop_failed("wake notifications", exc)
            finally:
                self.listening = False
            await self._sleep(2.0)

    async def _outbox_loop(self) -> None:
        """Send what no flow will: deliveries of closed incidents (late shares, replays of dead letters). The
        outbox leases them to this worker; each is then delivered (retried, dead-lettered) as a flow's would be."""
        sending: dict[str, asyncio.Task[str]] = {}
        while not self.stopping.is_set():
            try:
                for delivery_id in await in_transaction(claim_orphans, worker_id=self.worker_id):
                    if delivery_id not in sending:
                        sending[delivery_id] = asyncio.create_task(deliver_with_retries(delivery_id))
                sending = {k: v for k, v in sending.items() if not v.done()}
            except Exception as exc:
                _loop_failed("outbox poll failed", exc)
            await self._sleep(2.0)
        for item in sending.values():
            item.cancel()

    async def _sleep(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """`seconds`, or until the worker stops or `until` is set."""
        waits = [asyncio.ensure_future(event.wait()) for event in (self.stopping, until) if event is not None]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for item in waits:
                item.cancel()

    async def serve(self) -> None:
        # Baton's leases find dead workers; Prefect's per-run heartbeat threads would only add threads.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), _worker_owns_sigterm():
            # One Prefect client (and one blocking one) for the worker and every flow run it starts: Prefect's engine
            # takes the clients of the context it runs in, and made two of its own per run otherwise, each loading
            # a certificate bundle (83 % of a run start's CPU in the 10,000-incident bench, though Prefect is
            # reached over plain HTTP), plus a blocking read of the server's default result storage.
            async with AsyncClientContext() as clients, contextlib.AsyncExitStack() as stack:
                stack.enter_context(SyncClientContext())
                self._client = clients.client
                # Leases under this id are stale (a worker of the same name died); free them to be claimed.
                await in_transaction(leases.release, worker_id=self.worker_id)
                keeper = self.lease_keeper(asyncio.get_running_loop())
                keeper.start()
                loops = [asyncio.create_task(coro) for coro in
                         (self._claim_loop(), self._wake_loop(), self._notify_loop(), self._outbox_loop())]
                frozen = freeze_startup_heap()
                log.info("Baton worker %s started (%d objects of its start-up kept out of garbage collection)",
                         self.worker_id, frozen)
                await self.stopping.wait()
                await asyncio.to_thread(keeper.stop)
                if self.running:
                    log.info("Baton worker %s stopping: %d incident flow runs handed back for another worker to "
                             "resume (Prefect shows them Running meanwhile)", self.worker_id, len(self.running))
                for item in loops:
                    item.cancel()
                # Prefect's engine logs a run's end at ERROR unless it completed ("Finished in state Running()"):
                # for runs handed back, one false alarm per incident (507 in one benchmark stop); said once above.
                run_log = logging.getLogger("prefect.flow_runs")
                level = run_log.level
                run_log.setLevel(logging.CRITICAL)
                try:
                    for item in list(self.running.values()):
                        item.cancel()
                    await asyncio.gather(*loops, *self.running.values(), return_exceptions=True)
                finally:
                    run_log.setLevel(level)
                # Hand the incidents back at once rather than making others wait for the leases to lapse.
                await self._release_leases()
                log.info("Baton worker %s stopped", self.worker_id)

    async def _release_leases(self, attempts: int = 5) -> None:
        """Free this worker's leases as it stops, trying again over a busy moment (SQLite's writer lock held by
        another process, a database restarting); leases not freed lapse on their own within the lease time."""
        for attempt in range(attempts):
            try:
                await in_transaction(leases.release, worker_id=self.worker_id)
                return
            except Exception as exc:
                if attempt == attempts - 1:
                    log.warning("Baton worker %s: its leases were not released as it stopped (%s); they lapse "
                                "within %s s", self.worker_id, outage_reason(exc) if is_outage(exc) else exc,
                                self.settings.lease_seconds)
                    return
                await asyncio.sleep(0.2 * 2**attempt)

    def stop(self) -> None:
        self.stopping.set()


def run_worker(settings: Settings | None = None) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    from core.platform.migrate import upgrade_when_reachable

    upgrade_when_reachable()
    worker = BatonWorker(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.serve()

    try:
        asyncio.run(main())
    except TerminationSignal:
        # Prefect's own SIGTERM handler, should anything install it in spite of `_worker_owns_sigterm`, raises this
        # instead of calling ours; asyncio.run has cancelled the runs by now.
        log.info("Baton worker %s terminated", worker.worker_id)
    finally:
        with contextlib.suppress(Exception), session_scope() as session:
            leases.release(session, worker_id=worker.worker_id)
