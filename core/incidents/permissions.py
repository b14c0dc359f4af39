"""Who may act on a department's work (a task, a follow-up): the department it is for. A department user acts
for their own department; the office and administrators act for the emergency office; managers only read.

Reading is wider (the office, managers and administrators read every department's work: `core.incidents.reads`
scopes it); acting is decided here only, for the API and the pages alike.
"""

from __future__ import annotations

from typing import Protocol

from core.incidents.service import COMMAND
from core.users.models import Role, User


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


def may_act(user: User, work: DepartmentWork) -> bool:
    """Whether the user may act on the task (or follow-up): acknowledge, complete or hand it back."""
    department = acts_for(user)
    return department is not None and work.department == department
