"""Logging in and out, the reader's language, and the home page that sends each role to its own console."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from api.deps import SESSION_COOKIE, PageUser, SessionDep, csrf_token
from api.errors import ApiError
from api.pages.rendering import Form, base_context, checked_form, field, page_router, query_lang, redirect, safe_next
from core.platform.settings import get_settings
from core.platform.templating import render
from core.users.models import Role
from core.users.service import (
    AuthenticationFailed,
    LoginThrottled,
    authenticate,
    issue_token,
    revoke,
    set_lang,
    user_for_token,
)

LOGIN_COOKIE = "baton_login"

router = page_router()


def _login_page(request: Request, lang: str, nonce: str, *, error: str | None = None, username: str = "",
                next_url: str = "/", status_code: int = 200) -> HTMLResponse:
    html = render("pages/login.html", lang, **base_context(request.url.path, None, lang), login_csrf=csrf_token(
        f"login:{nonce}"), error=error, username=username, next_url=next_url)
    response = HTMLResponse(html, status_code=status_code)
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="lax", secure=get_settings().cookie_secure,
                        path="/login", max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, query_lang(request), nonce, next_url=safe_next(next))


@router.post("/login")
def login(request: Request, session: SessionDep, form: Form) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    given = field(form, "csrf")
    if not nonce or not given or not hmac.compare_digest(csrf_token(f"login:{nonce}"), given):
        raise ApiError(403, "csrf_failed", "the login form is out of date; reload it")
    lang = "en" if field(form, "lang") == "en" else "zh"
    username, next_url = field(form, "username").strip(), safe_next(field(form, "next"))
    try:
        user = authenticate(session, username=username, password=field(form, "password"),
                            source=request.client.host if request.client else "")
    except (AuthenticationFailed, LoginThrottled) as exc:
        session.commit()  # the failure count and the audit entry stay, though the login fails
        locked = isinstance(exc, LoginThrottled)
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
def logout(principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    revoke(session, token_id=principal.token.id, actor=principal.actor)
    session.commit()
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=get_settings().cookie_secure)
    return response


@router.post("/lang")
def change_lang(principal: PageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    set_lang(session, user_id=principal.user.id, lang=field(form, "lang"))
    session.commit()
    return redirect(safe_next(field(form, "next")))


@router.get("/")
def home(principal: PageUser) -> Response:
    if principal.role == Role.department:
        return redirect("/inbox")
    if principal.role == Role.manager:
        return redirect("/review")
    return redirect("/office")

