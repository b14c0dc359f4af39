"""When reports are owed: the reconciliation that creates each upward report as a task for the reporting
department, and marks the late ones (迟报).

From what the database says it decides, like the engine, what the plan's `reporting:` block calls for by now:
the initial report from opening; a follow-up at each interval from opening (at the current level's interval) and
at once when the level or the casualty figures change after the last sent report; the final report when the
response ends (the plan's termination step completes, or the incident closes). Follow-ups stop at that moment.
Running it twice creates nothing twice. The incident's flow calls `advance_with_reports`, the engine's
reconciliation followed by this one in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.incidents.engine import AdvanceResult, advance, latest_tasks
from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.incidents.service import COMMAND, SYSTEM
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import queue as outbox
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.reporting.drafting import casualties_in_run, checked, draft
from core.reporting.models import CasualtyFigures, ReportStatus, UpwardReport
from process_defs.schema import CASUALTY_KINDS, FollowUpTrigger, IncidentType, Reporting, parse_duration


def advance_with_reports(session: Session, *, incident_id: str, worker_id: str | None = None,
                         now: datetime | None = None, reminder_before: float | None = None) -> AdvanceResult:
    """The engine's reconciliation, then the reports it leaves owed; the flow wakes for whichever is due first."""
    moment = now or utcnow()
    result = advance(session, incident_id=incident_id, worker_id=worker_id, now=moment,
                     reminder_before=reminder_before)
    due = reconcile(session, incident_id=incident_id, now=moment, incident=result.incident_row, tasks=result.tasks)
    if due is not None and not result.closed:
        result.next_check = due if result.next_check is None else min(result.next_check, due)
    return result


def reports_of(session: Session, incident_id: str) -> list[UpwardReport]:
    return list(session.exec(_REPORTS_OF, params={"incident_id": incident_id}).all())


# Built once: the reconciliation after every wake reads them.
_REPORTS_OF = select(UpwardReport).where(UpwardReport.incident_id == bindparam("incident_id")).order_by(
    col(UpwardReport.created_at), col(UpwardReport.kind), col(UpwardReport.number))


def termination_moment(incident: Incident, reporting: Reporting, tasks: dict[str, DepartmentTask]) -> datetime | None:
    """When the response ended: the plan's termination step completed, else the incident closed (also when that
    step was skipped or cancelled), else None."""
    rule = reporting.final
    if rule is not None and rule.after is not None:
        task = tasks.get(rule.after)
        if task is not None and task.status == TaskStatus.completed and task.completed_at is not None:
            return task.completed_at
    return incident.closed_at if incident.status == IncidentStatus.closed else None


class _Reconciler:
    def __init__(self, session: Session, incident: Incident, plan: IncidentType, now: datetime,
                 tasks: dict[str, DepartmentTask] | None = None) -> None:
        assert plan.reporting is not None
        self.session = session
        self.incident = incident
        self.plan = plan
        self.reporting: Reporting = plan.reporting
        self.now = now
        self.tasks = tasks if tasks is not None else latest_tasks(session, incident.id)
        self.reports = reports_of(session, incident.id)
        self.figures = session.get(CasualtyFigures, incident.id)
        self.next_check: datetime | None = None

    def _plan_time(self, duration: timedelta) -> timedelta:
        """A drill on a compressed clock owes its reports on that clock too."""
        return duration / self.incident.clock_speed

    def _sooner(self, moment: datetime) -> None:
        self.next_check = moment if self.next_check is None else min(self.next_check, moment)

    def _create(self, kind: str, *, reason: str, due_at: datetime, number: int = 1, slot_at: datetime | None = None,
                phone_due_at: datetime | None = None) -> UpwardReport:
        rule = self.reporting.rule(kind)
        assert rule is not None
        report = UpwardReport(incident_id=self.incident.id, kind=kind, number=number, reason=reason, slot_at=slot_at,
                              department=self.reporting.department, sign_off_required=rule.sign_off,
                              created_at=self.now, due_at=due_at, phone_due_at=phone_due_at, content={})
        report.content = draft(report=report, incident=self.incident, plan=self.plan, tasks=self.tasks,
                               figures=self.figures, now=self.now)
        self.session.add(report)
        self.session.flush()
        self.reports.append(report)
        ledger.append(self.session, incident=self.incident, kind=LedgerKind.upward_report_assigned, actor=SYSTEM,
                      from_party=COMMAND, to_party=report.department, idempotency_key=f"{report.id}:assigned",
                      handed_over={"content": report.content},
                      details={"report_id": report.id, "kind": kind, "number": number, "reason": reason,
                               "due_at": due_at.isoformat(),
                               "phone_due_at": phone_due_at.isoformat() if phone_due_at else None}, at=self.now)
        if outbox.has_endpoint(report.department):
            outbox.queue(self.session, incident=self.incident, key=f"{report.id}:assignment",
                           purpose="report_assignment", target=report.department,
                           payload={"upward_report": {"id": report.id, "kind": kind, "number": number,
                                                      "title": report.content["title"], "reason": reason,
                                                      "due_at": due_at.isoformat()}})
        return report

    def _of_kind(self, kind: str) -> list[UpwardReport]:
        return [r for r in self.reports if r.kind == kind]

    # -- what is owed ------------------------------------------------------------------------------------
    def initial(self) -> None:
        if self._of_kind("initial"):
            return
        rule = self.reporting.initial
        opened = self.incident.created_at
        phone = self.reporting.initial.phone_within
        self._create("initial", reason="opening", due_at=opened + self._plan_time(parse_duration(rule.within)),
                     phone_due_at=opened + self._plan_time(parse_duration(phone)) if phone else None)

    def follow_ups(self, ended: datetime | None) -> None:
        rule = self.reporting.follow_up
        if rule is None:
            return
        within = self._plan_time(parse_duration(rule.within))
        # Scheduled ones: an interval (the current level's) after the last scheduled one, or after opening.
        slots = [r.slot_at for r in self._of_kind("follow_up") if r.slot_at is not None]
        last = max(slots) if slots else self.incident.created_at
        while True:
            upcoming = last + self._plan_time(rule.every_for(self.incident.level))
            if ended is not None and upcoming >= ended:
                break
            if upcoming > self.now:
                self._sooner(upcoming)
                break
            self._create("follow_up", reason="schedule", number=self._next_number(), slot_at=upcoming,
                         due_at=upcoming + within)
            last = upcoming
        if ended is not None:
            return
        # A change since the last sent report calls for a follow-up at once, unless one is being written already
        # (it will carry the change).
        reports = [r for r in self.reports if r.kind in ("initial", "follow_up")]
        if any(ReportStatus(r.status).is_open for r in reports):
            return
        sent = [r for r in reports if r.sent_at is not None]
        if not sent:
            return
        last_sent = max(sent, key=lambda r: r.sent_at)  # type: ignore[arg-type, return-value]
        reason = None
        if FollowUpTrigger.level_change in rule.also_on and last_sent.content.get("level") != self.incident.level:
            reason = FollowUpTrigger.level_change.value
        elif FollowUpTrigger.casualty_change in rule.also_on:
            run = casualties_in_run(self.reporting, self.tasks)
            current = checked(self.figures)
            if any((run[kind] or 0) > current[kind] for kind in CASUALTY_KINDS):
                reason = FollowUpTrigger.casualty_change.value
        if reason is not None:
            self._create("follow_up", reason=reason, number=self._next_number(), due_at=self.now + within)

    def _next_number(self) -> int:
        return max((r.number for r in self._of_kind("follow_up")), default=0) + 1

    def final(self, ended: datetime | None) -> None:
        rule = self.reporting.final
        if rule is None or ended is None or self._of_kind("final"):
            return
        self._create("final", reason="termination", due_at=ended + self._plan_time(parse_duration(rule.within)))

    # -- drafts and lateness -----------------------------------------------------------------------------
    def refresh_drafts(self) -> None:
        for report in self.reports:
            if report.status != ReportStatus.drafting:
                continue
            content = draft(report=report, incident=self.incident, plan=self.plan, tasks=self.tasks,
                            figures=self.figures, now=self.now)
            if {k: v for k, v in content.items() if k != "as_of"} != \
                    {k: v for k, v in report.content.items() if k != "as_of"}:
                report.content = content
                self.session.add(report)

    def lateness(self) -> None:
        """Mark each report whose limit passed before it went (迟报) once, in the ledger too."""
        for report in self.reports:
            if report.status == ReportStatus.sent:
                continue
            checks = [("written", report.due_at, "overdue_at")]
            if report.phone_due_at is not None and report.phoned_at is None:
                checks.append(("phone", report.phone_due_at, "phone_overdue_at"))
            for channel, due, mark in checks:
                if getattr(report, mark) is not None:
                    continue
                if self.now < due:
                    self._sooner(due)
                    continue
                setattr(report, mark, self.now)
                self.session.add(report)
                ledger.append(self.session, incident=self.incident, kind=LedgerKind.upward_report_overdue, actor=SYSTEM,
                              from_party=report.department, to_party=COMMAND,
                              idempotency_key=f"{report.id}:overdue:{channel}",
                              details={"report_id": report.id, "kind": report.kind, "number": report.number,
                                       "channel": channel, "due_at": due.isoformat()}, at=self.now)

    def run(self) -> datetime | None:
        ended = termination_moment(self.incident, self.reporting, self.tasks)
        self.initial()
        self.follow_ups(ended)
        self.final(ended)
        self.refresh_drafts()
        self.lateness()
        self.session.flush()
        return self.next_check if self.incident.status == IncidentStatus.open else None


def reconcile(session: Session, *, incident_id: str, now: datetime | None = None, incident: Incident | None = None,
              tasks: dict[str, DepartmentTask] | None = None) -> datetime | None:
    """Create the reports owed by `now` and mark the late ones; returns when to look again (None: nothing
    scheduled). The caller holds the incident's lock (the engine's `advance` took it) and may hand over the
    incident and its latest tasks as it left them (`AdvanceResult`), which are then not read again."""
    incident = incident if incident is not None else session.get(Incident, incident_id)
    if incident is None:
        return None
    plan = plan_for_version(session, incident.plan_version_id)
    if plan.reporting is None:
        return None
    return _Reconciler(session, incident, plan, now or utcnow(), tasks).run()
