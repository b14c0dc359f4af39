"""The duty desk (值班值守): event record sheets (the office records them, the duty leader reviews them) and the
duty logs of its shifts. The office and administrators write; managers read; a department is no party to the
desk and reads none of it (403)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import OfficeUser, ReviewerUser, SessionDep
from api.routes.incidents import public
from api.schemas import IncidentPublic, Level, Strict
from core.desk import logs, sheets
from core.desk.models import DutyLog, EventSheet, SheetSource, SheetStatus
from core.platform.input_policy import Line, Lines, Moment, Number

router = APIRouter(tags=["duty desk"])
Casualties = Annotated[int, Field(ge=0, le=sheets.MAX_COUNT)]


class SheetIn(Strict):
    source: SheetSource = Field(description="phone (电话), hotline_12345 (12345热线), app, other")
    caller: Line = Field(min_length=1, max_length=100)
    callback: Line = Field(default="", max_length=32, description="The number to call back on.")
    place: Line = Field(min_length=1, max_length=200)
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)
    occurred_at: Moment = Field(description="When it happened (with a UTC offset); not in the future.")
    what: Lines = Field(min_length=1, max_length=5000, description="What happened, as the caller said it.")
    dead: Casualties = 0
    injured: Casualties = 0
    missing: Casualties = 0
    trapped: Casualties = 0

    def given(self) -> sheets.SheetInput:
        return sheets.SheetInput(source=self.source.value, caller=self.caller, callback=self.callback,
                                 place=self.place, occurred_at=self.occurred_at, what=self.what, dead=self.dead,
                                 injured=self.injured, missing=self.missing, trapped=self.trapped, lat=self.lat,
                                 lon=self.lon)


class SheetOut(BaseModel):
    id: str
    number: str
    source: str
    caller: str
    callback: str
    place: str
    lat: float | None
    lon: float | None
    occurred_at: datetime
    what: str
    dead: int
    injured: int
    missing: int
    trapped: int
    recorded_by: str
    recorded_at: datetime
    submitted_at: datetime
    status: str
    overdue: bool
    returned_reason: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    reason: str | None
    incident_id: str | None


class SheetDetailOut(SheetOut):
    history: list[dict[str, Any]]


class OpenIn(Strict):
    type: Line = Field(min_length=1, max_length=64)
    level: Level | None = None
    title: Line | None = Field(default=None, min_length=1, max_length=200)


class MergeIn(Strict):
    incident_id: Line = Field(min_length=1, max_length=64, description="The open incident's id or code.")
    note: Lines = Field(default="", max_length=2000)


class ReasonIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


class OpenedOut(BaseModel):
    sheet: SheetOut
    incident: IncidentPublic


class LogStartIn(Strict):
    officer: Line = Field(min_length=1, max_length=64)


class NoteIn(Strict):
    text: Lines = Field(min_length=1, max_length=5000)


class HandoverIn(Strict):
    incoming: Line = Field(min_length=1, max_length=64)
    note: Lines = Field(default="", max_length=5000)


class LogEntryOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    text: str
    ref: str | None
    automatic: bool


class LogOut(BaseModel):
    id: str
    officer: str
    started_at: datetime
    ended_at: datetime | None
    incoming: str | None
    handover_note: str | None
    next_log_id: str | None
    entries: list[LogEntryOut]


def sheet_out(sheet: EventSheet) -> SheetOut:
    return SheetOut.model_validate({**sheet.model_dump(), "overdue": sheets.is_overdue(sheet)})


def _detail(session: SessionDep, sheet: EventSheet) -> SheetDetailOut:
    history = [{"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "details": e.details, "hash": e.hash}
               for e in sheets.history(session, sheet)]
    return SheetDetailOut.model_validate({**sheet_out(sheet).model_dump(), "history": history})


@router.post("/api/sheets", status_code=201, response_model=SheetOut)
def record(body: SheetIn, principal: OfficeUser, session: SessionDep) -> SheetOut:
    """Record a report taken by phone, the 12345 hotline or an app as an event record sheet (事件记录单), sent at
    once for the duty leader's review. Casualties are whole numbers from 0; the event cannot lie in the future."""
    return sheet_out(sheets.record(session, given=body.given(), actor=principal.actor))


@router.get("/api/sheets", response_model=list[SheetOut])
def list_(principal: ReviewerUser, session: SessionDep,
          status: Annotated[SheetStatus | None, Query()] = None) -> list[SheetOut]:
    """Sheets: those awaiting review (oldest first, `overdue` past the limit) before the reviewed ones."""
    return [sheet_out(s) for s in sheets.list_sheets(session, status=status.value if status else None)]


@router.get("/api/sheets/{sheet_id}", response_model=SheetDetailOut)
def get(sheet_id: str, principal: ReviewerUser, session: SessionDep) -> SheetDetailOut:
    """A sheet and its history in the desk's chain."""
    return _detail(session, sheets.get_sheet(session, sheet_id))


@router.post("/api/sheets/{sheet_id}/open", response_model=OpenedOut, status_code=201,
             responses={403: {"description": "Not the duty leader on duty (`position_required`)"},
                        409: {"description": "Not awaiting review (`sheet_state_conflict`)"}})
def open_incident(sheet_id: str, body: OpenIn, principal: OfficeUser, session: SessionDep) -> OpenedOut:
    """The duty leader opens an incident of a type and level from the sheet (linked both ways). A worker starts
    its flow."""
    sheet, incident = sheets.open_from(session, sheet_id=sheets.get_sheet(session, sheet_id).id,
                                       user=principal.user, type_key=body.type, level=body.level, title=body.title)
    return OpenedOut(sheet=sheet_out(sheet), incident=public(incident))


@router.post("/api/sheets/{sheet_id}/merge", response_model=SheetOut)
def merge(sheet_id: str, body: MergeIn, principal: OfficeUser, session: SessionDep) -> SheetOut:
    """The duty leader merges the sheet into an open incident (it shows in that incident's ledger)."""
    sheet, _ = sheets.merge(session, sheet_id=sheets.get_sheet(session, sheet_id).id, user=principal.user,
                            incident_id=body.incident_id, note=body.note)
    return sheet_out(sheet)


@router.post("/api/sheets/{sheet_id}/file", response_model=SheetOut)
def file_sheet(sheet_id: str, body: ReasonIn, principal: OfficeUser, session: SessionDep) -> SheetOut:
    """The duty leader files the sheet with a reason (no incident)."""
    return sheet_out(sheets.file_sheet(session, sheet_id=sheets.get_sheet(session, sheet_id).id,
                                       user=principal.user, reason=body.reason))


@router.post("/api/sheets/{sheet_id}/return", response_model=SheetOut)
def return_sheet(sheet_id: str, body: ReasonIn, principal: OfficeUser, session: SessionDep) -> SheetOut:
    """The duty leader returns the sheet to the officer for the details it lacks (the reason)."""
    return sheet_out(sheets.return_(session, sheet_id=sheets.get_sheet(session, sheet_id).id, user=principal.user,
                                    reason=body.reason))


@router.post("/api/sheets/{sheet_id}/amend", response_model=SheetOut)
def amend(sheet_id: str, body: SheetIn, principal: OfficeUser, session: SessionDep) -> SheetOut:
    """The officer completes a returned sheet and sends it for review again (the whole sheet, as recorded now)."""
    return sheet_out(sheets.amend(session, sheet_id=sheets.get_sheet(session, sheet_id).id, given=body.given(),
                                  actor=principal.actor))


def log_out(session: SessionDep, log: DutyLog) -> LogOut:
    entries = [LogEntryOut(at=e.at, kind=e.kind, actor=e.actor, text=e.text, ref=e.ref, automatic=e.automatic)
               for e in logs.entries(session, log)]
    return LogOut.model_validate({**log.model_dump(), "entries": entries})


@router.get("/api/duty-logs", response_model=list[LogOut])
def recent_logs(principal: ReviewerUser, session: SessionDep) -> list[LogOut]:
    """The latest duty logs, the current shift's first."""
    return [log_out(session, log) for log in logs.recent(session)]


@router.post("/api/duty-logs", response_model=LogOut, status_code=201,
             responses={409: {"description": "A log is open (`duty_log_conflict`)"}})
def start_log(body: LogStartIn, principal: OfficeUser, session: SessionDep) -> LogOut:
    """Open the shift's duty log for its officer (one log is open at a time)."""
    return log_out(session, logs.start(session, officer=body.officer, actor=principal.actor))


@router.get("/api/duty-logs/{log_id}", response_model=LogOut)
def get_log(log_id: str, principal: ReviewerUser, session: SessionDep) -> LogOut:
    """A duty log with its entries: notes, and what the ledgers recorded during the shift."""
    return log_out(session, logs.get_log(session, log_id))


@router.post("/api/duty-logs/{log_id}/notes", response_model=LogOut, status_code=201)
def add_note(log_id: str, body: NoteIn, principal: OfficeUser, session: SessionDep) -> LogOut:
    logs.add_note(session, log_id=logs.get_log(session, log_id).id, text=body.text, actor=principal.actor)
    return log_out(session, logs.get_log(session, log_id))


@router.post("/api/duty-logs/{log_id}/handover", response_model=LogOut)
def handover(log_id: str, body: HandoverIn, principal: OfficeUser, session: SessionDep) -> LogOut:
    """Hand the shift over to the incoming officer (交接班): this log closes, theirs opens. Answers the new log."""
    _, following = logs.handover(session, log_id=logs.get_log(session, log_id).id, incoming=body.incoming,
                                 note=body.note, actor=principal.actor)
    return log_out(session, following)
