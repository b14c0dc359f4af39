"""Tables of the sharing domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel, col

from core.platform.clock import utcnow
from core.platform.db import new_id


class WarningState:
    """Where a warning is in its release (审核签发)."""

    draft = "draft"  # drafted by the issuing agency, waiting for the office's review
    returned = "returned"  # returned by the office with a reason, for the drafting department to redraft
    reviewed = "reviewed"  # reviewed by the office, waiting for a leader's sign-off
    issued = "issued"  # signed off and released (to the public, or as an exercise)
    withdrawn = "withdrawn"  # never released: given up before sign-off

    UNRELEASED = ("draft", "returned", "reviewed")


class CapAlert(SQLModel, table=True):
    """A CAP 1.2 document Baton drafted or issued. Only a signed-off one (`state` issued) is released, and only a
    released one of a real incident is `published` (in the public feed and page); a drill's is an Exercise."""

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
    # The release: who drafted it for which agency, the office's review, the leader's sign-off.
    state: str = Field(default=WarningState.issued, max_length=16, index=True)
    department: str | None = Field(default=None, max_length=64)  # the issuing agency (发布单位)
    step_key: str | None = Field(default=None, max_length=64)
    colour: str | None = Field(default=None, max_length=8)  # the signal colour: blue, yellow, orange, red
    expires_at: datetime | None = None
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    signers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    revision: int = 1
    drafted_by: str | None = Field(default=None, max_length=100)
    drafted_at: datetime | None = None
    reviewed_by: str | None = Field(default=None, max_length=100)
    reviewed_at: datetime | None = None
    returned_reason: str | None = Field(default=None, sa_column=Column(Text))
    signed_by: str | None = Field(default=None, max_length=100)
    signed_position: str | None = Field(default=None, max_length=130)
    signed_at: datetime | None = None


def in_force_where(moment: datetime) -> tuple[Any, ...]:
    """The conditions of a warning in force at `moment`: released (signed off), not superseded by an update or
    cancellation, not a cancellation itself, not expired. One home for the rule: the feed, the map and the register
    entries handed to a step (`core.registers.service.warning_area`) all read it."""
    return (CapAlert.state == WarningState.issued, col(CapAlert.superseded_by).is_(None), CapAlert.msg_type != "Cancel",
            (col(CapAlert.expires_at).is_(None)) | (col(CapAlert.expires_at) > moment))


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


class AnswerCall(SQLModel, table=True):
    """叫应: a warning (orange or red, by the plan) or a step's order that named officials must each answer. One
    per warning or step task; the officials' requests are `AnswerRequest`s."""

    __tablename__ = "answer_call"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    source_key: str = Field(unique=True, max_length=100)  # alert:<id> or step:<task id>
    alert_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)
    step_key: str | None = Field(default=None, max_length=64)
    colour: str = Field(max_length=8)
    title: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    text: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    drill: bool = False
    opened_at: datetime = Field(default_factory=utcnow)
    limit_seconds: float
    # A red warning: when the command is prompted if no response has started by then, and when it was.
    response_due_at: datetime | None = None
    command_prompted_at: datetime | None = None


class AnswerRequest(SQLModel, table=True):
    """One person called to answer: an official, or (unanswered in time) their stand-in, then the level above.
    `official_id` is the first request of the chain (None on it). Answered through a signed, single-use link."""

    __tablename__ = "answer_request"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    call_id: str = Field(foreign_key="answer_call.id", index=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    official_id: str | None = Field(default=None, max_length=36, index=True)
    rung: str = Field(max_length=16)  # official, stand_in, above
    position: str = Field(max_length=130)
    user_id: str = Field(foreign_key="app_user.id", max_length=36)
    sent_at: datetime
    due_at: datetime = Field(index=True)
    link_expires_at: datetime
    channels: int = 0  # messages queued to reach the person
    answered_at: datetime | None = None
    escalated_at: datetime | None = None
