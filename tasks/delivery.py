"""The Prefect task that delivers a queued message: `core.outbox.sending` attempts it, Prefect retries it with
the configured backoff, and after the last retry it is dead-lettered."""

from __future__ import annotations

from prefect import task

from core.outbox import sending
from core.platform.db import in_transaction


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


@task(name="deliver", retries=4, retry_delay_seconds=[1, 4, 15, 60], retry_jitter_factor=0.5)
async def deliver(delivery_id: str) -> str:
    return await send_once(delivery_id)


async def deliver_with_retries(delivery_id: str) -> str:
    """Run the Prefect task with the outbox's backoff; after the last retry the delivery is dead-lettered."""
    delays = sending.retry_delays()
    state = await deliver.with_options(retries=len(delays), retry_delay_seconds=delays)(  # type: ignore[misc]
        delivery_id, return_state=True)
    if state.is_completed():
        result: str = await state.aresult()
        return result
    await in_transaction(sending.dead_letter, delivery_id=delivery_id)
    return "failed"
