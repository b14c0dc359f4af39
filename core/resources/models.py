"""Tables of the resources domain: a department's request for material reserves on an incident, every stock
movement it caused, and the replenishments a reserve under its safety stock opened.

A request asks for a whole number of units of a reserve category (GB/T 38565) from an owning department, or of
one reserve; the owning department (`supplier`) approves all or part of it, which draws one reserve down
(`drawn_reserve_id`), or refuses it with a reason. Each draw-down and each return is one `ReserveMovement`,
unique per request and kind: a replayed approval or return finds it and moves no stock twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class RequestStatus(StrEnum):
    requested = "requested"  # waiting for the owning department
    approved = "approved"  # all or part approved: the reserve is drawn down
    refused = "refused"
    dispatched = "dispatched"  # on its way (调拨出库)
    received = "received"  # the requester confirmed receipt
    returned = "returned"  # what was not consumed went back into stock (closed)

    @property
    def is_open(self) -> bool:
        return self not in (RequestStatus.refused, RequestStatus.returned)


class MovementKind(StrEnum):
    drawn = "drawn"  # an approval drew the reserve down
    returned = "returned"  # unconsumed units went back
    replenished = "replenished"  # the owner restocked after a replenishment


class ResourceRequest(SQLModel, table=True):
    __tablename__ = "resource_request"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="ck_resource_request_quantity"),
        CheckConstraint("quantity_approved IS NULL OR (quantity_approved > 0 AND quantity_approved <= quantity)",
                        name="ck_resource_request_approved"),
        CheckConstraint("quantity_received IS NULL OR quantity_received >= 0", name="ck_resource_request_received"),
        CheckConstraint("quantity_returned IS NULL OR quantity_returned >= 0", name="ck_resource_request_returned"),
        Index("ix_resource_request_parties", "requester", "supplier"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    requester: str = Field(max_length=64)  # the department asking (a registry key; emergency_office for the office)
    supplier: str = Field(max_length=64, index=True)  # the owning department asked
    category: str = Field(max_length=7)  # GB/T 38565 code of what is asked for
    reserve_id: str | None = Field(default=None, foreign_key="register_reserve.id", max_length=36)  # one reserve
    description: str = Field(default="", max_length=500)
    quantity: int
    unit: str = Field(max_length=16)
    destination: str = Field(max_length=300)  # where to deliver (送达地点)
    lon: float | None = None
    lat: float | None = None
    needed_by: datetime
    status: str = Field(default=RequestStatus.requested, max_length=16, index=True)
    requested_by: str = Field(max_length=100)
    requested_at: datetime = Field(default_factory=utcnow)
    # The requester's Idempotency-Key (digested with who sent it): a retried request is answered with the first.
    idempotency_key: str | None = Field(default=None, unique=True, max_length=64)
    drawn_reserve_id: str | None = Field(default=None, foreign_key="register_reserve.id", max_length=36)
    quantity_approved: int | None = None
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = None
    refusal_reason: str | None = Field(default=None, sa_column=Column(Text))
    dispatched_by: str | None = Field(default=None, max_length=100)
    dispatched_at: datetime | None = None
    dispatch_note: str | None = Field(default=None, max_length=500)
    quantity_received: int | None = None
    received_by: str | None = Field(default=None, max_length=100)
    received_at: datetime | None = None
    quantity_returned: int | None = None
    returned_by: str | None = Field(default=None, max_length=100)
    returned_at: datetime | None = None


class ReserveMovement(SQLModel, table=True):
    """One change of a reserve's stock caused here, unique per request (or replenishment) and kind."""

    __tablename__ = "reserve_movement"
    __table_args__ = (
        UniqueConstraint("request_id", "kind", name="uq_reserve_movement_request"),
        UniqueConstraint("replenishment_id", "kind", name="uq_reserve_movement_replenishment"),
        CheckConstraint("quantity > 0", name="ck_reserve_movement_quantity"),
    )

    id: int | None = Field(default=None, primary_key=True)
    reserve_id: str = Field(foreign_key="register_reserve.id", index=True, max_length=36)
    request_id: str | None = Field(default=None, foreign_key="resource_request.id", max_length=36)
    replenishment_id: str | None = Field(default=None, foreign_key="reserve_replenishment.id", max_length=36)
    kind: str = Field(max_length=16)  # MovementKind
    quantity: int  # units moved (always positive; the kind says which way)
    quantity_after: int  # the reserve's stock right after
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow)


class ReplenishmentStatus(StrEnum):
    open = "open"
    done = "done"


class Replenishment(SQLModel, table=True):
    """A reserve fell under its safety stock (安全库存): its owning department must restock it. One open at a time
    per reserve (`open_key` holds the reserve's id while open, NULL once done)."""

    __tablename__ = "reserve_replenishment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    reserve_id: str = Field(foreign_key="register_reserve.id", index=True, max_length=36)
    open_key: str | None = Field(default=None, unique=True, max_length=36)
    organisation: str = Field(max_length=64, index=True)  # the owning department, who restocks
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)  # whose draw-down opened it
    request_id: str = Field(foreign_key="resource_request.id", max_length=36)
    quantity_at_open: int
    safety_stock: int
    status: str = Field(default=ReplenishmentStatus.open, max_length=8)
    opened_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None
    done_by: str | None = Field(default=None, max_length=100)
    quantity_added: int | None = None
    note: str | None = Field(default=None, max_length=500)
