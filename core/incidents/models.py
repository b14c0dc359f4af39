"""Tables of the incidents domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


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
        # Claims take the oldest open incidents. Not on `lease_expires_at`: every lease renewal rewrites that column,
        # and with it in no index PostgreSQL renews a lease without touching any index (migration 0032).
        Index("ix_incident_claim", "status", "created_at"),
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

    def wake(self, now: datetime | None = None) -> None:
        """Mark the incident so the worker holding it re-evaluates its flow promptly (`woken_at`, polled)."""
        moment = now or utcnow()
        self.woken_at = moment
        self.updated_at = moment


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
    # A task the office referred to a command position (`commander@flood_control_hq`): whoever holds it acts.
    position: str | None = Field(default=None, max_length=130)
    # A task addressed to a rostered duty position: who the roster named at assignment (`meant`) and who it went to
    # (`assignee`: the stand-in while the holder is away); user names.
    meant: str | None = Field(default=None, max_length=64)
    assignee: str | None = Field(default=None, max_length=64)
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
    decline_code: str | None = Field(default=None, max_length=32)  # declined (退单): the reason's code
    escalated_at: datetime | None = None
    escalated_to: str | None = Field(default=None, max_length=100)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = Field(default=None, max_length=200)
    outputs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # The register entries the step asked for (`registers:` in the plan), as resolved for the holding department when
    # the task was assigned: the warnings whose area was searched, the entries inside it, or a note that none had an
    # area yet. Kept so that what the department was shown stays on record.
    registers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    note: str | None = Field(default=None, sa_column=Column(Text))


class AlertKind(StrEnum):
    handed_back = "handed_back"  # the department handed the task back, with its reason
    unstaffed = "unstaffed"  # the task's department has nobody able to act
    overdue = "overdue"  # overdue, and its escalation target has nobody able to act (or is a position)
    declined = "declined"  # the department declined it as not its own (退单), with a reason code


class DeclineCode(StrEnum):
    """Why a department declines a task (退单)."""

    not_our_duty = "not_our_duty"  # 非本单位职责
    wrong_area = "wrong_area"  # 非本辖区
    lacking_resources = "lacking_resources"  # 力量不足


class AlertResolution(StrEnum):
    reassign = "reassign"  # the office sent it to another department
    take_over = "take_over"  # the office does it itself
    ask_leader = "ask_leader"  # the office referred it to a command position
    moot = "moot"  # the task ended otherwise (completed, or cancelled with its stage)


class OfficeAlert(SQLModel, table=True):
    """A task the emergency office must route: handed back, or meant for a department nobody can act for. It
    stays open (and shown) until the office chooses; the choice says where the task goes next, and the engine
    assigns the new attempt there."""

    __tablename__ = "office_alert"
    __table_args__ = (Index("ix_office_alert_open", "resolved_at", "incident_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    task_id: str = Field(foreign_key="department_task.id", unique=True, max_length=36)
    step_key: str = Field(max_length=64)
    department: str = Field(max_length=64)  # who was meant to act
    kind: str = Field(max_length=16)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    raised_by: str = Field(max_length=100)
    raised_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=100)
    resolution: str | None = Field(default=None, max_length=16)
    target: str | None = Field(default=None, max_length=130)  # the department, or the position asked
    resolution_reason: str | None = Field(default=None, sa_column=Column(Text))
    routed_task_id: str | None = Field(default=None, max_length=36)  # the attempt the engine assigned after it
    reason_code: str | None = Field(default=None, max_length=32)  # a decline's code (DeclineCode)
    # The office did not route it within its deadline (a declined task: `decline_route_minutes`): escalated.
    escalated_at: datetime | None = None


class LevelChange(SQLModel, table=True):
    __tablename__ = "level_change"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    from_level: str = Field(max_length=3)
    to_level: str = Field(max_length=3)
    actor: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = Field(default_factory=utcnow)


class ProposalStatus(StrEnum):
    open = "open"
    accepted = "accepted"
    declined = "declined"
    superseded = "superseded"  # a higher proposal, or a level change, made it moot


class LevelProposal(SQLModel, table=True):
    """A level the plan's grading calls for, proposed to the office; the authorised person accepts or declines."""

    __tablename__ = "level_proposal"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    level: str = Field(max_length=3)
    from_level: str = Field(max_length=3)
    # The criteria met: [{"measure", "op", "value", "observed"}], and the plan's wording of the level.
    basis: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source: str = Field(max_length=64)  # "outputs", or "signal:<id>"
    status: str = Field(default=ProposalStatus.open, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by: str | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, sa_column=Column(Text))


class LevelAuthorisation(SQLModel, table=True):
    """Who authorised a level being started, raised or lowered (or the response ended), and who recorded it.

    Recorded "on the commander's verbal order" (`verbal`), it stays flagged until that commander confirms it;
    a response started by someone without the position is flagged until a holder confirms it.
    """

    __tablename__ = "level_authorisation"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    act: str = Field(max_length=16)  # start, raise, lower, end
    level: str = Field(max_length=3)
    needs: list[str] = Field(sa_column=Column(JSON, nullable=False))  # the plan's positions for this act
    authorised_by: str | None = Field(default=None, max_length=64)  # user name; None: nobody with the position
    position: str | None = Field(default=None, max_length=130)  # the position they hold that allows it
    recorded_by: str = Field(max_length=100)  # actor
    verbal: bool = False
    at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    confirmed_by: str | None = Field(default=None, max_length=64)
    level_change_id: int | None = Field(default=None, foreign_key="level_change.id")

    @property
    def awaiting_confirmation(self) -> bool:
        return self.confirmed_at is None and (self.verbal or self.authorised_by is None)
