"""Prevention on schedules: a campaign's slot creates one inspection task per matching register entry for its owning
department; an inspection's finding opens a rectification (整改) with its deadline; a rectification closes only with
evidence. Reminders and escalation follow the incidents' rule (`core.incidents.deadlines.reminder_at`; escalation to
the department's supervisor, else the emergency office). Every handoff is an entry in its run's ledger chain.

Keyword-only functions that do not commit: the route, page or flow owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.attachments import service as attachments
from core.incidents.deadlines import reminder_at
from core.incidents.models import TaskStatus
from core.incidents.service import COMMAND, SYSTEM
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.outbox import queue as outbox
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import as_utc, utcnow
from core.platform.db import is_postgres
from core.platform.errors import EvidenceRequired, FormInvalid, NotFound, TaskStateConflict
from core.prevention.campaigns import CAMPAIGNS, Campaign
from core.prevention.models import (
    PreventionEvidence,
    PreventionKind,
    PreventionRun,
    PreventionTask,
)
from core.registers.models import REGISTER_TABLES, RegisterEntry, RiskPoint

OPEN = (TaskStatus.assigned.value, TaskStatus.escalated.value)
MAX_TEXT = 4000


def campaign_of(key: str) -> Campaign:
    spec = CAMPAIGNS.get(key)
    if spec is None:
        raise NotFound(f"no prevention campaign '{key[:64]}'")
    return spec




# -- the record: a hash chain per run ----------------------------------------------------------------------------


def run_chain(run_id: str) -> str:
    """The ledger chain of a campaign run."""
    return f"prevention:{run_id}"


def lock_run(session: Session, run_id: str) -> PreventionRun:
    """The run for writing its tasks (a row lock on PostgreSQL; SQLite's write transactions are serialised
    already); its ledger chain's head has a lock of its own."""
    query = select(PreventionRun).where(PreventionRun.id == run_id)
    if is_postgres(session):
        query = query.with_for_update(key_share=True)
    run = session.exec(query.execution_options(populate_existing=True)).first()
    if run is None:
        raise NotFound(f"no prevention run '{run_id}'")
    return run


def record(session: Session, *, run: PreventionRun, kind: LedgerKind, actor: str, from_party: str, to_party: str,
           key: str, at: datetime, task_id: str | None = None, handed_over: Any = None,
           details: dict[str, Any] | None = None) -> LedgerEntry:
    """Append one record to the run's ledger chain (`prevention:<run id>`); a repeated key returns the record
    already written."""
    return ledger.append_to(session, chain=run_chain(run.id), kind=kind, actor=actor, idempotency_key=key,
                            subject=f"task:{task_id}" if task_id else None, from_party=from_party,
                            to_party=to_party, handed_over=handed_over, details=details, at=at)


# -- a campaign's slot -------------------------------------------------------------------------------------------


def matching_entries(session: Session, spec: Campaign, organisation: str | None = None) -> list[RegisterEntry]:
    """The register entries a campaign inspects (of `organisation` only, when given), by code."""
    table = REGISTER_TABLES[spec.register_kind]
    query = select(table)
    if spec.risk_kinds and table is RiskPoint:
        query = query.where(col(RiskPoint.kind).in_([k.value for k in spec.risk_kinds]))
    if organisation is not None:
        query = query.where(col(table.organisation) == organisation)
    return list(session.exec(query.order_by(col(table.code), col(table.id))).all())


@dataclass
class RunOutcome:
    run: PreventionRun
    created: int  # tasks created by this call: 0 when the slot had run already
    tasks: list[PreventionTask] = field(default_factory=list)


def find_run(session: Session, *, campaign: str, slot: datetime) -> PreventionRun | None:
    return session.exec(select(PreventionRun).where(PreventionRun.campaign == campaign,
                                                    PreventionRun.slot == as_utc(slot))).first()


def run_campaign(session: Session, *, campaign: str, slot: datetime, actor: str = SYSTEM,
                 flow_run_id: str | None = None, now: datetime | None = None) -> RunOutcome:
    """Run one campaign's schedule slot: one inspection task per matching register entry, for the organisation that
    owns it, due `inspect_days` after the slot. The run row is unique per (campaign, slot) and is written in the same
    transaction as its tasks, so a slot run twice creates nothing more (a concurrent second run fails on the unique
    key and, retried, finds the first: `flows.prevention.run_slot`)."""
    spec = campaign_of(campaign)
    moment = now or utcnow()
    slot = as_utc(slot)
    existing = find_run(session, campaign=campaign, slot=slot)
    if existing is not None:
        return RunOutcome(existing, 0)
    run = PreventionRun(campaign=campaign, slot=slot, started_at=moment, started_by=actor, flow_run_id=flow_run_id)
    session.add(run)
    session.flush()  # the unique (campaign, slot) holds here
    entries = matching_entries(session, spec)
    record(session, run=run, kind=LedgerKind.prevention_run_started, actor=actor, from_party=COMMAND,
           to_party=COMMAND, key=f"{run.id}:started", at=moment,
           handed_over={"campaign": campaign, "slot": slot.isoformat(), "entries": [e.id for e in entries]},
           details={"campaign": campaign, "slot": slot.isoformat(), "entries": len(entries),
                    "flow_run_id": flow_run_id})
    created = []
    for entry in entries:
        task = PreventionTask(run_id=run.id, campaign=campaign, kind=PreventionKind.inspection,
                              register_kind=spec.register_kind, entry_id=entry.id, entry_code=entry.code,
                              entry_name_zh=entry.name_zh, entry_name_en=entry.name_en,
                              department=entry.organisation, status=TaskStatus.assigned, created_at=moment,
                              assigned_at=moment, due_at=max(slot, moment) + spec.inspect_within)
        session.add(task)
        session.flush()
        record(session, run=run, kind=LedgerKind.inspection_assigned, actor=actor, from_party=COMMAND,
               to_party=task.department, key=f"{task.id}:assigned", at=moment, task_id=task.id,
               handed_over={"entry": entry.id, "code": entry.code},
               details={"campaign": campaign, "entry_code": entry.code, "due_at": task.due_at.isoformat()})
        _tell(session, task=task, purpose="assignment", target=task.department)
        created.append(task)
    run.tasks_created = len(created)
    session.add(run)
    session.flush()
    return RunOutcome(run, len(created), created)


# -- answering, rectifying ---------------------------------------------------------------------------------------


def get_task(session: Session, task_id: str, department: str | None) -> PreventionTask:
    """A task for a reader: `None` reads all (office, managers, admins), a department only its own; anything else
    reads as missing."""
    task = session.get(PreventionTask, task_id[:64])
    if task is None or (department is not None and task.department != department):
        raise NotFound(f"no prevention task '{task_id[:64]}'")
    return task


def _open(session: Session, task_id: str, kind: PreventionKind) -> tuple[PreventionRun, PreventionTask]:
    task = get_task(session, task_id, None)
    run = lock_run(session, task.run_id)
    session.refresh(task)
    if task.kind != kind:
        raise TaskStateConflict(f"this is a {task.kind}, not a {kind.value}")
    if task.status not in OPEN:
        raise TaskStateConflict(f"the {task.kind} is {task.status}")
    return run, task


def _text(key: str, value: str | None, *, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise FormInvalid(f"{key} is required", details=[{"field": key, "code": "required",
                                                             "message": f"{key} is required"}])
        return None
    try:
        # Every path (the API's schema checks it too, the pages and the CLI only here): no control characters, a
        # bounded length; what is stored is shown on pages and sent to the departments' systems.
        return policy.text(text, max_length=MAX_TEXT, multiline=True)
    except policy.Violation as bad:
        raise FormInvalid(f"{key} {bad.message}", details=[{"field": key, "code": bad.reason,
                                                           "message": bad.message}]) from None


def answer_inspection(session: Session, *, task_id: str, actor: str, hazard_found: bool, finding: str | None = None,
                      now: datetime | None = None) -> PreventionTask | None:
    """The inspector's answer. A hazard found (with what was found) opens a rectification for the same department,
    due `rectify_days` from now, and returns it; no hazard returns None."""
    moment = now or utcnow()
    run, task = _open(session, task_id, PreventionKind.inspection)
    text = _text("finding", finding, required=hazard_found)
    task.status = TaskStatus.completed
    task.completed_at = moment
    task.completed_by = actor
    task.hazard_found = hazard_found
    task.finding = text
    session.add(task)
    record(session, run=run, kind=LedgerKind.hazard_found if hazard_found else LedgerKind.inspection_completed,
           actor=actor, from_party=task.department, to_party=COMMAND, key=f"{task.id}:completed", at=moment,
           task_id=task.id, handed_over={"hazard_found": hazard_found, "finding": text},
           details={"entry_code": task.entry_code, "hazard_found": hazard_found})
    if not hazard_found:
        return None
    spec = campaign_of(task.campaign)
    fix = PreventionTask(run_id=run.id, campaign=task.campaign, kind=PreventionKind.rectification,
                         register_kind=task.register_kind, entry_id=task.entry_id, entry_code=task.entry_code,
                         entry_name_zh=task.entry_name_zh, entry_name_en=task.entry_name_en,
                         department=task.department, status=TaskStatus.assigned, parent_id=task.id,
                         created_at=moment, assigned_at=moment, due_at=moment + spec.rectify_within, finding=text)
    session.add(fix)
    session.flush()
    record(session, run=run, kind=LedgerKind.rectification_opened, actor=actor, from_party=COMMAND,
           to_party=fix.department, key=f"{fix.id}:assigned", at=moment, task_id=fix.id,
           handed_over={"inspection": task.id, "finding": text},
           details={"entry_code": task.entry_code, "due_at": fix.due_at.isoformat()})
    _tell(session, task=fix, purpose="assignment", target=fix.department)
    return fix


def add_evidence(session: Session, *, task_id: str, actor: str, filename: str | None,
                 stream: BinaryIO) -> PreventionEvidence:
    """A photo or document (as `core.attachments` takes them: judged by its bytes) sent for an open rectification."""
    _run, task = _open(session, task_id, PreventionKind.rectification)
    written = attachments.write_file(filename=filename, stream=stream)
    row = PreventionEvidence(id=written.id, task_id=task.id, uploaded_by=actor, filename=written.filename,
                             content_type=written.content_type, size=written.size, sha256=written.sha256)
    session.add(row)
    session.flush()
    return row


def evidence_of(session: Session, task_id: str) -> list[PreventionEvidence]:
    return list(session.exec(select(PreventionEvidence).where(PreventionEvidence.task_id == task_id)
                             .order_by(col(PreventionEvidence.created_at))).all())


def close_rectification(session: Session, *, task_id: str, actor: str, measures: str | None,
                        now: datetime | None = None) -> PreventionTask:
    """Close a rectification with what was done; refused (`evidence_required`) until a photo or document was sent
    for it. The record names each file by its SHA-256."""
    moment = now or utcnow()
    run, task = _open(session, task_id, PreventionKind.rectification)
    files = evidence_of(session, task.id)
    if not files:
        raise EvidenceRequired("a rectification is closed with evidence: send a photo or document first")
    text = _text("measures", measures, required=True)
    task.status = TaskStatus.completed
    task.completed_at = moment
    task.completed_by = actor
    task.measures = text
    session.add(task)
    record(session, run=run, kind=LedgerKind.rectification_closed, actor=actor, from_party=task.department,
           to_party=COMMAND, key=f"{task.id}:completed", at=moment, task_id=task.id,
           handed_over={"measures": text, "evidence": {f.id: f.sha256 for f in files}},
           details={"entry_code": task.entry_code, "evidence": len(files)})
    return task


def readable_evidence(session: Session, evidence_id: str, *, reader: str | None) -> PreventionEvidence:
    row = session.get(PreventionEvidence, evidence_id[:64])
    if row is None:
        raise NotFound(f"no evidence '{evidence_id[:64]}'")
    get_task(session, row.task_id, reader)  # NotFound for a department that does not own the task
    return row


# -- reminders and escalation ------------------------------------------------------------------------------------


def _tell(session: Session, *, task: PreventionTask, purpose: str, target: str) -> None:
    """A message to `target`'s own system (when it has one), as an incident task's assignment, reminder and
    escalation go: through the outbox, once per task and purpose, sent by a worker's outbox loop."""
    if not outbox.has_endpoint(target):
        return
    about: dict[str, Any] = {"id": task.id, "kind": task.kind, "campaign": task.campaign,
                             "department": task.department, "entry": {"code": task.entry_code},
                             "due_at": as_utc(task.due_at).isoformat()}
    if target == task.department:
        # Its own task: what its page shows. Another department (an escalation's supervisor) does not read the
        # department's prevention work in Baton, so its system is told that the task is late, not what it says.
        about["entry"] |= {"name_zh": task.entry_name_zh, "name_en": task.entry_name_en}
        about["finding"] = task.finding
    outbox.queue(session, incident=None, key=f"prevention:{task.id}:{purpose}", purpose=purpose, target=target,
                 payload={"prevention_task": about})


def escalation_target(department: str) -> str:
    """Where an overdue prevention task goes: the department's supervisor (the registry's), else the office."""
    found = registry().department(department)
    return found.supervisor if found is not None and found.supervisor else COMMAND


@dataclass
class Swept:
    reminded: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)


def sweep(session: Session, *, now: datetime | None = None, reminder_before: float | None = None) -> Swept:
    """Remind (when `reminder_before` of the time given is left) and escalate (at the deadline) open prevention
    tasks, as the engine does an incident's. Running it again at the same moment does nothing more."""
    moment = now or utcnow()
    result = Swept()
    tasks = session.exec(select(PreventionTask).where(PreventionTask.status == TaskStatus.assigned)
                         .order_by(col(PreventionTask.due_at))).all()
    for task in tasks:
        due = as_utc(task.due_at)
        if moment >= due:
            run = lock_run(session, task.run_id)
            target = escalation_target(task.department)
            task.status = TaskStatus.escalated
            task.escalated_at = moment
            task.escalated_to = target
            session.add(task)
            record(session, run=run, kind=LedgerKind.prevention_escalated, actor=SYSTEM, from_party=task.department,
                   to_party=target, key=f"{task.id}:escalated", at=moment, task_id=task.id,
                   details={"kind": task.kind, "entry_code": task.entry_code, "due_at": due.isoformat()})
            _tell(session, task=task, purpose="escalation", target=target)
            result.escalated.append(task.id)
        elif task.reminded_at is None and moment >= reminder_at(as_utc(task.assigned_at), due, reminder_before):
            task.reminded_at = moment
            session.add(task)
            _tell(session, task=task, purpose="reminder", target=task.department)
            result.reminded.append(task.id)
    session.flush()
    return result


# -- what the prevention page shows ------------------------------------------------------------------------------


def list_tasks(session: Session, *, department: str | None, open_only: bool = False, kind: str | None = None,
               limit: int = 200) -> list[PreventionTask]:
    query = select(PreventionTask)
    if department is not None:
        query = query.where(PreventionTask.department == department)
    if open_only:
        query = query.where(col(PreventionTask.status).in_(OPEN))
    if kind is not None:
        query = query.where(PreventionTask.kind == kind)
    return list(session.exec(query.order_by(col(PreventionTask.due_at), col(PreventionTask.entry_code))
                             .limit(limit)).all())


def overdue(session: Session, *, department: str | None, now: datetime | None = None) -> list[PreventionTask]:
    """Open tasks past their deadline, by the clock (whether or not the sweep has escalated them yet)."""
    moment = now or utcnow()
    query = select(PreventionTask).where(col(PreventionTask.status).in_(OPEN), col(PreventionTask.due_at) < moment)
    if department is not None:
        query = query.where(PreventionTask.department == department)
    return list(session.exec(query.order_by(col(PreventionTask.due_at))).all())


@dataclass
class Unchecked:
    campaign: Campaign
    run: PreventionRun | None  # the season's run (the latest slot); None: the campaign has not run yet
    entries: list[RegisterEntry]


def not_checked(session: Session, *, department: str | None) -> list[Unchecked]:
    """For each campaign, the matching entries (a department's own only) with no inspection answered since its
    latest slot: this season's."""
    found = []
    for spec in CAMPAIGNS.values():
        run = session.exec(select(PreventionRun).where(PreventionRun.campaign == spec.key)
                           .order_by(col(PreventionRun.slot).desc()).limit(1)).first()
        entries = matching_entries(session, spec, department)
        if run is not None:
            season = select(PreventionRun.id).where(PreventionRun.campaign == spec.key,
                                                    col(PreventionRun.slot) >= run.slot)
            checked = set(session.exec(select(PreventionTask.entry_id).where(
                col(PreventionTask.run_id).in_(season), PreventionTask.kind == PreventionKind.inspection,
                PreventionTask.status == TaskStatus.completed)).all())
            entries = [e for e in entries if e.id not in checked]
        found.append(Unchecked(spec, run, entries))
    return found


@dataclass
class DepartmentRectifications:
    department: str
    open: int = 0
    overdue: int = 0
    closed: int = 0
    tasks: list[PreventionTask] = field(default_factory=list)  # the open ones


def rectifications_by_department(session: Session, *, department: str | None,
                                 now: datetime | None = None) -> list[DepartmentRectifications]:
    moment = now or utcnow()
    query = select(PreventionTask).where(PreventionTask.kind == PreventionKind.rectification)
    if department is not None:
        query = query.where(PreventionTask.department == department)
    rows: dict[str, DepartmentRectifications] = {}
    for task in session.exec(query.order_by(col(PreventionTask.due_at))).all():
        row = rows.setdefault(task.department, DepartmentRectifications(task.department))
        if task.status in OPEN:
            row.open += 1
            row.overdue += as_utc(task.due_at) < moment
            row.tasks.append(task)
        elif task.status == TaskStatus.completed:
            row.closed += 1
    return [rows[k] for k in sorted(rows)]


def count_open(session: Session, *, department: str) -> int:
    return int(session.exec(select(func.count()).select_from(PreventionTask).where(
        PreventionTask.department == department, col(PreventionTask.status).in_(OPEN))).one())
