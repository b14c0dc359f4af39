"""The after-action report of one incident, computed from what the run left behind.

`build_report(session, incident_id=...)` reads the incident, its plan version, its task rows, level changes
and ledger, and returns an `AfterActionReport`: each stage's duration, each handoff's waits (assigned →
acknowledged → completed) against its deadline, the critical path through the plan's step graph and the
slowest department on it, escalations and level changes with their reasons, deviations from the plan, and
the ledger's verification. It writes nothing.

Durations are seconds. A drill on a compressed clock (`Incident.clock_speed > 1`) reports them in plan time
(wall-clock seconds × clock speed), and says so (`time_basis == "plan"`); its timeline picture is drawn on
the plan clock too. The HTML page and the PDF render the same report through `reports/` templates
(`render_report_html`); the charts are SVG built here, every text escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from statistics import median
from typing import Any

from markupsafe import Markup
from sqlmodel import Session, col, select

from core.incidents import reads
from core.incidents.models import DepartmentTask, Incident, LevelChange, TaskStatus
from core.learning.timeline_svg import render_timeline
from core.plans.store import plan_for_version, registry
from core.plans.wording import Wording
from core.platform.clock import utcnow
from core.platform.templating import render
from process_defs.schema import STAGES, IncidentType

OPEN = {s.value for s in TaskStatus if s.is_open}


# -- time ---------------------------------------------------------------------------------------------------
def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_scale(incident: Incident) -> float:
    """How many seconds of plan time one wall-clock second is: the drill's clock speed, else 1."""
    return float(incident.clock_speed) if incident.clock_speed and incident.clock_speed > 1 else 1.0


def span(start: datetime | None, end: datetime | None, scale: float = 1.0) -> float | None:
    """Seconds from `start` to `end` (in plan time when `scale` > 1); None when either is unknown."""
    a, b = _utc(start), _utc(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() * scale, 3)


def deadline_outcome(task: DepartmentTask, now: datetime) -> tuple[str, datetime | None]:
    """Whether a handoff met its deadline: ("met" | "missed" | "open" | "none", the moment judged).

    Completed: met when completed at or before the due time. Still open (assigned, acknowledged, escalated):
    missed once the due time has passed, else open. Handed back or cancelled: missed if that happened after
    the due time, else no outcome. No due time, or skipped: no outcome."""
    due = _utc(task.due_at)
    if due is None or task.status == TaskStatus.skipped:
        return "none", None
    if task.status == TaskStatus.completed:
        end = _utc(task.completed_at)
        return ("met" if end is not None and end <= due else "missed"), end
    if task.status in OPEN:
        moment = _utc(now)
        assert moment is not None
        return ("missed" if moment > due else "open"), moment
    end = _utc(task.handed_back_at if task.status == TaskStatus.handed_back else task.cancelled_at)
    if end is not None and end > due:
        return "missed", end
    return "none", end


# -- the report's parts ---------------------------------------------------------------------------------------
@dataclass
class StageFigure:
    stage: str
    entered_at: datetime | None
    left_at: datetime | None
    duration_s: float | None
    open: bool


@dataclass
class Handoff:
    task_id: str
    step: str
    title: dict[str, str]
    stage: str
    department: str
    kind: str
    attempt: int
    status: str
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    completed_at: datetime | None
    due_at: datetime | None
    deadline_s: float | None  # assigned → due (a raised level may have tightened it)
    ack_wait_s: float | None  # assigned → acknowledged
    completion_wait_s: float | None  # assigned → completed
    open_wait_s: float | None  # assigned → now, while still open
    held_s: float | None  # assigned → completed, handed back, cancelled, or now: how long the department held it
    outcome: str  # met, missed, open, none
    overdue_by_s: float | None  # how far past the due time (completion, hand-back, cancellation or now)
    escalated_at: datetime | None
    escalated_to: str | None


@dataclass
class PathStep:
    step: str
    title: dict[str, str]
    stage: str
    department: str
    kind: str
    attempts: int
    started_at: datetime | None  # when it was ready: assigned, or its last dependency done if that was earlier
    completed_at: datetime | None
    duration_s: float


@dataclass
class CriticalPath:
    steps: list[PathStep]
    total_s: float  # sum of the steps' durations along the chain
    span_s: float | None  # first start → last completion
    slowest_department: str | None
    slowest_department_s: float | None
    by_department: list[dict[str, Any]]  # [{department, seconds}] on the path, slowest first


@dataclass
class Escalation:
    step: str
    title: dict[str, str]
    department: str
    attempt: int
    escalated_to: str | None
    due_at: datetime | None
    escalated_at: datetime | None
    completed_at: datetime | None
    late_by_s: float | None  # due → completed (or now, if still open)
    reason: str  # "deadline passed"


@dataclass
class LevelChangeFigure:
    at: datetime
    from_level: str
    to_level: str
    actor: str
    reason: str
    raised: bool


@dataclass
class Deviation:
    kind: str  # skipped, handed_back, cancelled, reassigned
    step: str
    title: dict[str, str]
    stage: str
    department: str
    attempt: int
    at: datetime | None
    reason: str | None
    reason_code: str | None  # skipped: level, condition, stage_ended; cancelled: stage_ended, level_lowered
    actor: str | None = None
    from_department: str | None = None


@dataclass
class DepartmentFigure:
    department: str
    handoffs: int
    met: int
    missed: int
    open: int
    escalations: int
    handed_back: int
    ack_median_s: float | None
    completion_median_s: float | None
    longest_completion_s: float | None
    on_critical_path_s: float


@dataclass
class LedgerStatus:
    valid: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None
    head_seq: int
    head_hash: str


@dataclass
class AfterActionReport:
    incident_id: str
    code: str
    title: str
    type: str
    plan_name: dict[str, str]
    plan_version: int
    level: str
    status: str
    stage: str
    drill: bool
    clock_speed: float
    time_basis: str  # "wall", or "plan" for a drill on a compressed clock
    opened_at: datetime
    closed_at: datetime | None
    generated_at: datetime
    total_s: float | None
    stages: list[StageFigure]
    handoffs: list[Handoff]
    critical_path: CriticalPath
    held_up: list[Handoff]  # handoffs that missed their deadline, longest overrun first
    departments: list[DepartmentFigure]
    escalations: list[Escalation]
    level_changes: list[LevelChangeFigure]
    deviations: list[Deviation]
    ledger: LedgerStatus
    # The timeline as `core.incidents.reads.timeline` gives it (on the plan clock for a compressed drill),
    # for the picture.
    timeline: dict[str, Any] = field(repr=False, default_factory=dict)

    def counts(self) -> dict[str, int]:
        outcomes = [h.outcome for h in self.handoffs]
        return {"handoffs": len(self.handoffs), "met": outcomes.count("met"), "missed": outcomes.count("missed"),
                "open": outcomes.count("open"), "escalations": len(self.escalations),
                "level_changes": len(self.level_changes), "deviations": len(self.deviations)}

    def to_json(self) -> dict[str, Any]:
        """The figures (no picture data); datetimes stay datetimes for the API's encoder."""
        out = asdict(self)
        out.pop("timeline", None)
        out["counts"] = self.counts()
        out["units"] = {"durations": "seconds", "time_basis": self.time_basis, "clock_speed": self.clock_speed}
        return out


# -- building it ----------------------------------------------------------------------------------------------
def _title(plan: IncidentType, key: str) -> dict[str, str]:
    try:
        return plan.step(key).title.model_dump()
    except KeyError:
        return {"zh": key, "en": key}


def _skip_code(reason: str | None) -> str | None:
    text = reason or ""
    if text.startswith("not active at level"):
        return "level"
    if text.startswith("condition"):
        return "condition"
    if text.startswith("stage ended"):
        return "stage_ended"
    if text.startswith("level lowered"):
        return "level_lowered"
    return "other" if text else None


def _plan_clock(timeline: dict[str, Any], origin: datetime, scale: float) -> dict[str, Any]:
    """The timeline with every moment moved onto the plan clock: origin + (moment − origin) × scale."""
    if scale == 1.0:
        return timeline

    def move(value: Any) -> Any:
        moment = _utc(value) if isinstance(value, datetime) else None
        return origin + (moment - origin) * scale if moment is not None else value

    def moved(item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: move(v) for k, v in item.items()}

    out = moved(timeline)
    for key in ("stages", "steps", "level_changes"):
        out[key] = [moved(item) for item in timeline.get(key) or []]
    return out


def _critical_path(plan: IncidentType, rows: Sequence[DepartmentTask], scale: float) -> CriticalPath:
    """The longest chain of completed steps linked by the plan's `depends_on`, weighted by each step's time
    from readiness (its first assignment, or its last dependency's completion if that came first) to its
    completion. A step handed back and done by another department counts once, from its first assignment."""
    attempts: dict[str, list[DepartmentTask]] = {}
    for row in rows:
        attempts.setdefault(row.step_key, []).append(row)
    done: dict[str, DepartmentTask] = {}
    for key, tasks in attempts.items():
        tasks.sort(key=lambda t: t.attempt)
        final = tasks[-1]
        if final.status == TaskStatus.completed and final.completed_at is not None:
            done[key] = final
    order = {step.key: index for index, (_, step) in enumerate(plan.steps())}
    preds: dict[str, list[str]] = {}
    for key in done:
        try:
            depends = plan.step(key).depends_on
        except KeyError:
            depends = []
        preds[key] = [d for d in depends if d in done]
    start: dict[str, datetime] = {}
    weight: dict[str, float] = {}
    for key, task in done.items():
        assigned = [_utc(t.assigned_at) for t in attempts[key] if t.assigned_at is not None]
        first = min((a for a in assigned if a is not None), default=None)
        ready = max((m for m in (_utc(done[p].completed_at) for p in preds[key]) if m is not None), default=None)
        candidates = [m for m in (first, ready) if m is not None]
        begin = min(candidates) if candidates else _utc(task.completed_at)
        assert begin is not None
        start[key] = begin
        weight[key] = max(0.0, span(begin, task.completed_at, scale) or 0.0)

    best: dict[str, tuple[float, str | None]] = {}

    def longest(key: str, visiting: frozenset[str] = frozenset()) -> float:
        if key in best:
            return best[key][0]
        choice: str | None = None
        value = 0.0
        for pred in sorted(preds[key], key=lambda p: order.get(p, 0)):
            if pred in visiting:  # a cycle cannot pass validation; never loop on one anyway
                continue
            total = longest(pred, visiting | {key})
            if choice is None or total > value:
                choice, value = pred, total
        best[key] = (value + weight[key], choice)
        return best[key][0]

    for key in done:
        longest(key)
    if not done:
        return CriticalPath([], 0.0, None, None, None, [])

    def finish(key: str) -> datetime:
        moment = _utc(done[key].completed_at)
        assert moment is not None
        return moment

    # The longest chain; of equal ones, the one that ended last, then the earliest in the plan.
    end_key = max(done, key=lambda k: (best[k][0], finish(k), -order.get(k, 0)))
    chain: list[str] = []
    cursor: str | None = end_key
    while cursor is not None and cursor not in chain:
        chain.append(cursor)
        cursor = best[cursor][1]
    chain.reverse()

    by_department: dict[str, float] = {}
    steps: list[PathStep] = []
    for key in chain:
        task = done[key]
        for attempt in attempts[key]:
            if attempt.kind != "human":
                continue  # automated steps are Baton's time, not a department's
            end = attempt.completed_at if attempt.status == TaskStatus.completed else (
                attempt.handed_back_at or attempt.cancelled_at)
            began = start[key] if attempt is attempts[key][0] else attempt.assigned_at
            seconds = max(0.0, span(began, end, scale) or 0.0)
            by_department[attempt.department] = by_department.get(attempt.department, 0.0) + seconds
        steps.append(PathStep(step=key, title=_title(plan, key), stage=task.stage, department=task.department,
                              kind=task.kind, attempts=len(attempts[key]), started_at=start[key],
                              completed_at=_utc(task.completed_at), duration_s=weight[key]))
    ranking = sorted(by_department.items(), key=lambda item: (-item[1], item[0]))
    slowest = ranking[0] if ranking else None
    return CriticalPath(steps=steps, total_s=round(sum(s.duration_s for s in steps), 3),
                        span_s=span(steps[0].started_at, steps[-1].completed_at, scale),
                        slowest_department=slowest[0] if slowest else None,
                        slowest_department_s=round(slowest[1], 3) if slowest else None,
                        by_department=[{"department": d, "seconds": round(s, 3)} for d, s in ranking])


def handoff_of(task: DepartmentTask, title: dict[str, str], now: datetime, scale: float) -> Handoff:
    outcome, judged = deadline_outcome(task, now)
    due = _utc(task.due_at)
    overdue = span(due, judged, scale) if outcome == "missed" else None
    return Handoff(
        task_id=task.id, step=task.step_key, title=title, stage=task.stage, department=task.department,
        kind=task.kind, attempt=task.attempt, status=task.status, assigned_at=_utc(task.assigned_at),
        acknowledged_at=_utc(task.acknowledged_at), completed_at=_utc(task.completed_at), due_at=due,
        deadline_s=span(task.assigned_at, task.due_at, scale), ack_wait_s=span(task.assigned_at, task.acknowledged_at,
                                                                                scale),
        completion_wait_s=span(task.assigned_at, task.completed_at, scale) if task.status == TaskStatus.completed
        else None,
        open_wait_s=span(task.assigned_at, now, scale) if task.status in OPEN else None,
        held_s=span(task.assigned_at, task.completed_at or task.handed_back_at or task.cancelled_at or
                    (now if task.status in OPEN else None), scale),
        outcome=outcome, overdue_by_s=overdue, escalated_at=_utc(task.escalated_at), escalated_to=task.escalated_to)


def build_report(session: Session, *, incident_id: str, now: datetime | None = None) -> AfterActionReport:
    """The after-action report of the incident (by id or code); `now` closes the open intervals of an
    incident still running (default: the current time)."""
    incident = reads.get_incident(session, incident_id, None)
    plan = plan_for_version(session, incident.plan_version_id)
    moment = _utc(now) or utcnow()
    scale = time_scale(incident)
    opened = _utc(incident.created_at)
    assert opened is not None
    closed = _utc(incident.closed_at)

    timeline = reads.timeline(session, incident)
    stages = []
    for item in timeline["stages"]:
        left = _utc(item["left_at"])
        stages.append(StageFigure(stage=item["stage"], entered_at=_utc(item["entered_at"]), left_at=left,
                                  duration_s=span(item["entered_at"], left or moment, scale), open=left is None))
    stages.sort(key=lambda s: (STAGES.index(s.stage) if s.stage in STAGES else len(STAGES)))

    order = {step.key: index for index, (_, step) in enumerate(plan.steps())}
    rows = list(session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id)).all())
    rows.sort(key=lambda t: (STAGES.index(t.stage) if t.stage in STAGES else 9, order.get(t.step_key, 0), t.attempt,
                             _utc(t.assigned_at) or _utc(t.created_at) or moment))
    titles = {row.step_key: _title(plan, row.step_key) for row in rows}

    handoffs = [handoff_of(t, titles[t.step_key], moment, scale) for t in rows
                if t.kind == "human" and t.assigned_at is not None]
    held_up = sorted((h for h in handoffs if h.outcome == "missed"),
                     key=lambda h: (-(h.overdue_by_s or 0.0), h.assigned_at or moment))
    path = _critical_path(plan, rows, scale)

    escalations = []
    for task in rows:
        if task.escalated_at is None:
            continue
        end = task.completed_at if task.status == TaskStatus.completed else (
            moment if task.status in OPEN else task.handed_back_at or task.cancelled_at)
        escalations.append(Escalation(step=task.step_key, title=titles[task.step_key], department=task.department,
                                      attempt=task.attempt, escalated_to=task.escalated_to, due_at=_utc(task.due_at),
                                      escalated_at=_utc(task.escalated_at), completed_at=_utc(task.completed_at),
                                      late_by_s=span(task.due_at, end, scale), reason="deadline passed"))
    escalations.sort(key=lambda e: e.escalated_at or moment)

    changes = session.exec(select(LevelChange).where(LevelChange.incident_id == incident.id)
                           .order_by(col(LevelChange.at), col(LevelChange.id))).all()
    levels = ("IV", "III", "II", "I")
    level_changes = [LevelChangeFigure(at=_utc(c.at) or moment, from_level=c.from_level, to_level=c.to_level,
                                       actor=c.actor, reason=c.reason,
                                       raised=levels.index(c.to_level) > levels.index(c.from_level)
                                       if c.to_level in levels and c.from_level in levels else False)
                     for c in changes]

    deviations: list[Deviation] = []
    by_attempt = {(t.step_key, t.attempt): t for t in rows}

    def deviation(task: DepartmentTask, kind: str, at: datetime | None, reason: str | None,
                  reason_code: str | None = None, actor: str | None = None,
                  from_department: str | None = None) -> Deviation:
        return Deviation(kind=kind, step=task.step_key, title=titles[task.step_key], stage=task.stage,
                         department=task.department, attempt=task.attempt, at=_utc(at), reason=reason,
                         reason_code=reason_code, actor=actor, from_department=from_department)

    for task in rows:
        if task.status == TaskStatus.skipped:
            deviations.append(deviation(task, "skipped", task.created_at, task.cancel_reason,
                                        _skip_code(task.cancel_reason)))
        if task.attempt > 1:
            previous = by_attempt.get((task.step_key, task.attempt - 1))
            deviations.append(deviation(task, "reassigned", task.assigned_at, None, actor=task.assigned_by,
                                        from_department=previous.department if previous else None))
        if task.handed_back_at is not None:
            deviations.append(deviation(task, "handed_back", task.handed_back_at, task.hand_back_reason,
                                        actor=task.handed_back_by))
        if task.status == TaskStatus.cancelled:
            deviations.append(deviation(task, "cancelled", task.cancelled_at, task.cancel_reason,
                                        _skip_code(task.cancel_reason)))
    kinds = ("handed_back", "reassigned", "cancelled", "skipped")
    deviations.sort(key=lambda d: (kinds.index(d.kind), d.at or moment, order.get(d.step, 0), d.attempt))

    on_path = {item["department"]: float(item["seconds"]) for item in path.by_department}
    departments = []
    for key in sorted({h.department for h in handoffs}):
        own = [h for h in handoffs if h.department == key]
        acks = [h.ack_wait_s for h in own if h.ack_wait_s is not None]
        completions = [h.completion_wait_s for h in own if h.completion_wait_s is not None]
        departments.append(DepartmentFigure(
            department=key, handoffs=len(own), met=sum(h.outcome == "met" for h in own),
            missed=sum(h.outcome == "missed" for h in own), open=sum(h.outcome == "open" for h in own),
            escalations=sum(h.escalated_at is not None for h in own),
            handed_back=sum(1 for t in rows if t.department == key and t.handed_back_at is not None),
            ack_median_s=round(median(acks), 3) if acks else None,
            completion_median_s=round(median(completions), 3) if completions else None,
            longest_completion_s=max(completions) if completions else None,
            on_critical_path_s=round(on_path.get(key, 0.0), 3)))
    departments.sort(key=lambda d: (-d.missed, -d.on_critical_path_s, d.department))

    view = reads.ledger_view(session, incident)
    ledger = LedgerStatus(valid=bool(view["valid"]), entries=int(view["count"]), first_bad_seq=view["first_bad_seq"],
                          reason=view["reason"], head_seq=incident.ledger_head_seq, head_hash=incident.ledger_head_hash)

    return AfterActionReport(
        incident_id=incident.id, code=incident.code, title=incident.title, type=incident.type,
        plan_name=plan.name.model_dump(), plan_version=incident.plan_version, level=incident.level,
        status=incident.status, stage=incident.stage, drill=incident.drill, clock_speed=float(incident.clock_speed),
        time_basis="plan" if scale > 1 else "wall", opened_at=opened, closed_at=closed, generated_at=moment,
        total_s=span(opened, closed or moment, scale), stages=stages, handoffs=handoffs, critical_path=path,
        held_up=held_up, departments=departments, escalations=escalations, level_changes=level_changes,
        deviations=deviations, ledger=ledger, timeline=_plan_clock(_as_of(timeline, handoffs), opened, scale))


def _as_of(timeline: dict[str, Any], handoffs: Sequence[Handoff]) -> dict[str, Any]:
    """The timeline for the picture: overdue as the report judges it (at its `now`, a hand-back before the due
    time not counted), and without the steps never handed to anyone (the deviations list those)."""
    missed = {h.task_id for h in handoffs if h.outcome == "missed"}
    steps = [{**item, "overdue": item["task_id"] in missed} for item in timeline["steps"]
             if item.get("assigned_at") is not None]
    return {**timeline, "steps": steps}


# -- words for the templates --------------------------------------------------------------------------------
UNITS = {"zh": ("天", "小时", "分", "秒"), "en": (" d", " h", " min", " s")}


def format_duration(seconds: float | None, lang: str = "zh") -> str:
    """A duration for people: 45秒, 12分05秒, 1小时05分, 2天3小时 (en: 45 s, 12 min 05 s, 1 h 05 min, 2 d 3 h)."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    day, hour, minute, second = UNITS["en" if lang == "en" else "zh"]
    sep = " " if lang == "en" else ""
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}{day}" + (f"{sep}{hours}{hour}" if hours else "")
    elif hours:
        text = f"{hours}{hour}" + (f"{sep}{minutes:02d}{minute}" if minutes else "")
    elif minutes:
        text = f"{minutes}{minute}" + (f"{sep}{secs:02d}{second}" if secs else "")
    else:
        text = f"{secs}{second}"
    return sign + text.strip()


class ReportText(Wording):
    """What the report templates need: `Wording` with durations, shares, and a drill's plan clock."""

    def __init__(self, lang: str = "zh", tz: str | None = None, *, plan_clock: tuple[datetime, float] | None = None
                 ) -> None:
        super().__init__(lang, tz)
        # A compressed drill shows its moments on the plan clock: origin + (moment − origin) × speed.
        self.plan_clock = plan_clock if plan_clock and plan_clock[1] > 1 else None

    def when(self, moment: datetime | None, seconds: bool = False, wall: bool = False) -> str:
        """A moment in Baton's time zone; on the plan clock for a compressed drill unless `wall`."""
        if moment is None:
            return "—"
        value = _utc(moment)
        assert value is not None
        if self.plan_clock is not None and not wall:
            origin, speed = self.plan_clock
            value = origin + (value - origin) * speed
        return self.local(value, "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def dur(self, seconds: float | None) -> str:
        return format_duration(seconds, self.lang)

    def pct(self, ratio: float | None) -> str:
        return "—" if ratio is None else f"{ratio * 100:.0f}%"

    def speed(self, value: float) -> str:
        return f"{value:g}"


# -- charts --------------------------------------------------------------------------------------------------
FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'PingFang SC', 'Microsoft YaHei', system-ui, sans-serif"
STAGE_COLOURS = {"warning": "#e0a800", "response": "#d84315", "recovery": "#2e7d32", "learning": "#1565c0"}
RED, GREEN, BLUE, GREY, INK = "#c62828", "#2e7d32", "#1565c0", "#9e9e9e", "#222222"


def fit(text: str, pixels: float, size: float) -> str:
    """`text` cut to what fits in `pixels` at font `size` (CJK characters count about double)."""
    if not text:
        return ""
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    average = size * (0.55 + 0.45 * wide / len(text))
    limit = max(3, int(pixels / average))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_open(width: int, height: int, label: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css_class)}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" font-family="{FONT}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')


def stage_chart(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    """Each stage's duration as a horizontal bar (a stage still running is drawn lighter)."""
    label_w, right, row, top = 150, 150, 30, 10
    stages = [s for s in report.stages if s.duration_s is not None]
    height = top * 2 + max(1, len(stages)) * row
    longest = max((s.duration_s or 0.0 for s in stages), default=0.0) or 1.0
    out = [svg_open(width, height, rt.t({"zh": "各阶段用时", "en": "Stage durations"}), "stage-chart")]
    for index, item in enumerate(stages):
        y = top + index * row
        length = (width - label_w - right) * (item.duration_s or 0.0) / longest
        colour = STAGE_COLOURS.get(item.stage, GREY)
        name = rt.stage(item.stage)
        out.append(f'<g class="bar" data-stage="{escape(item.stage)}" data-seconds="{item.duration_s}">')
        out.append(f'<text x="8" y="{y + 19}" font-size="13" fill="{INK}">{escape(fit(name, label_w - 12, 13))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 6}" width="{max(2.0, round(length, 1))}" height="16" rx="3" '
                   f'fill="{colour}" fill-opacity="{0.45 if item.open else 1}"/>')
        note = rt.dur(item.duration_s) + (" …" if item.open else "")
        out.append(f'<text x="{label_w + max(2.0, length) + 6:.1f}" y="{y + 19}" font-size="12" fill="{INK}">'
                   f'{escape(note)}</text>')
        out.append(f"<title>{escape(name)}: {escape(note)}</title></g>")
    if not stages:
        out.append(f'<text x="{label_w}" y="{top + 18}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)


def waits_chart(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    """Each handoff's wait as a share of its deadline: the dashed line is the deadline (100%); the dark part of a
    bar is the wait for acknowledgement, the whole bar the wait for completion (or the time open so far, or until
    it was handed back or cancelled: grey). Red bars missed their deadline. One scale for all, so a 20-minute and
    a 7-day deadline compare."""
    label_w, right, row, top, axis = 300, 170, 26, 8, 22
    cap = 2.0
    rows = [h for h in report.handoffs if h.deadline_s]
    plot = width - label_w - right
    height = top + axis + max(1, len(rows)) * row + 8
    out = [svg_open(width, height, rt.t({"zh": "交接等待与时限", "en": "Handoff waits against deadlines"}),
                    "waits-chart")]

    def x(share: float) -> float:
        return round(label_w + plot * min(cap, max(0.0, share)) / cap, 1)

    for tick in (0.0, 0.5, 1.0, 1.5, 2.0):
        tx = x(tick)
        dashed = ' stroke-dasharray="5 3"' if tick == 1.0 else ""
        out.append(f'<line x1="{tx}" y1="{top + axis - 4}" x2="{tx}" y2="{height - 6}" stroke="#000" '
                   f'stroke-opacity="{0.5 if tick == 1.0 else 0.1}" stroke-width="{2 if tick == 1.0 else 1}"{dashed}/>')
        label = f"{tick * 100:.0f}%" + ("+" if tick == cap else "")
        out.append(f'<text x="{tx}" y="{top + axis - 8}" font-size="11" text-anchor="middle" fill="#555">'
                   f'{escape(label)}</text>')
    for index, item in enumerate(rows):
        y = top + axis + index * row
        deadline = item.deadline_s or 1.0
        waited = item.held_s
        if item.outcome == "missed":
            colour = RED
        elif item.status == TaskStatus.completed:
            colour = GREEN
        elif item.status in OPEN:
            colour = BLUE
        else:
            colour = GREY  # handed back or cancelled in time
        title = rt.t(item.title) + (f" (#{item.attempt})" if item.attempt > 1 else "")
        out.append(f'<g class="wait" data-step="{escape(item.step)}" data-attempt="{item.attempt}" '
                   f'data-outcome="{escape(item.outcome)}">')
        if index % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#f6f7f9"/>')
        out.append(f'<text x="8" y="{y + 12}" font-size="11.5" fill="{RED if item.outcome == "missed" else INK}">'
                   f'{escape(fit(title, label_w - 14, 11.5))}</text>')
        out.append(f'<text x="8" y="{y + 23}" font-size="9.5" fill="#666">'
                   f'{escape(fit(rt.dept(item.department), label_w - 14, 9.5))}</text>')
        if waited is not None:
            share = waited / deadline
            out.append(f'<rect x="{label_w}" y="{y + 7}" width="{max(2.0, x(share) - label_w):.1f}" height="12" rx="2" '
                       f'fill="{colour}" fill-opacity="{0.55 if item.status in OPEN else 0.85}"/>')
            if share > cap:
                out.append(f'<path d="M {x(cap) + 2} {y + 7} L {x(cap) + 9} {y + 13} L {x(cap) + 2} {y + 19} Z" '
                           f'fill="{colour}"/>')
        if item.ack_wait_s is not None:
            ack_w = max(1.5, x(item.ack_wait_s / deadline) - label_w)
            out.append(f'<rect class="ack" x="{label_w}" y="{y + 10}" width="{ack_w:.1f}" height="6" fill="#0b2e13" '
                       f'fill-opacity="0.6"/>')
        note = f"{rt.dur(waited)} / {rt.dur(item.deadline_s)}"
        out.append(f'<text x="{width - right + 14}" y="{y + 17}" font-size="11" fill="{INK}">{escape(note)}</text>')
        out.append(f"<title>{escape(title)} · {escape(rt.dept(item.department))} · {escape(note)}</title></g>")
    if not rows:
        out.append(f'<text x="{label_w}" y="{top + axis + 16}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_picture(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    names = {d.key: rt.t(d.name) for d in registry().departments}
    now = report.generated_at
    if report.time_basis == "plan":
        now = report.opened_at + (report.generated_at - report.opened_at) * report.clock_speed
    return render_timeline(report.timeline, lang=rt.lang, now=now, tz=rt.zone, department_names=names, width=width)


def report_context(report: AfterActionReport, lang: str = "zh") -> dict[str, Any]:
    """The templates' context: the report, the words helper and the three pictures (built escaped here)."""
    rt = ReportText(lang, plan_clock=(report.opened_at, report.clock_speed) if report.time_basis == "plan" else None)
    return {"report": report, "rt": rt, "counts": report.counts(),
            # Every text in the pictures is escaped where they are built; nothing else is marked safe.
            "charts": {"timeline": Markup(timeline_picture(report, rt)), "stages": Markup(stage_chart(report, rt)),
                       "waits": Markup(waits_chart(report, rt))}}


def render_report_html(report: AfterActionReport, lang: str = "zh") -> str:
    """The report as a standalone HTML document for printing (no scripts, no outside resources)."""
    return render("reports/after_action_print.html", lang, **report_context(report, lang))
