"""Event record sheets (事件记录单): a phone, 12345 or app report as the duty officer records it, and the duty
leader's review (送审): open an incident from it, merge it into an open incident, file it with a reason, or return
it to the officer for more details. Nothing recorded is lost: a sheet is never deleted, every change is an entry
in the duty desk's ledger chain (`desk`, `core.ledger.chain.append_to`), an opened or merged sheet is also an entry
in its incident's chain (linked both ways), and a sheet left unreviewed too long shows overdue."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from core.desk.models import EventSheet, SheetSource, SheetStatus
from core.incidents import permissions
from core.incidents.authority import PositionRequired
from core.incidents.models import Incident, IncidentStatus
from core.incidents.service import COMMAND, lock_incident, next_code, open_incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.errors import BatonError, IncidentClosed, NotFound, ReasonRequired
from core.platform.input_policy import Refusals, Violation
from core.platform.settings import get_settings
from core.users.models import Role, User
from core.users.positions import holds

PREFIX = "JL"  # 记录
DUTY_LEADER = "duty_leader@emergency_office"
# The office's own leaders review a sheet too, whoever is on duty.
OFFICE_LEADERS = ("bureau_director@emergency_office", "deputy_director@emergency_office")
MAX_COUNT = 1_000_000
FUTURE_SLACK = timedelta(minutes=10)  # clocks differ a little; an event in the future is a mistake
CASUALTIES = ("dead", "injured", "missing", "trapped")
_CALLBACK = re.compile(r"^[0-9+\-() ]{0,32}$")


class SheetReviewed(BatonError):
    """The sheet was already reviewed (opened, merged or filed), or is back with the officer."""

    code = "sheet_state_conflict"
    http_status = 409


@dataclass(frozen=True)
class SheetInput:
    source: str
    caller: str
    callback: str
    place: str
    occurred_at: datetime
    what: str
    dead: Any = 0
    injured: Any = 0
    missing: Any = 0
    trapped: Any = 0
    lat: Any = None
    lon: Any = None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Violation("not_a_number", "must be a whole number")
    number = policy.number(value, low=0, high=MAX_COUNT)
    if isinstance(number, float) and not number.is_integer():
        raise Violation("not_whole", "must be a whole number of people")
    return int(number)


def _occurred(value: datetime, now: datetime) -> datetime:
    checked = policy.moment(value)
    if checked > now + FUTURE_SLACK:
        raise Violation("in_future", "an event reported now cannot have happened in the future")
    return checked


def _callback(value: str) -> str:
    text = policy.text(value, max_length=32).strip()
    if not _CALLBACK.match(text):
        raise Violation("not_a_phone_number", "a callback number holds digits, spaces, +, - and brackets only")
    return text


def checked_input(given: SheetInput, now: datetime) -> SheetInput:
    """The sheet's fields held to the input policy, every bad one named (422 `input_invalid`)."""
    refusals = Refusals()
    if given.source not in {s.value for s in SheetSource}:
        refusals.problems.append({"field": "source", "reason": "unknown_source",
                                  "message": f"one of {', '.join(s.value for s in SheetSource)}"})
    caller = refusals.check("caller", policy.text, given.caller, max_length=100).strip()
    if not caller:
        refusals.problems.append({"field": "caller", "reason": "required", "message": "who called is needed"})
    callback = refusals.check("callback", _callback, given.callback)
    place = refusals.check("place", policy.text, given.place, max_length=200).strip()
    if not place:
        refusals.problems.append({"field": "place", "reason": "required", "message": "where it happened is needed"})
    what = refusals.check("what", policy.text, given.what, max_length=5000, multiline=True).strip()
    if not what:
        refusals.problems.append({"field": "what", "reason": "required", "message": "what happened is needed"})
    occurred = refusals.check("occurred_at", _occurred, given.occurred_at, now=now)
    counts = {name: refusals.check(name, _count, getattr(given, name)) for name in CASUALTIES}
    lat = refusals.check("lat", policy.number, given.lat, low=-90, high=90) if given.lat is not None else None
    lon = refusals.check("lon", policy.number, given.lon, low=-180, high=180) if given.lon is not None else None
    if (lat is None) != (lon is None):
        refusals.problems.append({"field": "lat" if lat is None else "lon", "reason": "half_a_location",
                                  "message": "a location needs both its latitude and longitude"})
    refusals.raise_any()
    return SheetInput(source=given.source, caller=caller, callback=callback, place=place, occurred_at=occurred,
                      what=what, lat=lat, lon=lon, **counts)


def _values(sheet: EventSheet) -> dict[str, Any]:
    return {"number": sheet.number, "source": sheet.source, "caller": sheet.caller, "callback": sheet.callback,
            "place": sheet.place, "lat": sheet.lat, "lon": sheet.lon, "occurred_at": sheet.occurred_at.isoformat(),
            "what": sheet.what, **{name: getattr(sheet, name) for name in CASUALTIES}}


def _subject(sheet: EventSheet) -> str:
    return f"sheet:{sheet.id}"


def record(session: Session, *, given: SheetInput, actor: str) -> EventSheet:
    """Record a sheet and send it for the duty leader's review; ledgered in the desk's chain."""
    now = utcnow()
    clean = checked_input(given, now)
    sheet = EventSheet(number=next_code(session, PREFIX, now), source=clean.source, caller=clean.caller,
                       callback=clean.callback, place=clean.place, lat=clean.lat, lon=clean.lon,
                       occurred_at=clean.occurred_at, what=clean.what, dead=clean.dead, injured=clean.injured,
                       missing=clean.missing, trapped=clean.trapped, recorded_by=actor, recorded_at=now,
                       submitted_at=now, status=SheetStatus.submitted)
    session.add(sheet)
    session.flush()
    values = _values(sheet)
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_recorded, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:recorded", handed_over=values,
                     details={"number": sheet.number, "source": sheet.source, "place": sheet.place}, at=now)
    return sheet


def get_sheet(session: Session, sheet_id: str, *, lock: bool = False) -> EventSheet:
    query = select(EventSheet).where((col(EventSheet.id) == sheet_id) | (col(EventSheet.number) == sheet_id))
    if lock and is_postgres(session):
        query = query.with_for_update()
    sheet = session.exec(query.execution_options(populate_existing=True)).first()
    if sheet is None:
        raise NotFound(f"no event record sheet '{sheet_id}'")
    return sheet


def list_sheets(session: Session, *, status: str | None = None, limit: int = 200) -> list[EventSheet]:
    """Sheets, those awaiting review (oldest first) before the rest (newest first)."""
    query = select(EventSheet)
    if status is not None:
        query = query.where(EventSheet.status == status)
    rows = list(session.exec(query.order_by(col(EventSheet.recorded_at).desc()).limit(limit)).all())
    waiting = sorted((s for s in rows if not SheetStatus(s.status).reviewed), key=lambda s: s.submitted_at)
    return waiting + [s for s in rows if SheetStatus(s.status).reviewed]


def review_limit() -> timedelta:
    return timedelta(minutes=get_settings().desk_review_minutes)


def is_overdue(sheet: EventSheet, now: datetime | None = None) -> bool:
    """Sent for review and not reviewed within `desk_review_minutes`."""
    return sheet.status == SheetStatus.submitted and (now or utcnow()) - sheet.submitted_at > review_limit()


def overdue_sheets(session: Session, now: datetime | None = None) -> list[EventSheet]:
    """Sheets waiting for the duty leader longer than the limit, oldest first (the office's screens show them)."""
    moment = now or utcnow()
    return list(session.exec(select(EventSheet).where(EventSheet.status == SheetStatus.submitted,
                                                      col(EventSheet.submitted_at) < moment - review_limit())
                             .order_by(col(EventSheet.submitted_at))).all())


def leader_refs() -> list[str]:
    return [DUTY_LEADER, *OFFICE_LEADERS]


def require_reviewer(session: Session, user: User, at: datetime | None = None) -> str:
    """The position by which `user` reviews sheets: the duty leader (带班领导) on duty at the office by its roster
    (or, with no roster, whoever holds the post), or a leader of the office; else PositionRequired (403
    `position_required`) naming them, in the user's language."""
    if user.role in (Role.office, Role.admin):
        _, holders = permissions.duty_of(session, DUTY_LEADER, at or utcnow())
        if any(u.id == user.id for u in holders):
            return DUTY_LEADER
        held = holds(session, user, list(OFFICE_LEADERS))
        if held is not None:
            return held
    en = user.lang.startswith("en")
    names = ("; " if en else "、").join(registry().position_name(r, "en" if en else "zh") for r in leader_refs())
    message = (f"reviewing an event record sheet needs the duty leader on duty or a leader of the office, "
               f"which you are not: {names}" if en
               else f"审核事件记录单须由当班带班领导或应急办负责同志进行，您不是：{names}")
    raise PositionRequired(message, details={"reason": "not_held", "act": "review_sheet", "needs": leader_refs()},
                           lang="en" if en else "zh")


def _waiting(sheet: EventSheet) -> None:
    if sheet.status != SheetStatus.submitted:
        raise SheetReviewed(f"sheet {sheet.number} is {sheet.status}, not awaiting review",
                            details={"status": sheet.status})


def _decided(session: Session, sheet: EventSheet, *, status: SheetStatus, by: str, at: datetime,
             reason: str | None = None, incident_id: str | None = None) -> None:
    sheet.status, sheet.reviewed_by, sheet.reviewed_at = status, by, at
    sheet.reason, sheet.incident_id = reason, incident_id
    session.add(sheet)


def _incident_entry(session: Session, *, incident: Incident, sheet: EventSheet, kind: LedgerKind, actor: str,
                    at: datetime, position: str) -> None:
    ledger.append(session, incident=incident, kind=kind, actor=actor, from_party=COMMAND, to_party=COMMAND,
                  idempotency_key=f"{sheet.id}:{kind}", handed_over=_values(sheet),
                  details={"sheet_id": sheet.id, "number": sheet.number, "source": sheet.source,
                           "place": sheet.place, "recorded_by": sheet.recorded_by, "position": position,
                           "casualties": {name: getattr(sheet, name) for name in CASUALTIES}}, at=at)


def open_from(session: Session, *, sheet_id: str, user: User, type_key: str, level: str | None,
              title: str | None = None) -> tuple[EventSheet, Incident]:
    """The duty leader opens an incident of a type and level from the sheet (linked both ways); the web process
    only writes it, a worker picks it up."""
    position = require_reviewer(session, user)
    sheet = get_sheet(session, sheet_id, lock=True)
    _waiting(sheet)
    actor = f"user:{user.username}"
    casualties = "，".join(f"{label}{getattr(sheet, name)}" for name, label in
                          zip(CASUALTIES, ("死亡", "受伤", "失联", "被困"), strict=True) if getattr(sheet, name))
    description = f"{sheet.what}\n\n（据{sheet.number}：{sheet.caller} {sheet.callback}".rstrip() + \
        (f"；{casualties}" if casualties else "") + "）"
    opened = open_incident(session, type_key=type_key, level=level, actor=actor,
                           title=(title or f"{sheet.place} {sheet.what.splitlines()[0]}")[:200].strip(),
                           description=description, location_name=sheet.place, lat=sheet.lat, lon=sheet.lon,
                           idempotency_key=f"sheet:{sheet.id}")
    now = utcnow()
    _decided(session, sheet, status=SheetStatus.opened, by=actor, at=now, incident_id=opened.incident.id)
    _incident_entry(session, incident=opened.incident, sheet=sheet, kind=LedgerKind.sheet_opened, actor=actor,
                    at=now, position=position)
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_opened, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:opened",
                     details={"number": sheet.number, "incident_id": opened.incident.id,
                                "code": opened.incident.code, "type": type_key, "level": opened.incident.level,
                                "position": position}, at=now)
    return sheet, opened.incident


def merge(session: Session, *, sheet_id: str, user: User, incident_id: str, note: str = "") -> tuple[EventSheet,
                                                                                                       Incident]:
    """The duty leader merges the sheet into an open incident (the same event reported again): the incident's
    ledger gets it, the sheet links to the incident."""
    position = require_reviewer(session, user)
    note = policy.checked("note", policy.text, note, max_length=2000, multiline=True).strip()
    sheet = get_sheet(session, sheet_id, lock=True)
    _waiting(sheet)
    target = session.get(Incident, incident_id) or session.exec(
        select(Incident).where(Incident.code == incident_id)).first()
    if target is None:
        raise NotFound(f"no incident '{incident_id}'")
    incident = lock_incident(session, target.id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed: open a new one from the sheet instead")
    actor, now = f"user:{user.username}", utcnow()
    _decided(session, sheet, status=SheetStatus.merged, by=actor, at=now, reason=note or None,
             incident_id=incident.id)
    _incident_entry(session, incident=incident, sheet=sheet, kind=LedgerKind.sheet_merged, actor=actor, at=now,
                    position=position)
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_merged, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:merged",
                     details={"number": sheet.number, "incident_id": incident.id, "code": incident.code,
                                "note": note, "position": position}, at=now)
    return sheet, incident


def _reason(reason: str, what: str) -> str:
    clean = policy.checked("reason", policy.text, reason, max_length=2000, multiline=True).strip()
    if not clean:
        raise ReasonRequired(f"{what} needs a reason", details=[{"field": "reason", "reason": "required",
                                                                  "message": "a reason is needed"}])
    return clean


def file_sheet(session: Session, *, sheet_id: str, user: User, reason: str) -> EventSheet:
    """The duty leader files the sheet with a reason (no incident: a false alarm, handled by the caller's own
    unit, a duplicate call …)."""
    position = require_reviewer(session, user)
    clean = _reason(reason, "filing a sheet")
    sheet = get_sheet(session, sheet_id, lock=True)
    _waiting(sheet)
    actor, now = f"user:{user.username}", utcnow()
    _decided(session, sheet, status=SheetStatus.filed, by=actor, at=now, reason=clean)
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_filed, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:filed", handed_over={"reason": clean},
                     details={"number": sheet.number, "reason": clean, "position": position}, at=now)
    return sheet


def return_(session: Session, *, sheet_id: str, user: User, reason: str) -> EventSheet:
    """The duty leader returns the sheet to the officer for more details (what is missing: the reason)."""
    position = require_reviewer(session, user)
    clean = _reason(reason, "returning a sheet")
    sheet = get_sheet(session, sheet_id, lock=True)
    _waiting(sheet)
    actor, now = f"user:{user.username}", utcnow()
    sheet.status, sheet.returned_reason = SheetStatus.returned, clean
    session.add(sheet)
    seq = len(ledger.read_named(session, ledger.DESK, _subject(sheet)))
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_returned, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:returned:{seq}", handed_over={"reason": clean},
                     details={"number": sheet.number, "reason": clean, "position": position}, at=now)
    return sheet


def amend(session: Session, *, sheet_id: str, given: SheetInput, actor: str) -> EventSheet:
    """The officer adds the details a returned sheet lacked and sends it for review again (the first version
    stays in the chain: each entry holds the digest of what it recorded, the amendment its changed fields)."""
    sheet = get_sheet(session, sheet_id, lock=True)
    if sheet.status != SheetStatus.returned:
        raise SheetReviewed(f"sheet {sheet.number} is {sheet.status}: only a returned sheet is amended",
                            details={"status": sheet.status})
    now = utcnow()
    clean = checked_input(given, now)
    before = _values(sheet)
    for name in ("source", "caller", "callback", "place", "lat", "lon", "occurred_at", "what", *CASUALTIES):
        setattr(sheet, name, getattr(clean, name))
    sheet.status, sheet.submitted_at = SheetStatus.submitted, now
    session.add(sheet)
    after = _values(sheet)
    changed = {k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v}
    seq = len(ledger.read_named(session, ledger.DESK, _subject(sheet)))
    ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_amended, actor=actor, subject=_subject(sheet),
                     idempotency_key=f"{sheet.id}:amended:{seq}", handed_over=after,
                     details={"number": sheet.number, "changed": changed}, at=now)
    return sheet


def sheets_of_incident(session: Session, incident_id: str) -> list[EventSheet]:
    """The sheets an incident was opened from or merged with, oldest first."""
    return list(session.exec(select(EventSheet).where(EventSheet.incident_id == incident_id)
                             .order_by(col(EventSheet.recorded_at))).all())


def history(session: Session, sheet: EventSheet) -> list[Any]:
    """The sheet's entries in the desk's chain, oldest first."""
    return ledger.read_named(session, ledger.DESK, _subject(sheet))
