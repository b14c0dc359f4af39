"""Who may act on a task or follow-up (`core.incidents.permissions.may_act`), the one rule the API routes and the
pages apply: the department it is for; the office and administrators act for the emergency office."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.incidents.permissions import acts_for, may_act
from core.users.models import Role, User


@dataclass(frozen=True)
class Work:
    department: str


def user(role: Role, department: str | None = None) -> User:
    return User(username=f"{role}-{department}", role=role, department=department, password_hash="-")


@pytest.mark.parametrize(("who", "department", "expected"), [
    (user(Role.department, "meteorology"), "meteorology", True),
    (user(Role.department, "meteorology"), "water_affairs", False),
    (user(Role.department, "meteorology"), "emergency_office", False),
    (user(Role.office), "emergency_office", True),
    (user(Role.office), "meteorology", False),  # the office reads every task, acts only for itself
    (user(Role.admin), "emergency_office", True),
    (user(Role.admin), "meteorology", False),
    (user(Role.manager), "emergency_office", False),  # managers only read
    (user(Role.manager, "meteorology"), "meteorology", False),
    (user(Role.department), "meteorology", False),  # a department user bound to no department acts for none
])
def test_only_the_department_a_task_is_for_acts_on_it(who: User, department: str, expected: bool) -> None:
    assert may_act(who, Work(department)) is expected


def test_each_role_acts_for_one_department_or_none() -> None:
    assert [acts_for(user(role, "meteorology")) for role in Role] == [
        "emergency_office", "meteorology", None, "emergency_office"]
