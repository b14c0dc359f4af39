"""Deliver a queued message to a department system: signed, retried with backoff, every attempt recorded."""

from __future__ import annotations

import json
import ssl
import time
from functools import lru_cache
from typing import Any

import httpx
from prefect import task
from sqlmodel import Session

from core.outbox.models import DeliveryAttempt, OutboundDelivery
from core.outbox.signing import HEADER, sign
from core.platform.clock import utcnow
from core.platform.db import in_transaction
from core.platform.settings import get_settings


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every delivery: building one loads the CA bundle, 150 ms of CPU a message otherwise."""
    return ssl.create_default_context()


class DeliveryFailed(Exception):
    """One attempt failed; Prefect retries the task."""


def _load(session: Session, *, delivery_id: str) -> dict[str, Any] | None:
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None or delivery.outcome != "pending":
        return None
    return {"endpoint": delivery.endpoint, "payload": delivery.payload, "key": delivery.idempotency_key,
            "attempts": delivery.attempts, "drill": delivery.drill}


def _record(session: Session, *, delivery_id: str, status_code: int | None, error: str | None,
            latency_ms: float | None, outcome: str | None) -> None:
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        return
    delivery.attempts += 1
    delivery.last_status = status_code
    delivery.updated_at = utcnow()
    if outcome is not None:
        delivery.outcome = outcome
    session.add(delivery)
    session.add(DeliveryAttempt(delivery_id=delivery_id, number=delivery.attempts, status_code=status_code,
                                error=error[:500] if error else None, latency_ms=latency_ms))


def _finish(session: Session, *, delivery_id: str, outcome: str) -> None:
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is not None and delivery.outcome == "pending":
        delivery.outcome = outcome
        delivery.updated_at = utcnow()
        session.add(delivery)


async def send_once(delivery_id: str) -> str:
    """One attempt. Returns the outcome, or raises DeliveryFailed for a retryable failure."""
    info = await in_transaction(_load, delivery_id=delivery_id)
    if info is None:
        return "done"
    settings = get_settings()
    endpoint = settings.endpoints.get(info["endpoint"] or "")
    if endpoint is None:
        # Nothing to call: the department reads the assignment in Baton itself.
        await in_transaction(_record, delivery_id=delivery_id, status_code=None, error="no endpoint configured",
                             latency_ms=None, outcome="no_endpoint")
        return "no_endpoint"
    body = json.dumps(info["payload"], ensure_ascii=False, sort_keys=True).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        HEADER: sign(endpoint.secret.get_secret_value(), body),
        "Idempotency-Key": info["key"],
        "X-Baton-Drill": "true" if info["drill"] else "false",
    }
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=settings.http_timeout, verify=_tls_context()) as client:
            response = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        latency = (time.perf_counter() - started) * 1000
        await in_transaction(_record, delivery_id=delivery_id, status_code=None, error=f"{type(exc).__name__}: {exc}",
                             latency_ms=latency, outcome=None)
        raise DeliveryFailed(str(exc)) from exc
    latency = (time.perf_counter() - started) * 1000
    if 200 <= response.status_code < 300:
        await in_transaction(_record, delivery_id=delivery_id, status_code=response.status_code, error=None,
                             latency_ms=latency, outcome="delivered")
        return "delivered"
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 409, 425, 429)
    await in_transaction(_record, delivery_id=delivery_id, status_code=response.status_code,
                         error=f"HTTP {response.status_code}", latency_ms=latency,
                         outcome="failed" if permanent else None)
    if permanent:
        return "failed"
    raise DeliveryFailed(f"HTTP {response.status_code}")


@task(name="deliver", retries=4, retry_delay_seconds=[1, 4, 15, 60], retry_jitter_factor=0.5)
async def deliver(delivery_id: str) -> str:
    return await send_once(delivery_id)


async def deliver_with_retries(delivery_id: str) -> str:
    """Run the Prefect task with the configured backoff; after the last retry the delivery is dead-lettered."""
    delays = get_settings().retry_delays
    state = await deliver.with_options(retries=len(delays), retry_delay_seconds=delays)(  # type: ignore[misc]
        delivery_id, return_state=True)
    if state.is_completed():
        result: str = await state.aresult()
        return result
    await in_transaction(_finish, delivery_id=delivery_id, outcome="failed")
    return "failed"
