"""Baton's tables. Times are timezone-aware UTC (SQLModel's UTCDateTime stores and returns them so)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class IncidentStatus(StrEnum):
    open = "open"
    closed = "closed"


class TaskStatus(StrEnum):
    pending = "pending"  # created, not yet handed to anyone (action steps waiting to run)
    assigned = "assigned"
    acknowledged = "acknowledged"
    completed = "completed"
    handed_back = "handed_back"
    escalated = "escalated"  # overdue; still open for its department, its escalation target is told
    cancelled = "cancelled"
    skipped = "skipped"  # not applicable: level too low or condition false when its turn came

    @property
    def is_open(self) -> bool:
        return self in (TaskStatus.pending, TaskStatus.assigned, TaskStatus.acknowledged, TaskStatus.escalated)

    @property
    def is_resolved(self) -> bool:
        return self in (TaskStatus.completed, TaskStatus.cancelled, TaskStatus.skipped)


OPEN_STATUSES = [s.value for s in TaskStatus if s.is_open]


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


class IncidentCounter(SQLModel, table=True):
    __tablename__ = "incident_counter"

    prefix: str = Field(primary_key=True, max_length=8)
    year: int = Field(primary_key=True)
    last: int = 0


class IncidentBase(SQLModel):
    type: str = Field(index=True, max_length=64)
    level: str = Field(max_length=3)
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, sa_column=Column(Text))
    location_name: str | None = Field(default=None, max_length=200)
    lat: float | None = None
    lon: float | None = None
    drill: bool = False


class Incident(IncidentBase, table=True):
    __tablename__ = "incident"
    __table_args__ = (
        Index("ix_incident_claim", "status", "lease_expires_at"),
        Index("ix_incident_wake", "lease_owner", "woken_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    code: str = Field(unique=True, max_length=32)
    plan_version_id: int = Field(foreign_key="plan_version.id")
    plan_version: int
    status: str = Field(default=IncidentStatus.open, max_length=16)
    stage: str = Field(default="warning", max_length=16)
    opened_by: str = Field(max_length=100)
    signal_id: str | None = Field(default=None, max_length=36)  # the monitoring signal that opened it
    # A drill may run on a compressed clock: at 3600 an hour of the plan passes in a second.
    clock_speed: float = 1.0
    # The incident this one cascaded from (typhoon → flood, earthquake → chemical leak).
    parent_id: str | None = Field(default=None, index=True, max_length=36)
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    flow_run_id: str | None = Field(default=None, max_length=36)
    # Which Baton worker runs this incident's flow, until when (renewed while it lives).
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = None
    # Bumped by every write that may let the flow advance; workers watch it to wake the flow.
    woken_at: datetime = Field(default_factory=utcnow)
    ledger_head_seq: int = 0
    ledger_head_hash: str = Field(default="", max_length=64)


class DepartmentTask(SQLModel, table=True):
    __tablename__ = "department_task"
    __table_args__ = (
        UniqueConstraint("incident_id", "step_key", "attempt", name="uq_task_step_attempt"),
        Index("ix_task_inbox", "department", "status"),
        Index("ix_task_due", "status", "due_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    step_key: str = Field(max_length=64)
    attempt: int = 1
    stage: str = Field(max_length=16)
    department: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    required: bool = True
    status: str = Field(default=TaskStatus.pending, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    assigned_at: datetime | None = None
    assigned_by: str | None = Field(default=None, max_length=100)
    due_at: datetime | None = None
    reminded_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, max_length=100)
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=100)
    handed_back_at: datetime | None = None
    handed_back_by: str | None = Field(default=None, max_length=100)
    hand_back_reason: str | None = Field(default=None, sa_column=Column(Text))
    escalated_at: datetime | None = None
    escalated_to: str | None = Field(default=None, max_length=100)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = Field(default=None, max_length=200)
    outputs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    note: str | None = Field(default=None, sa_column=Column(Text))


class LevelChange(SQLModel, table=True):
    __tablename__ = "level_change"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    from_level: str = Field(max_length=3)
    to_level: str = Field(max_length=3)
    actor: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = Field(default_factory=utcnow)


class OutboundDelivery(SQLModel, table=True):
    """A message to a department system; attempts are in `DeliveryAttempt`."""

    __tablename__ = "outbound_delivery"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    idempotency_key: str = Field(unique=True, max_length=200)
    purpose: str = Field(max_length=32)
    target: str = Field(max_length=64)
    endpoint: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payload_digest: str = Field(max_length=64)
    drill: bool = False
    attempts: int = 0
    last_status: int | None = None
    outcome: str = Field(default="pending", max_length=16)  # pending, delivered, failed, no_endpoint
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


class CapAlert(SQLModel, table=True):
    """A CAP 1.2 document Baton issued (published, or held back because the incident is a drill)."""

    __tablename__ = "cap_alert"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    identifier: str = Field(unique=True, max_length=200)
    idempotency_key: str = Field(unique=True, max_length=200)
    msg_type: str = Field(max_length=16)
    status: str = Field(max_length=16)  # CAP status: Actual or Exercise
    published: bool = False
    references: str | None = Field(default=None, sa_column=Column(Text))
    # A later Update or Cancel replaces this alert in the public feed.
    superseded_by: str | None = Field(default=None, max_length=36)
    issued_by: str = Field(default="baton", max_length=100)
    xml: str = Field(sa_column=Column(Text, nullable=False))
    sent_at: datetime = Field(default_factory=utcnow)


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


class Role(StrEnum):
    office = "office"  # emergency office duty staff: triggers and steers incidents, acts for the office
    department = "department"  # bound to one department: its own tasks, and what is shared with it
    manager = "manager"  # reads everything, changes nothing
    admin = "admin"


class UserBase(SQLModel):
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(default="", max_length=100)
    role: str = Field(max_length=16)
    department: str | None = Field(default=None, max_length=64)
    lang: str = Field(default="zh", max_length=8)


class User(UserBase, table=True):
    __tablename__ = "app_user"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    password_hash: str = Field(max_length=200)
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Failed logins from one source (a client address) in the current window, across every account, so that
    guessing one password on many accounts is slowed as guessing many on one is."""

    __tablename__ = "login_throttle"

    source: str = Field(primary_key=True, max_length=64)
    window_started_at: datetime = Field(default_factory=utcnow)
    failures: int = 0
    blocked_until: datetime | None = None


class AccessToken(SQLModel, table=True):
    """A bearer token or a page session: stored as a SHA-256 digest, so a database dump grants nothing."""

    __tablename__ = "access_token"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    digest: str = Field(unique=True, max_length=64)
    user_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    kind: str = Field(default="bearer", max_length=16)  # bearer, session
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Logins and administrative changes (the ledger is for handoffs; this is for access)."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SituationReport(SQLModel, table=True):
    """An ad-hoc situation report a department (or the office) posts to an incident's board."""

    __tablename__ = "situation_report"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    department: str = Field(max_length=64)
    author: str = Field(max_length=100)
    text: str = Field(sa_column=Column(Text, nullable=False))
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    location_name: str | None = Field(default=None, max_length=200)
    lat: float | None = None
    lon: float | None = None
    share_with: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    classification: str = Field(default="internal", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class SignalSource(SQLModel, table=True):
    """A monitoring system allowed to post signals; its API key is stored as a SHA-256 digest."""

    __tablename__ = "signal_source"

    name: str = Field(primary_key=True, max_length=64)
    key_digest: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    active: bool = True


class Signal(SQLModel, table=True):
    """A monitoring signal as received, and what Baton did with it."""

    __tablename__ = "signal"
    __table_args__ = (Index("ix_signal_dedupe", "dedupe_key", "received_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    source: str = Field(max_length=64)
    kind: str = Field(max_length=64)
    dedupe_key: str = Field(max_length=200)
    rule: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    outcome: str = Field(max_length=32)  # opened, merged, raised, ignored
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=36)
    level: str | None = Field(default=None, max_length=3)


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
