"""The after-action report computed from what the run left behind (it writes nothing), and its time arithmetic:
durations in plan time for a drill on a compressed clock, and whether a handoff met its deadline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from statistics import median
from typing import Any

from sqlmodel import Session, col, select

from core.incidents import reads
from core.incidents.models import DepartmentTask, Incident, LevelChange, TaskStatus
from core.learning.after_action.model import (
    AfterActionReport,
    CriticalPath,
    DepartmentFigure,
    Deviation,
    Escalation,
    Handoff,
    LedgerStatus,
    LevelChangeFigure,
    PathStep,
    StageFigure,
)
from core.learning.critical_path import Ran, critical_path
from core.plans.store import plan_for_version
from core.platform import clock
from core.platform.clock import utcnow
from core.reporting.figures import DAMAGE_FIGURES, FigureTotal, Reported, figure_of, number, summarise
from core.reporting.reads import views as upward_report_views
from core.sharing import answers
from process_defs.schema import STAGES, IncidentType

OPEN = {s.value for s in TaskStatus if s.is_open}


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else clock.as_utc(value)


def time_scale(incident: Incident) -> float:
    """How many seconds of plan time one wall-clock second is: the drill's clock speed, else 1."""
    return float(incident.clock_speed) if incident.clock_speed and incident.clock_speed > 1 else 1.0


def span(start: datetime | None, end: datetime | None, scale: float = 1.0) -> float | None:
    """Seconds from `start` to `end` (in plan time when `scale` > 1); None when either is unknown."""
    a, b = as_utc(start), as_utc(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() * scale, 3)


def deadline_outcome(task: DepartmentTask, now: datetime) -> tuple[str, datetime | None]:
    """Whether a handoff met its deadline: ("met" | "missed" | "open" | "none", the moment judged).

    Completed: met when completed at or before the due time. Still open (assigned, acknowledged, escalated):
    missed once the due time has passed, else open. Handed back or cancelled: missed if that happened after
    the due time, else no outcome. No due time, or skipped: no outcome."""
    due = as_utc(task.due_at)
    if due is None or task.status == TaskStatus.skipped:
        return "none", None
    if task.status == TaskStatus.completed:
        end = as_utc(task.completed_at)
        return ("met" if end is not None and end <= due else "missed"), end
    if task.status in OPEN:
        moment = as_utc(now)
        assert moment is not None
        return ("missed" if moment > due else "open"), moment
    end = as_utc(task.handed_back_at if task.status == TaskStatus.handed_back else task.cancelled_at)
    if end is not None and end > due:
        return "missed", end
    return "none", end


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
        moment = as_utc(value) if isinstance(value, datetime) else None
        return origin + (moment - origin) * scale if moment is not None else value

    def moved(item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: move(v) for k, v in item.items()}

    out = moved(timeline)
    for key in ("stages", "steps", "level_changes"):
        out[key] = [moved(item) for item in timeline.get(key) or []]
    return out


def _critical_path(plan: IncidentType, rows: Sequence[DepartmentTask], scale: float) -> CriticalPath:
    """The critical path (`core.learning.critical_path`: the chain of completed steps that set the end), each
    step timed from when the one before it on the chain was done (the first step from its first assignment) to
    its completion, so that the steps' times add up to the chain's span. A step handed back and done by another
    department counts once, from its first assignment; each department is charged its own attempts."""
    attempts: dict[str, list[DepartmentTask]] = {}
    for row in rows:
        attempts.setdefault(row.step_key, []).append(row)
    done: dict[str, DepartmentTask] = {}
    for key, tasks in attempts.items():
        tasks.sort(key=lambda t: t.attempt)
        final = tasks[-1]
        if final.status == TaskStatus.completed and final.completed_at is not None:
            done[key] = final
    if not done:
        return CriticalPath([], 0.0, None, None, None, [])
    order = {step.key: index for index, (_, step) in enumerate(plan.steps())}
    runs = []
    for key in sorted(done, key=lambda k: order.get(k, len(order))):
        try:
            depends = tuple(plan.step(key).depends_on)
        except KeyError:
            depends = ()
        first = min((m for m in (as_utc(t.assigned_at) for t in attempts[key]) if m is not None), default=None)
        runs.append(Ran(step_key=key, stage=done[key].stage, assigned_at=first,
                        completed_at=as_utc(done[key].completed_at), depends_on=depends))
    path = critical_path(runs)
    start: dict[str, datetime] = {}
    for index, run in enumerate(path):
        began = path[index - 1].completed_at if index else run.assigned_at
        assert began is not None
        start[run.step_key] = began
    chain = [run.step_key for run in path]

    by_department: dict[str, float] = {}
    steps: list[PathStep] = []
    for key in chain:
        task = done[key]
        for attempt in attempts[key]:
            if attempt.kind != "human":
                continue  # automated steps are Baton's time, not a department's
            end = attempt.completed_at if attempt.status == TaskStatus.completed else (
                attempt.handed_back_at or attempt.cancelled_at)
            began_at = start[key] if attempt is attempts[key][0] else attempt.assigned_at
            seconds = max(0.0, span(began_at, end, scale) or 0.0)
            by_department[attempt.department] = by_department.get(attempt.department, 0.0) + seconds
        steps.append(PathStep(step=key, title=_title(plan, key), stage=task.stage, department=task.department,
                              kind=task.kind, attempts=len(attempts[key]), started_at=start[key],
                              completed_at=as_utc(task.completed_at),
                              duration_s=max(0.0, span(start[key], task.completed_at, scale) or 0.0)))
    ranking = sorted(by_department.items(), key=lambda item: (-item[1], item[0]))
    slowest = ranking[0] if ranking else None
    return CriticalPath(steps=steps, total_s=round(sum(s.duration_s for s in steps), 3),
                        span_s=span(steps[0].started_at, steps[-1].completed_at, scale),
                        slowest_department=slowest[0] if slowest else None,
                        slowest_department_s=round(slowest[1], 3) if slowest else None,
                        by_department=[{"department": d, "seconds": round(s, 3)} for d, s in ranking])


def handoff_of(task: DepartmentTask, title: dict[str, str], now: datetime, scale: float) -> Handoff:
    outcome, judged = deadline_outcome(task, now)
    due = as_utc(task.due_at)
    overdue = span(due, judged, scale) if outcome == "missed" else None
    return Handoff(
        task_id=task.id, step=task.step_key, title=title, stage=task.stage, department=task.department,
        kind=task.kind, attempt=task.attempt, status=task.status, assigned_at=as_utc(task.assigned_at),
        acknowledged_at=as_utc(task.acknowledged_at), completed_at=as_utc(task.completed_at), due_at=due,
        deadline_s=span(task.assigned_at, task.due_at, scale), ack_wait_s=span(task.assigned_at, task.acknowledged_at,
                                                                                scale),
        completion_wait_s=span(task.assigned_at, task.completed_at, scale) if task.status == TaskStatus.completed
        else None,
        open_wait_s=span(task.assigned_at, now, scale) if task.status in OPEN else None,
        held_s=span(task.assigned_at, task.completed_at or task.handed_back_at or task.cancelled_at or
                    (now if task.status in OPEN else None), scale),
        outcome=outcome, overdue_by_s=overdue, escalated_at=as_utc(task.escalated_at), escalated_to=task.escalated_to)


def build_report(session: Session, *, incident_id: str, now: datetime | None = None) -> AfterActionReport:
    """The after-action report of the incident (by id or code); `now` closes the open intervals of an
    incident still running (default: the current time)."""
    incident = reads.get_incident(session, incident_id, None)
    plan = plan_for_version(session, incident.plan_version_id)
    moment = as_utc(now) or utcnow()
    scale = time_scale(incident)
    opened = as_utc(incident.created_at)
    assert opened is not None
    closed = as_utc(incident.closed_at)

    timeline = reads.timeline(session, incident)
    stages = []
    for item in timeline["stages"]:
        left = as_utc(item["left_at"])
        stages.append(StageFigure(stage=item["stage"], entered_at=as_utc(item["entered_at"]), left_at=left,
                                  duration_s=span(item["entered_at"], left or moment, scale), open=left is None))
    stages.sort(key=lambda s: (STAGES.index(s.stage) if s.stage in STAGES else len(STAGES)))

    order = {step.key: index for index, (_, step) in enumerate(plan.steps())}
    rows = list(session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id)).all())
    rows.sort(key=lambda t: (STAGES.index(t.stage) if t.stage in STAGES else 9, order.get(t.step_key, 0), t.attempt,
                             as_utc(t.assigned_at) or as_utc(t.created_at) or moment))
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
                                      attempt=task.attempt, escalated_to=task.escalated_to, due_at=as_utc(task.due_at),
                                      escalated_at=as_utc(task.escalated_at), completed_at=as_utc(task.completed_at),
                                      late_by_s=span(task.due_at, end, scale), reason="deadline passed"))
    escalations.sort(key=lambda e: e.escalated_at or moment)

    changes = session.exec(select(LevelChange).where(LevelChange.incident_id == incident.id)
                           .order_by(col(LevelChange.at), col(LevelChange.id))).all()
    levels = ("IV", "III", "II", "I")
    level_changes = [LevelChangeFigure(at=as_utc(c.at) or moment, from_level=c.from_level, to_level=c.to_level,
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
                         department=task.department, attempt=task.attempt, at=as_utc(at), reason=reason,
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
        deviations=deviations, ledger=ledger, timeline=_plan_clock(_as_of(timeline, handoffs), opened, scale),
        upward_reports=upward_report_views(session, incident.id, moment), damage=damage_of(rows, titles),
        answers=answers.figures(session, incident.id))


def damage_of(rows: Sequence[DepartmentTask], titles: Mapping[str, dict[str, str]]) -> list[FigureTotal]:
    """The damage summary: the dead, missing, injured, people moved and direct economic loss as departments
    reported them in their forms (completed tasks' outputs), each department's latest report counted once."""
    reported = [Reported(department=task.department, at=as_utc(task.completed_at), name=name, value=amount,
                         step=task.step_key, title=titles.get(task.step_key))
                for task in rows if task.kind == "human" and task.status == TaskStatus.completed
                for name, value in (task.outputs or {}).items()
                if figure_of(name) is not None and (amount := number(value)) is not None]
    return summarise(reported, only=DAMAGE_FIGURES)


def _as_of(timeline: dict[str, Any], handoffs: Sequence[Handoff]) -> dict[str, Any]:
    """The timeline for the picture: overdue as the report judges it (at its `now`, a hand-back before the due
    time not counted), and without the steps never handed to anyone (the deviations list those)."""
    missed = {h.task_id for h in handoffs if h.outcome == "missed"}
    steps = [{**item, "overdue": item["task_id"] in missed} for item in timeline["steps"]
             if item.get("assigned_at") is not None]
    return {**timeline, "steps": steps}
