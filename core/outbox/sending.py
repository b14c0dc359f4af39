"""One attempt to deliver a message, its record, the retry delays and the dead letter.

An attempt is three steps, and whoever runs it (`tasks.delivery`) gives each database step a short transaction
of its own: read the message (`message`), post it with no transaction open (`post`: a slow department system
must never hold a lock), record what came back (`record_attempt`). What an answer means is decided here:
2xx delivered; a 4xx other than 408, 409, 425 and 429 refused for good (dead-lettered at once); anything else,
or no answer, retried after the next of `retry_delays()`, and dead-lettered (`dead_letter`) after the last.
"""

from __future__ import annotations

import json
import smtplib
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from sqlmodel import Session

from core.outbox import channels, mail
from core.outbox.models import DeliveryAttempt, DeliveryOutcome, OutboundDelivery
from core.outbox.signing import HEADER, sign
from core.platform.clock import utcnow
from core.platform.settings import get_settings
from core.platform.tls import tls_context

RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class DeliveryFailed(Exception):
    """One attempt failed in a way worth retrying."""


@dataclass(frozen=True)
class Message:
    """What an attempt sends: a pending delivery as read in its own short transaction."""

    delivery_id: str
    endpoint: str | None
    payload: dict[str, Any]
    key: str
    drill: bool
    purpose: str = ""
    target: str = ""
    channel: channels.ChannelConfig | None = None  # a notice to a person: its channel, as configured now


@dataclass(frozen=True)
class Attempt:
    """What one attempt got back, and the outcome that means (None: try again later)."""

    status_code: int | None
    error: str | None
    latency_ms: float | None
    outcome: DeliveryOutcome | None


def retry_delays() -> list[float]:
    """The pauses before each retry (the backoff); after the last retry fails the message is dead-lettered."""
    return list(get_settings().retry_delays)


def message(session: Session, *, delivery_id: str) -> Message | None:
    """The delivery to attempt, or None when it is no longer pending (delivered, dead-lettered meanwhile)."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None or delivery.outcome != DeliveryOutcome.pending:
        return None
    channel = channels.config_of(session, delivery.endpoint) if channels.is_notice(delivery.purpose) else None
    return Message(delivery_id=delivery.id, endpoint=delivery.endpoint, payload=delivery.payload,
                   key=delivery.idempotency_key, drill=delivery.drill, purpose=delivery.purpose,
                   target=delivery.target, channel=channel)


def outcome_of(status_code: int) -> DeliveryOutcome | None:
    if 200 <= status_code < 300:
        return DeliveryOutcome.delivered
    if 400 <= status_code < 500 and status_code not in RETRYABLE_4XX:
        return DeliveryOutcome.failed
    return None


async def post(item: Message) -> Attempt:
    """Post the message, signed, to its department's endpoint, mail it, or send a notice to a person over its
    channel (`core.outbox.channels`); call it with no transaction open."""
    if channels.is_notice(item.purpose):
        return await channels.send(item, item.channel)
    if mail.is_mail(item.purpose):
        return await send_mail(item)
    settings = get_settings()
    endpoint = settings.endpoints.get(item.endpoint or "")
    if endpoint is None:
        # Nothing to call: the department reads the assignment in Baton itself.
        return Attempt(status_code=None, error="no endpoint configured", latency_ms=None,
                       outcome=DeliveryOutcome.no_endpoint)
    body = json.dumps(item.payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        HEADER: sign(endpoint.secret.get_secret_value(), body),
        "Idempotency-Key": item.key,
        "X-Baton-Drill": "true" if item.drill else "false",
    }
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=settings.http_timeout, verify=tls_context()) as client:
            response = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}",
                       latency_ms=(time.perf_counter() - started) * 1000, outcome=None)
    latency = (time.perf_counter() - started) * 1000
    outcome = outcome_of(response.status_code)
    return Attempt(status_code=response.status_code,
                   error=None if outcome == DeliveryOutcome.delivered else f"HTTP {response.status_code}",
                   latency_ms=latency, outcome=outcome)


async def send_mail(item: Message) -> Attempt:
    """Hand an e-mail to the mail server: its refusal of the message (5xx) is final, anything else is retried."""
    settings = get_settings()
    address = settings.mail_addresses.get(item.target)
    if settings.smtp is None or address is None:
        return Attempt(status_code=None, error="no mail server or address configured", latency_ms=None,
                       outcome=DeliveryOutcome.no_endpoint)
    message = mail.build_message(item.payload["mail"], to=address, sender=settings.smtp.sender,
                                 message_id=str(item.payload.get("message_id") or item.delivery_id))
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(mail.submit, settings.smtp, message)
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        final = exc.smtp_code >= 500
        return Attempt(status_code=exc.smtp_code, error=f"{type(exc).__name__}: {exc}",
                       latency_ms=(time.perf_counter() - started) * 1000,
                       outcome=DeliveryOutcome.failed if final else None)
    except (OSError, smtplib.SMTPException) as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}",
                       latency_ms=(time.perf_counter() - started) * 1000, outcome=None)
    return Attempt(status_code=250, error=None, latency_ms=(time.perf_counter() - started) * 1000,
                   outcome=DeliveryOutcome.delivered)


def record_attempt(session: Session, *, delivery_id: str, attempt: Attempt) -> DeliveryOutcome | None:
    """Record the attempt (numbered) on the delivery, and its outcome when it has one; returns the outcome."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        return attempt.outcome
    delivery.attempts += 1
    delivery.last_status = attempt.status_code
    delivery.updated_at = utcnow()
    if attempt.outcome is not None:
        delivery.outcome = attempt.outcome
    session.add(delivery)
    session.add(DeliveryAttempt(delivery_id=delivery_id, number=delivery.attempts, status_code=attempt.status_code,
                                error=attempt.error[:500] if attempt.error else None, latency_ms=attempt.latency_ms))
    return attempt.outcome


def dead_letter(session: Session, *, delivery_id: str) -> None:
    """Out of retries: the message goes to the dead-letter list (outcome failed), where it can be replayed."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is not None and delivery.outcome == DeliveryOutcome.pending:
        delivery.outcome = DeliveryOutcome.failed
        delivery.updated_at = utcnow()
        session.add(delivery)
