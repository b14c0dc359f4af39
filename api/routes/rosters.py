"""Duty rosters: import one (the office and administrators), read who is on duty, mark a person away."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CurrentUser, OfficeUser, Principal, SessionDep
from api.errors import ApiError
from api.schemas import Strict, uploaded
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.input_policy import Line, LocalMoment, checked
from core.platform.settings import get_settings
from core.users import rosters
from core.users.models import Role

router = APIRouter(prefix="/api/rosters", tags=["rosters"])
MAX_ROSTER_CHARS = 900_000


class RosterImportIn(Strict):
    filename: Line = Field(min_length=5, max_length=200, pattern=r"(?i)\.(csv|xlsx)$",
                           description="The roster's file name; its suffix says how it is read (.csv or .xlsx).")
    content: str | None = Field(default=None, max_length=MAX_ROSTER_CHARS, description="A CSV roster's text.")
    content_base64: str | None = Field(default=None, max_length=MAX_ROSTER_CHARS,
                                       description="An XLSX roster, base64-encoded.")


class RowProblemOut(BaseModel):
    row: int
    field: str
    code: str
    message: str
    message_zh: str


class RosterImportOut(BaseModel):
    source: str
    rows: int
    added: int
    updated: int
    unchanged: int
    refused: list[RowProblemOut]


class OnDutyOut(BaseModel):
    department: str
    position: str
    position_name: dict[str, str]
    holder: str
    stand_in: str | None
    on_duty: str | None = Field(description="Who holds it now: the holder, the stand-in while the holder is away, "
                                            "or nobody.")
    by_stand_in: bool
    starts_at: datetime
    ends_at: datetime


class RosterOut(BaseModel):
    at: datetime
    department: str | None
    on_duty: list[OnDutyOut]
    next_handover: datetime | None


class AbsenceIn(Strict):
    username: Line = Field(min_length=1, max_length=64)
    starts_at: LocalMoment
    ends_at: LocalMoment
    reason: Line = Field(min_length=1, max_length=200)


class AbsenceOut(BaseModel):
    id: int
    username: str
    starts_at: datetime
    ends_at: datetime
    reason: str


def result_out(result: rosters.ImportResult) -> RosterImportOut:
    return RosterImportOut(source=result.source, rows=result.rows, added=result.added, updated=result.updated,
                           unchanged=result.unchanged,
                           refused=[RowProblemOut(row=p.row, field=p.field, code=p.code, message=p.en,
                                                  message_zh=p.zh) for p in result.problems])


@router.post("/import", response_model=RosterImportOut)
def import_roster(body: RosterImportIn, principal: OfficeUser, session: SessionDep) -> RosterImportOut:
    """Import a duty roster (CSV text, or an XLSX file base64-encoded): each bad row is refused with its row and
    field (`refused`), the good rows are kept; importing the same roster again changes nothing."""
    data = uploaded(body.content, body.content_base64)
    rows = rosters.read_rows(body.filename, data)
    return result_out(rosters.import_roster(session, rows=rows, source=body.filename, actor=principal.actor))


def duty_out(duty: rosters.OnDuty) -> OnDutyOut:
    position = registry().position(duty.shift.position)
    return OnDutyOut(department=duty.shift.department, position=duty.shift.position,
                     position_name=position.name.model_dump() if position else {"zh": duty.shift.position,
                                                                                "en": duty.shift.position},
                     holder=duty.holder.username, stand_in=duty.stand_in.username if duty.stand_in else None,
                     on_duty=duty.acting.username if duty.acting else None, by_stand_in=duty.by_stand_in,
                     starts_at=duty.shift.starts_at, ends_at=duty.shift.ends_at)


def _department_read(principal: Principal, department: str | None) -> str | None:
    """A department user reads their own department's roster only."""
    if principal.user.role == Role.department:
        if department is not None and department != principal.user.department:
            raise ApiError(403, "forbidden", "a department reads its own roster only")
        return principal.user.department
    return department


@router.get("", response_model=RosterOut)
def on_duty(principal: CurrentUser, session: SessionDep,
            department: Annotated[str | None, Query(max_length=64)] = None,
            at: Annotated[str | None, Query(max_length=40, description="ISO date and time; without an offset in "
                                                                     "Baton's time zone. Default: now.")] = None
            ) -> RosterOut:
    """Who is on duty at `at` (default now), in one department or every one, and the next handover."""
    scope = _department_read(principal, department)
    moment = checked("at", policy.moment_text, at, local=_zone()) if at else utcnow()
    if scope is not None:
        desk = rosters.desk(session, department=scope, at=moment)
        return RosterOut(at=moment, department=scope, on_duty=[duty_out(d) for d in desk.duty],
                         next_handover=desk.next_handover)
    found = [rosters.on_duty(session, department=s.department, position=s.position, at=moment)
             for s in rosters.shifts(session, at=moment)]
    duty = [duty_out(d) for d in found if d is not None]
    return RosterOut(at=moment, department=None, on_duty=duty,
                     next_handover=min((d.ends_at for d in duty), default=None))


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


@router.post("/absences", response_model=AbsenceOut)
def mark_away(body: AbsenceIn, principal: OfficeUser, session: SessionDep) -> AbsenceOut:
    """A person is away from `starts_at` to `ends_at` (leave, sickness …): their stand-in holds their duty."""
    row = rosters.mark_away(session, username=body.username, starts_at=body.starts_at, ends_at=body.ends_at,
                            reason=body.reason, actor=principal.actor)
    assert row.id is not None
    return AbsenceOut(id=row.id, username=body.username, starts_at=row.starts_at, ends_at=row.ends_at,
                      reason=row.reason)
