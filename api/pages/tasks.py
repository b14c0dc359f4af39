"""A department's inbox and its tasks' pages: read a task, acknowledge it, complete its form, hand it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.datastructures import FormData

from api.deps import ActingPageUser, PageUser, Principal, SessionDep
from api.errors import ApiError
from api.pages import listings
from api.pages import warnings as warning_release
from api.pages.rendering import FRAGMENT_HEADER, POLL_SECONDS, Form, checked_form, field, page, page_router, redirect
from api.pages.task_form import field_errors, form_values, parse_outputs, take_uploads
from core.attachments import service as attachments
from core.desk import instructions
from core.incidents import authority, chase, handoffs, reads
from core.incidents.authority import PositionRequired
from core.incidents.models import DeclineCode, DepartmentTask, Incident, TaskStatus
from core.incidents.permissions import held_for, may_act
from core.incidents.service import COMMAND
from core.maps import layers
from core.plans.forms import check_decision, validate_outputs
from core.plans.store import plan_for_version
from core.platform.clock import as_utc, utcnow
from core.platform.errors import FormInvalid, OpenWork, TaskStateConflict
from core.platform.settings import get_settings
from core.prevention import service as prevention
from core.registers.columns import KIND_NAMES, RISK_KIND_NAMES
from core.users import rosters
from process_defs.schema import FieldType, Step

ACTIONABLE = (TaskStatus.assigned, TaskStatus.acknowledged, TaskStatus.escalated)

router = page_router()
REGISTER_NAMES = {kind.value: {"zh": zh, "en": en} for kind, (zh, en) in KIND_NAMES.items()}
RISK_NAMES = {key: {"zh": zh, "en": en} for key, (zh, en) in RISK_KIND_NAMES.items()}


def _inbox_context(session: Session, principal: Principal) -> dict[str, Any]:
    department = principal.acts_for
    assert department is not None
    open_tasks = listings.sorted_open(reads.list_tasks(session, department=department, open_only=True, limit=500).items)
    done = reads.list_tasks(session, department=department, status=TaskStatus.completed, limit=500).items
    done = sorted(done, key=lambda t: t.completed_at or t.created_at, reverse=True)[:20]
    incidents = listings.incidents_of(session, open_tasks + done)
    # The department's inspections and rectifications (core.prevention keeps its own tasks): a section of their own.
    prevention_tasks = prevention.list_tasks(session, department=department, open_only=True, limit=300)
    now = utcnow()
    return {"prevention_tasks": prevention_tasks,
            "prevention_late": {t.id for t in prevention_tasks if as_utc(t.due_at) < now},
            "department": department, "open_tasks": open_tasks, "done_tasks": done, "task_incidents": incidents,
            "duty_desk": rosters.desk(session, department=department, at=utcnow()),
            "to_sign": warning_release.to_sign(session, principal),
            "titles": listings.titles(session, open_tasks + done, incidents), "poll_seconds": POLL_SECONDS}


@router.get("/inbox")
def inbox(request: Request, principal: ActingPageUser, session: SessionDep, done: str | None = None) -> HTMLResponse:
    # Leaders' instructions' tasks (core.desk keeps its own): a section of their own with a form each, outside
    # the polled list so that a note being typed is not replaced by the next poll (as the warnings to sign).
    department = principal.acts_for
    assert department is not None
    return page(request, principal, "inbox.html", signed=done == "signed",
                reported=done == "instruction",
                instruction_tasks=instructions.inbox(session, department=department),
                **_inbox_context(session, principal))


@router.get("/inbox/list")
def inbox_list(request: Request, principal: ActingPageUser, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "_inbox_list.html", headers={FRAGMENT_HEADER: "1"},
                **_inbox_context(session, principal))


def _readable_task(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    # Another department's task reads as missing (404), as in the API.
    return reads.get_task(session, task_id, None if principal.sees_all else principal.user.department)


def _held(session: Session, principal: Principal, task: DepartmentTask) -> list[str]:
    """The user's positions, when they matter: for a task addressed or referred to a position."""
    return held_for(session, principal.user, task)


def _actable_task(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    task = _readable_task(session, principal, task_id)
    if not may_act(principal.user, task, _held(session, principal, task)):
        raise ApiError(403, "forbidden", f"only {task.department} can act on this task")
    return task


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _task_page(request: Request, principal: Principal, session: Session, task: DepartmentTask, *,
               values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
               error_params: dict[str, dict[str, Any]] | None = None,
               problem: str | None = None, reason: str = "", notice: str | None = None,
               open_work: list[dict[str, Any]] | None = None, status_code: int = 200) -> HTMLResponse:
    detail = reads.task_detail(session, task, user=principal.user)
    step: Step = detail["step"]
    plan = plan_for_version(session, detail["incident"].plan_version_id)
    # Each shared value with its field's definition, to show choices by label, times locally, units.
    inputs = [{**item, "fields": [{**fld, "form_field": plan.step(item["step"]).field(fld["key"])}
                                  for fld in item["fields"]]} for item in detail["inputs"]]
    acting = task.kind == "human" and may_act(principal.user, task, _held(session, principal, task))
    open_ = task.status in ACTIONABLE
    # A decision of the level (the warning gate, ending the response) may be recorded on a leader's verbal order:
    # the office chooses among those whose order it may record, never types a user name.
    order_needs = authority.decision_needs(plan, task.step_key, detail["incident"].level) if acting and open_ \
        else None
    order_givers = authority.order_givers(session, order_needs) if order_needs else []
    return page(request, principal, "task.html", status_code, task=task, incident=detail["incident"], step=step,
                inputs=inputs, fields=list(step.form), values=values if values is not None
                else form_values(step, task.outputs or (detail["prefill"] if open_ else {})),
                registers=detail["registers"], registers_at=_moment((detail["registers"] or {}).get("at")),
                register_names=REGISTER_NAMES, risk_kinds=RISK_NAMES,
                errors=errors or {}, error_params=error_params or {},
                problem=problem, reason=reason,
                can_act=acting and open_,
                can_ack=acting and open_ and task.acknowledged_at is None
                and task.status in (TaskStatus.assigned, TaskStatus.escalated),
                overdue=reads.is_overdue(task), notice=notice, plan_gate=plan.stages.warning.gate,
                takes_files=attachments.takes_files(step),
                map_base=layers.base() if any(f.type is FieldType.location for f in step.form) else None,
                attachment_limit=f"{get_settings().attachment_max_bytes / 1024 / 1024:g} MB",
                chased=chase.chase_ups(session, task),
                # The office does not hand a task back to itself.
                may_hand_back=task.department != COMMAND,
                open_work=open_work, task_history=reads.attempts(session, task), order_needs=order_needs,
                order_givers=order_givers)


@router.get("/tasks/{task_id}")
def task_view(task_id: str, request: Request, principal: PageUser, session: SessionDep,
              done: str | None = None) -> HTMLResponse:
    task = _readable_task(session, principal, task_id)
    notice = done if done in ("acknowledged", "completed", "handed_back", "declined") else None
    return _task_page(request, principal, session, task, notice=notice)


@router.post("/tasks/{task_id}/acknowledge")
def task_acknowledge(task_id: str, request: Request, principal: PageUser, session: SessionDep,
                     form: Form) -> Response:
    checked_form(principal, form)
    task = _actable_task(session, principal, task_id)
    try:
        handoffs.acknowledge(session, task_id=task.id, actor=principal.actor)
    except TaskStateConflict:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id),
                          problem="conflict", status_code=409)
    session.commit()
    return redirect(f"/tasks/{task.id}?done=acknowledged")

# A refused file: 415 for a kind of file not taken, 413 for one too large, 422 for an empty one.
UPLOAD_STATUS = {"attachment_type_refused": 415, "attachment_too_large": 413, "attachment_empty": 422}

# What the posted task form carries besides its fields' values: never echoed into the confirmation's hidden fields.
_NOT_ECHOED = frozenset({"csrf", "action"})


@router.post("/tasks/{task_id}/complete")
def task_complete(task_id: str, request: Request, principal: PageUser, session: SessionDep,
                  form: Form) -> Response:
    """Complete a task from its form, in two steps on the page: `action=review` checks the answers and shows them
    to confirm (nothing is stored), `action=edit` goes back to the form with them, and `action=confirm` (or a
    post without an action) completes the task."""
    checked_form(principal, form)
    task = _actable_task(session, principal, task_id)
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    plan = plan_for_version(session, incident.plan_version_id)
    step = plan.step(task.step_key)
    if attachments.takes_files(step):
        # Files chosen are stored now, as the sender's uploads for this task, and named in their fields: the
        # confirmation (or the form shown again) carries the names on, never the files.
        form, refused, refused_params = take_uploads(session, task=task, step=step, actor=principal.actor, form=form)
        session.commit()
        if refused:
            _, raw = parse_outputs(step, form)
            raw.update({"note": field(form, "note"), "ordered_by": field(form, "ordered_by")})
            status = UPLOAD_STATUS.get(next(iter(refused.values())), 422)
            return _task_page(request, principal, session, task, values=raw, errors=refused,
                              error_params=refused_params, problem="invalid", status_code=status)
    outputs, raw = parse_outputs(step, form)
    note = field(form, "note").strip() or None
    ordered_by = field(form, "ordered_by").strip() or None
    raw.update({"note": note or "", "ordered_by": ordered_by or ""})
    action = field(form, "action")
    if action == "edit":
        return _task_page(request, principal, session, task, values=raw)
    try:
        if note is not None and len(note) > 10_000:
            raise FormInvalid("note too long", details=[])
        if action == "review":
            clean = validate_outputs(step, outputs)
            check_decision(plan, step, clean)
            attachments.check_references(session, task=task, step=step, outputs=clean)
            return _confirm_page(request, principal, session, task, step, clean, form, note=note,
                                 ordered_by=ordered_by)
        confirmed = bool(field(form, "confirm_open_work")) and field(form, "open_work_reason").strip()
        handoffs.complete(session, task_id=task.id, actor=principal.actor, by=principal.user, outputs=outputs,
                          note=note, ordered_by=ordered_by, check_open_work=True,
                          open_work_reason=field(form, "open_work_reason").strip()[:2000] if confirmed else None)
    except OpenWork as exc:
        session.rollback()
        details = exc.details if isinstance(exc.details, dict) else {}
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          problem="open_work", open_work=list(details.get("open", [])), status_code=409)
    except PositionRequired:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          problem="position_required", status_code=403)
    except FormInvalid as exc:
        session.rollback()
        errors, general, params = field_errors(step, exc.details)
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          errors=errors, error_params=params, problem=general or "invalid", status_code=422)
    except TaskStateConflict:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          problem="conflict", status_code=409)
    session.commit()
    return redirect(f"/tasks/{task.id}?done=completed")


def _confirm_page(request: Request, principal: Principal, session: Session, task: DepartmentTask, step: Step,
                  clean: dict[str, Any], form: FormData, *, note: str | None, ordered_by: str | None) -> HTMLResponse:
    """The answers as they will be stored, to confirm; the posted form rides along in hidden fields, so that
    confirming sends it again (checked again) and editing shows it again, with no script and nothing stored."""
    if task.status not in ACTIONABLE:
        raise TaskStateConflict(f"task {task.id} is {task.status}")
    detail = reads.task_detail(session, task)
    answers = [{"field": f, "value": clean.get(f.key)} for f in step.form]
    hidden = [(name, value) for name, value in form.multi_items()
              if name not in _NOT_ECHOED and isinstance(value, str)]
    return page(request, principal, "task_confirm.html", task=task, incident=detail["incident"], step=step,
                answers=answers, hidden=hidden, note=note, ordered_by=ordered_by)


@router.post("/tasks/{task_id}/decline")
def task_decline(task_id: str, request: Request, principal: PageUser, session: SessionDep,
                 form: Form) -> Response:
    """Decline the task as not the department's own (退单), with a reason code and an explanation."""
    checked_form(principal, form)
    task = _actable_task(session, principal, task_id)
    reason = field(form, "reason").strip()
    code = field(form, "reason_code")
    if code not in {c.value for c in DeclineCode}:
        return _task_page(request, principal, session, task, problem="choice", reason=reason, status_code=422)
    if not reason or len(reason) > 2000:
        return _task_page(request, principal, session, task, problem="reason_required" if not reason else "too_long",
                          reason=reason, status_code=422)
    try:
        handoffs.decline(session, task_id=task.id, actor=principal.actor, code=code, reason=reason)
    except TaskStateConflict:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id),
                          problem="conflict", reason=reason, status_code=409)
    session.commit()
    return redirect(f"/tasks/{task.id}?done=declined")


@router.post("/tasks/{task_id}/hand-back")
def task_hand_back(task_id: str, request: Request, principal: PageUser, session: SessionDep,
                   form: Form) -> Response:
    checked_form(principal, form)
    task = _actable_task(session, principal, task_id)
    reason = field(form, "reason").strip()
    if not reason or len(reason) > 2000:
        return _task_page(request, principal, session, task, problem="reason_required" if not reason else "too_long",
                          reason=reason, status_code=422)
    try:
        handoffs.hand_back(session, task_id=task.id, actor=principal.actor, reason=reason)
    except TaskStateConflict:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id),
                          problem="conflict", reason=reason, status_code=409)
    session.commit()
    return redirect(f"/tasks/{task.id}?done=handed_back")

