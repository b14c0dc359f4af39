"""The delivery log: every message to a department system with its attempts; the dead-letter list and replay."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.incidents.service import wake
from core.outbox.models import DeliveryAttempt, OutboundDelivery
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound
from core.platform.paging import Page, paged
from core.users.service import audit

DEAD = "failed"


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
    if delivery.outcome != DEAD:
        raise NotReplayable(f"only failed deliveries can be replayed; this one is {delivery.outcome}")
    delivery.outcome = "pending"
    delivery.replays += 1
    delivery.lease_owner = None
    delivery.lease_expires_at = None
    delivery.updated_at = utcnow()
    session.add(delivery)
    incident = session.get(Incident, delivery.incident_id)
    if incident is not None:
        wake(incident)
        session.add(incident)
    audit(session, actor=actor, action="delivery.replayed", delivery_id=delivery_id, target=delivery.target)
    return delivery


def claim_orphans(session: Session, *, worker_id: str, limit: int = 20, lease_seconds: float = 300,
                  now: datetime | None = None) -> list[str]:
    """Pending deliveries no flow will send (their incident is closed), leased to this worker."""
    moment = now or utcnow()
    ids = list(session.exec(
        select(OutboundDelivery.id).join(Incident, col(Incident.id) == OutboundDelivery.incident_id)
        .where(OutboundDelivery.outcome == "pending", Incident.status == IncidentStatus.closed,
               or_(col(OutboundDelivery.lease_owner).is_(None), col(OutboundDelivery.lease_expires_at) < moment))
        .limit(limit)).all())
    if not ids:
        return []
    session.execute(update(OutboundDelivery)
                    .where(col(OutboundDelivery.id).in_(ids), col(OutboundDelivery.outcome) == "pending",
                           or_(col(OutboundDelivery.lease_owner).is_(None),
                               col(OutboundDelivery.lease_expires_at) < moment))
                    .values(lease_owner=worker_id, lease_expires_at=moment + timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False))
    return list(session.exec(select(OutboundDelivery.id).where(col(OutboundDelivery.id).in_(ids),
                                                               OutboundDelivery.lease_owner == worker_id)).all())


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
