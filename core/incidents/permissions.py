"""Who may act on a department's work (a task, a follow-up): the department it is for. A department user acts
for their own department; the office and administrators act for the emergency office; managers only read. A
task the office referred to a command position (`position`) is acted on by whoever holds that position.

Reading is wider (the office, managers and administrators read every department's work: `core.incidents.reads`
scopes it); acting is decided here only, for the API and the pages alike. `able_to_act` is the same rule seen
from the department: whether anybody active may act for it, so that no task is given to nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlmodel import Session, col, select

from core.incidents.service import COMMAND
from core.users.models import Role, User, UserPosition
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
    roles = [Role.office.value, Role.admin.value] if department == COMMAND else [Role.department.value]
    query = select(User.id).where(col(User.active).is_(True), col(User.role).in_(roles))
    if department != COMMAND:
        query = query.where(User.department == department)
    return session.exec(query.limit(1)).first() is not None


def unstaffed(session: Session, departments: Iterable[str]) -> list[str]:
    """The departments of `departments` that nobody active can act for, sorted."""
    return sorted(d for d in set(departments) if not able_to_act(session, d))


def position_holders(session: Session, ref: str) -> list[User]:
    """The active users who hold the position `ref` (who may act on a task referred to it)."""
    position, organisation = split_position(ref)
    query = select(User).join(UserPosition, col(UserPosition.user_id) == col(User.id)).where(
        col(User.active).is_(True), User.role != Role.manager.value, UserPosition.position == position)
    if organisation is not None:
        query = query.where(UserPosition.organisation == organisation)
    return list(session.exec(query).unique().all())
