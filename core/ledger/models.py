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


class DeskLedgerEntry(SQLModel, table=True):
    """One change at the duty desk (值班值守) that belongs to no incident yet: an event record sheet recorded,
    returned, amended, opened as an incident, merged or filed; a duty log's note or handover. Hash-chained as one
    chain (`core.ledger.chain.append_desk`); the database rejects UPDATE and DELETE on this table."""

    __tablename__ = "desk_ledger_entry"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: datetime
    kind: str = Field(max_length=32)
    actor: str = Field(max_length=100)
    subject: str = Field(max_length=80, index=True)  # what changed: `sheet:<id>`, `log:<id>`
    digest: str = Field(max_length=64)
    details: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    idempotency_key: str = Field(unique=True, max_length=200)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class DeskLedgerHead(SQLModel, table=True):
    """The duty desk chain's head (its last sequence number and hash): a cut-off tail is detected, and a writer
    locks this row so that two appends never take the same place."""

    __tablename__ = "desk_ledger_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default="", max_length=64)
