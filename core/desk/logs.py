"""Duty logs (值班日志): one a shift at the emergency office's desk, opened by its officer and closed by the
handover to the next, who finds a new log opened for them. A log's entries are its manual notes and what the
ledgers recorded during the shift (sheets recorded and reviewed, incidents opened, levels changed, warnings
published), read back from them, so nothing that happened can be missing from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.desk.models import DutyLog, DutyLogNote, EventSheet, SheetStatus
from core.incidents.models import Incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.errors import BatonError, InputInvalid, NotFound
from core.users.models import Role, User

# What the incidents' ledgers add to a log: the moments a duty officer writes down.
INCIDENT_KINDS = (LedgerKind.incident_opened, LedgerKind.level_changed, LedgerKind.warning_published,
                  LedgerKind.warning_signed, LedgerKind.warning_cancelled, LedgerKind.incident_closed,
                  LedgerKind.instruction_recorded, LedgerKind.instruction_closed)
DESK_KINDS = (LedgerKind.sheet_recorded, LedgerKind.sheet_returned, LedgerKind.sheet_amended,
              LedgerKind.sheet_opened, LedgerKind.sheet_merged, LedgerKind.sheet_filed)


class DutyLogConflict(BatonError):
    """A log is already open (one shift at a time), or this one was handed over already."""

    code = "duty_log_conflict"
    http_status = 409


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    kind: str  # a ledger kind, or "note"
    actor: str
    text: str  # a note's text; else what the entry is about (a sheet's number and place, an incident's code)
    ref: str | None = None  # a sheet's or an incident's id, for a link
    automatic: bool = True


def _officer(session: Session, username: str, field: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or not user.active or user.role not in (Role.office, Role.admin):
        raise InputInvalid(f"{username[:64]} is not an active duty officer of the office",
                                  details=[{"field": field, "reason": "not_an_officer",
                                            "message": "name an active user of the emergency office"}])
    return user


def current(session: Session) -> DutyLog | None:
    """The open log (the shift now on), if any."""
    return session.exec(select(DutyLog).where(col(DutyLog.ended_at).is_(None))
                        .order_by(col(DutyLog.started_at).desc())).first()


def get_log(session: Session, log_id: str, *, lock: bool = False) -> DutyLog:
    query = select(DutyLog).where(DutyLog.id == log_id)
    if lock and is_postgres(session):
        query = query.with_for_update()
    log = session.exec(query.execution_options(populate_existing=True)).first()
    if log is None:
        raise NotFound(f"no duty log '{log_id}'")
    return log


def handed_from(session: Session, log: DutyLog) -> DutyLog | None:
    """The shift that handed over to this one, if any: its note is what the incoming officer must know."""
    return session.exec(select(DutyLog).where(DutyLog.next_log_id == log.id)).first()


def recent(session: Session, limit: int = 20) -> list[DutyLog]:
    return list(session.exec(select(DutyLog).order_by(col(DutyLog.started_at).desc()).limit(limit)).all())


def _start(session: Session, *, officer: User, actor: str, at: datetime) -> DutyLog:
    log = DutyLog(officer=officer.username, started_at=at, started_by=actor)
    session.add(log)
    session.flush()
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.duty_log_started, actor=actor, subject=f"log:{log.id}",
                     idempotency_key=f"{log.id}:started", details={"officer": officer.username}, at=at)
    return log


def start(session: Session, *, officer: str, actor: str) -> DutyLog:
    """Open the shift's log for `officer`; refused while another log is open (hand that one over)."""
    user = _officer(session, officer, "officer")
    if current(session) is not None:
        raise DutyLogConflict("a duty log is open: hand it over to start the next one")
    return _start(session, officer=user, actor=actor, at=utcnow())


def add_note(session: Session, *, log_id: str, text: str, actor: str) -> DutyLogNote:
    clean = policy.checked("text", policy.text, text, max_length=5000, multiline=True).strip()
    if not clean:
        raise InputInvalid("a note needs its text", details=[{"field": "text", "reason": "required",
                                                                     "message": "write the note"}])
    log = get_log(session, log_id, lock=True)
    if log.ended_at is not None:
        raise DutyLogConflict("this log was handed over; write in the current shift's log")
    now = utcnow()
    note = DutyLogNote(log_id=log.id, at=now, author=actor, text=clean)
    session.add(note)
    session.flush()
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.duty_log_noted, actor=actor, subject=f"log:{log.id}",
                     idempotency_key=f"{log.id}:note:{note.id}", handed_over={"text": clean},
                     details={"note_id": note.id}, at=now)
    return note


def handover(session: Session, *, log_id: str, incoming: str, note: str, actor: str) -> tuple[DutyLog, DutyLog]:
    """The outgoing officer hands the shift over to `incoming` (交接班), with what the next shift must know: the log
    closes, the incoming officer's log opens. Ledgered."""
    clean = policy.checked("note", policy.text, note, max_length=5000, multiline=True).strip()
    successor = _officer(session, incoming, "incoming")
    log = get_log(session, log_id, lock=True)
    if log.ended_at is not None:
        raise DutyLogConflict("this log was handed over already")
    now = utcnow()
    pending = open_items(session)
    log.ended_at, log.incoming, log.handover_note = now, successor.username, clean or None
    session.add(log)
    following = _start(session, officer=successor, actor=actor, at=now)
    log.next_log_id = following.id
    session.add(log)
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.duty_log_handed_over, actor=actor,
                     subject=f"log:{log.id}",
                     idempotency_key=f"{log.id}:handed_over", handed_over={"note": clean, **pending},
                     details={"outgoing": log.officer, "incoming": successor.username, "next_log_id": following.id,
                                **pending}, at=now)
    return log, following


def open_items(session: Session) -> dict[str, Any]:
    """What the outgoing shift hands over unfinished: sheets awaiting review or back with the officer, open
    incidents (by code)."""
    waiting = session.exec(select(EventSheet.number).where(col(EventSheet.status).in_(
        [SheetStatus.submitted.value, SheetStatus.returned.value])).order_by(col(EventSheet.number))).all()
    incidents = session.exec(select(Incident.code).where(Incident.status == "open")
                             .order_by(col(Incident.code))).all()
    return {"sheets_pending": list(waiting), "incidents_open": list(incidents)}


def entries(session: Session, log: DutyLog, now: datetime | None = None) -> list[LogEntry]:
    """The log's entries in time order: its notes, and the desk's and the incidents' ledger entries of its shift."""
    end = log.ended_at or (now or utcnow())
    out: list[LogEntry] = []
    for note in session.exec(select(DutyLogNote).where(DutyLogNote.log_id == log.id)).all():
        out.append(LogEntry(note.at, "note", note.author, note.text, automatic=False))
    for entry in session.exec(select(LedgerEntry).where(
            LedgerEntry.chain == ledger.DESK, col(LedgerEntry.kind).in_([k.value for k in DESK_KINDS]),
            col(LedgerEntry.at) >= log.started_at, col(LedgerEntry.at) < end)).all():
        details = entry.details
        text = f"{details.get('number', '')} {details.get('place', '') or details.get('code', '')}".strip()
        out.append(LogEntry(entry.at, entry.kind, entry.actor, text, (entry.subject or "").partition(":")[2]))
    rows = session.execute(select(LedgerEntry, Incident.code, Incident.title).join(
        Incident, col(Incident.id) == col(LedgerEntry.incident_id)).where(
        col(LedgerEntry.kind).in_([k.value for k in INCIDENT_KINDS]), col(LedgerEntry.at) >= log.started_at,
        col(LedgerEntry.at) < end)).all()
    for entry, code, title in rows:
        out.append(LogEntry(entry.at, entry.kind, entry.actor, f"{code} {title}", entry.incident_id))
    return sorted(out, key=lambda e: (e.at, e.kind))
