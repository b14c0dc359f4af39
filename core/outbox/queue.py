"""Putting messages in the outbox and handing them out: queue one, an incident's pending ones, and the orphans."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.ledger.chain import digest_of
from core.outbox.models import DeliveryOutcome, OutboundDelivery
from core.plans.store import registry
from core.platform.clock import utcnow
from core.platform.db import new_id
from core.platform.settings import get_settings


def has_endpoint(department: str) -> bool:
    """Whether the department has a system Baton sends to (an endpoint named in the registry and configured)."""
    dept = registry().department(department)
    return bool(dept and dept.endpoint and dept.endpoint in get_settings().endpoints)


def sends_anywhere() -> bool:
    """Whether any department system is configured at all (else nobody has an endpoint: nothing to look up)."""
    return bool(get_settings().endpoints)


def queue(session: Session, *, incident: Incident | None, key: str, purpose: str, target: str,
          payload: dict[str, Any], endpoint: str | None = None) -> OutboundDelivery:
    """Queue a message to `target` once per `key` (a second call returns the message already queued). The
    endpoint is the target department's, unless given (a notification channel's id, `core.outbox.channels`).
    `incident` None: a message of the daily side (prevention), which a worker's outbox loop sends."""
    existing = session.exec(select(OutboundDelivery).where(OutboundDelivery.idempotency_key == key)).first()
    if existing is not None:
        return existing
    dept = registry().department(target)
    message_id = new_id()
    # message_id lets a receiving system drop a message it has already processed (retries, replays).
    drill = incident.drill if incident is not None else False
    about = {"incident": {"id": incident.id, "code": incident.code, "type": incident.type, "level": incident.level,
                          "title": incident.title, "drill": incident.drill}} if incident is not None else {}
    body = {"message_id": message_id, "sent_for": key, **about, "purpose": purpose, "drill": drill, **payload}
    delivery = OutboundDelivery(id=message_id, incident_id=incident.id if incident is not None else None,
                                idempotency_key=key, purpose=purpose, target=target,
                                endpoint=endpoint or (dept.endpoint if dept else None), payload=body,
                                payload_digest=digest_of(body), drill=drill)
    session.add(delivery)
    session.flush()
    return delivery


def pending(session: Session, *, incident_id: str) -> list[str]:
    """The incident's messages still to send (its flow sends them while the incident is open)."""
    return list(session.exec(_PENDING, params={"incident_id": incident_id}).all())


# Built once: the incident's flow asks on every wake.
_PENDING = select(OutboundDelivery.id).where(OutboundDelivery.incident_id == bindparam("incident_id"),
                                             OutboundDelivery.outcome == DeliveryOutcome.pending)


def claim_orphans(session: Session, *, worker_id: str, limit: int = 20, lease_seconds: float = 300,
                  now: datetime | None = None) -> list[str]:
    """Pending messages no flow will send (their incident is closed: late shares, replayed dead letters; or they
    have none: prevention's), leased to this worker for `lease_seconds`; a message leased to another worker is
    skipped until its lease lapses."""
    moment = now or utcnow()
    free = or_(col(OutboundDelivery.lease_owner).is_(None), col(OutboundDelivery.lease_expires_at) < moment)
    flowless = or_(col(OutboundDelivery.incident_id).is_(None), col(Incident.status) == IncidentStatus.closed)
    ids = list(session.exec(
        select(OutboundDelivery.id).outerjoin(Incident, col(Incident.id) == OutboundDelivery.incident_id)
        .where(OutboundDelivery.outcome == DeliveryOutcome.pending, flowless, free)
        .order_by(col(OutboundDelivery.created_at)).limit(limit)).all())
    if not ids:
        return []
    # Conditional on the same test, so that of two workers claiming at once each message goes to one.
    session.execute(update(OutboundDelivery)
                    .where(col(OutboundDelivery.id).in_(ids),
                           col(OutboundDelivery.outcome) == DeliveryOutcome.pending, free)
                    .values(lease_owner=worker_id, lease_expires_at=moment + timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False))
    return list(session.exec(select(OutboundDelivery.id).where(col(OutboundDelivery.id).in_(ids),
                                                               OutboundDelivery.lease_owner == worker_id)).all())
