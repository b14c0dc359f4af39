"""Tables of the ledger domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class LedgerEntry(SQLModel, table=True):
    """One handoff. Hash-chained per incident; the database rejects UPDATE and DELETE on this table."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_ledger_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    seq: int
    at: datetime
    kind: str = Field(max_length=32)
    actor: str = Field(max_length=100)
    from_party: str = Field(max_length=100)
    to_party: str = Field(max_length=100)
    step_key: str | None = Field(default=None, max_length=64)
    digest: str = Field(max_length=64)
    details: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    idempotency_key: str = Field(unique=True, max_length=200)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
