"""Duty rosters (值班表): who holds a department's duty position (值班员, 带班领导 …) in each shift, and their
stand-in (AB角), who holds it while the holder is marked away. A task addressed to the position reaches whoever
holds it now (`core.incidents.permissions.duty_of`).

A roster is imported from CSV or XLSX, one shift pattern a row (header row first; row numbers as a spreadsheet
shows them, the header being row 1):

    department, position, holder, stand_in, date | from + to, days, start, end

`date` (one day) or `from`/`to` (a range, both inclusive); `days` is `all` (default), `workday` (working days,
调休上班日 included, 法定节假日 left out) or `holiday` (weekends and public holidays, by `chinese-calendar`); `start`
and `end` are local times (HH:MM, Baton's time zone), an end at or before the start ending the next day. A bad row
is refused with its row and field; the good rows are kept; importing the same roster again changes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
from sqlmodel import Session, col, select

from core.plans.store import registry
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.settings import get_settings
from core.platform.tabular import FileUnreadable, RowProblem
from core.users.models import DutyAbsence, RosterShift, User
from core.users.service import audit
from process_defs.law_rules import position_ref_problem

MAX_ROWS = 5000
MAX_DAYS = 400  # the longest date range one row may expand
DAYS = ("all", "workday", "holiday")
# Column headers as a Chinese roster may name them.
ALIASES = {"部门": "department", "单位": "department", "岗位": "position", "值班人": "holder", "主班": "holder",
           "A角": "holder", "AB角": "stand_in", "B角": "stand_in", "替班": "stand_in", "日期": "date",
           "开始日期": "from", "结束日期": "to", "日类型": "days", "开始时间": "start", "结束时间": "end"}


class RosterUnreadable(FileUnreadable):
    """The file is not a roster this can read (not CSV or XLSX, no header, too many rows); nothing of it is kept."""

    code = "roster_unreadable"


class AbsenceInvalid(BatonError):
    code = "absence_invalid"
    http_status = 422




@dataclass
class ImportResult:
    source: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


# -- reading the file -------------------------------------------------------------------------------------------
def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_rows(filename: str, data: bytes) -> list[tuple[int, dict[str, str]]]:
    """The data rows of a CSV (UTF-8, a BOM allowed) or XLSX (its first sheet) roster, each with its row number."""
    suffix = PurePath(filename).suffix.lower()
    table: list[list[str]]
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds on a file that is not a workbook
            raise RosterUnreadable("unreadable", f"{filename} is not an XLSX workbook ({type(exc).__name__})",
                                   f"{filename}：不是有效的 XLSX 工作簿") from None
        sheet = book.worksheets[0]
        table = []
        for values in sheet.iter_rows(values_only=True):
            table.append([_cell_text(v) for v in values])
            if len(table) > MAX_ROWS + 1:
                break
        book.close()
    elif suffix == ".csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RosterUnreadable("not_utf8", f"{filename} is not UTF-8 text",
                                   f"{filename}：不是 UTF-8 编码的文本") from None
        try:
            table = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text, newline=""))]
        except csv.Error as exc:  # a cell longer than the reader takes: the file as a whole is not CSV
            raise RosterUnreadable("unreadable", f"{filename} is not CSV ({exc})",
                                   f"{filename}：无法按 CSV 读取") from None
    else:
        raise RosterUnreadable("unknown_format", f"{filename}: a roster is a .csv or .xlsx file",
                               f"{filename}：值班表应为 .csv 或 .xlsx 文件")
    if not table or not any(table[0]):
        raise RosterUnreadable("no_header", f"{filename} has no header row", f"{filename}：缺少表头行")
    if len(table) > MAX_ROWS + 1:
        raise RosterUnreadable("too_many_rows", f"{filename} has more than {MAX_ROWS} rows",
                               f"{filename}：超过{MAX_ROWS}行")
    header = [ALIASES.get(h.strip(), h.strip().lower()) for h in table[0]]
    rows = []
    for number, values in enumerate(table[1:], start=2):
        if not any(values):
            continue
        rows.append((number, {header[i]: values[i] for i in range(min(len(header), len(values))) if header[i]}))
    return rows


# -- checking and expanding a row -------------------------------------------------------------------------------
class _Refused(Exception):
    def __init__(self, fld: str, code: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.problem = (fld, code, en, zh)


def _day(value: str, fld: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise _Refused(fld, "bad_date", f"'{value[:40]}' is not a date (YYYY-MM-DD)",
                       f"“{value[:40]}”不是日期（年-月-日）") from None


def _clock(value: str, fld: str) -> time:
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        raise _Refused(fld, "bad_time", f"'{value[:40]}' is not a time (HH:MM)",
                       f"“{value[:40]}”不是时间（时:分）") from None


def _user(session: Session, username: str, fld: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise _Refused(fld, "not_a_user", f"'{username[:64]}' is not a user", f"“{username[:64]}”不是系统用户")
    return user


def day_matches(day: date, days: str) -> bool:
    """Whether `day` is of the kind a row's `days` names, by China's official calendar (chinese-calendar):
    `workday` takes in adjusted working days (调休上班日) and leaves out public holidays; `holiday` is weekends
    and public holidays (法定节假日)."""
    if days == "workday":
        return bool(chinese_calendar.is_workday(day))
    if days == "holiday":
        return bool(chinese_calendar.is_holiday(day))
    return True


@dataclass(frozen=True)
class _Shift:
    department: str
    position: str
    holder: User
    stand_in: User | None
    starts_at: datetime
    ends_at: datetime


def _expand(session: Session, row: dict[str, str], zone: ZoneInfo) -> list[_Shift]:
    department = row.get("department", "").strip()
    if registry().department(department) is None:
        raise _Refused("department", "unknown_department", f"unknown department '{department[:64]}'",
                       f"未知部门“{department[:64]}”")
    position = row.get("position", "").strip()
    if position_ref_problem(f"{position}@{department}", registry()) is not None:
        raise _Refused("position", "unknown_position", f"unknown position '{position[:64]}' in {department}",
                       f"{department}没有“{position[:64]}”这一岗位")
    holder = _user(session, row.get("holder", "").strip(), "holder")
    stand_in_name = row.get("stand_in", "").strip()
    stand_in = _user(session, stand_in_name, "stand_in") if stand_in_name else None
    if stand_in is not None and stand_in.id == holder.id:
        raise _Refused("stand_in", "same_person", "the stand-in is the holder", "AB角不能是同一人")
    days = (row.get("days") or "all").strip().lower()
    if days not in DAYS:
        raise _Refused("days", "bad_days", f"days is one of {', '.join(DAYS)}, not '{days[:20]}'",
                       "日类型应为 all（每天）、workday（工作日）或 holiday（节假日）")
    if row.get("date", "").strip():
        first = last = _day(row["date"], "date")
    else:
        if not row.get("from", "").strip():
            raise _Refused("date", "no_date", "give a date, or from and to", "请填写日期，或开始日期和结束日期")
        first = _day(row["from"], "from")
        last = _day(row.get("to", "") or row["from"], "to")
        if last < first:
            raise _Refused("to", "bad_range", "the range ends before it starts", "结束日期早于开始日期")
        if (last - first).days >= MAX_DAYS:
            raise _Refused("to", "bad_range", f"a row covers at most {MAX_DAYS} days", f"一行最多覆盖{MAX_DAYS}天")
    start = _clock(row.get("start", ""), "start")
    end = _clock(row.get("end", ""), "end")
    shifts = []
    day = first
    while day <= last:
        if day_matches(day, days):
            begins = datetime.combine(day, start, zone)
            ends = datetime.combine(day + timedelta(days=1) if end <= start else day, end, zone)
            shifts.append(_Shift(department, position, holder, stand_in, begins, ends))
        day += timedelta(days=1)
    return shifts


def _overlapping(session: Session, shift: _Shift) -> RosterShift | None:
    return session.exec(select(RosterShift).where(
        RosterShift.department == shift.department, RosterShift.position == shift.position,
        col(RosterShift.starts_at) < shift.ends_at, col(RosterShift.ends_at) > shift.starts_at)).first()


def import_roster(session: Session, *, rows: Iterable[tuple[int, dict[str, str]]], source: str,
                  actor: str) -> ImportResult:
    """Add the rows' shifts: each row whole or not at all (refused with its row and field); a shift already there
    is unchanged, the same shift with another holder or stand-in is updated; one overlapping another shift of the
    same position is refused. Audited."""
    zone = ZoneInfo(get_settings().timezone)
    result = ImportResult(source=source)
    for number, row in rows:
        result.rows += 1
        try:
            shifts = _expand(session, row, zone)
            plan: list[tuple[_Shift, RosterShift | None]] = []
            for shift in shifts:
                found = _overlapping(session, shift)
                if found is not None and (found.starts_at != shift.starts_at or found.ends_at != shift.ends_at):
                    local = found.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
                    raise _Refused("start", "overlap", f"overlaps the {shift.position} shift from {local}",
                                   f"与{local}起的同岗位班次时间重叠")
                plan.append((shift, found))
        except _Refused as refused:
            fld, code, en, zh = refused.problem
            result.problems.append(RowProblem(number, fld, code, en, zh))
            continue
        for shift, found in plan:
            stand_in_id = shift.stand_in.id if shift.stand_in else None
            if found is None:
                session.add(RosterShift(department=shift.department, position=shift.position,
                                        holder_id=shift.holder.id, stand_in_id=stand_in_id,
                                        starts_at=shift.starts_at, ends_at=shift.ends_at, source=source[:200],
                                        imported_by=actor))
                result.added += 1
            elif (found.holder_id, found.stand_in_id) != (shift.holder.id, stand_in_id):
                found.holder_id, found.stand_in_id = shift.holder.id, stand_in_id
                found.source, found.imported_by, found.imported_at = source[:200], actor, utcnow()
                session.add(found)
                result.updated += 1
            else:
                result.unchanged += 1
        session.flush()
    audit(session, actor=actor, action="roster.imported", source=source[:200], rows=result.rows,
          added=result.added, updated=result.updated, unchanged=result.unchanged,
          refused=[{"row": p.row, "field": p.field, "code": p.code} for p in result.problems][:100])
    return result


# -- who is on duty ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnDuty:
    """One duty position's shift at a moment: its holder, stand-in, and who holds it now (None: nobody)."""

    shift: RosterShift
    holder: User
    stand_in: User | None
    acting: User | None

    @property
    def ref(self) -> str:
        return f"{self.shift.position}@{self.shift.department}"

    @property
    def by_stand_in(self) -> bool:
        return self.acting is not None and self.acting.id != self.holder.id


def rostered(session: Session, department: str, position: str) -> bool:
    """Whether the position has a roster at all (then the roster, not the positions users hold, says who acts)."""
    return session.exec(select(RosterShift.id).where(RosterShift.department == department,
                                                     RosterShift.position == position).limit(1)).first() is not None


def away(session: Session, user_id: str, at: datetime) -> DutyAbsence | None:
    return session.exec(select(DutyAbsence).where(DutyAbsence.user_id == user_id, col(DutyAbsence.starts_at) <= at,
                                                  col(DutyAbsence.ends_at) > at)).first()


def _available(session: Session, user: User | None, at: datetime) -> bool:
    return user is not None and user.active and away(session, user.id, at) is None


def _on_duty(session: Session, shift: RosterShift, at: datetime) -> OnDuty:
    holder = session.get(User, shift.holder_id)
    assert holder is not None
    stand_in = session.get(User, shift.stand_in_id) if shift.stand_in_id else None
    acting = holder if _available(session, holder, at) else stand_in if _available(session, stand_in, at) else None
    return OnDuty(shift=shift, holder=holder, stand_in=stand_in, acting=acting)


def on_duty(session: Session, *, department: str, position: str, at: datetime) -> OnDuty | None:
    """The shift of `position@department` at `at` and who holds it (None: no shift then)."""
    shift = session.exec(select(RosterShift).where(
        RosterShift.department == department, RosterShift.position == position, col(RosterShift.starts_at) <= at,
        col(RosterShift.ends_at) > at).order_by(col(RosterShift.starts_at).desc())).first()
    return _on_duty(session, shift, at) if shift is not None else None


@dataclass(frozen=True)
class Desk:
    """A department's duty desk at a moment: who is on duty in each position, and the next handover."""

    department: str
    duty: list[OnDuty]
    next_handover: datetime | None


def desk(session: Session, *, department: str, at: datetime) -> Desk:
    current = session.exec(select(RosterShift).where(
        RosterShift.department == department, col(RosterShift.starts_at) <= at,
        col(RosterShift.ends_at) > at).order_by(col(RosterShift.position))).all()
    following = session.exec(select(RosterShift.starts_at).where(
        RosterShift.department == department, col(RosterShift.starts_at) > at)
        .order_by(col(RosterShift.starts_at)).limit(1)).first()
    ends = [s.ends_at for s in current] + ([following] if following is not None else [])
    return Desk(department=department, duty=[_on_duty(session, s, at) for s in current],
                next_handover=min(ends) if ends else None)


def shifts(session: Session, *, department: str | None = None, at: datetime | None = None,
           limit: int = 500) -> list[RosterShift]:
    """Shifts, by department and start; at a moment, those covering it."""
    query = select(RosterShift)
    if department is not None:
        query = query.where(RosterShift.department == department)
    if at is not None:
        query = query.where(col(RosterShift.starts_at) <= at, col(RosterShift.ends_at) > at)
    return list(session.exec(query.order_by(col(RosterShift.department), col(RosterShift.starts_at),
                                            col(RosterShift.position)).limit(limit)).all())


def mark_away(session: Session, *, username: str, starts_at: datetime, ends_at: datetime, reason: str,
              actor: str) -> DutyAbsence:
    """The person is away from `starts_at` to `ends_at`: their stand-in holds their duty positions. Audited."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise AbsenceInvalid(f"'{username[:64]}' is not a user", details={"field": "username"})
    if ends_at <= starts_at:
        raise AbsenceInvalid("an absence ends after it starts", details={"field": "ends_at"})
    if not reason.strip():
        raise AbsenceInvalid("an absence needs a reason", details={"field": "reason"})
    row = DutyAbsence(user_id=user.id, starts_at=starts_at, ends_at=ends_at, reason=reason.strip()[:200],
                      recorded_by=actor)
    session.add(row)
    audit(session, actor=actor, action="roster.away", username=user.username, starts_at=starts_at.isoformat(),
          ends_at=ends_at.isoformat(), reason=row.reason)
    session.flush()
    return row
