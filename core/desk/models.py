"""Tables of the duty desk: event record sheets (事件记录单), duty logs (值班日志) and their notes, leaders'
instructions (批示) and the departments' tasks they become."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class SheetSource(StrEnum):
    phone = "phone"  # 电话
    hotline_12345 = "hotline_12345"  # 12345 政务服务便民热线
    app = "app"  # 手机应用 / 小程序
    other = "other"  # 其他（来访、转办）


class SheetStatus(StrEnum):
    submitted = "submitted"  # recorded and sent for the duty leader's review (送审)
    returned = "returned"  # back to the officer for more details
    opened = "opened"  # an incident was opened from it
    merged = "merged"  # merged into an open incident
    filed = "filed"  # filed with a reason

    @property
    def reviewed(self) -> bool:
        return self in (SheetStatus.opened, SheetStatus.merged, SheetStatus.filed)


class EventSheet(SQLModel, table=True):
    """A report taken at the duty desk, as recorded, and what the duty leader decided. Never deleted."""

    __tablename__ = "event_sheet"
    __table_args__ = (Index("ix_event_sheet_status", "status", "submitted_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    number: str = Field(unique=True, max_length=32)  # JL-2026-0001
    source: str = Field(max_length=16)
    caller: str = Field(max_length=100)
    callback: str = Field(default="", max_length=32)
    place: str = Field(max_length=200)
    lat: float | None = None
    lon: float | None = None
    occurred_at: datetime
    what: str = Field(sa_column=Column(Text, nullable=False))
    dead: int = 0
    injured: int = 0
    missing: int = 0
    trapped: int = 0
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime = Field(default_factory=utcnow)  # sent for review (again, after a return)
    status: str = Field(default=SheetStatus.submitted, max_length=16)
    returned_reason: str | None = Field(default=None, sa_column=Column(Text))
    reviewed_by: str | None = Field(default=None, max_length=100)
    reviewed_at: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))  # why filed, or the merge's note
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=36)


class DutyLog(SQLModel, table=True):
    """One shift's duty log (值班日志) at the emergency office: opened by its officer, closed by the handover to
    the next one. Its entries are its notes and what the ledgers recorded during the shift."""

    __tablename__ = "duty_log"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    officer: str = Field(max_length=64)  # user name
    started_at: datetime = Field(default_factory=utcnow)
    started_by: str = Field(max_length=100)
    ended_at: datetime | None = None
    incoming: str | None = Field(default=None, max_length=64)  # who took over (user name)
    handover_note: str | None = Field(default=None, sa_column=Column(Text))
    next_log_id: str | None = Field(default=None, max_length=36)


class DutyLogNote(SQLModel, table=True):
    __tablename__ = "duty_log_note"

    id: int | None = Field(default=None, primary_key=True)
    log_id: str = Field(foreign_key="duty_log.id", index=True, max_length=36)
    at: datetime = Field(default_factory=utcnow)
    author: str = Field(max_length=100)
    text: str = Field(sa_column=Column(Text, nullable=False))


class InstructionStatus(StrEnum):
    open = "open"
    closed = "closed"


class Instruction(SQLModel, table=True):
    """A leader's instruction (领导批示) on an incident, followed to closure through its departments' tasks."""

    __tablename__ = "instruction"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    leader: str = Field(max_length=100)  # who gave it, as people know them (王市长), or `user:<name>`
    text: str = Field(sa_column=Column(Text, nullable=False))
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)
    due_at: datetime | None = None
    status: str = Field(default=InstructionStatus.open, max_length=16)
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, max_length=100)
    closing_note: str | None = Field(default=None, sa_column=Column(Text))


class InstructionTask(SQLModel, table=True):
    """One department's part of an instruction (落实批示): open until it reports what it did."""

    __tablename__ = "instruction_task"
    __table_args__ = (UniqueConstraint("instruction_id", "department", name="uq_instruction_department"),
                      Index("ix_instruction_task_inbox", "department", "status"))

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    instruction_id: str = Field(foreign_key="instruction.id", index=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", max_length=36)
    department: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16)  # open, done
    created_at: datetime = Field(default_factory=utcnow)
    due_at: datetime | None = None
    # When the periodic sweep found it past `due_at` and told the office (once; migration 0030).
    overdue_at: datetime | None = None
    done_at: datetime | None = None
    done_by: str | None = Field(default=None, max_length=100)
    reply: str | None = Field(default=None, sa_column=Column(Text))
