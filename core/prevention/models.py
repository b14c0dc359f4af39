"""Tables of the prevention domain: a campaign's run for one schedule slot, the inspection and rectification tasks it
and its findings create, the evidence files that close a rectification. Each handoff is an entry in the run's
ledger chain (`prevention:<run id>`, `core.ledger.chain`).

Their tasks are not `department_task` rows: those belong to an incident and to a step of its frozen plan (forms,
scopes, the engine's walk); a campaign's tasks come from the registers when its slot falls due
(docs/architecture.md, "Prevention on schedules").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class PreventionKind(StrEnum):
    inspection = "inspection"  # 检查 / 排查 / 演练: one per matching register entry
    rectification = "rectification"  # 整改: opened by a finding


class PreventionRun(SQLModel, table=True):
    """One campaign's run for one schedule slot: unique, so a slot run twice (two workers, a retried flow run)
    creates its tasks once."""

    __tablename__ = "prevention_run"
    __table_args__ = (UniqueConstraint("campaign", "slot", name="uq_prevention_run_slot"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    campaign: str = Field(max_length=64, index=True)
    slot: datetime  # the schedule slot (the flow run's scheduled start), UTC
    started_at: datetime = Field(default_factory=utcnow)
    started_by: str = Field(max_length=100)
    flow_run_id: str | None = Field(default=None, max_length=36)
    tasks_created: int = 0


class PreventionTask(SQLModel, table=True):
    __tablename__ = "prevention_task"
    __table_args__ = (UniqueConstraint("run_id", "kind", "entry_id", name="uq_prevention_task"),
                      Index("ix_prevention_task_inbox", "department", "status"),
                      Index("ix_prevention_task_due", "status", "due_at"))

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    run_id: str = Field(foreign_key="prevention_run.id", index=True, max_length=36)
    campaign: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # PreventionKind
    register_kind: str = Field(max_length=32)  # RegisterKind of the entry
    entry_id: str = Field(max_length=36, index=True)
    entry_code: str = Field(max_length=64)
    entry_name_zh: str = Field(max_length=200)
    entry_name_en: str = Field(default="", max_length=200)
    department: str = Field(max_length=64)  # the entry's owning organisation
    status: str = Field(max_length=16)  # TaskStatus: assigned, escalated, completed, cancelled
    parent_id: str | None = Field(default=None, max_length=36)  # a rectification's inspection
    created_at: datetime = Field(default_factory=utcnow)
    assigned_at: datetime = Field(default_factory=utcnow)
    due_at: datetime
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str | None = Field(default=None, max_length=100)
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=100)
    hazard_found: bool | None = None  # an inspection's answer
    finding: str | None = Field(default=None, sa_column=Column(Text))  # what was found (the rectification's brief)
    measures: str | None = Field(default=None, sa_column=Column(Text))  # a rectification's closing account


class PreventionEvidence(SQLModel, table=True):
    """A photo or document sent for a rectification, stored as `core.attachments` stores a form's files (judged by
    its bytes, under its id in the attachments folder)."""

    __tablename__ = "prevention_evidence"

    id: str = Field(primary_key=True, max_length=36)
    task_id: str = Field(foreign_key="prevention_task.id", index=True, max_length=36)
    uploaded_by: str = Field(max_length=100)
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
