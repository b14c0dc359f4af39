"""Delivering a queued message: `core.outbox.sending` attempts it; the first attempt is made at once, and a message
that needs retrying becomes the Prefect task `deliver`, which retries it with the configured backoff; after the last
retry it is dead-lettered."""

from __future__ import annotations

import asyncio
import logging

from prefect import task

from core.outbox import sending
from core.platform.db import in_transaction

log = logging.getLogger("baton.delivery")


async def send_once(delivery_id: str) -> str:
    """One attempt; each database step is a short transaction of its own, none is open during the call.
    Returns the outcome ("done" if it was no longer pending), or raises DeliveryFailed to be retried."""
    item = await in_transaction(sending.message, delivery_id=delivery_id)
    if item is None:
        return "done"
    attempt = await sending.post(item)
    outcome = await in_transaction(sending.record_attempt, delivery_id=delivery_id, attempt=attempt)
    if outcome is None:
        raise sending.DeliveryFailed(attempt.error or "no answer")
    return outcome.value


@task(name="deliver", retry_jitter_factor=0.5)  # its retries and their delays: the outbox's, given where it is run
async def deliver(delivery_id: str) -> str:
    return await send_once(delivery_id)


async def deliver_with_retries(delivery_id: str) -> str:
    """Deliver with the outbox's backoff; after the last retry the delivery is dead-lettered.

    The first attempt is not a Prefect task run: most messages are delivered, refused or found to have nothing to
    call at once, and each is recorded in the outbox with its attempt either way (the pages and the ledger audit read
    that). A Prefect task run costs 7–8 ms of CPU across the stack (`bench.prefect_tasks`), and one per message
    was a third of the task runs a handoff set off (`docs/scaling.md`); a message that has to be retried is handed to
    Prefect's `deliver`, so its retries and its failure are shown in Prefect as before."""
    delays = sending.retry_delays()
    try:
        return await send_once(delivery_id)
    except sending.DeliveryFailed:
        pass
    except Exception as exc:  # whatever else failed, the retries below try again, as Prefect's would
        # The type only: a message's text can hold an endpoint's address, and a webhook's address its token.
        log.warning("delivery %s: its first attempt failed (%s); retrying", delivery_id, type(exc).__name__)
    if delays:
        await asyncio.sleep(delays[0])
        state = await deliver.with_options(retries=len(delays) - 1, retry_delay_seconds=delays[1:])(  # type: ignore[misc]
            delivery_id, return_state=True)
        if state.is_completed():
            result: str = await state.aresult()
            return result
    await in_transaction(sending.dead_letter, delivery_id=delivery_id)
    return "failed"
