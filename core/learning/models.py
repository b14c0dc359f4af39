"""Tables of the learning domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class Lesson(SQLModel, table=True):
    """A lesson recorded in an incident's learning stage; it may become a follow-up and a plan change."""

    __tablename__ = "lesson"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    text: str = Field(sa_column=Column(Text, nullable=False))
    author: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class FollowUp(SQLModel, table=True):
    """Work a lesson turned into: assigned to a department with a due date, tracked to closure, ledgered."""

    __tablename__ = "follow_up"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    lesson_id: str = Field(foreign_key="lesson.id", index=True, max_length=36)
    department: str = Field(max_length=64, index=True)
    title: str = Field(max_length=300)
    due_at: datetime
    status: str = Field(default="open", max_length=16)  # open, done, cancelled
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, sa_column=Column(Text))


class PlanProposal(SQLModel, table=True):
    """A proposed new version of a plan, kept as full text and as a diff against the version it changes."""

    __tablename__ = "plan_proposal"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    type: str = Field(max_length=64, index=True)
    base_version: int
    lesson_id: str | None = Field(default=None, foreign_key="lesson.id", max_length=36)
    proposed_text: str = Field(sa_column=Column(Text, nullable=False))
    diff: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="proposed", max_length=16)  # proposed, accepted, rejected
    proposed_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = None
    new_version: int | None = None


class DrillRun(SQLModel, table=True):
    """A rehearsal of a plan with simulated departments on a compressed clock, and its readiness score."""

    __tablename__ = "drill_run"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    type: str = Field(max_length=64, index=True)
    level: str = Field(max_length=3)
    speed: float
    profile: str = Field(max_length=32)
    incident_id: str | None = Field(default=None, foreign_key="incident.id", max_length=36)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    score: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
