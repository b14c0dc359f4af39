"""Tables of the signals domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class SignalSource(SQLModel, table=True):
    """A monitoring system allowed to post signals; its API key is stored as a SHA-256 digest."""

    __tablename__ = "signal_source"

    name: str = Field(primary_key=True, max_length=64)
    key_digest: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    active: bool = True
    # The source's rate limit, a token bucket kept here (not in a process's memory) so that every API process
    # draws from the same one: `tokens` left at `tokens_at` (None: a full bucket); `limited_since`, the first
    # refusal since the last signal let in (a refusal is audited once per such run, not once per request).
    tokens: float | None = None
    tokens_at: datetime | None = None
    limited_since: datetime | None = None


class Signal(SQLModel, table=True):
    """A monitoring signal as received, and what Baton did with it."""

    __tablename__ = "signal"
    __table_args__ = (Index("ix_signal_dedupe", "dedupe_key", "received_at"),
                      Index("ix_signal_source_received", "source", "received_at"))

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    source: str = Field(max_length=64)
    kind: str = Field(max_length=64)
    dedupe_key: str = Field(max_length=200)
    rule: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    # opened, merged, proposed (a higher level, to the office), ignored; held: over its source's hourly cap of
    # incidents, waiting for the duty desk, which opens it (opened) or dismisses it (dismissed).
    outcome: str = Field(max_length=32)
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=36)
    level: str | None = Field(default=None, max_length=3)
    observed_at: datetime | None = None
    handled_by: str | None = Field(default=None, max_length=100)  # the duty desk's decision on a held signal
    handled_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=2000)
