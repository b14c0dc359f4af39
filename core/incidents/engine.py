"""The rules that move an incident along its plan.

`advance` is a reconciliation: from what the database says (tasks, level, stage, clock) it decides what
the plan calls for next, writes it, and tells the flow which automated steps and deliveries to run and
when to look again. Running it twice does nothing twice, so a flow resumed after a crash simply calls it
again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.incidents import alerts, grading
from core.incidents.deadlines import WITH_DEADLINES, reminder_at
from core.incidents.models import AlertKind, DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.incidents.permissions import able_to_act, duty_of
from core.incidents.service import COMMAND, SYSTEM, LockedTask, lock_incident, lock_task
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import queue as outbox
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.errors import LeaseLost
from core.platform.failpoints import failpoint
from core.registers import service as registers
from process_defs.schema import STAGES, Condition, IncidentType, Step


@dataclass
class AdvanceResult:
    incident_id: str
    code: str
    status: str
    stage: str
    level: str
    actions: list[str] = field(default_factory=list)
    # The automated step each of `actions` runs (its plan step's `action`): the flow runs them without reading
    # the task and the plan again.
    action_of: dict[str, str] = field(default_factory=dict)
    deliveries: list[str] = field(default_factory=list)
    next_check: datetime | None = None
    # What the reconciliation read and wrote, for whatever runs next in the same transaction (the reports).
    incident_row: Incident | None = field(default=None, repr=False, compare=False)
    tasks: dict[str, DepartmentTask] = field(default_factory=dict, repr=False, compare=False)

    @property
    def closed(self) -> bool:
        return self.status == IncidentStatus.closed


def latest_tasks(session: Session, incident_id: str) -> dict[str, DepartmentTask]:
    """The latest attempt of each step's task."""
    rows = session.exec(_TASKS_OF, params={"incident_id": incident_id}).all()
    return {row.step_key: row for row in rows}


# Built once: every wake and every completion reads them.
_TASKS_OF = select(DepartmentTask).where(DepartmentTask.incident_id == bindparam("incident_id")).order_by(
    col(DepartmentTask.attempt))


def escalation_target(step: Step) -> str:
    """The department an overdue step's escalation goes to, by the plan (the engine tells the office instead
    when nobody there can act)."""
    reg = registry()
    target = step.escalate_to or "supervisor"
    if target == "supervisor":
        dept = reg.department(step.department)
        return dept.supervisor if dept and dept.supervisor else COMMAND
    if target.startswith("role:"):
        role = reg.role(target[5:])
        return role.department if role else COMMAND
    return target


def condition_met(condition: Condition, tasks: dict[str, DepartmentTask]) -> bool:
    """The condition holds on its step's answers, and that step was completed (not skipped or cancelled)."""
    source = tasks.get(condition.step)
    return source is not None and source.status == TaskStatus.completed and condition.holds(source.outputs)


def shared_inputs(plan: IncidentType, step: Step, tasks: dict[str, DepartmentTask], *, holder: str
                  ) -> dict[str, dict[str, Any]]:
    """The earlier outputs a step's task is handed, keyed by step and field: those the plan's `inputs` name, as
    far as the source's share lets them reach `holder`, the department holding the task (the plan check refuses
    inputs a step's own department may not read; a task reassigned elsewhere gets only what its holder may)."""
    out: dict[str, dict[str, Any]] = {}
    for ref in step.inputs:
        src_key, _, field_key = ref.partition(".")
        source = tasks.get(src_key)
        if source is None or source.status != TaskStatus.completed:
            continue
        outputs = source.outputs or {}
        named = {field_key: outputs.get(field_key)} if field_key else outputs
        visible = plan.step(src_key).visible_outputs(holder, owner=source.department, outputs=named)
        if visible:
            out.setdefault(src_key, {}).update(visible)
    return out


class _Advancer:
    def __init__(self, session: Session, incident: Incident, plan: IncidentType, now: datetime) -> None:
        self.session = session
        self.incident = incident
        self.plan = plan
        self.now = now
        self.tasks = latest_tasks(session, incident.id)
        self._staffed: dict[str, bool] = {}

    def staffed(self, department: str) -> bool:
        """Whether anybody active can act for the department (a drill's departments are simulated: always)."""
        if self.incident.drill or department == COMMAND:
            return True
        if department not in self._staffed:
            with self.session.no_autoflush:  # users are never written here: the pending tasks can wait for the flush
                self._staffed[department] = able_to_act(self.session, department)
        return self._staffed[department]

    # -- helpers -----------------------------------------------------------------------------------
    def _ledger(self, kind: LedgerKind, *, key: str, actor: str = SYSTEM, from_party: str = COMMAND,
                to_party: str = COMMAND, step_key: str | None = None, handed_over: Any = None,
                details: dict[str, Any] | None = None, fresh: bool = False) -> None:
        ledger.append(self.session, incident=self.incident, kind=kind, actor=actor, from_party=from_party,
                      to_party=to_party, idempotency_key=key, step_key=step_key, handed_over=handed_over,
                      details=details, at=self.now, fresh=fresh)

    def _resolved(self, dep_key: str, stage: str) -> bool:
        task = self.tasks.get(dep_key)
        if task is not None:
            return TaskStatus(task.status).is_resolved
        dep_stage = self.plan.stage_of(dep_key)
        if STAGES.index(dep_stage) < STAGES.index(stage):
            return True
        # A dependency that does not apply at this level cannot hold anything up.
        return not self.plan.step(dep_key).active_at(self.incident.level)

    def _new_task(self, step: Step, stage: str, status: TaskStatus, attempt: int = 1,
                  department: str | None = None, position: str | None = None) -> DepartmentTask:
        task = DepartmentTask(incident_id=self.incident.id, step_key=step.key, attempt=attempt, stage=stage,
                              department=department or step.department, position=position, kind=step.kind.value,
                              required=step.required, status=status, created_at=self.now)
        self.session.add(task)
        self.tasks[step.key] = task
        return task

    def _assign(self, task: DepartmentTask, step: Step, from_party: str,
                kind: LedgerKind = LedgerKind.task_assigned, actor: str = SYSTEM,
                details: dict[str, Any] | None = None) -> None:
        task.assigned_at = self.now
        task.assigned_by = actor
        holders: list[Any] = []
        if step.kind == "human" and task.position is not None:
            # Addressed to a position: whoever holds it now (by the duty roster: the holder, or the stand-in while
            # the holder is away); the ledger keeps who was meant to act and who it went to.
            task.meant, holders = duty_of(self.session, task.position, self.now)
            task.assignee = holders[0].username if len(holders) == 1 else None
        deadline = step.deadline_for(self.incident.level)
        task.due_at = self.now + deadline / self.incident.clock_speed if deadline else None
        if step.registers is not None and step.kind == "human":
            # The register entries inside the warning area, as the holding department may read them, kept with the
            # task (and their digest in the ledger) so that what it was shown stays on record.
            task.registers = registers.entries_for_task(
                self.session, incident_id=self.incident.id, kinds=step.registers.kinds, within=step.registers.within,
                department=task.department, now=self.now)
        self.session.add(task)
        handed = shared_inputs(self.plan, step, self.tasks, holder=task.department)
        # The task was created by this reconciliation (`_new_task`): its key is new.
        self._ledger(kind, key=f"{task.id}:assigned", fresh=True, actor=actor, from_party=from_party,
                     to_party=task.position or task.department, step_key=step.key,
                     handed_over={"inputs": handed} | ({"registers": task.registers} if task.registers else {}),
                     details={"attempt": task.attempt, "due_at": task.due_at.isoformat() if task.due_at else None,
                              "kind": step.kind.value} | ({"position": task.position} if task.position else {})
                     | ({"meant": task.meant, "assignee": task.assignee} if task.position and step.kind == "human"
                        else {}) | (details or {}))
        failpoint("task.assigned")
        if step.kind == "human" and task.position is None and not self.staffed(task.department):
            # Not silently given to nobody: the office is alerted and may route it (the department keeps it
            # listed should somebody be added).
            alerts.raise_alert(self.session, incident=self.incident, task=task, kind=AlertKind.unstaffed,
                               reason=f"nobody active in {task.department} can act on the task", actor=SYSTEM,
                               at=self.now, reason_code=alerts.system_code(alerts.SystemReason.dept_unstaffed))
        elif step.kind == "human" and task.position is not None and not holders and not self.incident.drill:
            code = alerts.system_code(alerts.SystemReason.post_away, task.meant) if task.meant \
                else alerts.system_code(alerts.SystemReason.post_unheld)
            alerts.raise_alert(self.session, incident=self.incident, task=task, kind=AlertKind.unstaffed,
                               reason=f"nobody holds {task.position} now" + (f" ({task.meant} is away, no stand-in)"
                                                                             if task.meant else ""),
                               actor=SYSTEM, at=self.now, reason_code=code)
        if step.kind == "human" and outbox.has_endpoint(task.department):
            outbox.queue(self.session, incident=self.incident, key=f"{task.id}:assignment", purpose="assignment",
                         target=task.department,
                         payload={"task": {"id": task.id, "step": step.key, "title": step.title.model_dump(),
                                           "stage": task.stage, "due_at": task.due_at.isoformat()
                                           if task.due_at else None, "inputs": handed,
                                           "form": [f.model_dump(mode="json") for f in step.form],
                                           **({"registers": task.registers} if task.registers else {})}})

    # -- steps ---------------------------------------------------------------------------------------
    def activate(self, stage: str) -> bool:
        progressed = False
        for step in self.plan.stages.get(stage).steps:
            if step.key in self.tasks or not step.active_at(self.incident.level):
                continue
            if not all(self._resolved(dep, stage) for dep in step.depends_on):
                continue
            condition = step.when.condition if step.when else None
            if condition is not None and not condition_met(condition, self.tasks):
                task = self._new_task(step, stage, TaskStatus.skipped)
                task.cancel_reason = "condition not met"
                progressed = True
                continue
            upstream = sorted({self.tasks[d].department for d in step.depends_on
                               if d in self.tasks and self.tasks[d].status == TaskStatus.completed})
            from_party = ",".join(upstream) or COMMAND
            if step.kind == "human":
                task = self._new_task(step, stage, TaskStatus.assigned, position=step.position)
            else:
                task = self._new_task(step, stage, TaskStatus.pending)
            self._assign(task, step, from_party)
            progressed = True
        return progressed

    def route_handed_back(self, stage: str) -> bool:
        """A handed-back task waits for the office's choice (its alert); once chosen, its next attempt goes where
        the office said: another department, the office itself, or a command position."""
        progressed = False
        for key, task in list(self.tasks.items()):
            if task.stage != stage or task.status != TaskStatus.handed_back:
                continue
            alert = alerts.alert_of_task(self.session, task.id)
            if alert is None:
                # Every hand-back (or decline) reaches the office, whichever way it was written.
                alerts.raise_alert(self.session, incident=self.incident, task=task,
                                   kind=AlertKind.declined if task.decline_code else AlertKind.handed_back,
                                   reason=task.hand_back_reason or "", actor=task.handed_back_by or SYSTEM,
                                   at=self.now, reason_code=task.decline_code)
                continue
            route = alerts.route_of(alert)
            if route is None:
                continue
            department, position = route
            step = self.plan.step(key)
            new = self._new_task(step, stage, TaskStatus.assigned, attempt=task.attempt + 1, department=department,
                                 position=position)
            self._assign(new, step, from_party=alert.department, kind=LedgerKind.task_reassigned,
                         actor=alert.resolved_by or SYSTEM,
                         details={"alert_id": alert.id, "choice": alert.resolution, "reason": alert.resolution_reason,
                                  "meant": alert.department})
            alert.routed_task_id = new.id
            self.session.add(alert)
            progressed = True
        return progressed

    def stage_done(self, stage: str) -> bool:
        stage_def = self.plan.stages.get(stage)
        if stage_def.gate is not None:
            gate = self.tasks.get(stage_def.gate)
            return gate is not None and gate.status == TaskStatus.completed
        for step in stage_def.steps:
            if not step.active_at(self.incident.level):
                continue
            task = self.tasks.get(step.key)
            if task is None:
                if step.required:
                    return False
                continue
            if step.required and not TaskStatus(task.status).is_resolved:
                return False
            if step.kind == "action" and task.status == TaskStatus.pending:
                return False
        return True

    def leave_stage(self, stage: str) -> None:
        self._close_steps(stage, "stage ended before its turn")
        self._ledger(LedgerKind.stage_left, key=f"{self.incident.id}:stage:{stage}:left", details={"stage": stage})
        failpoint("stage.left")
        gate_key = self.plan.stages.get(stage).gate
        gate = self.tasks.get(gate_key) if gate_key else None
        outputs = gate.outputs if gate is not None and gate.status == TaskStatus.completed else None
        nxt = self.plan.stage_after(stage, outputs)
        following = STAGES[STAGES.index(stage) + 1:]
        skipped = list(following[:following.index(nxt)] if nxt is not None else following)
        if skipped and gate is not None:
            self._follow_decision(stage, gate, skipped, nxt)
        if nxt is not None:
            self.incident.stage = nxt
            self._ledger(LedgerKind.stage_entered, key=f"{self.incident.id}:stage:{nxt}:entered",
                         details={"stage": nxt})
        else:
            self.incident.status = IncidentStatus.closed
            self.incident.closed_at = self.now
            self._ledger(LedgerKind.incident_closed, key=f"{self.incident.id}:closed",
                         handed_over={"code": self.incident.code}, details={"level": self.incident.level})
        self.session.add(self.incident)

    def _close_steps(self, stage: str, unstarted: str) -> None:
        """Cancel the stage's open tasks; record its steps that never started as skipped."""
        for step in self.plan.stages.get(stage).steps:
            task = self.tasks.get(step.key)
            if task is None:
                skipped = self._new_task(step, stage, TaskStatus.skipped)
                skipped.cancel_reason = ("not active at level " + self.incident.level
                                         if not step.active_at(self.incident.level) else unstarted)
            elif TaskStatus(task.status).is_open or task.status == TaskStatus.handed_back:
                task.status = TaskStatus.cancelled
                task.cancelled_at = self.now
                task.cancel_reason = "stage ended"
                self.session.add(task)
                self._ledger(LedgerKind.task_cancelled, key=f"{task.id}:cancelled", from_party=task.department,
                             step_key=task.step_key, details={"reason": "stage ended"})
                alerts.settle(self.session, task=task, actor=SYSTEM, at=self.now)
        self.session.flush()

    def _follow_decision(self, stage: str, gate: DepartmentTask, skipped: list[str], nxt: str | None) -> None:
        """A gate's decision skips stages (the office stands down, or goes straight to the review): none of
        their steps is assigned, and the ledger says who decided it and why."""
        for later in skipped:
            self._close_steps(later, f"stage skipped by the decision at {gate.step_key}")
        outputs = gate.outputs or {}
        decision = self.plan.decision_field(stage)
        kind = LedgerKind.incident_stood_down if "response" in skipped else LedgerKind.stage_skipped
        self._ledger(kind, key=f"{self.incident.id}:stage:{stage}:decided", actor=gate.completed_by or SYSTEM,
                     from_party=gate.department, step_key=gate.step_key,
                     details={"stage": stage, "decision": outputs.get(decision.key) if decision else None,
                              "outcome": self.plan.outcome_of(stage, outputs), "skipped": skipped,
                              "next": nxt, "reason": outputs.get("reason") or gate.note})

    # -- deadlines -----------------------------------------------------------------------------------
    def deadlines(self, fraction: float | None) -> datetime | None:
        next_check: datetime | None = None

        def sooner(moment: datetime) -> None:
            nonlocal next_check
            next_check = moment if next_check is None else min(next_check, moment)

        for task in self.tasks.values():
            if task.kind != "human" or task.due_at is None or task.assigned_at is None:
                continue
            if task.status not in WITH_DEADLINES:
                continue
            step = self.plan.step(task.step_key)
            remind_at = reminder_at(task.assigned_at, task.due_at, fraction)
            if task.reminded_at is None:
                if self.now >= remind_at and self.now < task.due_at:
                    task.reminded_at = self.now
                    self.session.add(task)
                    outbox.queue(self.session, incident=self.incident, key=f"{task.id}:reminder",
                                 purpose="reminder", target=task.department,
                                 payload={"task": {"id": task.id, "step": task.step_key,
                                                   "due_at": task.due_at.isoformat()}})
                elif self.now < remind_at:
                    sooner(remind_at)
            if self.now >= task.due_at:
                target = escalation_target(step)
                planned = target
                if task.position is not None or not self.staffed(target):
                    # Nobody there to tell (or a leader's task is late): the office is told, and may route it.
                    target = COMMAND
                    why = (f"overdue; {planned} has nobody able to act" if task.position is None
                           else f"overdue with {task.position}")
                    code = (alerts.system_code(alerts.SystemReason.overdue, planned) if task.position is None
                            else alerts.system_code(alerts.SystemReason.overdue_post))
                    alerts.raise_alert(self.session, incident=self.incident, task=task, kind=AlertKind.overdue,
                                       reason=why, actor=SYSTEM, at=self.now, reason_code=code)
                task.status = TaskStatus.escalated
                task.escalated_at = self.now
                task.escalated_to = target
                self.session.add(task)
                self._ledger(LedgerKind.task_escalated, key=f"{task.id}:escalated", from_party=task.department,
                             to_party=target, step_key=task.step_key,
                             details={"due_at": task.due_at.isoformat(), "target": step.escalate_to or "supervisor"}
                             | ({"planned_target": planned} if planned != target else {}))
                outbox.queue(self.session, incident=self.incident, key=f"{task.id}:escalation",
                             purpose="escalation", target=target,
                             payload={"task": {"id": task.id, "step": task.step_key, "department": task.department,
                                               "due_at": task.due_at.isoformat()}})
            else:
                sooner(task.due_at)
        routing = alerts.escalate_overdue(self.session, incident=self.incident, at=self.now)
        if routing is not None:
            sooner(routing)
        return next_check

    def run(self, fraction: float | None) -> AdvanceResult:
        for _ in range(len(STAGES) + 1):
            stage = self.incident.stage
            if self.incident.status != IncidentStatus.open:
                break
            while self.route_handed_back(stage) | self.activate(stage):
                pass
            if not self.stage_done(stage):
                break
            self.leave_stage(stage)
        if self.incident.status == IncidentStatus.open and self.plan.grading:
            grading.propose(self.session, incident=self.incident, plan=self.plan,
                            observed=grading.observed_outputs(self.tasks), source="outputs", now=self.now)
        next_check = self.deadlines(fraction) if self.incident.status == IncidentStatus.open else None
        self.session.flush()
        pending = [t for t in self.tasks.values() if t.kind == "action" and t.status == TaskStatus.pending]
        actions = [t.id for t in pending]
        action_of = {t.id: action for t in pending if (action := self.plan.step(t.step_key).action)}
        deliveries = outbox.pending(self.session, incident_id=self.incident.id)
        return AdvanceResult(incident_id=self.incident.id, code=self.incident.code, status=self.incident.status,
                             stage=self.incident.stage, level=self.incident.level, actions=actions, action_of=action_of,
                             deliveries=deliveries, next_check=next_check, incident_row=self.incident,
                             tasks=self.tasks)


def advance(session: Session, *, incident_id: str, worker_id: str | None = None,
            now: datetime | None = None, reminder_before: float | None = None) -> AdvanceResult:
    incident = lock_incident(session, incident_id)
    if worker_id is not None and incident.lease_owner != worker_id:
        raise LeaseLost(f"incident {incident.code} is held by {incident.lease_owner}, not {worker_id}")
    plan = plan_for_version(session, incident.plan_version_id)
    return _Advancer(session, incident, plan, now or utcnow()).run(reminder_before)


def finish_action(session: Session, *, task_id: str, outputs: dict[str, Any], ok: bool = True,
                  locked: LockedTask | None = None) -> DepartmentTask:
    """Record an automated step's result (idempotent: a second call changes nothing). `locked`: the incident and the
    task as the caller locked and read them in this transaction (`lock_task`), not read again.

    The step runs in its incident's own flow, which reconciles as soon as its steps are done (flows/incident.py):
    the incident is not woken, or the flow would be woken by its own step and reconcile once more for nothing."""
    incident, task = lock_task(session, task_id, held=locked)
    if task.status != TaskStatus.pending:
        return task
    now = utcnow()
    task.status = TaskStatus.completed
    task.completed_at = now
    task.completed_by = SYSTEM
    task.outputs = outputs
    session.add(task)
    plan = plan_for_version(session, incident.plan_version_id)
    step = plan.step(task.step_key)
    # A warning step's completion is its draft: `warning.published` is written by the sign-off (core.sharing).
    ledger.append(session, incident=incident, kind=LedgerKind.action_completed, actor=SYSTEM,
                  from_party=task.department, to_party=COMMAND, step_key=task.step_key,
                  idempotency_key=f"{task.id}:completed",
                  handed_over=outputs, details={"action": step.action, "ok": ok}, at=now)
    incident.updated_at = now
    session.add(incident)
    return task


def fail_action(session: Session, *, task_id: str, error: str) -> DepartmentTask:
    """An automated step that failed after its retries: recorded as done-with-failure in the ledger, and the
    command office is told, so the incident goes on and a person follows up."""
    task = finish_action(session, task_id=task_id, outputs={"ok": False, "error": error}, ok=False)
    incident = lock_incident(session, task.incident_id)
    outbox.queue(session, incident=incident, key=f"{task.id}:action-failed", purpose="action_failed",
                 target=COMMAND, payload={"task": {"id": task.id, "step": task.step_key, "error": error}})
    return task
