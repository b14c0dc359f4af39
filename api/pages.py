"""Server-rendered pages for the emergency office, departments and managers.

They call the same core services as the JSON API (never the API over HTTP), keep a session in an HttpOnly
cookie, check a CSRF token on every POST, render through the one Jinja environment (`core.platform.templating`) in
the reader's language, and are built for a phone as much as for a desk.
"""

from __future__ import annotations

import hmac
import math
import secrets
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.deps import SESSION_COOKIE, Principal, SessionDep, check_csrf, csrf_token
from api.errors import ApiError
from core.incidents import handoffs, reads
from core.incidents.models import DepartmentTask, Incident, TaskStatus
from core.incidents.service import COMMAND, change_level, open_incident
from core.learning.timeline_svg import render_timeline
from core.plans.store import current_plans, list_types, plan_for_version, registry
from core.plans.wording import Wording
from core.platform.clock import utcnow
from core.platform.errors import BatonError, FormInvalid, TaskStateConflict
from core.platform.settings import get_settings
from core.platform.templating import render
from core.users.models import Role
from core.users.service import (
    AccountLocked,
    AuthenticationFailed,
    authenticate,
    issue_token,
    revoke,
    set_lang,
    user_for_token,
)
from process_defs.schema import LEVELS, FieldType, Step

LOGIN_COOKIE = "baton_login"
FRAGMENT_HEADER = "X-Baton-Fragment"
POLL_SECONDS = 3
ACTIONABLE = (TaskStatus.assigned, TaskStatus.acknowledged, TaskStatus.escalated)


# -- plumbing -----------------------------------------------------------------------------------------
class LoginRequired(Exception):
    def __init__(self, next_url: str | None) -> None:
        super().__init__("login required")
        self.next_url = next_url


class PageRoute(APIRoute):
    """Pages answer in HTML: no session → the login form; refusals and domain errors → an error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                target = "/login" + (f"?next={quote(exc.next_url, safe='/')}" if exc.next_url else "")
                return RedirectResponse(target, status_code=303)
            except (BatonError, ApiError) as exc:
                db = getattr(request.state, "db", None)
                if isinstance(db, Session):
                    await run_in_threadpool(db.rollback)
                status = exc.http_status if isinstance(exc, BatonError) else exc.status
                return error_page(request, status, exc.code)

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def error_page(request: Request, status: int, code: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    lang = principal.user.lang if isinstance(principal, Principal) else _query_lang(request)
    html = render("pages/error.html", lang, **_base_context(request.url.path, principal, lang), status=status,
                  code=code)
    return HTMLResponse(html, status_code=status)


def too_large_page(path: str, lang: str) -> HTMLResponse:
    """The page a browser gets when a form it sent is over the body limit (before any session is read)."""
    return HTMLResponse(render("pages/error.html", lang, **_base_context(path, None, lang), status=413,
                               code="body_too_large"), status_code=413)


def _query_lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "zh"


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`) is followed after login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


class Helpers(Wording):
    """What page templates need: `Wording` with the short times of a console, and overdue marks."""

    def __init__(self, lang: str) -> None:
        super().__init__(lang)

    def when(self, moment: datetime | None, seconds: bool = False) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")

    def overdue(self, task: DepartmentTask) -> bool:
        return reads.is_overdue(task)


def _base_context(path: str, principal: Principal | None, lang: str) -> dict[str, Any]:
    return {"user": principal.user if principal else None,
            "csrf": csrf_token(principal.token.id) if principal else "",
            "path": path, "h": Helpers(lang), "notice": None, "now": utcnow()}


def page(request: Request, principal: Principal, name: str, status_code: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    lang = principal.user.lang
    html = render(f"pages/{name}", lang, **{**_base_context(request.url.path, principal, lang), **context})
    return HTMLResponse(html, status_code=status_code, headers=headers)


def page_principal(request: Request, session: SessionDep) -> Principal:
    request.state.db = session
    token = request.cookies.get(SESSION_COOKIE)
    found = user_for_token(session, token, kind="session") if token else None
    if found is None:
        target = None
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    principal = Principal(user=found[0], token=found[1])
    request.state.principal = principal
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


async def form_data(request: Request) -> FormData:
    return await request.form()


Form = Annotated[FormData, Depends(form_data)]


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def checked_form(principal: Principal, form: FormData) -> None:
    """Every form carries the session's CSRF token."""
    check_csrf(principal, field(form, "csrf") or None)


def need(principal: Principal, *roles: Role) -> None:
    """Pages a role may not see read as missing."""
    if principal.role not in {r.value for r in roles}:
        raise ApiError(404, "not_found", "no such page")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login, logout, language ------------------------------------------------------------------------
def _login_page(request: Request, lang: str, nonce: str, *, error: str | None = None, username: str = "",
                next_url: str = "/", status_code: int = 200) -> HTMLResponse:
    html = render("pages/login.html", lang, **_base_context(request.url.path, None, lang), login_csrf=csrf_token(
        f"login:{nonce}"), error=error, username=username, next_url=next_url)
    response = HTMLResponse(html, status_code=status_code)
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="lax", secure=get_settings().cookie_secure,
                        path="/login", max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, _query_lang(request), nonce, next_url=_safe_next(next))


@router.post("/login")
def login(request: Request, session: SessionDep, form: Form) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    given = field(form, "csrf")
    if not nonce or not given or not hmac.compare_digest(csrf_token(f"login:{nonce}"), given):
        raise ApiError(403, "csrf_failed", "the login form is out of date; reload it")
    lang = "en" if field(form, "lang") == "en" else "zh"
    username, next_url = field(form, "username").strip(), _safe_next(field(form, "next"))
    try:
        user = authenticate(session, username=username, password=field(form, "password"),
                            source=request.client.host if request.client else "")
    except (AuthenticationFailed, AccountLocked) as exc:
        session.commit()  # the failure count and the audit entry stay, though the login fails
        locked = isinstance(exc, AccountLocked)
        return _login_page(request, lang, nonce, error="locked" if locked else "failed", username=username,
                           next_url=next_url, status_code=429 if locked else 401)
    # A new session token on every login; the one this browser held before is revoked.
    previous = request.cookies.get(SESSION_COOKIE)
    found = user_for_token(session, previous, kind="session") if previous else None
    if found is not None:
        revoke(session, token_id=found[1].id, actor=f"user:{found[0].username}")
    settings = get_settings()
    ttl = timedelta(hours=settings.token_hours)
    issued = issue_token(session, user=user, kind="session", ttl=ttl)
    session.commit()
    response = redirect(next_url)
    response.set_cookie(SESSION_COOKIE, issued.token, max_age=int(ttl.total_seconds()), httponly=True,
                        samesite="lax", secure=settings.cookie_secure, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(principal: PagePrincipal, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    revoke(session, token_id=principal.token.id, actor=principal.actor)
    session.commit()
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=get_settings().cookie_secure)
    return response


@router.post("/lang")
def change_lang(principal: PagePrincipal, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    set_lang(session, user_id=principal.user.id, lang=field(form, "lang"))
    session.commit()
    return redirect(_safe_next(field(form, "next")))


@router.get("/")
def home(principal: PagePrincipal) -> Response:
    if principal.role == Role.department:
        return redirect("/inbox")
    if principal.role == Role.manager:
        return redirect("/review")
    return redirect("/office")


# -- office console ---------------------------------------------------------------------------------
def _plans() -> list[tuple[str, Any]]:
    return current_plans()[0]


def _incident_context(session: Session, incidents: list[Incident]) -> dict[str, Any]:
    plans = {key: plan for key, plan in _plans()}
    return {"plan_names": {key: plan.name for key, plan in plans.items()},
            "incidents": incidents}


def _office_console(request: Request, principal: Principal, session: SessionDep, *, values: dict[str, Any] | None,
                    errors: dict[str, str] | None, status_code: int = 200) -> HTMLResponse:
    incidents = reads.list_incidents(session, department=None, status="open", limit=200).items
    tasks = _sorted_open(reads.list_tasks(session, department=COMMAND, open_only=True, limit=200).items)
    defaults = {"type": "flood", "level": "IV", "title": "", "description": "", "location_name": "", "lat": "",
                "lon": "", "drill": False, "key": uuid.uuid4().hex}
    task_incidents = _incidents_of(session, tasks)
    plans, broken_plans = current_plans()
    return page(request, principal, "office.html", status_code, levels=LEVELS, plans=plans, broken_plans=broken_plans,
                values={**defaults, **(values or {})}, errors=errors or {}, tasks=tasks, task_incidents=task_incidents,
                titles=_titles(session, tasks, task_incidents), **_incident_context(session, list(incidents)))


@router.get("/office")
def office(request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    need(principal, Role.office, Role.admin)
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
def trigger(request: Request, principal: PagePrincipal, session: SessionDep, form: Form) -> Response:
    need(principal, Role.office, Role.admin)
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
    return redirect(f"/office/incidents/{opened.incident.id}")


def _progress(session: Session, incident: Incident) -> list[dict[str, Any]]:
    return list(reads.timeline(session, incident)["steps"])


def _incident_page(request: Request, principal: Principal, session: Session, incident: Incident, *,
                   level_error: str | None = None, reason: str = "", status_code: int = 200) -> HTMLResponse:
    tasks = _sorted_open(reads.list_tasks(session, department=COMMAND, incident_id=incident.id, open_only=True).items)
    plan = plan_for_version(session, incident.plan_version_id)
    return page(request, principal, "office_incident.html", status_code, incident=incident, plan=plan,
                steps=_progress(session, incident), levels=LEVELS, level_error=level_error, reason=reason,
                tasks=tasks, poll_seconds=POLL_SECONDS, flow_run_url=_flow_run_url(incident))


@router.get("/office/incidents/{incident_id}")
def office_incident(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> Response:
    need(principal, Role.office, Role.admin)
    incident = reads.get_incident(session, incident_id, None)
    return _incident_page(request, principal, session, incident)


@router.get("/office/incidents/{incident_id}/progress")
def office_progress(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> Response:
    need(principal, Role.office, Role.admin)
    incident = reads.get_incident(session, incident_id, None)
    return page(request, principal, "_progress.html", incident=incident, steps=_progress(session, incident),
                headers={FRAGMENT_HEADER: "1"})


@router.post("/office/incidents/{incident_id}/level")
def office_level(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
                 form: Form) -> Response:
    need(principal, Role.office, Role.admin)
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
    if problem is None:
        try:
            change_level(session, incident_id=incident.id, level=level, actor=principal.actor, reason=reason)
        except BatonError as exc:
            session.rollback()
            problem = exc.code
    if problem is not None:
        incident = reads.get_incident(session, incident_id, None)
        return _incident_page(request, principal, session, incident, level_error=problem, reason=reason,
                              status_code=422 if problem != "incident_closed" else 409)
    session.commit()
    return redirect(f"/office/incidents/{incident.id}")


# -- department inbox and tasks ---------------------------------------------------------------------
def _sorted_open(tasks: list[DepartmentTask]) -> list[DepartmentTask]:
    """Overdue first, then by due time (no due time last)."""
    far = datetime.max.replace(tzinfo=ZoneInfo("UTC"))
    return sorted(tasks, key=lambda t: (not reads.is_overdue(t), t.due_at is None, t.due_at or far))


def _incidents_of(session: Session, tasks: list[DepartmentTask]) -> dict[str, Incident]:
    out: dict[str, Incident] = {}
    for task in tasks:
        if task.incident_id not in out:
            incident = session.get(Incident, task.incident_id)
            if incident is not None:
                out[incident.id] = incident
    return out


def _titles(session: Session, tasks: list[DepartmentTask], incidents: Mapping[str, Incident]) -> dict[str, Any]:
    titles: dict[str, Any] = {}
    for task in tasks:
        incident = incidents.get(task.incident_id)
        if incident is not None:
            titles[task.id] = plan_for_version(session, incident.plan_version_id).step(task.step_key).title
    return titles


def _inbox_context(session: Session, principal: Principal) -> dict[str, Any]:
    department = principal.acts_for
    assert department is not None
    open_tasks = _sorted_open(reads.list_tasks(session, department=department, open_only=True, limit=500).items)
    done = reads.list_tasks(session, department=department, status=TaskStatus.completed, limit=500).items
    done = sorted(done, key=lambda t: t.completed_at or t.created_at, reverse=True)[:20]
    incidents = _incidents_of(session, open_tasks + done)
    return {"department": department, "open_tasks": open_tasks, "done_tasks": done, "task_incidents": incidents,
            "titles": _titles(session, open_tasks + done, incidents), "poll_seconds": POLL_SECONDS}


@router.get("/inbox")
def inbox(request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    need(principal, Role.department, Role.office, Role.admin)
    return page(request, principal, "inbox.html", **_inbox_context(session, principal))


@router.get("/inbox/list")
def inbox_list(request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    need(principal, Role.department, Role.office, Role.admin)
    return page(request, principal, "_inbox_list.html", headers={FRAGMENT_HEADER: "1"},
                **_inbox_context(session, principal))


def _readable_task(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    # Another department's task reads as missing (404), as in the API.
    return reads.get_task(session, task_id, None if principal.sees_all else principal.user.department)


def _actable_task(session: Session, principal: Principal, task_id: str) -> DepartmentTask:
    task = _readable_task(session, principal, task_id)
    if principal.acts_for is None or task.department != principal.acts_for:
        raise ApiError(403, "forbidden", f"only {task.department} can act on this task")
    return task


def _task_page(request: Request, principal: Principal, session: Session, task: DepartmentTask, *,
               values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
               problem: str | None = None, reason: str = "", notice: str | None = None,
               status_code: int = 200) -> HTMLResponse:
    detail = reads.task_detail(session, task)
    step: Step = detail["step"]
    plan = plan_for_version(session, detail["incident"].plan_version_id)
    # Each shared value with its field's definition, to show choices by label, times locally, units.
    inputs = [{**item, "fields": [{**fld, "form_field": plan.step(item["step"]).field(fld["key"])}
                                  for fld in item["fields"]]} for item in detail["inputs"]]
    may_act = task.kind == "human" and task.department == principal.acts_for
    open_ = task.status in ACTIONABLE
    return page(request, principal, "task.html", status_code, task=task, incident=detail["incident"], step=step,
                inputs=inputs, fields=list(step.form), values=values if values is not None
                else _form_values(step, task.outputs or {}), errors=errors or {}, problem=problem, reason=reason,
                can_act=may_act and open_,
                can_ack=may_act and open_ and task.acknowledged_at is None
                and task.status in (TaskStatus.assigned, TaskStatus.escalated),
                overdue=reads.is_overdue(task), notice=notice)


@router.get("/tasks/{task_id}")
def task_view(task_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
              done: str | None = None) -> HTMLResponse:
    task = _readable_task(session, principal, task_id)
    notice = done if done in ("acknowledged", "completed", "handed_back") else None
    return _task_page(request, principal, session, task, notice=notice)


@router.post("/tasks/{task_id}/acknowledge")
def task_acknowledge(task_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
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


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # left as text: the form check names it
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _local_datetime(text: str) -> str:
    """A `datetime-local` value (no offset) in Baton's time zone, as ISO 8601 with its offset (+08:00)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone())
    return parsed.isoformat(timespec="seconds")


def parse_outputs(step: Step, form: FormData) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step's outputs from the posted form, and the raw values to show again if they are refused."""
    outputs: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for item in step.form:
        name = f"f_{item.key}"
        if item.type is FieldType.boolean:
            raw[name] = bool(field(form, name))
            outputs[item.key] = raw[name]
        elif item.type is FieldType.choice and item.multiple:
            chosen = [v for v in form.getlist(name) if isinstance(v, str) and v]
            raw[name] = chosen
            outputs[item.key] = chosen
        elif item.type is FieldType.location:
            place, lat_text, lon_text = (field(form, f"{name}_{p}").strip() for p in ("name", "lat", "lon"))
            raw.update({f"{name}_name": place, f"{name}_lat": lat_text, f"{name}_lon": lon_text})
            if place or lat_text or lon_text:
                location: dict[str, Any] = {}
                if place:
                    location["name"] = place
                for part, text in (("lat", lat_text), ("lon", lon_text)):
                    if text:
                        location[part] = _number(text)
                outputs[item.key] = location
        elif item.type is FieldType.attachment and item.multiple:
            text = field(form, name)
            raw[name] = text
            refs = [line.strip() for line in text.splitlines() if line.strip()]
            if refs:
                outputs[item.key] = refs
        else:
            text = field(form, name)
            raw[name] = text
            if item.type is FieldType.text:
                if text.strip():
                    outputs[item.key] = text
            elif text.strip():
                text = text.strip()
                if item.type is FieldType.number:
                    outputs[item.key] = _number(text)
                elif item.type is FieldType.datetime:
                    outputs[item.key] = _local_datetime(text)
                else:
                    outputs[item.key] = text
    return outputs, raw


def _form_values(step: Step, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Stored outputs as the inputs' values (for a completed task's read-only view and defaults)."""
    raw: dict[str, Any] = {}
    for item in step.form:
        name = f"f_{item.key}"
        value = outputs.get(item.key)
        if item.type is FieldType.boolean:
            raw[name] = bool(value)
        elif item.type is FieldType.choice and item.multiple:
            raw[name] = list(value) if isinstance(value, list) else []
        elif item.type is FieldType.location:
            place = value if isinstance(value, Mapping) else {}
            raw.update({f"{name}_name": str(place.get("name") or ""),
                        f"{name}_lat": "" if place.get("lat") is None else str(place.get("lat")),
                        f"{name}_lon": "" if place.get("lon") is None else str(place.get("lon"))})
        elif item.type is FieldType.datetime and isinstance(value, str):
            try:
                raw[name] = datetime.fromisoformat(value).astimezone(_zone()).strftime("%Y-%m-%dT%H:%M")
            except ValueError:
                raw[name] = value
        elif isinstance(value, list):
            raw[name] = "\n".join(str(v) for v in value)
        else:
            raw[name] = "" if value is None else str(value)
    return raw


def _field_errors(step: Step, details: Any) -> tuple[dict[str, str], str | None]:
    """FormInvalid details as a message code per field (the template says it in the reader's language)."""
    errors: dict[str, str] = {}
    general = None
    for item in details if isinstance(details, list) else []:
        key = item.get("field") if isinstance(item, Mapping) else None
        form_field = step.field(key) if isinstance(key, str) else None
        if form_field is None or not isinstance(key, str):
            general = "form"
            continue
        message = str(item.get("message") or "")
        if message == "is required":
            errors[key] = "required"
        elif form_field.type is FieldType.location and "lat" in message:
            errors[key] = "location_coords"
        else:
            errors[key] = form_field.type.value
    return errors, general


@router.post("/tasks/{task_id}/complete")
def task_complete(task_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
                  form: Form) -> Response:
    checked_form(principal, form)
    task = _actable_task(session, principal, task_id)
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    step = plan_for_version(session, incident.plan_version_id).step(task.step_key)
    outputs, raw = parse_outputs(step, form)
    note = field(form, "note").strip() or None
    raw["note"] = note or ""
    try:
        if note is not None and len(note) > 10_000:
            raise FormInvalid("note too long", details=[])
        handoffs.complete(session, task_id=task.id, actor=principal.actor, outputs=outputs, note=note)
    except FormInvalid as exc:
        session.rollback()
        errors, general = _field_errors(step, exc.details)
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          errors=errors, problem=general or "invalid", status_code=422)
    except TaskStateConflict:
        session.rollback()
        return _task_page(request, principal, session, _readable_task(session, principal, task_id), values=raw,
                          problem="conflict", status_code=409)
    session.commit()
    return redirect(f"/tasks/{task.id}?done=completed")


@router.post("/tasks/{task_id}/hand-back")
def task_hand_back(task_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
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


# -- manager review ---------------------------------------------------------------------------------
def _flow_run_url(incident: Incident) -> str | None:
    api_url = get_settings().resolved_prefect_api_url()
    if not api_url or not incident.flow_run_id:
        return None
    base = api_url.rstrip("/")
    base = base.removesuffix("/api")
    return f"{base}/runs/flow-run/{incident.flow_run_id}"


@router.get("/review")
def review(request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    need(principal, Role.office, Role.manager, Role.admin)
    incidents = list(reads.list_incidents(session, department=None, limit=200).items)
    links = {i.id: _flow_run_url(i) for i in incidents}
    return page(request, principal, "review.html", flow_links=links, **_incident_context(session, incidents))


@router.get("/review/incidents/{incident_id}")
def review_incident(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> Response:
    need(principal, Role.office, Role.manager, Role.admin)
    incident = reads.get_incident(session, incident_id, None)
    timeline = reads.timeline(session, incident)
    lang = principal.user.lang
    helpers = Helpers(lang)
    names = {d.key: helpers.t(d.name) for d in registry().departments}
    # The SVG is built by escaping every text it holds (core.learning.timeline_svg); nothing else is marked safe.
    svg = Markup(render_timeline(timeline, lang=lang, now=utcnow(), tz=get_settings().timezone,
                                 department_names=names))
    plan = plan_for_version(session, incident.plan_version_id)
    step_titles = {step.key: step.title for _, step in plan.steps()}
    return page(request, principal, "review_incident.html", incident=incident, plan=plan, timeline=timeline,
                step_titles=step_titles,
                svg=svg, ledger=reads.ledger_view(session, incident),
                deadlines=reads.deadlines_by_department(session, incident), flow_run_url=_flow_run_url(incident))


# -- situation board ----------------------------------------------------------------------------------------
def _board_context(session: Session, principal: Principal, incident_id: str) -> dict[str, Any]:
    from core.sharing.board import board

    reader = None if principal.sees_all else principal.user.department
    incident = reads.get_incident(session, incident_id, reader)
    return {"incident": incident, "items": board(session, incident, reader), "poll_seconds": POLL_SECONDS,
            "can_report": principal.acts_for is not None}


@router.get("/incidents/{incident_id}/board")
def board_page(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "board.html", report_error=None, report_text="", share_with="",
                **_board_context(session, principal, incident_id))


@router.get("/incidents/{incident_id}/board/items")
def board_items(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> HTMLResponse:
    return page(request, principal, "_board_items.html", headers={FRAGMENT_HEADER: "1"},
                **_board_context(session, principal, incident_id))


@router.post("/incidents/{incident_id}/reports")
def board_report(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
                 form: Form) -> Response:
    from core.sharing.board import ReportInvalid, post_report

    checked_form(principal, form)
    if principal.acts_for is None:
        raise ApiError(403, "forbidden", "managers read the board; they do not post to it")
    context = _board_context(session, principal, incident_id)
    scope = [d.strip() for d in field(form, "share_with").split(",") if d.strip()] or ["all"]
    try:
        post_report(session, incident_id=context["incident"].id, department=principal.acts_for,
                    author=principal.actor, text=field(form, "text"), share_with=scope,
                    classification=field(form, "classification") or "internal")
    except ReportInvalid as exc:
        session.rollback()
        return page(request, principal, "board.html", 422, report_error=exc.message,
                    report_text=field(form, "text"), share_with=field(form, "share_with"),
                    **_board_context(session, principal, incident_id))
    session.commit()
    return redirect(f"/incidents/{context['incident'].id}/board")


# -- after-action reports and analytics (reviewers) ----------------------------------------------------------
def _report_page(request: Request, principal: Principal, name: str, status_code: int = 200,
                 **context: Any) -> HTMLResponse:
    lang = principal.user.lang
    html = render(f"reports/{name}", lang, **{**_base_context(request.url.path, principal, lang), **context})
    return HTMLResponse(html, status_code=status_code)


@router.get("/review/incidents/{incident_id}/report")
def review_report(incident_id: str, request: Request, principal: PagePrincipal, session: SessionDep) -> Response:
    from core.learning.after_action import build_report, report_context

    need(principal, Role.office, Role.manager, Role.admin)
    report = build_report(session, incident_id=incident_id)
    return _report_page(request, principal, "after_action_page.html", **report_context(report, principal.user.lang))


@router.get("/review/analytics")
def review_analytics(request: Request, principal: PagePrincipal, session: SessionDep) -> Response:
    from urllib.parse import urlencode

    from core.learning import analytics
    from core.learning.after_action import ReportText

    need(principal, Role.office, Role.manager, Role.admin)
    query = request.query_params
    values = {name: (query.get(name) or "").strip()[:64] for name in ("from", "to", "type", "department")}
    drills = query.get("include_drills", "") in ("1", "true", "on", "yes")
    rt = ReportText(principal.user.lang)
    error: str | None = None
    result = None
    try:
        result = analytics.compute(session, start=analytics.parse_bound(values["from"]),
                                   end=analytics.parse_bound(values["to"], upper=True),
                                   type_key=values["type"] or None, department=values["department"] or None,
                                   include_drills=drills)
    except BatonError as exc:
        error = exc.code
    chosen = {k: v for k, v in values.items() if v}
    csv_query = urlencode({**chosen, **({"include_drills": "true"} if drills else {})})
    charts = {}
    if result is not None:
        # Every text in the pictures is escaped where they are built; nothing else is marked safe.
        charts = {"on_time": Markup(analytics.on_time_chart(result.by_department, rt)),
                  "delays": Markup(analytics.delay_chart(result.by_department, rt))}
    return _report_page(request, principal, "analytics_page.html", 422 if error else 200, result=result,
                        charts=charts, rt=rt, values=values, include_drills=drills, error=error,
                        csv_url="/api/analytics.csv" + (f"?{csv_query}" if csv_query else ""),
                        types=[(key, plan.name) for key, plan in _plans()],
                        departments=[(d.key, d.name) for d in registry().departments])


# -- administration (admins only: users and the audit trail; the same services as /api/users) ----------------
ADMIN_ACTIONS = ("disable", "enable", "unlock", "revoke-tokens", "password")
AUDIT_PAGE = 100


def _reason(exc: BatonError) -> str:
    """What the page says about a refused change: the service's reason code (the template words it)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return str(details.get("reason") or exc.code)


def _admin_users_page(request: Request, principal: Principal, session: Session, *, notice: str | None = None,
                      problem: str | None = None, detail: str = "", values: dict[str, str] | None = None,
                      status_code: int = 200) -> HTMLResponse:
    from core.users.service import is_locked, list_users

    rows = [{"user": u, "locked": is_locked(u)} for u in list_users(session)]
    defaults = {"username": "", "display_name": "", "role": "department", "department": ""}
    return page(request, principal, "admin_users.html", status_code, users=rows, notice=notice, problem=problem,
                detail=detail, values={**defaults, **(values or {})},
                departments=[(d.key, d.name) for d in registry().departments])


@router.get("/admin/users")
def admin_users(request: Request, principal: PagePrincipal, session: SessionDep,
                done: str | None = None) -> HTMLResponse:
    need(principal, Role.admin)
    notice = done if done in (*ADMIN_ACTIONS, "added") else None
    return _admin_users_page(request, principal, session, notice=notice)


@router.post("/admin/users")
def admin_add_user(request: Request, principal: PagePrincipal, session: SessionDep, form: Form) -> Response:
    from core.users.service import UserInvalid, add_user

    need(principal, Role.admin)
    checked_form(principal, form)
    values = {name: field(form, name).strip() for name in ("username", "display_name", "role", "department")}
    try:
        add_user(session, username=values["username"], role=values["role"], department=values["department"] or None,
                 password=field(form, "password"), display_name=values["display_name"][:100], actor=principal.actor)
    except UserInvalid as exc:
        session.rollback()
        return _admin_users_page(request, principal, session, problem=_reason(exc), detail=exc.message,
                                 values=values, status_code=422)
    session.commit()
    return redirect("/admin/users?done=added")


def _admin_action(request: Request, principal: Principal, session: Session, form: FormData, user_id: str,
                  action: str) -> Response:
    from core.users import service as users

    need(principal, Role.admin)
    checked_form(principal, form)
    target = users.get_user(session, user_id=user_id)
    try:
        if action == "disable":
            users.disable_user(session, user_id=target.id, actor=principal.actor,
                               reason=field(form, "reason").strip()[:2000] or None)
        elif action == "enable":
            users.enable_user(session, user_id=target.id, actor=principal.actor)
        elif action == "unlock":
            users.unlock_user(session, user_id=target.id, actor=principal.actor)
        elif action == "revoke-tokens":
            users.revoke_all(session, user_id=target.id, actor=principal.actor)
        else:
            users.set_password(session, user_id=target.id, password=field(form, "password"), actor=principal.actor)
    except (users.UserInvalid, users.UserStateConflict) as exc:
        session.rollback()
        return _admin_users_page(request, principal, session, problem=_reason(exc), detail=exc.message,
                                 status_code=exc.http_status)
    session.commit()
    if action in ("disable", "revoke-tokens", "password") and target.id == principal.user.id:
        return redirect("/login")  # the admin's own session ended with the others
    return redirect(f"/admin/users?done={action}")


def _admin_action_route(action: str) -> None:
    def handler(user_id: str, request: Request, principal: PagePrincipal, session: SessionDep,
                form: Form) -> Response:
        return _admin_action(request, principal, session, form, user_id, action)

    handler.__name__ = f"admin_{action.replace('-', '_')}"
    router.post(f"/admin/users/{{user_id}}/{action}")(handler)


for _action in ADMIN_ACTIONS:
    _admin_action_route(_action)


@router.get("/admin/audit")
def admin_audit(request: Request, principal: PagePrincipal, session: SessionDep, action: str = "", actor: str = "",
                offset: str = "0") -> HTMLResponse:
    from urllib.parse import urlencode

    from core.users.service import list_audit

    need(principal, Role.admin)
    action, actor = action.strip()[:64], actor.strip()[:100]
    at = min(int(offset), 10**9) if offset.isdigit() else 0  # a bad offset is the first page, not an error
    found = list_audit(session, action=action or None, actor=actor or None, limit=AUDIT_PAGE, offset=at)

    def link(start: int) -> str:
        query = {k: v for k, v in (("action", action), ("actor", actor)) if v}
        return "/admin/audit?" + urlencode({**query, "offset": start})

    return page(request, principal, "admin_audit.html", events=found.items, total=found.total, action=action,
                actor=actor, newer=link(max(0, at - AUDIT_PAGE)) if at else None,
                older=link(at + AUDIT_PAGE) if at + AUDIT_PAGE < found.total else None)


# -- API reference (logged-in users; FastAPI's interactive docs, reading the authenticated /openapi.json) -----
@router.get("/docs")
def api_docs(principal: PagePrincipal) -> HTMLResponse:
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url="/openapi.json", title="Baton API")


@router.get("/redoc")
def api_redoc(principal: PagePrincipal) -> HTMLResponse:
    from fastapi.openapi.docs import get_redoc_html

    return get_redoc_html(openapi_url="/openapi.json", title="Baton API")
