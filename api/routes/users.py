"""User administration and the audit trail: administrators only. Every change is audited by the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session

from api.deps import AdminUser, SessionDep
from api.schemas import (
    AuditEventOut,
    AuditPage,
    DisableIn,
    LockoutOut,
    LockoutPage,
    PasswordIn,
    PositionIn,
    RevokedOut,
    UserCreate,
    UserPage,
    UserPublic,
    UserUpdate,
)
from core.incidents import alerts
from core.platform.input_policy import Moment, Offset
from core.users import positions
from core.users import service as users
from core.users.models import User

router = APIRouter(tags=["users"])
MAX_USERS_PAGE = 200


def _lockout(lockout: users.LoginLockout) -> LockoutOut:
    return LockoutOut(user_id=lockout.user_id, username=lockout.username, source=lockout.source,
                      locked_until=lockout.until, failures=lockout.failures)


def public(session: Session, user: User, running: dict[str, list[users.LoginLockout]] | None = None,
           held: list[str] | None = None) -> UserPublic:
    found = [_lockout(x) for x in (running if running is not None
                                   else users.lockouts(session, user_id=user.id)).get(user.id, [])]
    if held is None:
        held = positions.holdings_of(session, [user.id])[user.id]
    return UserPublic(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                      department=user.department, lang=user.lang, active=user.active, locked=bool(found),
                      lockouts=found, failed_logins=user.failed_logins, created_at=user.created_at,
                      positions=held)


@router.get("/api/users", response_model=UserPage)
def list_users(principal: AdminUser, session: SessionDep,
               q: Annotated[str | None, Query(max_length=100)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_USERS_PAGE)] = MAX_USERS_PAGE,
               offset: Offset = 0) -> UserPage:
    """Users by user name, a page at a time (`limit` 1 to 200, else 422 `invalid_request`). `q` finds those whose
    user name, display name, department (key or name) or role holds it."""
    page = users.search_users(session, text=q, limit=limit, offset=offset)
    running = users.lockouts(session)
    held = positions.holdings_of(session, [u.id for u in page.items])
    return UserPage(items=[public(session, u, running, held[u.id]) for u in page.items], total=page.total,
                    limit=limit, offset=offset)


@router.patch("/api/users/{user_id}", response_model=UserPublic)
def update_user(user_id: str, body: UserUpdate, principal: AdminUser, session: SessionDep) -> UserPublic:
    """Rename: the display name shown wherever the user is named."""
    user = users.set_display_name(session, user_id=user_id, display_name=body.display_name, actor=principal.actor)
    return public(session, user)


@router.post("/api/users/{user_id}/positions", response_model=UserPublic)
def grant_position(user_id: str, body: PositionIn, principal: AdminUser, session: SessionDep) -> UserPublic:
    """The user now holds the position (e.g. commander@flood_control_hq): the plans' level decisions it allows
    are theirs."""
    positions.grant(session, user_id=user_id, ref=body.position, actor=principal.actor)
    return public(session, users.get_user(session, user_id=user_id))


@router.delete("/api/users/{user_id}/positions/{position}", response_model=UserPublic)
def revoke_position(user_id: str, position: str, principal: AdminUser, session: SessionDep) -> UserPublic:
    positions.revoke(session, user_id=user_id, ref=position, actor=principal.actor)
    return public(session, users.get_user(session, user_id=user_id))


@router.get("/api/users/lockouts", response_model=LockoutPage)
def lockouts(principal: AdminUser, session: SessionDep) -> LockoutPage:
    """Every running lockout after failed logins: an address locked out of an account (five wrong passwords
    in a row from it), or an account locked everywhere (the back-off after many from every address).
    `POST /api/users/{id}/unlock` lifts a user's."""
    items = [_lockout(x) for found in users.lockouts(session).values() for x in found]
    return LockoutPage(items=items, total=len(items))


@router.post("/api/users", response_model=UserPublic, status_code=201)
def add_user(body: UserCreate, principal: AdminUser, session: SessionDep) -> UserPublic:
    user = users.add_user(session, username=body.username, role=body.role, department=body.department,
                          password=body.password, display_name=body.display_name, lang=body.lang,
                          actor=principal.actor)
    return public(session, user)


@router.post("/api/users/{user_id}/disable", response_model=RevokedOut)
def disable(user_id: str, principal: AdminUser, session: SessionDep, body: DisableIn | None = None) -> RevokedOut:
    """No more logins; every token and page session of the user ends now."""
    done = alerts.disable_user(session, user_id=user_id, actor=principal.actor, reason=body.reason if body else None)
    return RevokedOut(user=public(session, done.user), revoked=done.revoked, warnings=unstaffed_warnings(done))


def unstaffed_warnings(done: alerts.Disabled) -> list[dict[str, object]]:
    """A department left with nobody to act on its open tasks: the office was alerted, the admin is warned."""
    user, raised = done.user, done.raised
    if not raised:
        return []
    return [{"code": "department_unstaffed", "department": user.department, "open_tasks": len(raised),
             "message": f"nobody active in {user.department} can act on its {len(raised)} open task(s); "
                        "the emergency office has been alerted"}]


@router.post("/api/users/{user_id}/enable", response_model=UserPublic)
def enable(user_id: str, principal: AdminUser, session: SessionDep) -> UserPublic:
    return public(session, users.enable_user(session, user_id=user_id, actor=principal.actor))


@router.post("/api/users/{user_id}/unlock", response_model=UserPublic)
def unlock(user_id: str, principal: AdminUser, session: SessionDep) -> UserPublic:
    """Lift a lockout after failed logins before it runs out."""
    return public(session, users.unlock_user(session, user_id=user_id, actor=principal.actor))


@router.post("/api/users/{user_id}/revoke-tokens", response_model=RevokedOut)
def revoke_tokens(user_id: str, principal: AdminUser, session: SessionDep) -> RevokedOut:
    """End every token and page session of the user (a lost phone, a laptop left logged in)."""
    user = users.get_user(session, user_id=user_id)
    revoked = users.revoke_all(session, user_id=user.id, actor=principal.actor)
    return RevokedOut(user=public(session, user), revoked=revoked)


@router.post("/api/users/{user_id}/password", response_model=RevokedOut)
def set_password(user_id: str, body: PasswordIn, principal: AdminUser, session: SessionDep) -> RevokedOut:
    """A new password; the old one's tokens and sessions end and any lockout is lifted."""
    revoked = users.set_password(session, user_id=user_id, password=body.password, actor=principal.actor)
    return RevokedOut(user=public(session, users.get_user(session, user_id=user_id)), revoked=revoked)


@router.get("/api/audit", response_model=AuditPage)
def audit_trail(principal: AdminUser, session: SessionDep,
                action: Annotated[str | None, Query(max_length=64)] = None,
                actor: Annotated[str | None, Query(max_length=100)] = None,
                since: Moment | None = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Offset = 0) -> AuditPage:
    """Logins (and failed ones, lockouts, throttling) and administrative changes, newest first."""
    page = users.list_audit(session, action=action, actor=actor, since=since, limit=limit, offset=offset)
    return AuditPage(items=[AuditEventOut(id=e.id or 0, at=e.at, actor=e.actor, action=e.action, detail=e.detail)
                            for e in page.items], total=page.total, limit=limit, offset=offset)
