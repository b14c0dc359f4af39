"""User administration and the audit trail: administrators only. Every change is audited by the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminUser, SessionDep
from api.schemas import (
    AuditEventOut,
    AuditPage,
    DisableIn,
    PasswordIn,
    RevokedOut,
    UserCreate,
    UserPage,
    UserPublic,
)
from core.platform.input_policy import Moment, Offset
from core.users import service as users
from core.users.models import User

router = APIRouter(tags=["users"])


def public(user: User) -> UserPublic:
    return UserPublic(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                      department=user.department, lang=user.lang, active=user.active, locked=users.is_locked(user),
                      failed_logins=user.failed_logins, created_at=user.created_at)


@router.get("/api/users", response_model=UserPage)
def list_users(principal: AdminUser, session: SessionDep) -> UserPage:
    found = users.list_users(session)
    return UserPage(items=[public(u) for u in found], total=len(found))


@router.post("/api/users", response_model=UserPublic, status_code=201)
def add_user(body: UserCreate, principal: AdminUser, session: SessionDep) -> UserPublic:
    return public(users.add_user(session, username=body.username, role=body.role, department=body.department,
                                 password=body.password, display_name=body.display_name, lang=body.lang,
                                 actor=principal.actor))


@router.post("/api/users/{user_id}/disable", response_model=RevokedOut)
def disable(user_id: str, principal: AdminUser, session: SessionDep, body: DisableIn | None = None) -> RevokedOut:
    """No more logins; every token and page session of the user ends now."""
    revoked = users.disable_user(session, user_id=user_id, actor=principal.actor, reason=body.reason if body else None)
    return RevokedOut(user=public(users.get_user(session, user_id=user_id)), revoked=revoked)


@router.post("/api/users/{user_id}/enable", response_model=UserPublic)
def enable(user_id: str, principal: AdminUser, session: SessionDep) -> UserPublic:
    return public(users.enable_user(session, user_id=user_id, actor=principal.actor))


@router.post("/api/users/{user_id}/unlock", response_model=UserPublic)
def unlock(user_id: str, principal: AdminUser, session: SessionDep) -> UserPublic:
    """Lift a lockout after failed logins before it runs out."""
    return public(users.unlock_user(session, user_id=user_id, actor=principal.actor))


@router.post("/api/users/{user_id}/revoke-tokens", response_model=RevokedOut)
def revoke_tokens(user_id: str, principal: AdminUser, session: SessionDep) -> RevokedOut:
    """End every token and page session of the user (a lost phone, a laptop left logged in)."""
    user = users.get_user(session, user_id=user_id)
    return RevokedOut(user=public(user), revoked=users.revoke_all(session, user_id=user.id, actor=principal.actor))


@router.post("/api/users/{user_id}/password", response_model=RevokedOut)
def set_password(user_id: str, body: PasswordIn, principal: AdminUser, session: SessionDep) -> RevokedOut:
    """A new password; the old one's tokens and sessions end and any lockout is lifted."""
    revoked = users.set_password(session, user_id=user_id, password=body.password, actor=principal.actor)
    return RevokedOut(user=public(users.get_user(session, user_id=user_id)), revoked=revoked)


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
