"""Administration, for admins only: users and the audit trail (the same services as /api/users)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.datastructures import FormData

from api.deps import AdminPageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from core.incidents import alerts
from core.plans.store import registry
from core.platform.errors import BatonError
from core.platform.input_policy import MAX_OFFSET
from core.users import service as users

router = page_router()

ADMIN_ACTIONS = ("disable", "enable", "unlock", "revoke-tokens", "password")
AUDIT_PAGE = 100


def _reason(exc: BatonError) -> str:
    """What the page says about a refused change: the service's reason code (the template words it)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return str(details.get("reason") or exc.code)


def _admin_users_page(request: Request, principal: Principal, session: Session, *, notice: str | None = None,
                      problem: str | None = None, detail: str = "", values: dict[str, str] | None = None,
                      status_code: int = 200) -> HTMLResponse:
    running = users.lockouts(session)
    rows = [{"user": u, "lockouts": running.get(u.id, [])} for u in users.list_users(session)]
    defaults = {"username": "", "display_name": "", "role": "department", "department": ""}
    return page(request, principal, "admin_users.html", status_code, users=rows, notice=notice, problem=problem,
                detail=detail, values={**defaults, **(values or {})},
                departments=[(d.key, d.name) for d in registry().departments])


@router.get("/admin/users")
def admin_users(request: Request, principal: AdminPageUser, session: SessionDep,
                done: str | None = None) -> HTMLResponse:
    notice = done if done in (*ADMIN_ACTIONS, "added", "disable-unstaffed") else None
    return _admin_users_page(request, principal, session, notice=notice)


@router.post("/admin/users")
def admin_add_user(request: Request, principal: AdminPageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {name: field(form, name).strip() for name in ("username", "display_name", "role", "department")}
    try:
        users.add_user(session, username=values["username"], role=values["role"],
                       department=values["department"] or None, password=field(form, "password"),
                       display_name=values["display_name"][:100], actor=principal.actor)
    except users.UserInvalid as exc:
        session.rollback()
        return _admin_users_page(request, principal, session, problem=_reason(exc), detail=exc.message,
                                 values=values, status_code=422)
    session.commit()
    return redirect("/admin/users?done=added")


def _admin_action(request: Request, principal: Principal, session: Session, form: FormData, user_id: str,
                  action: str) -> Response:
    checked_form(principal, form)
    target = users.get_user(session, user_id=user_id)
    try:
        if action == "disable":
            users.disable_user(session, user_id=target.id, actor=principal.actor,
                               reason=field(form, "reason").strip()[:2000] or None)
            if target.role == "department" and target.department is not None \
                    and alerts.department_unstaffed(session, department=target.department, actor=principal.actor):
                action = "disable-unstaffed"
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
    if action in ("disable", "disable-unstaffed", "revoke-tokens", "password") and target.id == principal.user.id:
        return redirect("/login")  # the admin's own session ended with the others
    return redirect(f"/admin/users?done={action}")


def _admin_action_route(action: str) -> None:
    def handler(user_id: str, request: Request, principal: AdminPageUser, session: SessionDep,
                form: Form) -> Response:
        return _admin_action(request, principal, session, form, user_id, action)

    handler.__name__ = f"admin_{action.replace('-', '_')}"
    router.post(f"/admin/users/{{user_id}}/{action}")(handler)


for _action in ADMIN_ACTIONS:
    _admin_action_route(_action)


@router.get("/admin/audit")
def admin_audit(request: Request, principal: AdminPageUser, session: SessionDep, action: str = "", actor: str = "",
                offset: str = "0") -> HTMLResponse:
    action, actor = action.strip()[:64], actor.strip()[:100]
    # A bad offset is the first page, not an error; a huge one the policy's last.
    at = min(int(offset), MAX_OFFSET) if offset.isdigit() else 0
    found = users.list_audit(session, action=action or None, actor=actor or None, limit=AUDIT_PAGE, offset=at)

    def link(start: int) -> str:
        query = {k: v for k, v in (("action", action), ("actor", actor)) if v}
        return "/admin/audit?" + urlencode({**query, "offset": start})

    return page(request, principal, "admin_audit.html", events=found.items, total=found.total, action=action,
                actor=actor, newer=link(max(0, at - AUDIT_PAGE)) if at else None,
                older=link(at + AUDIT_PAGE) if at + AUDIT_PAGE < found.total else None)

