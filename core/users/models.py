"""Tables of the users domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class Role(StrEnum):
    office = "office"  # emergency office duty staff: triggers and steers incidents, acts for the office
    department = "department"  # bound to one department: its own tasks, and what is shared with it
    manager = "manager"  # reads everything, changes nothing
    admin = "admin"


class UserBase(SQLModel):
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(default="", max_length=100)
    role: str = Field(max_length=16)
    department: str | None = Field(default=None, max_length=64)
    lang: str = Field(default="zh", max_length=8)


class User(UserBase, table=True):
    __tablename__ = "app_user"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    password_hash: str = Field(max_length=200)
    active: bool = True
    # Failed logins from every address since the last good one, and the account-wide back-off they set once
    # there are many (core/users/service.py); each address's own lock is a LoginLock.
    failed_logins: int = 0
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


def sees_all(user: UserBase) -> bool:
    """The office, managers and administrators read every incident; a department reads its own."""
    return user.role in (Role.office, Role.manager, Role.admin)


def reader_of(user: UserBase) -> str | None:
    """The scope of what a user reads (`core.incidents.reads`): None for everything, else their department."""
    return None if sees_all(user) else user.department


class LoginThrottle(SQLModel, table=True):
    """Failed logins from one source (a client address) in the current window, across every account, so that
    guessing one password on many accounts is slowed as guessing many on one is."""

    __tablename__ = "login_throttle"

    source: str = Field(primary_key=True, max_length=64)
    window_started_at: datetime = Field(default_factory=utcnow)
    failures: int = 0
    blocked_until: datetime | None = None


class LoginLock(SQLModel, table=True):
    """Failed logins at one account from one address: five in a row lock the account for that address only,
    so that a guesser elsewhere cannot lock its owner out."""

    __tablename__ = "login_lock"

    user_id: str = Field(foreign_key="app_user.id", primary_key=True, max_length=36)
    source: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    locked_until: datetime | None = None
    last_failed_at: datetime = Field(default_factory=utcnow)


class AccessToken(SQLModel, table=True):
    """A bearer token or a page session: stored as a SHA-256 digest, so a database dump grants nothing."""

    __tablename__ = "access_token"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    digest: str = Field(unique=True, max_length=64)
    user_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    kind: str = Field(default="bearer", max_length=16)  # bearer, session
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Logins and administrative changes (the ledger is for handoffs; this is for access)."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class UserPosition(SQLModel, table=True):
    """A post a user holds (总指挥 of the flood headquarters, 局长 of a bureau, 网格员 of a community …). A user
    holds zero or more; the organisation is a registry key (a department or headquarters), or none."""

    __tablename__ = "user_position"
    __table_args__ = (UniqueConstraint("user_id", "position", "organisation", name="uq_user_position"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    position: str = Field(max_length=64)
    organisation: str | None = Field(default=None, max_length=64)
    granted_at: datetime = Field(default_factory=utcnow)
    granted_by: str = Field(max_length=100)
    # The stand-in (AB角) who is called when the holder does not answer a warning in time (叫应); a rostered duty
    # position's stand-in is the roster's.
    stand_in_id: str | None = Field(default=None, foreign_key="app_user.id", max_length=36)

    @property
    def ref(self) -> str:
        return f"{self.position}@{self.organisation}" if self.organisation else self.position


class RosterShift(SQLModel, table=True):
    """Who holds a duty position (值班员, 带班领导 …) of a department for one shift, and their stand-in (AB角), who
    holds it while the holder is away. Imported from a duty roster (`core.users.rosters`)."""

    __tablename__ = "roster_shift"
    __table_args__ = (UniqueConstraint("department", "position", "starts_at", name="uq_roster_shift"),
                      Index("ix_roster_shift_at", "department", "position", "starts_at", "ends_at"))

    id: int | None = Field(default=None, primary_key=True)
    department: str = Field(max_length=64)
    position: str = Field(max_length=64)
    holder_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    stand_in_id: str | None = Field(default=None, foreign_key="app_user.id", max_length=36)
    starts_at: datetime
    ends_at: datetime
    source: str = Field(default="", max_length=200)  # the roster file it came from
    imported_at: datetime = Field(default_factory=utcnow)
    imported_by: str = Field(max_length=100)


class DutyAbsence(SQLModel, table=True):
    """A person away (leave, sick, on another assignment) from/to: their stand-in holds their duty positions."""

    __tablename__ = "duty_absence"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="app_user.id", index=True, max_length=36)
    starts_at: datetime
    ends_at: datetime
    reason: str = Field(max_length=200)
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)
