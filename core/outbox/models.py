"""Tables of the outbox domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id
from core.platform.sealing import SealedText


class DeliveryOutcome(StrEnum):
    pending = "pending"  # queued, or replayed: a flow (open incident) or a worker's outbox loop (closed) sends it
    delivered = "delivered"
    failed = "failed"  # dead-lettered: refused for good, or out of retries; an office user may replay it
    no_endpoint = "no_endpoint"  # no system configured: the department reads the assignment in Baton itself


class OutboundDelivery(SQLModel, table=True):
    """A message to a department system; attempts are in `DeliveryAttempt`."""

    __tablename__ = "outbound_delivery"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    # None: a message of the daily side (a prevention task's assignment, reminder or escalation), no incident's.
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=36)
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


class ChannelKind(StrEnum):
    """The protocols a notification channel speaks (core/outbox/channels.py)."""

    dingtalk = "dingtalk"  # DingTalk custom robot: JSON to the webhook, signed with HMAC-SHA256 (timestamp, sign)
    wecom = "wecom"  # WeCom (企业微信) group robot: JSON to .../cgi-bin/webhook/send?key=…
    sms = "sms"  # a generic HTTP SMS gateway: JSON with phone numbers and text, an API key header
    email = "email"  # e-mail through the SMTP server in settings


class NotifyChannel(SQLModel, table=True):
    """A channel that reaches people (not systems), configured by the office: a DingTalk or WeCom group robot, an
    SMS gateway, e-mail. Its token and secret are never logged nor shown back in full. A drill's messages go only
    to channels marked `for_drills`."""

    __tablename__ = "notify_channel"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(unique=True, max_length=64)
    kind: str = Field(max_length=16)  # a ChannelKind
    url: str = Field(default="", max_length=500)  # the webhook or gateway address, without its token
    # Sealed at rest (core/platform/sealing.py): the access_token, key or API key, and DingTalk's signing secret.
    token: str = Field(default="", sa_column=Column(SealedText, nullable=False, default=""))
    secret: str = Field(default="", sa_column=Column(SealedText, nullable=False, default=""))
    for_drills: bool = False
    active: bool = True
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class ChannelContact(SQLModel, table=True):
    """How a channel reaches one person: the mobile number a robot @-mentions or an SMS goes to, or a mailbox."""

    __tablename__ = "channel_contact"
    __table_args__ = (UniqueConstraint("channel_id", "user_id", name="uq_channel_contact"),)

    id: int | None = Field(default=None, primary_key=True)
    channel_id: str = Field(foreign_key="notify_channel.id", index=True, max_length=36)
    user_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    address: str = Field(max_length=200)
    added_by: str = Field(max_length=100)
    added_at: datetime = Field(default_factory=utcnow)
