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


@dataclass(frozen=True)
class Referred:
    department: str
    position: str | None


@pytest.mark.parametrize(("who", "held", "expected"), [
    (user(Role.office), ["commander@flood_control_hq"], True),  # the holder acts
    (user(Role.office), ["commander"], False),  # a commander of no named organisation is not this one
    (user(Role.office), ["commander@provincial_flood_command"], False),  # another organisation's commander
    (user(Role.office), [], False),  # the office acts for itself, not for a leader it referred the task to
    (user(Role.admin), [], False),
    (user(Role.department, "water_affairs"), ["commander@flood_control_hq"], True),  # whatever desk holds it
    (user(Role.manager), ["commander@flood_control_hq"], False),  # managers only read
])
def test_a_task_referred_to_a_position_is_acted_on_by_its_holder(who: User, held: list[str],
                                                                 expected: bool) -> None:
    assert may_act(who, Referred("emergency_office", "commander@flood_control_hq"), held) is expected


def test_a_bare_position_is_held_anywhere() -> None:
    assert may_act(user(Role.office), Referred("emergency_office", "commander"), ["commander@flood_control_hq"])
