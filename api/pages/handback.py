"""The office's hand-back alerts on its pages (office home and incident page, `_handback_alerts.html`), and its
three choices on them: reassign to another department, take the task over, ask a leader. The same services as
`POST /api/tasks/{id}/reassign|take-over|ask-leader`; the engine then assigns the next attempt."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from api.deps import OfficePageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page_router, redirect
from core.incidents import alerts, reads
from core.incidents.models import DepartmentTask, Incident
from core.plans.store import plan_for_version, registry
from core.platform.errors import BatonError, NotFound

router = page_router()

CHOICES = ("reassign", "take-over", "ask-leader")


def handback_context(request: Request, session: Session, incident_id: str | None = None) -> dict[str, Any]:
    """What `_handback_alerts.html` shows: the open alerts (of one incident, or all), the departments a task may
    go to, the leaders each incident's plan names, and a refused choice of this request."""
    found = alerts.open_alerts(session, incident_id=incident_id)
    incidents: dict[str, Incident] = {}
    items: list[dict[str, Any]] = []
    for alert in found:
        incident = incidents.get(alert.incident_id) or session.get(Incident, alert.incident_id)
        if incident is None:
            continue
        incidents[incident.id] = incident
        plan = plan_for_version(session, incident.plan_version_id)
        items.append({"alert": alert, "incident": incident, "title": plan.step(alert.step_key).title,
                      "leaders": alerts.leaders_to_ask(session, incident),
                      "route_due": alerts.route_due(alert, incident.clock_speed)})
    reg = registry()
    departments = [(key, d.name) for key in alerts.departments_to_route(session)
                   if (d := reg.department(key)) is not None] if items else []
    error = getattr(request.state, "handback_error", None)
    return {"handback_alerts": items, "handback_departments": departments,
            "handback_error": error, "handback_here": incident_id,
            "open_work": getattr(request.state, "open_work", None)}


def _task(session: Session, task_id: str) -> DepartmentTask:
    task = session.get(DepartmentTask, task_id)
    if task is None:
        raise NotFound(f"no task '{task_id}'")
    return task


def _choose(request: Request, principal: Principal, session: Session, form: Any, task_id: str,
            choice: str) -> Response:
    checked_form(principal, form)
    task = _task(session, task_id)
    reason = field(form, "reason").strip()
    back_home = field(form, "from") == "office"
    try:
        if not reason or len(reason) > 2000:
            raise BatonError("reason", details={"reason": "reason_required" if not reason else "too_long"})
        if choice == "reassign":
            alerts.reassign(session, task_id=task.id, department=field(form, "department").strip(),
                            actor=principal.actor, reason=reason)
        elif choice == "take-over":
            alerts.take_over(session, task_id=task.id, actor=principal.actor, reason=reason)
        else:
            alerts.ask_leader(session, task_id=task.id, position=field(form, "position").strip(),
                              actor=principal.actor, reason=reason)
    except NotFound:
        raise
    except BatonError as exc:
        from api.pages import office  # the office's pages show these alerts

        session.rollback()
        details = exc.details if isinstance(exc.details, dict) else {}
        code = str(details.get("reason")) if exc.code == "baton_error" else exc.code
        request.state.handback_error = {"task_id": task.id, "code": code}
        status = 422 if exc.code in ("baton_error", "reason_required", "target_invalid") else exc.http_status
        if back_home:
            return office._office_console(request, principal, session, values=None, errors=None, status_code=status)
        incident = reads.get_incident(session, task.incident_id, None)
        return office._incident_page(request, principal, session, incident, status_code=status)
    session.commit()
    return redirect("/office" if back_home else f"/office/incidents/{task.incident_id}")


def _choice_route(choice: str) -> None:
    def handler(task_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                form: Form) -> Response:
        return _choose(request, principal, session, form, task_id, choice)

    handler.__name__ = f"office_{choice.replace('-', '_')}"
    router.post(f"/office/tasks/{{task_id}}/{choice}")(handler)


for _choice in CHOICES:
    _choice_route(_choice)
