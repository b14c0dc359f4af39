"""The after-action report and its parts: figures only, computed by `compute.build_report`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core.reporting.figures import FigureTotal


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
    # Reports to the bodies above (信息报送), each with its lateness (迟报) at `generated_at`.
    upward_reports: list[dict[str, Any]] = field(default_factory=list)
    # The damage as departments reported it in their forms (`core.reporting.figures`: each department's latest
    # report, added up), each total with its sources; a figure nobody reported is absent.
    damage: list[FigureTotal] = field(default_factory=list)
    # 叫应: each call of a warning that had to be answered (`core.sharing.answers.figures`): answered out of the
    # officials called, who did not answer and whom that called, the p95 time to answer.
    answers: dict[str, Any] = field(default_factory=dict)

    def tally(self) -> dict[str, int]:
        """What became of the tasks handed to departments: assigned = completed + handed back + cancelled + open
        (still with a department: assigned, acknowledged or escalated)."""
        statuses = [h.status for h in self.handoffs]
        done = {"completed": statuses.count("completed"), "handed_back": statuses.count("handed_back"),
                "cancelled": statuses.count("cancelled")}
        return {"assigned": len(statuses), **done, "open": len(statuses) - sum(done.values())}

    def counts(self) -> dict[str, int]:
        outcomes = [h.outcome for h in self.handoffs]
        judged = {"met": outcomes.count("met"), "missed": outcomes.count("missed"), "open": outcomes.count("open")}
        # The rest were handed back or cancelled before their deadline (or had none): judged neither way, but
        # counted, so that the summary adds up to the handoffs.
        return {"handoffs": len(self.handoffs), **judged, "unjudged": len(self.handoffs) - sum(judged.values()),
                "escalations": len(self.escalations),
                "level_changes": len(self.level_changes), "deviations": len(self.deviations)}

    def to_json(self) -> dict[str, Any]:
        """The figures (no picture data); datetimes stay datetimes for the API's encoder."""
        out = asdict(self)
        out.pop("timeline", None)
        out["counts"] = self.counts()
        out["tally"] = self.tally()
        out["units"] = {"durations": "seconds", "time_basis": self.time_basis, "clock_speed": self.clock_speed}
        return out
