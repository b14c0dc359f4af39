"""Administration, for admins only: users and the audit trail (the same services as /api/users).

The users page finds users (by user name, display name, department or role) a page at a time and warns of
departments that the plans give tasks to but no active user works for; each user has a page of their own with
the actions on them, one user at a time. Disabling a user and ending their sessions ask to be confirmed first
(a page of its own, no JavaScript needed). A refused change is said beside the field that caused it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.datastructures import FormData

from api.deps import AdminPageUser, Principal, SessionDep
from api.pages.listings import plans
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from api.refusals import refusal_said
from core.incidents import alerts
from core.incidents.service import COMMAND
from core.plans.store import registry
from core.platform.errors import BatonError
from core.platform.input_policy import MAX_OFFSET
from core.users import positions
from core.users import service as users
from core.users.models import User

router = page_router()

ADMIN_ACTIONS = ("disable", "enable", "unlock", "revoke-tokens", "password", "display-name")
CONFIRMED = ("disable", "revoke-tokens")  # these ask "are you sure?" on a page of their own first
AUDIT_PAGE = 100
USERS_PAGE = 50
# The field of a form that a refusal's reason is about: said beside that field, not above the form.
FIELD_OF = {"username": "username", "exists": "username", "role": "role", "department_needed": "department",
            "unknown_department": "department", "department_not_allowed": "department", "password": "password",
            "display_name": "display_name"}


def _reason(exc: BatonError) -> str:
    """What the page says about a refused change: the service's reason code (the template words it)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return str(details.get("reason") or exc.code)


def _refusal(exc: BatonError, lang: str) -> tuple[dict[str, str], str | None, str]:
    """A refused change as the page shows it: beside its field (errors), or else above the form (problem, and
    the refusal in the reader's language for a reason the page does not word itself)."""
    reason = _reason(exc)
    if reason in FIELD_OF:
        return {FIELD_OF[reason]: reason}, None, ""
    return {}, reason, refusal_said(exc, lang)


def _unstaffed(session: Session) -> list[tuple[str, list[object]]]:
    """The departments the plans in use give tasks to but no active user works for, with those plans' names."""
    names = {key: plan.name for key, plan in plans()}
    return [(key, [names.get(t, t) for t in types])
            for key, types in users.unstaffed_departments(session, command=COMMAND).items()]


def _offset(value: str) -> int:
    # A bad offset is the first page, not an error; a huge one the policy's last.
    return min(int(value), MAX_OFFSET) if value.isdigit() else 0


def _admin_users_page(request: Request, principal: Principal, session: Session, *, q: str = "", at: int = 0,
                      notice: str | None = None, problem: str | None = None, detail: str = "",
                      errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                      status_code: int = 200) -> HTMLResponse:
    found = users.search_users(session, text=q or None, limit=USERS_PAGE, offset=at)
    running = users.lockouts(session)
    rows = [{"user": u, "lockouts": running.get(u.id, [])} for u in found.items]

    def link(start: int) -> str:
        return "/admin/users?" + urlencode({**({"q": q} if q else {}), "offset": start})

    defaults = {"username": "", "display_name": "", "role": "department", "department": ""}
    return page(request, principal, "admin_users.html", status_code, users=rows, total=found.total, q=q,
                first=at + 1 if rows else 0, last=at + len(rows),
                previous=link(max(0, at - USERS_PAGE)) if at else None,
                next=link(at + USERS_PAGE) if at + USERS_PAGE < found.total else None,
                unstaffed=_unstaffed(session),
                notice=notice, problem=problem, detail=detail, errors=errors or {},
                values={**defaults, **(values or {})}, departments=[(d.key, d.name) for d in registry().departments])


@router.get("/admin/users")
def admin_users(request: Request, principal: AdminPageUser, session: SessionDep, done: str | None = None,
                q: str = "", offset: str = "0") -> HTMLResponse:
    notice = done if done == "added" else None
    return _admin_users_page(request, principal, session, q=q.strip()[:100], at=_offset(offset), notice=notice)


@router.post("/admin/users")
def admin_add_user(request: Request, principal: AdminPageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {name: field(form, name).strip() for name in ("username", "display_name", "role", "department")}
    try:
        users.add_user(session, username=values["username"], role=values["role"],
                       department=values["department"] or None, password=field(form, "password"),
                       display_name=values["display_name"], actor=principal.actor)
    except users.UserInvalid as exc:
        session.rollback()
        errors, problem, detail = _refusal(exc, principal.user.lang)
        return _admin_users_page(request, principal, session, problem=problem, detail=detail, errors=errors,
                                 values=values, status_code=422)
    session.commit()
    return redirect("/admin/users?done=added")


def _user_page(request: Request, principal: Principal, session: Session, target: User, *,
               notice: str | None = None, problem: str | None = None, detail: str = "",
               errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
               status_code: int = 200) -> HTMLResponse:
    held = positions.holdings_of(session, [target.id])[target.id]
    return page(request, principal, "admin_user.html", status_code, target=target,
                lockouts=users.lockouts(session, user_id=target.id).get(target.id, []), positions=held,
                notice=notice, problem=problem, detail=detail, errors=errors or {},
                values={"display_name": target.display_name, **(values or {})})


@router.get("/admin/users/{user_id}")
def admin_user(user_id: str, request: Request, principal: AdminPageUser, session: SessionDep,
               done: str | None = None) -> HTMLResponse:
    target = users.get_user(session, user_id=user_id)
    notice = done if done in (*ADMIN_ACTIONS, "disable-unstaffed") else None
    return _user_page(request, principal, session, target, notice=notice)


def _confirm_page(request: Request, principal: Principal, target: User, action: str, *, reason: str = "",
                  problem: str | None = None, status_code: int = 200) -> HTMLResponse:
    if action == "disable" and target.id == principal.user.id:
        problem = "self"
    return page(request, principal, "admin_confirm.html", status_code, target=target, action=action, reason=reason,
                problem=problem, shown_name=target.display_name or target.username)


def _confirm_route(action: str) -> None:
    def handler(user_id: str, request: Request, principal: AdminPageUser, session: SessionDep) -> HTMLResponse:
        return _confirm_page(request, principal, users.get_user(session, user_id=user_id), action)

    handler.__name__ = f"admin_confirm_{action.replace('-', '_')}"
    router.get(f"/admin/users/{{user_id}}/{action}")(handler)


def _admin_action(request: Request, principal: Principal, session: Session, form: FormData, user_id: str,
                  action: str) -> Response:
    checked_form(principal, form)
    target = users.get_user(session, user_id=user_id)
    reason = field(form, "reason").strip()[:2000]
    if action in CONFIRMED and field(form, "confirm") != "yes":
        return _confirm_page(request, principal, target, action, reason=reason)  # asked, not done
    try:
        if action == "disable":
            if alerts.disable_user(session, user_id=target.id, actor=principal.actor, reason=reason or None).raised:
                action = "disable-unstaffed"
        elif action == "enable":
            users.enable_user(session, user_id=target.id, actor=principal.actor)
        elif action == "unlock":
            users.unlock_user(session, user_id=target.id, actor=principal.actor)
        elif action == "revoke-tokens":
            users.revoke_all(session, user_id=target.id, actor=principal.actor)
        elif action == "display-name":
            users.set_display_name(session, user_id=target.id, display_name=field(form, "display_name"),
                                   actor=principal.actor)
        else:
            users.set_password(session, user_id=target.id, password=field(form, "password"), actor=principal.actor)
    except (users.UserInvalid, users.UserStateConflict) as exc:
        session.rollback()
        session.refresh(target)
        errors, problem, detail = _refusal(exc, principal.user.lang)
        if action in CONFIRMED:
            return _confirm_page(request, principal, target, action, reason=reason, problem=problem,
                                 status_code=exc.http_status)
        values = {"display_name": field(form, "display_name")} if action == "display-name" else None
        return _user_page(request, principal, session, target, problem=problem, detail=detail, errors=errors,
                          values=values, status_code=exc.http_status)
    session.commit()
    if action in ("disable", "disable-unstaffed", "revoke-tokens", "password") and target.id == principal.user.id:
        return redirect("/login")  # the admin's own session ended with the others
    return redirect(f"/admin/users/{target.id}?done={action}")


def _admin_action_route(action: str) -> None:
    def handler(user_id: str, request: Request, principal: AdminPageUser, session: SessionDep,
                form: Form) -> Response:
        return _admin_action(request, principal, session, form, user_id, action)

    handler.__name__ = f"admin_{action.replace('-', '_')}"
    router.post(f"/admin/users/{{user_id}}/{action}")(handler)


for _action in CONFIRMED:
    _confirm_route(_action)
for _action in ADMIN_ACTIONS:
    _admin_action_route(_action)


@router.get("/admin/audit")
def admin_audit(request: Request, principal: AdminPageUser, session: SessionDep, action: str = "", actor: str = "",
                offset: str = "0") -> HTMLResponse:
    action, actor = action.strip()[:64], actor.strip()[:100]
    at = _offset(offset)
    found = users.list_audit(session, action=action or None, actor=actor or None, limit=AUDIT_PAGE, offset=at)

    def link(start: int) -> str:
        query = {k: v for k, v in (("action", action), ("actor", actor)) if v}
        return "/admin/audit?" + urlencode({**query, "offset": start})

    return page(request, principal, "admin_audit.html", events=found.items, total=found.total, action=action,
                actor=actor, newer=link(max(0, at - AUDIT_PAGE)) if at else None,
                older=link(at + AUDIT_PAGE) if at + AUDIT_PAGE < found.total else None)
