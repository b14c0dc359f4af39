from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, SessionDep
from api.schemas import TokenOut
from core.platform import input_policy as policy
from core.platform.input_policy import checked
from core.platform.settings import get_settings
from core.users.service import AuthenticationFailed, LoginThrottled, authenticate, issue_token, revoke

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut)
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, session: SessionDep) -> TokenOut:
    """OAuth2 password flow: a bearer token that expires (BATON_TOKEN_HOURS) and can be revoked."""
    # A user name is one line by the input policy (PostgreSQL could not even look a NUL up); 422 otherwise.
    username = checked("username", policy.text, form.username)
    try:
        user = authenticate(session, username=username, password=form.password,
                            source=request.client.host if request.client else "")
    except (AuthenticationFailed, LoginThrottled):
        session.commit()  # the failure count and the audit entry must stay, though the request fails
        raise
    issued = issue_token(session, user=user, ttl=timedelta(hours=get_settings().token_hours))
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@router.post("/revoke", status_code=204)
def revoke_current(principal: CurrentUser, session: SessionDep) -> None:
    """Revoke the token this request carries (log out everywhere it was used)."""
    revoke(session, token_id=principal.token.id, actor=principal.actor)


@router.get("/me")
def me(principal: CurrentUser) -> dict[str, str | None]:
    user = principal.user
    return {"username": user.username, "display_name": user.display_name, "role": user.role,
            "department": user.department, "lang": user.lang}
