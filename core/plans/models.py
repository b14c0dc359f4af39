"""Tables of the plans domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow


class PlanVersion(SQLModel, table=True):
    """The exact plan text an incident was opened with; incidents keep theirs when a plan changes."""

    __tablename__ = "plan_version"
    __table_args__ = (UniqueConstraint("type", "version", "digest", name="uq_plan_version"),)

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(index=True, max_length=64)
    version: int
    digest: str = Field(max_length=64)
    content: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # "file" for the shipped plan; "accepted" for a version a planner accepted from a proposal.
    source: str = Field(default="file", max_length=16)
