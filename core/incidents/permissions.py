"""Who may act on a department's work (a task, a follow-up): the department it is for. A department user acts
for their own department; the office and administrators act for the emergency office; managers only read. A
task the office referred to a command position (`position`) is acted on by whoever holds that position.

Reading is wider (the office, managers and administrators read every department's work: `core.incidents.reads`
scopes it); acting is decided here only, for the API and the pages alike. `able_to_act` is the same rule seen
from the department: whether anybody active may act for it, so that no task is given to nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.incidents.service import COMMAND
from core.platform.clock import utcnow
from core.users import rosters
from core.users.models import Role, User, UserPosition
from core.users.positions import stand_in_of
from process_defs.schema import split_position


class DepartmentWork(Protocol):
    @property
    def department(self) -> str: ...


def acts_for(user: User) -> str | None:
    """The department whose work this user does, or None for a user who only reads."""
    if user.role == Role.department:
        return user.department
    if user.role in (Role.office, Role.admin):
        return COMMAND
    return None


def holds_ref(held: Iterable[str], ref: str) -> bool:
    """Whether the positions `held` (references) include `ref`; a bare position matches it held anywhere."""
    position, organisation = split_position(ref)
    for have in held:
        mine, where = split_position(have)
        if mine == position and (organisation is None or where == organisation):
            return True
    return False


def may_act(user: User, work: DepartmentWork, held: Iterable[str] = ()) -> bool:
    """Whether the user may act on the task (or follow-up): acknowledge, complete or hand it back. `held`: the
    positions the user holds, which count for a task referred to a position (and only for it)."""
    position = getattr(work, "position", None)
    if position:
        return user.active and user.role != Role.manager and holds_ref(held, position)
    department = acts_for(user)
    return department is not None and work.department == department


def able_to_act(session: Session, department: str) -> bool:
    """Whether any active user may act for `department` (`acts_for`): one of its department users, or for the
    emergency office an office user or administrator."""
    if department == COMMAND:
        return session.exec(_OFFICE_STAFFED).first() is not None
    return session.exec(_DEPARTMENT_STAFFED, params={"department": department}).first() is not None


# Built once: the engine asks for every department it assigns a task to.
_OFFICE_STAFFED = select(User.id).where(col(User.active).is_(True),
                                        col(User.role).in_([Role.office.value, Role.admin.value])).limit(1)
_DEPARTMENT_STAFFED = select(User.id).where(col(User.active).is_(True), User.role == Role.department.value,
                                            User.department == bindparam("department")).limit(1)


def unstaffed(session: Session, departments: Iterable[str]) -> list[str]:
    """The departments of `departments` that nobody active can act for, sorted."""
    return sorted(d for d in set(departments) if not able_to_act(session, d))


def duty_of(session: Session, ref: str, at: datetime | None = None) -> tuple[str | None, list[User]]:
    """Who was meant to hold the position `ref` at `at` and who holds it. A rostered duty position
    (`core.users.rosters`): the shift's holder (user name; None when no shift covers `at`), and the holder, or
    while the holder is away their stand-in, or nobody. Any other position: None, and every active user holding it."""
    position, organisation = split_position(ref)
    if organisation is not None and rosters.rostered(session, organisation, position):
        duty = rosters.on_duty(session, department=organisation, position=position, at=at or utcnow())
        if duty is None:
            return None, []
        return duty.holder.username, [duty.acting] if duty.acting is not None and duty.acting.role != Role.manager \
            else []
    return None, _holders(session, position, organisation)


def position_holders(session: Session, ref: str, at: datetime | None = None) -> list[User]:
    """The active users who hold the position `ref` now (who may act on a task referred to it): by the duty
    roster for a rostered position, else by the positions users hold."""
    return duty_of(session, ref, at)[1]


def held_for(session: Session, user: User, work: DepartmentWork) -> list[str]:
    """The positions of `user` that count for `work` (for `may_act`): a task addressed to a position counts for
    whoever holds it now, and for the person it was assigned to."""
    position = getattr(work, "position", None)
    if not position:
        return []
    if getattr(work, "assignee", None) == user.username or any(u.id == user.id for u in
                                                                position_holders(session, position)):
        return [position]
    return []


def _holders(session: Session, position: str, organisation: str | None) -> list[User]:
    query = select(User).join(UserPosition, col(UserPosition.user_id) == col(User.id)).where(
        col(User.active).is_(True), User.role != Role.manager.value, UserPosition.position == position)
    if organisation is not None:
        query = query.where(UserPosition.organisation == organisation)
    return list(session.exec(query).unique().all())


@dataclass(frozen=True)
class Official:
    """A person reached for a position (`position` is its ref): a holder, or the stand-in in their place."""

    user: User
    position: str


def stand_in(session: Session, *, user: User, ref: str, at: datetime) -> User | None:
    """The person's stand-in (AB角) for `ref`: the roster's for a rostered duty position (when the person is the
    shift's holder), else the one named for the position they hold."""
    position, organisation = split_position(ref)
    if organisation is not None and rosters.rostered(session, organisation, position):
        duty = rosters.on_duty(session, department=organisation, position=position, at=at)
        if duty is None or duty.holder.id != user.id or duty.stand_in is None:
            return None
        return duty.stand_in if duty.stand_in.active else None
    other = stand_in_of(session, user_id=user.id, ref=ref)
    return other if other is not None and other.active else None
