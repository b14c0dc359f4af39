"""Dependencies shared by routes and pages: the database session, the current user, role checks.

The API and the pages find the user the same way and allow the same roles; they differ only in how they refuse:
the API answers 401/403 in JSON, a page sends the browser to the login form (no session) or reads as missing (a
role that may not see it)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.errors import ApiError
from core.incidents import permissions
from core.platform.db import get_engine
from core.platform.settings import get_settings
from core.users.models import AccessToken, Role, User, reader_of, sees_all
from core.users.service import user_for_token

SESSION_COOKIE = "baton_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session() -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit before the response is sent, so a client that saw 2xx can rely on the write.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Principal:
    user: User
    token: AccessToken

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def actor(self) -> str:
        return f"user:{self.user.username}"

    @property
    def acts_for(self) -> str | None:
        """The department whose tasks this user may act on (`core.incidents.permissions`)."""
        return permissions.acts_for(self.user)

    @property
    def sees_all(self) -> bool:
        return sees_all(self.user)

    @property
    def reader(self) -> str | None:
        """The scope of what this user reads (`core.incidents.reads`): None for everything, else their
        department."""
        return reader_of(self.user)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _principal(session: Session, token: str | None, kind: str) -> Principal | None:
    found = user_for_token(session, token, kind=kind) if token else None
    return Principal(user=found[0], token=found[1]) if found is not None else None


def current_principal(request: Request, session: SessionDep) -> Principal:
    token = _bearer(request)
    kind = "bearer"
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        kind = "session"
    principal = _principal(session, token, kind)
    if principal is None:
        raise ApiError(401, "not_authenticated", "log in first: a valid bearer token or session is needed",
                       headers={"WWW-Authenticate": "Bearer"})
    request.state.reader_lang = principal.user.lang  # the language its refusals are said in (api/errors.py)
    if kind == "session" and request.method not in SAFE_METHODS:
        # A browser sends the session cookie by itself; a write on it must also prove it came from a Baton
        # page (SameSite=Lax alone leaves same-site origins and older browsers open).
        check_csrf(principal, request.headers.get(CSRF_HEADER))
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]

# Who may use what, for the API and the pages alike.
OFFICE = (Role.office, Role.admin)
REVIEWERS = (Role.office, Role.manager, Role.admin)
ACTING = (Role.office, Role.department, Role.admin)
ADMINS = (Role.admin,)


def require(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = {r.value for r in roles}

    def check(principal: CurrentUser) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "forbidden", f"this needs the role {' or '.join(sorted(allowed))}")
        return principal

    return check


OfficeUser = Annotated[Principal, Depends(require(*OFFICE))]
ReviewerUser = Annotated[Principal, Depends(require(*REVIEWERS))]
ActingUser = Annotated[Principal, Depends(require(*ACTING))]
AdminUser = Annotated[Principal, Depends(require(*ADMINS))]


class LoginRequired(Exception):
    """A page was asked for without a session: the page router sends the browser to the login form."""

    def __init__(self, next_url: str | None) -> None:
        super().__init__("login required")
        self.next_url = next_url


def page_principal(request: Request, session: SessionDep) -> Principal:
    """The user of a page: only the session cookie counts (a page's form proves itself by the CSRF token in its
    body, checked by the page)."""
    # The page router rolls this session back and words its error page in this user's language.
    request.state.db = session
    principal = _principal(session, request.cookies.get(SESSION_COOKIE), "session")
    if principal is None:
        target = None
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.principal = principal
    request.state.reader_lang = principal.user.lang
    return principal


PageUser = Annotated[Principal, Depends(page_principal)]


def require_page(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = {r.value for r in roles}

    def check(principal: PageUser) -> Principal:
        if principal.role not in allowed:
            # A page a role may not see reads as missing.
            raise ApiError(404, "not_found", "no such page")
        return principal

    return check


OfficePageUser = Annotated[Principal, Depends(require_page(*OFFICE))]
ReviewerPageUser = Annotated[Principal, Depends(require_page(*REVIEWERS))]
ActingPageUser = Annotated[Principal, Depends(require_page(*ACTING))]
AdminPageUser = Annotated[Principal, Depends(require_page(*ADMINS))]


def csrf_token(token_id: str) -> str:
    key = get_settings().resolved_secret_key().encode("utf-8")
    return hmac.new(key, f"csrf:{token_id}".encode(), hashlib.sha256).hexdigest()


def check_csrf(principal: Principal, given: str | None) -> None:
    if not given or not hmac.compare_digest(csrf_token(principal.token.id), given):
        raise ApiError(403, "csrf_failed", "the form is out of date or was not sent by Baton; reload and try again")


def idempotency_digest(user_id: str, key: str) -> str:
    """A client's Idempotency-Key, scoped to the user and of fixed length whatever the client sent."""
    return hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()


T = TypeVar("T")


def first_of_a_race(session: Session, make: Callable[[], T], *, retry: bool = True) -> T:
    """`make()` in a savepoint. Two requests with one Idempotency-Key can race past the lookup of what the key made:
    the second insert then breaks the key's unique constraint, and `make()` again (with `retry`) finds and returns
    what the first made."""
    try:
        with session.begin_nested():
            return make()
    except IntegrityError:
        if not retry:
            raise
        return make()
