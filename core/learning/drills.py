"""Drills: a plan rehearsed by simulated departments on a compressed clock, and its readiness score.

A drill is an ordinary incident opened with `drill=True` and a `clock_speed` (deadlines divided by it), so
the real engine, worker and flow run it; every message it sends is marked drill and no CAP alert of it is
published. Simulated departments answer each task after a delay drawn from a profile, in plan time:

- normal:  lognormal with its median at 40 % of the step's deadline (σ 0.35);
- stress:  lognormal with its median at 120 % of the deadline (σ 0.5), and one answer in six far later still
           (a Pareto tail, α 1.5), capped at 5× the deadline so that a drill ends;
- history: the department's own past answers on real (non-drill) incidents, as shares of their deadlines,
           resampled; with fewer than 3 past answers it falls back to normal.

The real wait is that delay divided by the clock speed. The scoring here is pure (records in, figures out)
so that it can be checked on constructed data; `readiness_report` builds the records from the database.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlmodel import Session, col, select

from core.incidents.engine import latest_tasks
from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.learning.critical_path import critical_path
from core.learning.models import DrillRun
from core.learning.simulation import answer_task
from core.outbox.models import OutboundDelivery
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.sharing.models import CapAlert
from process_defs.schema import IncidentType

PROFILES = ("normal", "stress", "history")
MIN_HISTORY = 3
STRESS_CAP = 5.0
DEFAULT_DEADLINE = timedelta(hours=1)  # for a human step without one (the plan checker does not allow that)
# Readiness: 70 % for steps answered on time, 30 % for the critical path keeping within its deadlines.
ON_TIME_WEIGHT = 0.7
PATH_WEIGHT = 0.3
BOTTLENECKS = 3


# -- simulated departments -----------------------------------------------------------------------------------


def plan_delay(profile: str, deadline: timedelta, rng: random.Random, history: Sequence[float] = ()) -> timedelta:
    """How long (in plan time) a simulated department takes to answer a step with this deadline."""
    seconds = (deadline or DEFAULT_DEADLINE).total_seconds()
    if profile == "history" and len(history) >= MIN_HISTORY:
        share = rng.choice(list(history)) * rng.lognormvariate(0.0, 0.1)
    elif profile == "stress":
        share = 1.2 * rng.lognormvariate(0.0, 0.5)
        if rng.random() < 1 / 6:
            share *= rng.paretovariate(1.5)
        share = min(share, STRESS_CAP)
    elif profile in ("normal", "history"):
        share = 0.4 * rng.lognormvariate(0.0, 0.35)
    else:
        raise ValueError(f"unknown drill profile '{profile}' (one of {', '.join(PROFILES)})")
    return timedelta(seconds=max(share, 0.0) * seconds)


def department_history(session: Session, department: str, limit: int = 500) -> list[float]:
    """The department's past answers on real incidents, each as a share of the time it had (1.0 = at the
    deadline). The share does not depend on an incident's clock speed."""
    rows = session.exec(
        select(DepartmentTask).join(Incident, col(Incident.id) == DepartmentTask.incident_id)
        .where(DepartmentTask.department == department, DepartmentTask.kind == "human",
               DepartmentTask.status == TaskStatus.completed, col(Incident.drill).is_(False),
               col(DepartmentTask.due_at).is_not(None), col(DepartmentTask.assigned_at).is_not(None))
        .order_by(col(DepartmentTask.completed_at).desc()).limit(limit)).all()
    shares = []
    for row in rows:
        assert row.due_at is not None and row.assigned_at is not None and row.completed_at is not None
        allowed = (row.due_at - row.assigned_at).total_seconds()
        if allowed > 0:
            shares.append(max((row.completed_at - row.assigned_at).total_seconds(), 0.0) / allowed)
    return shares


# -- scoring ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRecord:
    """One step's task as the drill ran it (latest attempt)."""

    step_key: str
    stage: str
    department: str
    kind: str
    status: str
    assigned_at: datetime | None
    due_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None = None
    depends_on: tuple[str, ...] = ()
    deadline_seconds: float | None = None  # the plan's deadline at the incident's level, in plan time


@dataclass
class DepartmentFigures:
    department: str
    tasks: int = 0
    on_time: int = 0
    late: int = 0
    shares: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"department": self.department, "tasks": self.tasks, "on_time": self.on_time, "late": self.late,
                "median_share_of_deadline": round(statistics.median(self.shares), 3) if self.shares else None,
                "median_delay_seconds": round(statistics.median(self.delays), 1) if self.delays else None}


def _seconds(later: datetime, earlier: datetime, speed: float) -> float:
    return (later - earlier).total_seconds() * speed


def score(records: Sequence[TaskRecord], *, speed: float, opened_at: datetime | None = None,
          closed_at: datetime | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Readiness figures of one drill, in plan time (real seconds × `speed`):

    - steps on time: human steps answered by their deadline, as a share of those that came due or were
      answered (a step cancelled before its deadline, because its stage ended, counts neither way);
    - critical path: the chain that set the end (`core.learning.critical_path`), its length (the departments'
      time on it) against the sum of the plan's deadlines along it, and the handoff time between its steps;
    - bottlenecks: the departments slowest by their median answer time as a share of the deadline;
    - readiness: 70 × the on-time share + 30 × min(1, path deadlines / path length), out of 100.
    """
    moment = now or utcnow()
    departments: dict[str, DepartmentFigures] = {}
    on_time = late = 0
    for record in records:
        if record.kind != "human" or record.assigned_at is None or record.status == TaskStatus.skipped:
            continue
        figures = departments.setdefault(record.department, DepartmentFigures(record.department))
        end = record.completed_at if record.status == TaskStatus.completed else None
        if end is None and record.status == TaskStatus.cancelled:
            if record.due_at is None or record.cancelled_at is None or record.cancelled_at <= record.due_at:
                continue  # its stage ended before it came due: not the department's miss
            end = record.cancelled_at
            was_late = True
        elif end is None:
            if record.due_at is None or moment <= record.due_at:
                continue  # still open and not yet due
            was_late = True
        else:
            was_late = record.due_at is not None and end > record.due_at
        figures.tasks += 1
        if was_late:
            figures.late += 1
            late += 1
        else:
            figures.on_time += 1
            on_time += 1
        if record.status == TaskStatus.completed and record.completed_at is not None:
            figures.delays.append(_seconds(record.completed_at, record.assigned_at, speed))
            if record.due_at is not None and record.due_at > record.assigned_at:
                figures.shares.append((record.completed_at - record.assigned_at) / (record.due_at - record.assigned_at))
    counted = on_time + late
    on_time_share = on_time / counted if counted else None

    path = critical_path(records)
    path_seconds = sum(_seconds(r.completed_at, r.assigned_at, speed) for r in path
                       if r.completed_at is not None and r.assigned_at is not None)
    handoff_seconds = sum(max(_seconds(b.assigned_at, a.completed_at, speed), 0.0) for a, b in pairwise(path)
                          if b.assigned_at is not None and a.completed_at is not None)
    deadline_seconds = sum(r.deadline_seconds or 0.0 for r in path if r.kind == "human")
    ratio = path_seconds / deadline_seconds if deadline_seconds else None
    path_factor = min(1.0, deadline_seconds / path_seconds) if path_seconds > 0 and deadline_seconds else 1.0

    ranked = sorted(departments.values(),
                    key=lambda d: (-(statistics.median(d.shares) if d.shares else -1.0), d.department))
    readiness = None
    if on_time_share is not None:
        readiness = round(100 * (ON_TIME_WEIGHT * on_time_share + PATH_WEIGHT * path_factor), 1)
    elapsed = _seconds(closed_at, opened_at, speed) if opened_at is not None and closed_at is not None else None
    return {
        "readiness": readiness,
        "steps": {"counted": counted, "on_time": on_time, "late": late,
                  "on_time_pct": round(100 * on_time_share, 1) if on_time_share is not None else None},
        "critical_path": {
            "steps": [{"step": r.step_key, "stage": r.stage, "department": r.department, "kind": r.kind,
                       "seconds": round(_seconds(r.completed_at, r.assigned_at, speed), 1)
                       if r.completed_at and r.assigned_at else None,
                       "deadline_seconds": r.deadline_seconds if r.kind == "human" else None} for r in path],
            "length_seconds": round(path_seconds, 1),
            "deadline_seconds": round(deadline_seconds, 1),
            "ratio": round(ratio, 3) if ratio is not None else None,
            "handoff_seconds": round(handoff_seconds, 1),
        },
        "elapsed_seconds": round(elapsed, 1) if elapsed is not None else None,
        "departments": [d.as_dict() for d in ranked],
        "bottlenecks": [d.department for d in ranked if d.shares][:BOTTLENECKS],
    }


def compare(report: dict[str, Any], earlier: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The drill against earlier drills of the same plan (`earlier`: their reports, newest first)."""
    scored = [e for e in earlier if e.get("readiness") is not None]
    if not scored:
        return {"runs_before": len(earlier), "previous": None, "score_delta": None, "on_time_delta": None,
                "path_ratio_delta": None, "trend": [report.get("readiness")]}
    previous = scored[0]

    def delta(a: Any, b: Any) -> float | None:
        return round(a - b, 1 if isinstance(a, float) and abs(a) > 2 else 3) \
            if isinstance(a, int | float) and isinstance(b, int | float) else None

    return {
        "runs_before": len(earlier),
        "previous": {"drill_run_id": previous.get("drill_run_id"), "incident": previous.get("incident", {}).get("code"),
                     "started_at": previous.get("started_at"), "level": previous.get("incident", {}).get("level"),
                     "plan_version": previous.get("incident", {}).get("plan_version"),
                     "profile": previous.get("profile"), "speed": previous.get("speed"),
                     "readiness": previous.get("readiness")},
        "score_delta": delta(report.get("readiness"), previous.get("readiness")),
        "on_time_delta": delta(report.get("steps", {}).get("on_time_pct"),
                               previous.get("steps", {}).get("on_time_pct")),
        "path_ratio_delta": delta(report.get("critical_path", {}).get("ratio"),
                                  previous.get("critical_path", {}).get("ratio")),
        "trend": [e.get("readiness") for e in reversed(scored[:9])] + [report.get("readiness")],
    }


# -- from the database -------------------------------------------------------------------------------------------


def task_records(session: Session, incident: Incident, plan: IncidentType) -> list[TaskRecord]:
    records = []
    for task in latest_tasks(session, incident.id).values():
        step = plan.step(task.step_key)
        deadline = step.deadline_for(incident.level)
        records.append(TaskRecord(step_key=task.step_key, stage=task.stage, department=task.department,
                                  kind=task.kind, status=task.status, assigned_at=task.assigned_at,
                                  due_at=task.due_at, completed_at=task.completed_at, cancelled_at=task.cancelled_at,
                                  depends_on=tuple(step.depends_on),
                                  deadline_seconds=deadline.total_seconds() if deadline else None))
    return records


def safety(session: Session, incident_id: str) -> dict[str, Any]:
    """What a drill must never do: send a message not marked drill, or publish a CAP alert."""
    deliveries = session.exec(select(OutboundDelivery).where(OutboundDelivery.incident_id == incident_id)).all()
    alerts = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).all()
    unmarked = [d.id for d in deliveries if not d.drill or not (d.payload or {}).get("drill")]
    published = [a.identifier for a in alerts if a.published or a.status != "Exercise"]
    return {"messages": len(deliveries), "messages_not_marked_drill": unmarked, "cap_alerts": len(alerts),
            "cap_alerts_published": published, "ok": not unmarked and not published}


def readiness_report(session: Session, incident_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise LookupError(incident_id)
    plan = plan_for_version(session, incident.plan_version_id)
    records = task_records(session, incident, plan)
    figures = score(records, speed=incident.clock_speed, opened_at=incident.created_at,
                    closed_at=incident.closed_at, now=now)
    deadlines = [r.deadline_seconds for r in records if r.kind == "human" and r.deadline_seconds]
    return {
        "incident": {"id": incident.id, "code": incident.code, "type": incident.type, "level": incident.level,
                     "plan_version": incident.plan_version, "drill": incident.drill, "status": incident.status,
                     "clock_speed": incident.clock_speed, "opened_at": incident.created_at.isoformat(),
                     "closed_at": incident.closed_at.isoformat() if incident.closed_at else None},
        "plan": {"key": plan.key, "version": plan.version, "name": plan.name.model_dump(),
                 "human_steps": sum(1 for r in records if r.kind == "human" and r.status != TaskStatus.skipped),
                 "skipped_steps": sorted(r.step_key for r in records if r.status == TaskStatus.skipped),
                 "longest_deadline_seconds": max(deadlines) if deadlines else None},
        **figures,
        "safety": safety(session, incident.id),
    }


# -- drill runs ----------------------------------------------------------------------------------------------------


def start_run(session: Session, *, type_key: str, level: str, speed: float, profile: str,
              incident_id: str) -> DrillRun:
    if profile not in PROFILES:
        raise ValueError(f"unknown drill profile '{profile}' (one of {', '.join(PROFILES)})")
    run = DrillRun(type=type_key, level=level, speed=speed, profile=profile, incident_id=incident_id)
    session.add(run)
    session.flush()
    return run


def earlier_reports(session: Session, run: DrillRun) -> list[dict[str, Any]]:
    """Reports of the finished drills of the same plan before `run`, newest first; those at the same level
    first (a level-I drill is measured against level-I drills when there are any)."""
    rows = session.exec(select(DrillRun).where(DrillRun.type == run.type, DrillRun.id != run.id,
                                               col(DrillRun.finished_at).is_not(None),
                                               col(DrillRun.started_at) <= run.started_at)
                        .order_by(col(DrillRun.started_at).desc())).all()
    same = [r for r in rows if r.level == run.level]
    chosen = same or list(rows)
    return [dict(r.score or {}, drill_run_id=r.id) for r in chosen]


def finish_run(session: Session, *, run_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the drill's incident, compare it with earlier drills of the plan and keep the report on the run."""
    run = session.get(DrillRun, run_id)
    if run is None or run.incident_id is None:
        raise LookupError(run_id)
    report = readiness_report(session, run.incident_id)
    report.update({"drill_run_id": run.id, "profile": run.profile, "speed": run.speed,
                   "started_at": run.started_at.isoformat(), **(extra or {})})
    report["comparison"] = compare(report, earlier_reports(session, run))
    run.finished_at = utcnow()
    run.score = report
    session.add(run)
    return report


def open_tasks(session: Session, incident_ids: Iterable[str]) -> list[DepartmentTask]:
    ids = list(incident_ids)
    if not ids:
        return []
    return list(session.exec(select(DepartmentTask).where(
        col(DepartmentTask.incident_id).in_(ids), DepartmentTask.kind == "human",
        col(DepartmentTask.status).in_([TaskStatus.assigned, TaskStatus.acknowledged, TaskStatus.escalated]))).all())


def closed(session: Session, incident_id: str) -> bool:
    incident = session.get(Incident, incident_id)
    return incident is not None and incident.status == IncidentStatus.closed


def expected_human_steps(plan: IncidentType, level: str) -> int:
    """Human steps active at `level` (an upper bound: conditions may skip some)."""
    return sum(1 for _, s in plan.steps() if s.kind == "human" and s.active_at(level))



# -- the simulated departments at work ------------------------------------------------------------------------


@dataclass
class SimulatedIncident:
    """One drill incident and when its simulated departments will answer each open task."""

    incident_id: str
    code: str
    type: str
    level: str
    speed: float
    profile: str
    rng: random.Random
    delay_scale: float = 1.0
    total: int = 0  # human steps expected (for a progress bar)
    answer_at: dict[str, datetime] = field(default_factory=dict)
    answered: int = 0
    stage: str = "warning"
    closed: bool = False
    history_fallbacks: set[str] = field(default_factory=set)  # departments too new for the history profile


@dataclass
class Answer:
    incident_id: str
    code: str
    department: str
    step: str
    title: str
    late: bool


class Simulator:
    """Simulated departments for any number of drill incidents: `schedule` gives newly assigned tasks their
    answer time, `due` says which have come, `answer` answers one. The caller owns the transactions
    (`flows.drill.tick`: each answer in its own, as a department's would be)."""

    def __init__(self, incidents: Iterable[SimulatedIncident]) -> None:
        self.incidents = {i.incident_id: i for i in incidents}
        self._history: dict[str, list[float]] = {}

    @property
    def done(self) -> bool:
        return all(i.closed for i in self.incidents.values())

    def _delay(self, session: Session, sim: SimulatedIncident, task: DepartmentTask, plan: IncidentType) -> timedelta:
        deadline = plan.step(task.step_key).deadline_for(sim.level) or DEFAULT_DEADLINE
        history: list[float] = []
        if sim.profile == "history":
            if task.department not in self._history:
                self._history[task.department] = department_history(session, task.department)
            history = self._history[task.department]
            if len(history) < MIN_HISTORY:
                sim.history_fallbacks.add(task.department)
        return plan_delay(sim.profile, deadline, sim.rng, history) * sim.delay_scale / sim.speed

    def schedule(self, session: Session) -> set[str]:
        """Read where each drill is, and give every newly assigned task the moment its simulated department will
        answer it; returns the ids of the drills' open tasks."""
        live = [i for i in self.incidents.values() if not i.closed]
        for sim in live:
            incident = session.get(Incident, sim.incident_id)
            if incident is not None:
                sim.stage = incident.stage
                sim.closed = incident.status == IncidentStatus.closed
        tasks = open_tasks(session, [i.incident_id for i in live if not i.closed])
        for task in sorted(tasks, key=lambda t: (t.assigned_at or t.created_at, t.id)):
            sim = self.incidents[task.incident_id]
            if task.id not in sim.answer_at:
                incident = session.get(Incident, task.incident_id)
                assert incident is not None
                plan = plan_for_version(session, incident.plan_version_id)
                sim.answer_at[task.id] = (task.assigned_at or task.created_at) + self._delay(session, sim, task, plan)
        return {t.id for t in tasks}

    def due(self, open_ids: set[str], now: datetime) -> tuple[list[tuple[SimulatedIncident, str]], datetime | None]:
        """The open tasks whose answer is due at `now` (each with its drill), and when the next one is due (None:
        nothing scheduled)."""
        due: list[tuple[SimulatedIncident, str]] = []
        upcoming: list[datetime] = []
        for sim in self.incidents.values():
            if sim.closed:
                continue
            for task_id, when in sim.answer_at.items():
                if task_id not in open_ids:
                    continue
                if when > now:
                    upcoming.append(when)
                else:
                    due.append((sim, task_id))
        return due, min(upcoming) if upcoming else None

    def answer(self, session: Session, sim: SimulatedIncident, task_id: str) -> Answer:
        """The simulated department answers the task (raises `TaskStateConflict` if its stage ended meanwhile)."""
        done = answer_task(session, task_id=task_id, rng=sim.rng, by="drill",
                           note="演练：模拟部门 Drill: simulated department")
        sim.answered += 1
        return Answer(sim.incident_id, sim.code, done.task.department, done.step.key, done.step.title.zh, done.late)
