"""The delivery log: every message to a department system with its attempts; the dead-letter list and replay.

A replayed message is pending again under its old message id (receivers de-duplicate by it); the incident is
woken so its flow sends it, or, once the incident is closed, a worker's outbox loop (`queue.claim_orphans`)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from core.incidents.models import Incident
from core.outbox.models import DeliveryAttempt, DeliveryOutcome, OutboundDelivery
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound
from core.platform.paging import Page, paged
from core.users.service import audit


class NotReplayable(BatonError):
    code = "not_replayable"
    http_status = 409


def list_deliveries(session: Session, *, outcome: str | None = None, incident_id: str | None = None,
                    target: str | None = None, limit: int = 100, offset: int = 0) -> Page:
    query = select(OutboundDelivery)
    if outcome is not None:
        query = query.where(OutboundDelivery.outcome == outcome)
    if incident_id is not None:
        query = query.where(OutboundDelivery.incident_id == incident_id)
    if target is not None:
        query = query.where(OutboundDelivery.target == target)
    return paged(session, query, col(OutboundDelivery.created_at).desc(), limit=limit, offset=offset)


def attempts(session: Session, delivery_id: str) -> list[DeliveryAttempt]:
    return list(session.exec(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                             .order_by(col(DeliveryAttempt.number))).all())


def get_delivery(session: Session, delivery_id: str) -> OutboundDelivery:
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery '{delivery_id}'")
    return delivery


def replay(session: Session, *, delivery_id: str, actor: str) -> OutboundDelivery:
    """Put a dead-lettered message back in the queue; its message id stays, so receivers can de-duplicate."""
    delivery = get_delivery(session, delivery_id)
    if delivery.outcome != DeliveryOutcome.failed:
        raise NotReplayable(f"only failed deliveries can be replayed; this one is {delivery.outcome}")
    delivery.outcome = DeliveryOutcome.pending
    delivery.replays += 1
    delivery.lease_owner = None
    delivery.lease_expires_at = None
    delivery.updated_at = utcnow()
    session.add(delivery)
    incident = session.get(Incident, delivery.incident_id) if delivery.incident_id else None
    if incident is not None:
        incident.wake()
        session.add(incident)
    audit(session, actor=actor, action="delivery.replayed", delivery_id=delivery_id, target=delivery.target)
    return delivery


def public(delivery: OutboundDelivery, with_payload: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": delivery.id, "incident_id": delivery.incident_id, "purpose": delivery.purpose,
        "target": delivery.target, "outcome": delivery.outcome, "attempts": delivery.attempts,
        "last_status": delivery.last_status, "drill": delivery.drill, "replays": delivery.replays,
        "payload_digest": delivery.payload_digest, "created_at": delivery.created_at,
        "updated_at": delivery.updated_at}
    if with_payload:
        out["payload"] = delivery.payload
    return out
