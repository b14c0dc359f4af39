"""Request and response models of the JSON API."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.errors import ApiError
from core.platform.input_policy import Line, Lines, Number

Level = Literal["IV", "III", "II", "I"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def uploaded(content: str | None, content_base64: str | None) -> bytes:
    """An imported file's bytes, sent as text (`content`: CSV, GeoJSON) or base64 (`content_base64`: XLSX, any);
    exactly one of the two."""
    if (content is None) == (content_base64 is None):
        raise ApiError(422, "invalid_request", "give the file as `content` (text) or `content_base64`")
    if content is not None:
        return content.encode("utf-8")
    try:
        return base64.b64decode(content_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_request", "content_base64 is not base64") from None


class LocationIn(Strict):
    name: Line = Field(min_length=1, max_length=200)
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)


class IncidentCreate(Strict):
    type: Line = Field(min_length=1, max_length=64)
    level: Level
    title: Line = Field(min_length=1, max_length=200)
    description: Lines | None = Field(default=None, max_length=10_000)
    location: LocationIn | None = None
    drill: bool = False


class IncidentPublic(BaseModel):
    id: str
    code: str
    type: str
    level: str
    status: str
    stage: str
    title: str
    drill: bool
    flow_run_id: str | None
    created_at: datetime
    closed_at: datetime | None = None
    location: dict[str, Any] | None = None
    plan_version: int
    parent_id: str | None = None


class IncidentPage(BaseModel):
    items: list[IncidentPublic]
    total: int
    limit: int
    offset: int


class LevelChangeIn(Strict):
    level: Level
    reason: Lines = Field(min_length=1, max_length=2000)
    ordered_by: Line | None = Field(default=None, min_length=1, max_length=64,
                                    description="The office records the level on this commander's verbal order "
                                                "(a user name); flagged until the commander confirms it.")
    confirm_open_work: bool = Field(default=False, description="A lowering that cancels open tasks (409 "
                                                               "`open_work` lists them) goes ahead, for `reason`.")


class AuthorisationOut(BaseModel):
    id: str
    incident_id: str
    act: str
    level: str
    needs: list[str]
    authorised_by: str | None
    position: str | None
    recorded_by: str
    verbal: bool
    at: datetime
    confirmed_at: datetime | None
    confirmed_by: str | None
    awaiting_confirmation: bool


class LevelProposalOut(BaseModel):
    id: str
    incident_id: str
    level: str
    from_level: str
    basis: dict[str, Any]
    source: str
    status: str
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = None


class ProposalDecisionIn(Strict):
    decision: Literal["accept", "decline"]
    reason: Lines | None = Field(default=None, max_length=2000)
    ordered_by: Line | None = Field(default=None, min_length=1, max_length=64)


class TaskPublic(BaseModel):
    id: str
    incident_id: str
    incident_code: str | None = None
    step_key: str
    title: dict[str, str] | None = None
    stage: str
    department: str
    status: str
    attempt: int
    assigned_at: datetime | None
    due_at: datetime | None
    acknowledged_at: datetime | None
    completed_at: datetime | None
    escalated_to: str | None
    overdue: bool
    outputs: dict[str, Any] | None = None
    position: str | None = None  # referred by the office to this command position: whoever holds it acts


class AttachmentOut(BaseModel):
    """A file stored for a task: name it in an attachment field of the task's outputs by `reference`."""

    id: str
    reference: str  # attachment:<id>
    task_id: str
    incident_id: str
    filename: str
    content_type: str  # as judged from the file's bytes
    size: int
    sha256: str
    created_at: datetime


class TaskPage(BaseModel):
    items: list[TaskPublic]
    total: int
    limit: int
    offset: int
    # The reader's inspections and rectifications (core.prevention's own tasks, not a plan's steps): a list of their
    # own, each with its `kind`; not paged with `items` (at most `limit`, soonest due first; none for `incident`).
    prevention: list[PreventionTaskOut] = []


class TaskDetail(TaskPublic):
    form: list[dict[str, Any]]
    checks: list[dict[str, Any]] = []  # rules between the form's fields: {field, op, other}, e.g. rainfall_1h le …
    inputs: list[dict[str, Any]]
    note: str | None = None
    registers: dict[str, Any] | None = Field(
        default=None, description="The register entries inside the warning area handed to the task when it was "
                                  "assigned (those the reader may read), or a note that no warning had an area yet.")
    prefill: dict[str, Any] = Field(default_factory=dict,
                                    description="Answers the register entries suggest for the form's fields.")


class CompleteIn(Strict):
    outputs: dict[str, Any]  # held to the step's form and the input policy by core.plans.forms
    note: Lines | None = Field(default=None, max_length=10_000)
    confirm_open_work: bool = Field(default=False, description="A gate's decision that cancels the stage's open "
                                                               "tasks (409 `open_work` lists them) goes ahead, "
                                                               "for `open_work_reason`.")
    open_work_reason: Lines | None = Field(default=None, min_length=1, max_length=2000)
    ordered_by: Line | None = Field(default=None, min_length=1, max_length=64,
                                    description="A decision that starts or ends the response, recorded by the office "
                                                "on this commander's verbal order (a user name).")


class HandBackIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


class DeclineIn(Strict):
    reason_code: Literal["not_our_duty", "wrong_area", "lacking_resources"] = Field(
        description="not_our_duty 非本单位职责, wrong_area 非本辖区, lacking_resources 力量不足")
    reason: Lines = Field(min_length=1, max_length=2000)


class ReassignIn(Strict):
    department: Line = Field(min_length=1, max_length=64)
    reason: Lines = Field(min_length=1, max_length=2000)


class TakeOverIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


class AskLeaderIn(Strict):
    position: Line = Field(min_length=1, max_length=130, description="A command position, e.g. "
                                                                    "commander@flood_control_hq.")
    reason: Lines = Field(min_length=1, max_length=2000)


class AlertOut(BaseModel):
    """The office's alert on a task to route: handed back, or meant for a department nobody can act for."""

    id: str
    incident_id: str
    incident_code: str | None = None
    task_id: str
    step_key: str
    title: dict[str, str] | None = None
    department: str  # who was meant to act (a department, or a position)
    kind: str  # handed_back, declined, unstaffed, overdue
    reason: str
    # a decline's (not_our_duty, wrong_area, lacking_resources), or the system's reason for an alert it raised
    # (dept_unstaffed, post_unheld, post_away:<user>, overdue_post, overdue:<department>, dept_emptied)
    reason_code: str | None = None
    route_due_at: datetime | None = None  # a declined task: when the office must have routed it by
    escalated_at: datetime | None = None  # the office did not route it in time
    raised_by: str
    raised_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None  # reassign, take_over, ask_leader, moot
    target: str | None = None
    resolution_reason: str | None = None
    routed_task_id: str | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class VerifyOut(BaseModel):
    valid: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None = None


class LedgerEntryOut(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: str
    from_party: str
    to_party: str
    step_key: str | None
    digest: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class LedgerOut(BaseModel):
    incident_id: str
    code: str
    entries: list[LedgerEntryOut]


class LinkedIncidentIn(Strict):
    type: Line = Field(min_length=1, max_length=64)
    level: Level | None = None
    title: Line | None = Field(default=None, min_length=1, max_length=200)
    reason: Lines = Field(min_length=1, max_length=2000)


# -- users and the audit trail (administrators) -------------------------------------------------------------
Role = Literal["office", "department", "manager", "admin"]


class UserCreate(Strict):
    username: Line = Field(min_length=1, max_length=64)
    role: Role
    department: Line | None = Field(default=None, max_length=64)
    display_name: Line = Field(default="", max_length=100)
    password: str = Field(min_length=10, max_length=1024)
    lang: Literal["zh", "en"] = "zh"


class LockoutOut(BaseModel):
    """A running lockout after failed logins: of one address, or (`source` null) of every address."""

    user_id: str
    username: str
    source: str | None
    locked_until: datetime
    failures: int


class UserPublic(BaseModel):
    id: str
    username: str
    display_name: str
    role: str
    department: str | None
    lang: str
    active: bool
    locked: bool
    lockouts: list[LockoutOut] = []
    failed_logins: int
    created_at: datetime
    positions: list[str] = Field(default_factory=list, description="position@organisation, e.g. commander@…")


class PositionIn(Strict):
    position: str = Field(min_length=1, max_length=130, pattern=r"^[a-z][a-z0-9_]*(@[a-z][a-z0-9_]*)?$",
                          description="position@organisation, e.g. commander@flood_control_hq")


class LockoutPage(BaseModel):
    items: list[LockoutOut]
    total: int


class UserPage(BaseModel):
    items: list[UserPublic]
    total: int
    limit: int = 200
    offset: int = 0


class UserUpdate(Strict):
    display_name: Line = Field(max_length=100, description="The name people know the user by; empty: the user name.")


class DisableIn(Strict):
    reason: Lines | None = Field(default=None, max_length=2000)


class PasswordIn(Strict):
    password: str = Field(min_length=10, max_length=1024)


class RevokedOut(BaseModel):
    user: UserPublic
    revoked: int
    # Disabling the last active user of a department with open tasks: the office is alerted for each of them.
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    limit: int
    offset: int


# -- prevention on schedules (core.prevention) -------------------------------------------------------------------


class PreventionTaskOut(BaseModel):
    """An inspection (检查 / 排查 / 演练) of one register entry, or the rectification (整改) a finding opened."""

    id: str
    kind: str  # inspection, rectification
    campaign: str
    register_kind: str
    entry_id: str
    entry_code: str
    entry_name_zh: str
    entry_name_en: str
    department: str
    status: str
    parent_id: str | None
    assigned_at: datetime
    due_at: datetime
    overdue: bool
    reminded_at: datetime | None
    escalated_at: datetime | None
    escalated_to: str | None
    completed_at: datetime | None
    completed_by: str | None
    hazard_found: bool | None
    finding: str | None
    measures: str | None
    evidence: list[str] = Field(default_factory=list)  # ids: GET /api/prevention/evidence/{id}


class InspectionAnswerIn(Strict):
    hazard_found: bool
    finding: Lines | None = Field(default=None, max_length=4000)  # required when a hazard was found


class RectificationCloseIn(Strict):
    measures: Lines = Field(min_length=1, max_length=4000)


class EvidenceOut(BaseModel):
    id: str
    task_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
