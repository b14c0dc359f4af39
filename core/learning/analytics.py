"""Figures across incidents: how departments and incident types keep their deadlines over a period.

A handoff is a human step's task (each attempt counts) assigned within the period; `from` is inclusive and `to`
exclusive, a bare date meaning that whole day in Baton's time zone (so `to=2026-07-31` takes in the 31st).
For each department and each incident type (and in total): handoffs, how many met their deadline and how many
went overdue (completed late, or still open, handed back or cancelled after the due time; see
`core.learning.after_action.compute.deadline_outcome`), the on-time rate among those decided, the median and 90th
percentile of the acknowledgement delay (assigned → acknowledged) and of the completion delay (assigned →
completed), and escalations. Drills are left out unless asked for; a drill on a compressed clock counts in plan time.

Percentiles interpolate linearly between the closest ranks (NumPy's default, `statistics.quantiles(...,
method="inclusive")`): for sorted values x₀…xₙ₋₁ the p-th percentile is at rank p·(n−1).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from core.incidents import alerts
from core.incidents.models import DepartmentTask, Incident
from core.learning.after_action.charts import BLUE, GREEN, GREY, INK, RED, fit, svg_open
from core.learning.after_action.compute import handoff_of, time_scale
from core.learning.after_action.text import ReportText
from core.plans.store import current_plan_text, list_types, parse_plan_text, registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError, UnknownIncidentType
from core.platform.input_policy import Violation
from core.platform.settings import get_settings

CSV_COLUMNS = ("group", "key", "name_zh", "name_en", "incidents", "handoffs", "with_deadline", "on_time", "overdue",
               "open", "on_time_rate", "acknowledged", "ack_median_s", "ack_p90_s", "completed",
               "completion_median_s", "completion_p90_s", "escalations", "ownerless_minutes")


class InvalidFilter(BatonError):
    code = "invalid_filter"
    http_status = 422


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) by linear interpolation between closest ranks; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)


def parse_bound(text: str | None, *, upper: bool = False, tz: str | None = None) -> datetime | None:
    """A period bound from a query: an ISO date (the start of that day, or for `to` the start of the next) or
    an ISO date-time (without an offset: Baton's time zone). Empty: no bound."""
    if text is None or not text.strip():
        return None
    zone = ZoneInfo(tz or get_settings().timezone)
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1) if upper else day, time(0), zone)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return policy.moment(moment, local=zone).astimezone(UTC)
    except Violation as exc:
        raise InvalidFilter(f"'{value[:40]}' {exc.message}") from exc
    except (ValueError, OverflowError) as exc:
        raise InvalidFilter(f"'{value[:40]}' is not a date (YYYY-MM-DD) or an ISO date-time") from exc


@dataclass
class Figures:
    group: str  # department, type or total
    key: str
    name: dict[str, str]
    incidents: int = 0
    handoffs: int = 0
    with_deadline: int = 0
    on_time: int = 0
    overdue: int = 0
    open: int = 0  # deadline not yet passed
    on_time_rate: float | None = None  # on_time / (on_time + overdue)
    acknowledged: int = 0
    ack_median_s: float | None = None
    ack_p90_s: float | None = None
    completed: int = 0
    completion_median_s: float | None = None
    completion_p90_s: float | None = None
    escalations: int = 0
    # Minutes its tasks had no owner (handed back or declined, until the office routed them), added up
    # (`core.incidents.alerts.ownerless_minutes`); a department's: those of the tasks it gave back.
    ownerless_minutes: float = 0.0


@dataclass
class _Tally:
    incidents: set[str] = field(default_factory=set)
    handoffs: int = 0
    with_deadline: int = 0
    on_time: int = 0
    overdue: int = 0
    open: int = 0
    acks: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    escalations: int = 0
    ownerless: float = 0.0

    def figures(self, group: str, key: str, name: dict[str, str]) -> Figures:
        decided = self.on_time + self.overdue
        return Figures(group=group, key=key, name=name, incidents=len(self.incidents), handoffs=self.handoffs,
                       with_deadline=self.with_deadline, on_time=self.on_time, overdue=self.overdue, open=self.open,
                       on_time_rate=round(self.on_time / decided, 4) if decided else None,
                       acknowledged=len(self.acks), ack_median_s=percentile(self.acks, 0.5),
                       ack_p90_s=percentile(self.acks, 0.9), completed=len(self.completions),
                       completion_median_s=percentile(self.completions, 0.5),
                       completion_p90_s=percentile(self.completions, 0.9), escalations=self.escalations,
                       ownerless_minutes=round(self.ownerless, 1))


@dataclass
class Analytics:
    start: datetime | None
    end: datetime | None
    type: str | None
    department: str | None
    include_drills: bool
    generated_at: datetime
    total: Figures
    by_department: list[Figures]
    by_type: list[Figures]
    # Per incident with any: the minutes its tasks had no owner ({incident_id, code, type, minutes}).
    ownerless: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["from"] = out.pop("start")
        out["to"] = out.pop("end")
        out["definitions"] = {
            "period": "handoffs assigned in [from, to); a date means that whole day in " + get_settings().timezone,
            "on_time_rate": "on_time / (on_time + overdue)",
            "percentiles": "linear interpolation between closest ranks",
            "durations": "seconds; drills on a compressed clock in plan time",
            "ownerless_minutes": "minutes tasks had no owner: from a hand-back or decline until the office routed "
                                 "the task (or it ended), added up over tasks"}
        return out

    def rows(self) -> list[Figures]:
        return [*self.by_department, *self.by_type, self.total]


def _type_names() -> dict[str, dict[str, str]]:
    names: dict[str, dict[str, str]] = {}
    for key in list_types():
        try:
            names[key] = parse_plan_text(current_plan_text(key), f"{key}.yaml").name.model_dump()
        except BatonError:
            names[key] = {"zh": key, "en": key}
    return names


def _department_name(key: str) -> dict[str, str]:
    department = registry().department(key)
    return department.name.model_dump() if department else {"zh": key, "en": key}


def compute(session: Session, *, start: datetime | None = None, end: datetime | None = None,
            type_key: str | None = None, department: str | None = None, include_drills: bool = False,
            now: datetime | None = None) -> Analytics:
    """The figures for handoffs assigned in [start, end), optionally of one incident type or one department."""
    if type_key is not None and type_key not in list_types():
        raise UnknownIncidentType(f"no response plan for incident type '{type_key[:64]}'")
    if department is not None and registry().department(department) is None:
        raise InvalidFilter(f"no department '{department[:64]}' in the registry")
    if start is not None and end is not None and end <= start:
        raise InvalidFilter("the period ends before it starts")
    moment = now or utcnow()
    query = (select(DepartmentTask, Incident).join(Incident, col(Incident.id) == col(DepartmentTask.incident_id))
             .where(DepartmentTask.kind == "human", col(DepartmentTask.assigned_at).is_not(None)))
    if start is not None:
        query = query.where(col(DepartmentTask.assigned_at) >= start)
    if end is not None:
        query = query.where(col(DepartmentTask.assigned_at) < end)
    if not include_drills:
        query = query.where(col(Incident.drill).is_(False))
    if type_key is not None:
        query = query.where(Incident.type == type_key)
    if department is not None:
        query = query.where(DepartmentTask.department == department)

    total = _Tally()
    by_department: dict[str, _Tally] = {}
    by_type: dict[str, _Tally] = {}
    for task, incident in session.exec(query).all():
        handoff = handoff_of(task, {}, moment, time_scale(incident))
        for tally in (total, by_department.setdefault(task.department, _Tally()),
                      by_type.setdefault(incident.type, _Tally())):
            tally.incidents.add(incident.id)
            tally.handoffs += 1
            tally.with_deadline += handoff.due_at is not None
            tally.on_time += handoff.outcome == "met"
            tally.overdue += handoff.outcome == "missed"
            tally.open += handoff.outcome == "open"
            tally.escalations += handoff.escalated_at is not None
            if handoff.ack_wait_s is not None:
                tally.acks.append(handoff.ack_wait_s)
            if handoff.completion_wait_s is not None:
                tally.completions.append(handoff.completion_wait_s)
    ownerless = _ownerless(session, total.incidents, moment, total, by_department, by_type)
    types = _type_names()
    return Analytics(
        start=start, end=end, type=type_key, department=department, include_drills=include_drills,
        generated_at=moment, total=total.figures("total", "", {"zh": "合计", "en": "Total"}),
        by_department=[tally.figures("department", key, _department_name(key))
                       for key, tally in sorted(by_department.items())],
        by_type=[tally.figures("type", key, types.get(key, {"zh": key, "en": key}))
                 for key, tally in sorted(by_type.items())], ownerless=ownerless)


def _ownerless(session: Session, incident_ids: set[str], moment: datetime, total: _Tally,
               by_department: dict[str, _Tally], by_type: dict[str, _Tally]) -> list[dict[str, Any]]:
    """The minutes tasks had no owner, per incident of the period, added to the tallies."""
    out: list[dict[str, Any]] = []
    for incident_id in sorted(incident_ids):
        incident = session.get(Incident, incident_id)
        if incident is None:
            continue
        until = incident.closed_at or moment
        found = alerts.alerts_of(session, incident_id)
        minutes = alerts.ownerless_of(found, until=until)
        if not minutes:
            continue
        total.ownerless += minutes
        by_type.setdefault(incident.type, _Tally()).ownerless += minutes
        for alert in found:
            department = by_department.get(alert.department.split("@")[-1])
            if department is not None:
                department.ownerless += alerts.ownerless_of([alert], until=until)
        out.append({"incident_id": incident.id, "code": incident.code, "type": incident.type, "minutes": minutes})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def to_csv(result: Analytics) -> str:
    """One row per department, per incident type, then the total. UTF-8 with a byte-order mark, so that Excel
    reads the Chinese names right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows():
        values = {**asdict(row), "name_zh": row.name.get("zh", ""), "name_en": row.name.get("en", "")}
        writer.writerow([_cell(values[column]) for column in CSV_COLUMNS])
    return "\ufeff" + buffer.getvalue()


# -- charts ----------------------------------------------------------------------------------------------------
def on_time_chart(rows: Sequence[Figures], rt: ReportText, *, width: int = 960) -> str:
    """Per department: its handoffs as one bar, on time (green), overdue (red), not yet due (grey)."""
    label_w, right, row, top = 240, 130, 28, 8
    height = top * 2 + max(1, len(rows)) * row
    most = max((r.handoffs for r in rows), default=0) or 1
    plot = width - label_w - right
    out = [svg_open(width, height, rt.t({"zh": "按时完成情况", "en": "Handoffs on time"}), "on-time-chart")]
    for index, item in enumerate(rows):
        y = top + index * row
        name = rt.t(item.name)
        out.append(f'<g class="bar" data-key="{escape(item.key)}" data-on-time="{item.on_time}" '
                   f'data-overdue="{item.overdue}">')
        out.append(f'<text x="8" y="{y + 18}" font-size="12.5" fill="{INK}">{escape(fit(name, label_w - 14, 12.5))}'
                   f'</text>')
        x = float(label_w)
        undecided = item.handoffs - item.on_time - item.overdue
        for count, colour in ((item.on_time, GREEN), (item.overdue, RED), (undecided, GREY)):
            if count > 0:
                length = plot * count / most
                out.append(f'<rect x="{x:.1f}" y="{y + 6}" width="{length:.1f}" height="16" fill="{colour}"/>')
                if length > 16:
                    out.append(f'<text x="{x + length / 2:.1f}" y="{y + 18}" font-size="10.5" text-anchor="middle" '
                               f'fill="#ffffff">{count}</text>')
                x += length
        out.append(f'<text x="{x + 6:.1f}" y="{y + 18}" font-size="12" fill="{INK}">{escape(rt.pct(item.on_time_rate))}'
                   f'</text>')
        out.append(f"<title>{escape(name)}: {item.on_time}/{item.on_time + item.overdue} "
                   f"({escape(rt.pct(item.on_time_rate))})</title></g>")
    if not rows:
        out.append(f'<text x="{label_w}" y="{top + 18}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)


def delay_chart(rows: Sequence[Figures], rt: ReportText, *, width: int = 960) -> str:
    """Per department: the median acknowledgement delay (thin, teal) and completion delay (blue) as bars, each
    with its 90th percentile as a tick."""
    label_w, right, row, top = 240, 230, 34, 8
    height = top * 2 + max(1, len(rows)) * row
    longest = max((v for r in rows for v in (r.ack_p90_s, r.completion_p90_s, r.ack_median_s, r.completion_median_s)
                   if v is not None), default=0.0) or 1.0
    plot = width - label_w - right
    out = [svg_open(width, height, rt.t({"zh": "确认与完成用时", "en": "Acknowledgement and completion delays"}),
                    "delay-chart")]

    def bar(y: float, median_s: float | None, p90_s: float | None, colour: str, thick: int) -> None:
        if median_s is not None:
            out.append(f'<rect x="{label_w}" y="{y}" width="{max(2.0, plot * median_s / longest):.1f}" '
                       f'height="{thick}" fill="{colour}"/>')
        if p90_s is not None:
            px = label_w + plot * p90_s / longest
            out.append(f'<line x1="{px:.1f}" y1="{y - 2}" x2="{px:.1f}" y2="{y + thick + 2}" stroke="{colour}" '
                       f'stroke-width="2"/>')

    for index, item in enumerate(rows):
        y = top + index * row
        name = rt.t(item.name)
        out.append(f'<g class="bar" data-key="{escape(item.key)}">')
        if index % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#f6f7f9"/>')
        out.append(f'<text x="8" y="{y + 21}" font-size="12.5" fill="{INK}">{escape(fit(name, label_w - 14, 12.5))}'
                   f'</text>')
        bar(y + 6, item.ack_median_s, item.ack_p90_s, "#00838f", 8)
        bar(y + 18, item.completion_median_s, item.completion_p90_s, BLUE, 10)
        ack = (f"{rt.t({'zh': '签收', 'en': 'ack.'})} {rt.dur(item.ack_median_s)} · "
               f"P90 {rt.dur(item.ack_p90_s)}")
        done = (f"{rt.t({'zh': '完成', 'en': 'done'})} {rt.dur(item.completion_median_s)} · "
                f"P90 {rt.dur(item.completion_p90_s)}")
        out.append(f'<text x="{width - right + 10}" y="{y + 14}" font-size="10.5" fill="#00838f">{escape(ack)}</text>')
        out.append(f'<text x="{width - right + 10}" y="{y + 28}" font-size="10.5" fill="{BLUE}">{escape(done)}</text>')
        out.append(f"<title>{escape(name)}: {escape(ack)} · {escape(done)}</title></g>")
    if not rows:
        out.append(f'<text x="{label_w}" y="{top + 18}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)

