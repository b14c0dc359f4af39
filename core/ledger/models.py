"""Tables of the ledger domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class LedgerEntry(SQLModel, table=True):
    """One entry of a chain: an incident's handoff (chain `incident:<id>`, with `incident_id`), or a record that
    belongs to no incident, in a named chain (`desk`, `prevention:<run id>`, `registers`). Hash-chained per chain;
    the database rejects UPDATE and DELETE on this table."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_ledger_chain_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=80)
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=36)
    subject: str | None = Field(default=None, max_length=80, index=True)  # a named chain's `sheet:<id>`, `task:<id>`
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


class LedgerChain(SQLModel, table=True):
    """A named chain's head (its last sequence number and hash): a cut-off tail is detected, and a writer locks this
    row so that two appends never take the same place. An incident's head is kept on its row instead."""

    __tablename__ = "ledger_chain"

    name: str = Field(primary_key=True, max_length=80)
    seq: int = 0
    hash: str = Field(default="", max_length=64)
