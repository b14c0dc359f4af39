"""Tables of the upward-reporting domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class ReportStatus(StrEnum):
    drafting = "drafting"  # assigned to the reporting department, its draft refreshed from the run until edited
    signed = "signed"  # a leader signed it off (签发): its content is frozen
    sent = "sent"  # delivered to the recipients' systems and mailboxes (queued) and archived

    @property
    def is_open(self) -> bool:
        return self is not ReportStatus.sent


class UpwardReport(SQLModel, table=True):
    __tablename__ = "upward_report"
    __table_args__ = (
        UniqueConstraint("incident_id", "kind", "number", name="uq_upward_report_number"),
        Index("ix_upward_report_inbox", "department", "status"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    kind: str = Field(max_length=16)  # initial, follow_up, final
    number: int = 1  # follow-ups are numbered 1, 2, … (续报第N期)
    # What called for it: opening, schedule, level_change, casualty_change, termination.
    reason: str = Field(max_length=32)
    slot_at: datetime | None = None  # a scheduled follow-up's moment (the next is due an interval after it)
    department: str = Field(max_length=64)
    status: str = Field(default=ReportStatus.drafting, max_length=16)
    sign_off_required: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    due_at: datetime
    phone_due_at: datetime | None = None
    phoned_at: datetime | None = None
    phoned_by: str | None = Field(default=None, max_length=100)
    phone_note: str | None = Field(default=None, sa_column=Column(Text))
    overdue_at: datetime | None = None
    phone_overdue_at: datetime | None = None
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    edited_at: datetime | None = None
    edited_by: str | None = Field(default=None, max_length=100)
    signed_at: datetime | None = None
    signed_by: str | None = Field(default=None, max_length=100)
    signed_digest: str | None = Field(default=None, max_length=64)
    sent_at: datetime | None = None
    sent_by: str | None = Field(default=None, max_length=100)


class UpwardReportArchive(SQLModel, table=True):
    """A sent report as it went: the HTML and the Word document (government reports are Word documents)."""

    __tablename__ = "upward_report_archive"

    report_id: str = Field(foreign_key="upward_report.id", primary_key=True, max_length=36)
    html: str = Field(sa_column=Column(Text, nullable=False))
    docx: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    html_sha256: str = Field(max_length=64)
    docx_sha256: str = Field(max_length=64)
    archived_at: datetime = Field(default_factory=utcnow)


class CasualtyFigures(SQLModel, table=True):
    """The incident's one checked set of casualty figures: what its sent reports said, the latest one winning.
    Only sending a report changes it; a decrease (核减) carries its reason into the ledger."""

    __tablename__ = "casualty_figures"

    incident_id: str = Field(foreign_key="incident.id", primary_key=True, max_length=36)
    dead: int = 0
    missing: int = 0
    injured: int = 0
    moved: int = 0
    revision: int = 0
    report_id: str | None = Field(default=None, max_length=36)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=100)
