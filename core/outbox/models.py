"""Tables of the outbox domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class DeliveryOutcome(StrEnum):
    pending = "pending"  # queued, or replayed: a flow (open incident) or a worker's outbox loop (closed) sends it
    delivered = "delivered"
    failed = "failed"  # dead-lettered: refused for good, or out of retries; an office user may replay it
    no_endpoint = "no_endpoint"  # no system configured: the department reads the assignment in Baton itself


class OutboundDelivery(SQLModel, table=True):
    """A message to a department system; attempts are in `DeliveryAttempt`."""

    __tablename__ = "outbound_delivery"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    idempotency_key: str = Field(unique=True, max_length=200)
    purpose: str = Field(max_length=32)
    target: str = Field(max_length=64)
    endpoint: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payload_digest: str = Field(max_length=64)
    drill: bool = False
    attempts: int = 0
    last_status: int | None = None
    outcome: str = Field(default=DeliveryOutcome.pending, max_length=16)  # a DeliveryOutcome
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Deliveries of closed incidents have no flow to send them; a worker's outbox loop leases them.
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = None
    replays: int = 0


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="outbound_delivery.id", index=True, max_length=36)
    number: int
    at: datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    latency_ms: float | None = None
