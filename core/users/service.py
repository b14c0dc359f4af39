"""Users, passwords (argon2), tokens and page sessions, login throttling, and the audit trail."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from core.plans.store import departments_given_tasks, registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.errors import BatonError, NotFound
from core.platform.paging import Page, paged
from core.platform.settings import get_settings
from core.platform.templating import READER_LANGUAGES
from core.users.models import AccessToken, AuditEvent, LoginLock, LoginThrottle, Role, User

_hasher = PasswordHasher()
MAX_FAILED_LOGINS = 5  # in a row, at one account from one address: that address is locked out of it
LOCKOUT = timedelta(minutes=15)
# Past `login_failures_per_account` failures from every address, each further one locks the account everywhere,
# for a minute at first and twice as long each time, never longer than LOCKOUT.
BACKOFF_START = timedelta(minutes=1)


@functools.cache
def _dummy_hash() -> str:
    """A fixed hash to verify against when the user does not exist, so that the timing is the same either way.
    Made at the first login check of the process (every login pays for it then, whoever it is for), not at import:
    every Baton process imports this module and most never check a password."""
    return _hasher.hash("baton-no-such-user")

REFUSED = "wrong user name or password"


class UserInvalid(BatonError):
    code = "user_invalid"
    http_status = 422


class AuthenticationFailed(BatonError):
    """A wrong password, a user name that does not exist, or an account locked out: the same answer for each,
    so that a guesser learns neither which accounts exist nor which it has locked."""

    code = "authentication_failed"
    http_status = 401


class LoginThrottled(BatonError):
    """Too many failed logins from one address, whichever accounts they tried: refused until the window ends.
    Said openly, as it is about the address, not any account."""

    code = "login_throttled"
    http_status = 429


def people(session: Session) -> dict[str, tuple[str, str | None]]:
    """Each user name with the name people know them by and their department, for pages that name who acted."""
    return {u.username: (u.display_name or u.username, u.department)
            for u in session.exec(select(User)).all()}


def audit(session: Session, *, actor: str, action: str, **detail: Any) -> None:
    session.add(AuditEvent(actor=actor, action=action, detail=detail))


def add_user(session: Session, *, username: str, role: str, password: str, department: str | None = None,
             display_name: str = "", actor: str = "cli:admin", lang: str = "zh") -> User:
    if role not in {r.value for r in Role}:
        raise UserInvalid(f"role must be one of {', '.join(r.value for r in Role)}, not '{role}'",
                          details={"reason": "role"})
    if role == Role.department:
        if not department:
            raise UserInvalid("a department user needs --department KEY", details={"reason": "department_needed"})
        if registry().department(department) is None:
            raise UserInvalid(f"unknown department '{department}'", details={"reason": "unknown_department"})
    elif department:
        raise UserInvalid(f"only department users are bound to a department, not a {role} user",
                          details={"reason": "department_not_allowed"})
    _check_password(password)
    display_name = _display_name(display_name)
    if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise UserInvalid("the user name must be letters, digits, '.', '-' or '_' (at most 64)",
                          details={"reason": "username"})
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise UserInvalid(f"user '{username}' already exists", details={"reason": "exists"})
    user = User(username=username, role=role, department=department, display_name=display_name or username,
                password_hash=_hasher.hash(password), lang=lang)
    session.add(user)
    audit(session, actor=actor, action="user.added", username=username, role=role, department=department)
    session.flush()
    return user


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise UserInvalid("the password must be at least 10 characters", details={"reason": "password"})
    if len(password) > 1024:
        raise UserInvalid("the password must be at most 1024 characters", details={"reason": "password"})


def _display_name(value: str) -> str:
    """The name people know the user by: one line of at most 100 characters ("" stands for the user name)."""
    try:
        return policy.text(value.strip(), max_length=100)
    except policy.Violation as exc:
        raise UserInvalid(f"the display name {exc.message}", details={"reason": "display_name"}) from None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _count_failure(session: Session, source: str, now: datetime) -> None:
    """Count a failed login from the address, in single statements (each atomic, no lock held while a password
    is checked), and block the address once the window holds too many."""
    settings = get_settings()
    window = timedelta(seconds=settings.login_window_seconds)
    dialect = postgresql if is_postgres(session) else sqlite
    session.execute(dialect.insert(LoginThrottle).values(source=source, window_started_at=now, failures=0)
                    .on_conflict_do_nothing())
    this = col(LoginThrottle.source) == source
    session.execute(update(LoginThrottle).where(this, col(LoginThrottle.window_started_at) < now - window)
                    .values(window_started_at=now, failures=0))
    failures = session.execute(update(LoginThrottle).where(this).values(failures=col(LoginThrottle.failures) + 1)
                               .returning(col(LoginThrottle.failures))).scalar_one()
    if failures >= settings.login_failures_per_source:
        session.execute(update(LoginThrottle).where(this).values(blocked_until=now + window))


def is_locked(user: User, now: datetime | None = None) -> bool:
    """Locked out everywhere by the account-wide back-off, and it has not run out yet."""
    return user.locked_until is not None and user.locked_until > (now or utcnow())


@dataclass(frozen=True)
class LoginLockout:
    """A running lockout: of one address (`source`) or, with `source` None, of every address."""

    user_id: str
    username: str
    source: str | None
    until: datetime
    failures: int


def lockouts(session: Session, *, user_id: str | None = None, now: datetime | None = None
             ) -> dict[str, list[LoginLockout]]:
    """Every running lockout, by user id: the account-wide back-off first, then each address's own."""
    moment = now or utcnow()
    found: dict[str, list[LoginLockout]] = {}
    accounts = select(User).where(col(User.locked_until) > moment)
    pairs = select(LoginLock, User).join(User, col(User.id) == LoginLock.user_id).where(
        col(LoginLock.locked_until) > moment)
    if user_id is not None:
        accounts = accounts.where(User.id == user_id)
        pairs = pairs.where(LoginLock.user_id == user_id)
    for user in session.exec(accounts.order_by(col(User.username))).all():
        assert user.locked_until is not None
        found.setdefault(user.id, []).append(LoginLockout(user.id, user.username, None, user.locked_until,
                                                          user.failed_logins))
    for lock, user in session.exec(pairs.order_by(col(User.username), col(LoginLock.source))).all():
        assert lock.locked_until is not None
        found.setdefault(user.id, []).append(LoginLockout(user.id, user.username, lock.source, lock.locked_until,
                                                          lock.failures))
    return found


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _refuse(session: Session, *, password: str, address: str, now: datetime) -> AuthenticationFailed:
    """What a user name that does not exist and a locked account both cost and answer: a password check
    against a fixed hash, a failure counted against the address, and 401 `authentication_failed`."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_dummy_hash(), password)
    _count_failure(session, address, now)
    return AuthenticationFailed(REFUSED)


def authenticate(session: Session, *, username: str, password: str, source: str = "") -> User:
    """Check a password. Five failures in a row at an account from one address lock that address out of it for
    15 minutes (its owner elsewhere logs in as usual); past `login_failures_per_account` failures from every
    address together, each further one locks the account everywhere for a while (doubling, up to 15 minutes);
    too many failures from one address over every account make that address wait out a window.

    A locked account answers exactly as a user name that does not exist (and takes as long), so a guesser can
    tell neither. The user's row is locked for the check, so concurrent guesses at one account are counted one
    by one and none slips past a limit between a read and a write.
    """
    _dummy_hash()  # the process's first check pays for it whichever way it goes
    now = utcnow()
    address = source[:64]
    throttle = session.get(LoginThrottle, address)
    if throttle is not None and throttle.blocked_until is not None and throttle.blocked_until > now:
        audit(session, actor=f"anonymous:{source}", action="login.throttled", username=username[:64])
        raise LoginThrottled("too many failed logins from this address; try again later",
                             retry_after=_seconds_until(throttle.blocked_until, now))

    user = session.exec(select(User).where(User.username == username).with_for_update()
                        .execution_options(populate_existing=True)).first()
    if user is None or not user.active:
        refusal = _refuse(session, password=password, address=address, now=now)
        audit(session, actor=f"anonymous:{source}", action="login.failed", username=username[:64])
        raise refusal
    lock = session.get(LoginLock, (user.id, address), populate_existing=True)
    pair_locked = lock is not None and lock.locked_until is not None and lock.locked_until > now
    if pair_locked or is_locked(user, now):
        refusal = _refuse(session, password=password, address=address, now=now)
        audit(session, actor=f"user:{user.username}", action="login.locked", source=source,
              scope="address" if pair_locked else "account")
        raise refusal
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        _count_failure(session, address, now)
        _count_account_failure(session, user, lock, address, now)
        audit(session, actor=f"user:{user.username}", action="login.failed", source=source)
        raise AuthenticationFailed(REFUSED) from None
    user.failed_logins = 0
    user.locked_until = None
    if lock is not None:
        session.delete(lock)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.add(user)
    audit(session, actor=f"user:{user.username}", action="login", source=source)
    return user


def _count_account_failure(session: Session, user: User, lock: LoginLock | None, address: str,
                           now: datetime) -> None:
    """A wrong password for a known account: counted for the (account, address) pair, which locks at
    MAX_FAILED_LOGINS, and for the account over every address, which backs off past its own limit."""
    if lock is None:
        lock = LoginLock(user_id=user.id, source=address)
    lock.failures += 1
    lock.last_failed_at = now
    if lock.failures >= MAX_FAILED_LOGINS:
        lock.locked_until = now + LOCKOUT
        lock.failures = 0
    session.add(lock)
    user.failed_logins += 1
    beyond = user.failed_logins - get_settings().login_failures_per_account
    if beyond >= 0:
        user.locked_until = now + min(BACKOFF_START * 2 ** min(beyond, 16), LOCKOUT)
    session.add(user)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    record: AccessToken


def issue_token(
    session: Session, *, user: User, kind: str = "bearer", ttl: timedelta = timedelta(hours=8)
) -> IssuedToken:
    token = secrets.token_urlsafe(32)
    record = AccessToken(digest=_digest(token), user_id=user.id, kind=kind, expires_at=utcnow() + ttl)
    session.add(record)
    session.flush()
    return IssuedToken(token=token, expires_in=int(ttl.total_seconds()), record=record)


def user_for_token(session: Session, token: str, kind: str | None = None) -> tuple[User, AccessToken] | None:
    # The token and its user in one statement: every request starts here.
    found = session.exec(select(AccessToken, User).join(User, col(User.id) == col(AccessToken.user_id))
                         .where(AccessToken.digest == _digest(token))).first()
    if found is None:
        return None
    record, user = found
    if record.revoked_at is not None or record.expires_at <= utcnow():
        return None
    if kind is not None and record.kind != kind:
        return None
    if not user.active:
        return None
    return user, record


def revoke(session: Session, *, token_id: str, actor: str) -> None:
    record = session.get(AccessToken, token_id)
    if record is None:
        raise NotFound("no such token")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
        audit(session, actor=actor, action="token.revoked", token_id=token_id)


def revoke_all(session: Session, *, user_id: str, actor: str) -> int:
    rows = session.exec(select(AccessToken).where(AccessToken.user_id == user_id,
                                                  col(AccessToken.revoked_at).is_(None))).all()
    now = utcnow()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    user = session.get(User, user_id)
    audit(session, actor=actor, action="tokens.revoked", user_id=user_id,
          username=user.username if user else None, count=len(rows))
    return len(rows)


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


# What a role is called, for finding users by it (the pages word roles through their message catalogues).
ROLE_WORDS: dict[str, tuple[str, ...]] = {
    Role.office: ("应急办", "Emergency office"), Role.department: ("部门", "Department"),
    Role.manager: ("管理人员", "Manager"), Role.admin: ("系统管理员", "Administrator")}


def search_users(session: Session, *, text: str | None = None, limit: int, offset: int) -> Page:
    """One page of users, by user name, whose user name, display name, department (its key, or its name in
    Chinese or English) or role (its key or its name) holds `text`, whatever its case; every user without it."""
    query = select(User)
    needle = (text or "").strip()
    if needle:
        folded = needle.casefold()
        departments = [d.key for d in registry().departments
                       if any(folded in word.casefold() for word in (d.key, d.name.zh, d.name.en))]
        roles = [str(role) for role, words in ROLE_WORDS.items()
                 if any(folded in word.casefold() for word in (role, *words))]
        query = query.where(or_(col(User.username).icontains(needle, autoescape=True),
                                col(User.display_name).icontains(needle, autoescape=True),
                                col(User.department).in_(departments), col(User.role).in_(roles)))
    return paged(session, query, col(User.username), limit=limit, offset=offset)


def departments_without_active_users(session: Session, *, departments: Iterable[str], command: str) -> list[str]:
    """Those of `departments` (in the order given) that no active user works for. A department user works for
    their own department; office users and administrators work for the command office, whose key (`COMMAND` of
    core.incidents.service, which this domain cannot import) is `command`."""
    wanted = list(dict.fromkeys(departments))
    staffed = set(session.exec(select(User.department).where(col(User.active).is_(True), User.role == Role.department,
                                                             col(User.department).in_(wanted)).distinct()).all())
    if command in wanted and command not in staffed:
        desk = session.exec(select(User.id).where(col(User.active).is_(True),
                                                  col(User.role).in_([Role.office, Role.admin])).limit(1)).first()
        if desk is not None:
            staffed.add(command)
    return [key for key in wanted if key not in staffed]


def unstaffed_departments(session: Session, *, command: str) -> dict[str, list[str]]:
    """The departments that a plan in use gives tasks to but no active user works for, each with the incident
    types whose plans do: tasks would reach nobody (the administration page warns of them)."""
    given = departments_given_tasks(session)
    return {key: given[key] for key in departments_without_active_users(session, departments=given, command=command)}


def set_lang(session: Session, *, user_id: str, lang: str) -> None:
    user = session.get(User, user_id)
    if user is not None and lang in READER_LANGUAGES:
        user.lang = lang
        session.add(user)


# -- administration (admins, through the API or `baton users`); every change is audited ----------------------
class UserStateConflict(BatonError):
    code = "user_state_conflict"
    http_status = 409


def get_user(session: Session, *, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def user_named(session: Session, *, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user '{username}'")
    return user


def disable_user(session: Session, *, user_id: str, actor: str, reason: str | None = None) -> int:
    """Refuse the user's logins from now on and end every token and session they hold; returns how many. The API,
    the admin page and the CLI disable through `core.incidents.alerts.disable_user`, which also alerts the office
    when this leaves a department with nobody able to act (this domain cannot import that one)."""
    user = get_user(session, user_id=user_id)
    if actor == f"user:{user.username}":
        raise UserStateConflict("you cannot disable your own account", details={"reason": "self"})
    if user.role == Role.admin and user.active:
        # Locked, so that two administrators disabling each other at once cannot leave none.
        admins = session.exec(select(User.id).where(User.role == Role.admin, col(User.active).is_(True))
                              .with_for_update()).all()
        if len(admins) <= 1:
            raise UserStateConflict("this is the last active administrator", details={"reason": "last_admin"})
    revoked = revoke_all(session, user_id=user.id, actor=actor)
    if user.active:
        user.active = False
        session.add(user)
        audit(session, actor=actor, action="user.disabled", username=user.username, reason=reason)
    return revoked


def set_display_name(session: Session, *, user_id: str, display_name: str, actor: str) -> User:
    """The name people know the user by (shown wherever users are named); empty stands for the user name."""
    user = get_user(session, user_id=user_id)
    name = _display_name(display_name) or user.username
    if name != user.display_name:
        audit(session, actor=actor, action="user.renamed", username=user.username, display_name=name,
              was=user.display_name)
        user.display_name = name
        session.add(user)
    return user


def enable_user(session: Session, *, user_id: str, actor: str) -> User:
    user = get_user(session, user_id=user_id)
    if not user.active:
        user.active = True
        _lift_lockouts(session, user)
        audit(session, actor=actor, action="user.enabled", username=user.username)
    return user


def _lift_lockouts(session: Session, user: User) -> int:
    """End the account-wide back-off and every address's lockout of the user; returns how many addresses
    had failures counted."""
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    pairs = session.exec(select(LoginLock).where(LoginLock.user_id == user.id)).all()
    for pair in pairs:
        session.delete(pair)
    return len(pairs)


def unlock_user(session: Session, *, user_id: str, actor: str) -> User:
    """Lift every lockout of the user after failed logins, of every address and the account-wide back-off,
    before they run out (a desk that must log in now)."""
    user = get_user(session, user_id=user_id)
    running = lockouts(session, user_id=user.id).get(user.id, [])
    had_failures = user.failed_logins
    if _lift_lockouts(session, user) or running or had_failures:
        audit(session, actor=actor, action="user.unlocked", username=user.username, was_locked=bool(running),
              sources=sorted(lock.source or "*" for lock in running))
    return user


def set_password(session: Session, *, user_id: str, password: str, actor: str) -> int:
    """A new password: the lockout is lifted and every token and session of the old one ends; returns how
    many were ended. The password itself is never recorded."""
    user = get_user(session, user_id=user_id)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    _lift_lockouts(session, user)
    revoked = revoke_all(session, user_id=user.id, actor=actor)
    audit(session, actor=actor, action="user.password_set", username=user.username)
    return revoked


def list_audit(session: Session, *, action: str | None = None, actor: str | None = None,
               since: datetime | None = None, limit: int = 100, offset: int = 0) -> Page:
    """The audit trail, newest first; `action` matches a whole action or a family (`login` finds `login`,
    `login.failed`, `login.locked`, …)."""
    query = select(AuditEvent)
    if action:
        family = col(AuditEvent.action).startswith(f"{action}.", autoescape=True)
        query = query.where(or_(col(AuditEvent.action) == action, family))
    if actor:
        query = query.where(col(AuditEvent.actor) == actor)
    if since is not None:
        query = query.where(col(AuditEvent.at) >= since.astimezone(UTC))
    return paged(session, query, col(AuditEvent.id).desc(), limit=limit, offset=offset)
