"""The emergency office's console: open incidents, its own tasks, the form that opens an incident, and an
incident's page (progress, level changes)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.deps import OfficePageUser, Principal, SessionDep
from api.pages import listings
from api.pages import warnings as warning_release
from api.pages.handback import handback_context
from api.pages.rendering import (
    FRAGMENT_HEADER,
    POLL_SECONDS,
    Form,
    Helpers,
    checked_form,
    field,
    page,
    page_router,
    plan_field,
    redirect,
)
from core.desk import sheets
from core.incidents import authority, chase, grading, reads
from core.incidents.models import Incident
from core.incidents.service import COMMAND, change_level, lock_incident, open_incident
from core.maps import layers
from core.plans.store import current_plans, list_types, plan_for_version
from core.platform.errors import BatonError, NotFound, OpenWork
from process_defs.schema import LEVELS

router = page_router()


def _office_console(request: Request, principal: Principal, session: Session, *, values: dict[str, Any] | None,
                    errors: dict[str, str] | None, status_code: int = 200) -> HTMLResponse:
    incidents = reads.list_incidents(session, department=None, status="open", limit=200).items
    tasks = listings.sorted_open(reads.list_tasks(session, department=COMMAND, open_only=True, limit=200).items)
    defaults = {"type": "flood", "level": "IV", "title": "", "description": "", "location_name": "", "lat": "",
                "lon": "", "drill": False, "key": uuid.uuid4().hex}
    task_incidents = listings.incidents_of(session, tasks)
    plans, broken_plans = current_plans()
    return page(request, principal, "office.html", status_code, levels=LEVELS, plans=plans, broken_plans=broken_plans,
                values={**defaults, **(values or {})}, errors=errors or {}, tasks=tasks, task_incidents=task_incidents,
                titles=listings.titles(session, tasks, task_incidents), **listings.incident_context(list(incidents)),
                overdue_sheets=sheets.overdue_sheets(session), map_base=layers.base(),
                **handback_context(request, session))


@router.get("/office")
def office(request: Request, principal: OfficePageUser, session: SessionDep) -> HTMLResponse:
    return _office_console(request, principal, session, values=None, errors=None)


def _float(text: str, low: float, high: float) -> tuple[float | None, bool]:
    """A coordinate from a form: (value, ok)."""
    if not text.strip():
        return None, True
    try:
        value = float(text)
    except ValueError:
        return None, False
    return (value, True) if math.isfinite(value) and low <= value <= high else (None, False)


@router.post("/office/incidents")
def trigger(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values: dict[str, Any] = {name: field(form, name) for name in
                              ("type", "level", "title", "description", "location_name", "lat", "lon", "key")}
    values["drill"] = bool(field(form, "drill"))
    values["title"] = values["title"].strip()
    values["location_name"] = values["location_name"].strip()
    errors: dict[str, str] = {}
    if values["type"] not in list_types():
        errors["type"] = "type"
    if values["level"] not in LEVELS:
        errors["level"] = "level"
    if not values["title"]:
        errors["title"] = "required"
    elif len(values["title"]) > 200:
        errors["title"] = "too_long"
    if len(values["description"]) > 10_000:
        errors["description"] = "too_long"
    if len(values["location_name"]) > 200:
        errors["location_name"] = "too_long"
    lat, lat_ok = _float(values["lat"], -90, 90)
    lon, lon_ok = _float(values["lon"], -180, 180)
    if not lat_ok:
        errors["lat"] = "lat"
    if not lon_ok:
        errors["lon"] = "lon"
    if lat_ok and lon_ok and (lat is None) != (lon is None):
        errors["lon" if lon is None else "lat"] = "both"
    if (lat is not None or lon is not None) and not values["location_name"] and "lat" not in errors:
        errors["location_name"] = "place_needed"
    if errors:
        return _office_console(request, principal, session, values=values, errors=errors, status_code=422)
    # The form's own key (made when it was shown): sending the same form twice opens one incident.
    key = f"{principal.user.id}:page:{values['key'][:64]}" if values["key"] else None
    kwargs: dict[str, Any] = {"type_key": values["type"], "level": values["level"], "title": values["title"],
                              "description": values["description"].strip() or None, "drill": values["drill"],
                              "actor": principal.actor, "idempotency_key": key}
    if values["location_name"]:
        kwargs.update(location_name=values["location_name"], lat=lat, lon=lon)
    try:
        with session.begin_nested():
            opened = open_incident(session, **kwargs)
    except IntegrityError:
        # The same form was sent twice at once: the first one won.
        opened = open_incident(session, **kwargs)
    session.commit()
    return redirect(f"/office/incidents/{opened.incident.id}?done=opened")


def _progress(session: Session, incident: Incident) -> list[dict[str, Any]]:
    return list(reads.timeline(session, incident)["steps"])


# The confirmation on the page an office action leads to (`?done=`).
NOTICES = ("opened", "level", "chased")


def _chased(done: chase.ChaseUp | None) -> dict[str, str]:
    """What the chase-up just made reached, as the ledger recorded it: a person on duty through a channel, else
    only the department's system, else nobody outside Baton."""
    if done is None or not done.unheard:
        return {"zh": "已催办，已通知承办部门", "en": "Chased up: the department has been told"}
    if done.system:
        return {"zh": "已催办，已通知承办部门系统；但没有任何通知渠道联系到值班人员，请电话联系",
                "en": "Chased up: sent to the department's system, but no channel reached anyone on duty: "
                      "call them"}
    return {"zh": "已催办（已记录），但没有任何通知渠道联系到值班人员，请电话联系承办部门",
            "en": "Chased up (recorded), but no channel reached anyone on duty: call the department"}


def _notice(request: Request, session: Session, incident: Incident, done: str | None) -> tuple[str | None, bool]:
    """"已启动事件 FLD-2026-0007", "响应级别已调整为Ⅱ级", in the reader's language, and whether it warns rather
    than confirms (a chase-up that reached nobody on duty through a channel: call them)."""
    if done not in NOTICES:
        return None, False
    principal = getattr(request.state, "principal", None)
    h = Helpers(principal.user.lang if isinstance(principal, Principal) else "zh")
    if done == "chased":
        last = chase.last_chase_up(session, incident.id)
        return h.t(_chased(last)), last is not None and last.unheard
    texts = {"opened": {"zh": f"已启动事件 {incident.code}", "en": f"Incident {incident.code} opened"},
             "level": {"zh": f"响应级别已调整为{h.level_short(incident.level)}",
                       "en": f"Response level changed to {h.level_short(incident.level)}"}}
    return h.t(texts[done]), False


def _incident_page(request: Request, principal: Principal, session: Session, incident: Incident, *,
                   level_error: str | None = None, reason: str = "", proposal_error: str | None = None,
                   needs: list[str] | None = None, status_code: int = 200, notice: str | None = None,
                   chase_error: str | None = None, ordered_by: str = "", notice_warns: bool = False) -> HTMLResponse:
    tasks = listings.sorted_open(
        reads.list_tasks(session, department=COMMAND, incident_id=incident.id, open_only=True).items)
    plan = plan_for_version(session, incident.plan_version_id)
    # Whose verbal order the office may record (a choice, not a user name to type): for the level form, the
    # holders of the positions for any level it offers; for a proposal, of those that may raise to its level.
    order_needs = authority.level_change_needs(plan, incident.level)
    proposals: list[dict[str, Any]] = []
    for p in grading.open_proposals(session, incident.id):
        raise_needs = plan.positions_for("raise", p.level)
        proposals.append({"kind": "proposal", **p.model_dump(), "order_needs": raise_needs,
                          "order_givers": authority.order_givers(session, raise_needs or [])})
    return page(request, principal, "office_incident.html", status_code, incident=incident, plan=plan,
                form_field=lambda step_key, key: plan_field(plan, step_key, key),
                duty=reads.duty_screen(session, incident), notice=notice, notice_warns=notice_warns,
                chase_error=chase_error,
                steps=_progress(session, incident), levels=LEVELS, level_error=level_error, reason=reason,
                proposals=proposals, proposal_error=proposal_error, needs=needs or [],
                order_needs=order_needs, order_givers=authority.order_givers(session, order_needs or []),
                ordered_by=ordered_by,
                awaiting=authority.awaiting(session, incident.id),
                release=warning_release.context(session, incident),
                tasks=tasks, poll_seconds=POLL_SECONDS, flow_run_url=listings.flow_run_url(incident),
                **handback_context(request, session, incident.id))


def _attempt(session: Session, decide: Callable[[], object]) -> tuple[str | None, list[str], int]:
    """Run a level decision: None when done, else the refusal's code, the positions it needs, the status."""
    try:
        decide()
    except NotFound:
        raise
    except BatonError as exc:
        session.rollback()
        needs = exc.details.get("needs", []) if isinstance(exc.details, dict) else []
        return exc.code, list(needs), exc.http_status
    return None, [], 200


@router.get("/office/incidents/{incident_id}")
def office_incident(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                    done: str | None = None) -> Response:
    incident = reads.get_incident(session, incident_id, None)
    notice, warns = _notice(request, session, incident, done)
    return _incident_page(request, principal, session, incident, notice=notice, notice_warns=warns)


@router.get("/office/incidents/{incident_id}/duty")
def office_duty(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep) -> Response:
    """The duty screen's fragment (stages, clock, counters, level, overdue tasks, next deadlines), polled."""
    incident = reads.get_incident(session, incident_id, None)
    return page(request, principal, "_duty.html", incident=incident,
                plan=plan_for_version(session, incident.plan_version_id), duty=reads.duty_screen(session, incident),
                headers={FRAGMENT_HEADER: "1"})


@router.post("/office/tasks/{task_id}/chase-up")
def office_chase_up(task_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                    form: Form) -> Response:
    """Chase up an overdue task (催办): ledgered, sent to the people on duty for it through their channels and to
    the department's system, shown on the task's page; the confirmation says when no channel reached anyone."""
    checked_form(principal, form)
    task = reads.get_task(session, task_id, None)
    try:
        chase.chase_up(session, task_id=task.id, actor=principal.actor)
    except chase.TaskNotOverdue as exc:
        session.rollback()
        incident = reads.get_incident(session, task.incident_id, None)
        return _incident_page(request, principal, session, incident, chase_error=exc.code,
                              status_code=exc.http_status)
    session.commit()
    return redirect(f"/office/incidents/{task.incident_id}?done=chased")


@router.get("/office/incidents/{incident_id}/progress")
def office_progress(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep) -> Response:
    incident = reads.get_incident(session, incident_id, None)
    return page(request, principal, "_progress.html", incident=incident, steps=_progress(session, incident),
                headers={FRAGMENT_HEADER: "1"})


@router.post("/office/incidents/{incident_id}/level")
def office_level(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                 form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    level, reason = field(form, "level"), field(form, "reason").strip()
    problem = None
    if level not in LEVELS:
        problem = "level"
    elif not reason:
        problem = "reason_required"
    elif len(reason) > 2000:
        problem = "too_long"
    elif incident.status != "open":
        problem = "closed"
    needs: list[str] = []
    status = 422
    if problem is None:
        ordered_by = field(form, "ordered_by").strip() or None

        def decide() -> object:
            try:
                return change_level(session, incident_id=incident.id, level=level, by=principal.user, reason=reason,
                                    ordered_by=ordered_by, check_open_work=True,
                                    confirm_open_work=bool(field(form, "confirm_open_work")))
            except OpenWork as exc:
                request.state.open_work = exc.details.get("open") if isinstance(exc.details, dict) else None
                raise

        problem, needs, status = _attempt(session, decide)
    if problem is not None:
        incident = reads.get_incident(session, incident_id, None)
        return _incident_page(request, principal, session, incident, level_error=problem, reason=reason,
                              needs=needs, ordered_by=field(form, "ordered_by").strip(),
                              status_code=409 if problem in ("incident_closed", "closed") else status)
    session.commit()
    return redirect(f"/office/incidents/{incident.id}?done=level")


@router.post("/office/incidents/{incident_id}/proposals/{proposal_id}")
def office_proposal(incident_id: str, proposal_id: str, request: Request, principal: OfficePageUser,
                    session: SessionDep, form: Form) -> Response:
    """Accept a level the plan's grading proposed, or decline it with a reason."""
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    decision, reason = field(form, "decision"), field(form, "reason").strip()
    ordered_by = field(form, "ordered_by").strip() or None
    problem: str | None = None
    needs: list[str] = []
    status = 422
    if decision not in ("accept", "decline"):
        problem = "invalid"
    elif len(reason) > 2000:
        problem = "too_long"
    elif decision == "accept":
        problem, needs, status = _attempt(session, lambda: grading.accept(
            session, incident_id=incident.id, proposal_id=proposal_id, by=principal.user, reason=reason or None,
            ordered_by=ordered_by))
    else:
        problem, needs, status = _attempt(session, lambda: grading.decline(
            session, incident_id=incident.id, proposal_id=proposal_id, by=principal.user, reason=reason,
            ordered_by=ordered_by))
    if problem is not None:
        incident = reads.get_incident(session, incident_id, None)
        return _incident_page(request, principal, session, incident, proposal_error=problem, needs=needs,
                              status_code=status)
    session.commit()
    return redirect(f"/office/incidents/{incident.id}" + ("?done=level" if decision == "accept" else ""))


@router.post("/office/incidents/{incident_id}/authorisations/{authorisation_id}/confirm")
def office_confirm(incident_id: str, authorisation_id: str, request: Request, principal: OfficePageUser,
                   session: SessionDep, form: Form) -> Response:
    """The commander confirms a level decision recorded on their verbal order."""
    checked_form(principal, form)
    incident = lock_incident(session, reads.get_incident(session, incident_id, None).id)
    problem, needs, status = _attempt(session, lambda: authority.confirm(
        session, incident=incident, authorisation_id=authorisation_id, user=principal.user))
    if problem is not None:
        incident = reads.get_incident(session, incident_id, None)
        return _incident_page(request, principal, session, incident, proposal_error=problem, needs=needs,
                              status_code=status)
    session.commit()
    return redirect(f"/office/incidents/{incident.id}")
