"""Incident flows: one Prefect flow per incident type (`incident-<type>`), one flow run per incident.

The flow body is a loop: reconcile the incident with its plan (assign what is due, move stages, escalate
what is overdue), run the automated steps as Prefect tasks, then wait (costing nothing but a coroutine)
until a department acts, a deadline comes, or the periodic re-check.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Any

import httpx
from prefect import Flow, flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import Abort, PrefectHTTPStatusError

from core.incidents.engine import AdvanceResult, fail_action
from core.plans.store import list_types
from core.platform.clock import utcnow
from core.platform.db import in_transaction, outage_reason
from core.platform.errors import LeaseLost
from core.platform.settings import get_settings
from core.reporting.schedule import advance_with_reports
from core.sharing import answers
from flows.outages import is_outage, outage_pause
from flows.waking import Runtime, current_runtime
from tasks.actions import ACTION_TASKS
from tasks.delivery import deliver_with_retries

log = logging.getLogger("baton.flow")


def _reconcile(session: Any, *, incident_id: str, worker_id: str | None) -> AdvanceResult:
    """One wake's reconciliation, in one transaction: the engine's (core.incidents), the upward reports it leaves
    owed (core.reporting), and the 叫应 answer calls (core.sharing.answers) on the incident row already locked and
    the tasks already read; the flow looks again at whichever falls due first."""
    result = advance_with_reports(session, incident_id=incident_id, worker_id=worker_id)
    if not result.closed:
        called = answers.reconcile(session, incident_id=incident_id)
        result.deliveries += [d for d in called.deliveries if d not in result.deliveries]
        if called.next_check is not None:
            result.next_check = called.next_check if result.next_check is None \
                else min(result.next_check, called.next_check)
    return result


async def _run_action(task_id: str, action: str) -> None:
    state = await ACTION_TASKS[action](task_id, return_state=True)
    if state.is_failed() or state.is_crashed():
        # Out of retries: record the failure and tell the command office rather than stall the incident.
        await in_transaction(fail_action, task_id=task_id, error=str(state.message or state.name)[:500])


async def follow_level(level: str) -> None:
    """Keep the flow run's `level:` tag the incident's level, so that Prefect's UI filters by the level now. A
    Prefect that cannot be reached costs the tag, never the incident: the next wake tries again."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    tags = [t for t in run.tags if not t.startswith("level:")] + [f"level:{level}"]
    if sorted(tags) == sorted(run.tags):
        return
    try:
        async with get_client() as client:  # in a worker, the client it shares with its runs (flows/worker.py)
            await client.update_flow_run(run.id, tags=tags)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        log.warning("flow run %s: its level tag stays %s for now (%s)", run.name, run.tags, exc)
        return
    run.tags = tags


async def run_incident(incident_id: str) -> dict[str, Any]:
    runtime = current_runtime()
    runtime.started()  # Prefect has started the run: the worker may start another
    sending: dict[str, asyncio.Task[str]] = {}
    try:
        return await _walk(incident_id, runtime, sending)
    except asyncio.CancelledError:
        if incident_id in runtime.lost:
            raise _handed_over(f"incident {incident_id}: its lease was lost to another worker") from None
        if runtime.stopping():
            raise _handed_over(f"incident {incident_id}: its worker stopped and handed it back") from None
        raise
    except LeaseLost as exc:
        raise _handed_over(str(exc)) from None
    finally:
        runtime.waker.forget(incident_id)
        for item in sending.values():
            item.cancel()


def _handed_over(why: str) -> Abort:
    """How a flow whose incident another worker has taken over (or will: this one is stopping) stops: Prefect's
    Abort ends the run in this process and proposes no state, where a crash would force the run Crashed (and a
    failure mark it Failed) under the worker that runs it next — and a stopping worker would send one such report
    per run it held, all at once."""
    return Abort(f"{why}; the run goes on with another worker")


async def _walk(incident_id: str, runtime: Runtime, sending: dict[str, asyncio.Task[str]]) -> dict[str, Any]:
    """The flow's loop: reconcile, run the automated steps, wait; until the incident closes."""
    settings = get_settings()
    logger = get_run_logger()
    outages = 0
    while True:
        event = runtime.waker.arm(incident_id)
        try:
            result = await in_transaction(_reconcile, incident_id=incident_id, worker_id=runtime.worker_id)
            await follow_level(result.level)
            # Deliveries run beside the flow: a slow department system never holds the incident up.
            for delivery_id in result.deliveries:
                if delivery_id not in sending or sending[delivery_id].done():
                    sending[delivery_id] = asyncio.create_task(deliver_with_retries(delivery_id))
            if result.actions:
                # All of them finish before an outage is retried: none is started twice at once.
                done = await asyncio.gather(*(_run_action(task_id, result.action_of[task_id])
                                              for task_id in result.actions),
                                            return_exceptions=True)
                for failed in done:
                    if isinstance(failed, BaseException):
                        raise failed
        except Exception as exc:
            # The database or Prefect out of reach: the run waits and tries again (the reconciliation rolled
            # back; an automated step that did not record its result is run again, and records it once)
            # rather than fail, so that the incident goes on the moment they are back.
            if not is_outage(exc):
                raise
            outages += 1
            pause = outage_pause(outages)
            logger.warning("Incident %s: %s; trying again in %.0f s", incident_id, outage_reason(exc), pause)
            await asyncio.sleep(pause)
            continue
        outages = 0
        if result.actions:
            continue
        if result.closed:
            logger.info("Incident %s closed at level %s", result.code, result.level)
            break
        timeout = settings.recheck_seconds
        if result.next_check is not None:
            timeout = min(timeout, (result.next_check - utcnow()).total_seconds() + 0.05)
        if runtime.worker_id is None:
            timeout = min(timeout, runtime.poll_without_worker)
        await runtime.waker.wait(event, timeout)
    pending = [t for t in sending.values() if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=settings.recheck_seconds)
    return {"incident_id": incident_id, "code": result.code, "status": result.status, "level": result.level}


@lru_cache(maxsize=64)
def incident_flow(type_key: str) -> Flow[..., Any]:
    """The Prefect flow for one incident type; every incident of that type is a run of it."""
    # A result storage of its own (nothing is persisted: persist_result=False), so that Prefect's engine does not
    # ask the server for its default storage at every run start (a blocking HTTP round trip, on the worker's loop).
    # No parameter validation: its one parameter is the incident's id, which the worker passes itself, and Prefect
    # builds a pydantic model of the function's signature to validate it at every run start (a quarter of a start's
    # CPU in the worker, profiled with yappi on 2026-12-04).
    return flow(name=f"incident-{type_key}", persist_result=False, log_prints=False, retries=0,
                validate_parameters=False,
                result_storage=(get_settings().data_dir / "prefect-results").resolve(),
                description=f"Walks a '{type_key}' incident through warning, response, recovery and learning.")(
        run_incident)


def all_incident_flows() -> dict[str, Flow[..., Any]]:
    return {key: incident_flow(key) for key in list_types()}

