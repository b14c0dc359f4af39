"""What the access matrices (API: tests/test_access.py; pages: tests/test_access_pages.py) share: the roles, a
cell's outcome, the printed table, the app's routes, and the check that every route has a row."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import routing

from tests.conftest import Say

ROLES = ("anonymous", "office", "manager", "admin", "dept_owner", "dept_other")
NA = None  # the role does not apply to this target (no department owns the emergency office's steps)


def roles(anonymous: int, office: int, manager: int, admin: int, dept_owner: int | None,
          dept_other: int) -> dict[str, int | None]:
    return dict(zip(ROLES, (anonymous, office, manager, admin, dept_owner, dept_other), strict=True))


@dataclass(frozen=True)
class Row:
    """A route tried on a target: a method, a path template, the kind of object it points at, and the status
    each role must get. The matrices add what they send."""

    method: str
    path: str
    target: str
    expect: dict[str, int | None]
    note: str = field(default="", kw_only=True)

    @property
    def route(self) -> tuple[str, str]:
        return self.method, self.path.split("?")[0]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} [{self.target}{', ' + self.note if self.note else ''}]"


@dataclass
class Cell:
    """One row tried as one role: the status expected (None: the role does not apply), got, what else failed."""

    case: Row
    role: str
    expected: int | None
    got: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.expected is None or (self.got == self.expected and not self.problems)


def check_change(cell: Cell, *, writes: bool, allowed: bool, changed: bool) -> None:
    """A refused request changes nothing; an allowed write changes something; a read changes nothing."""
    if writes and not allowed and changed:
        cell.problems.append("a refused request changed something")
    if writes and allowed and cell.got == cell.expected and not changed:
        cell.problems.append("an allowed write changed nothing")
    if not writes and changed:
        cell.problems.append("a read changed something")


def print_table(cells: list[Cell], say: Say, *, heading: str, summary: str) -> None:
    """The whole table under `pytest -s`; its count (and any violation) in the run's figures."""
    rows: dict[str, dict[str, Cell]] = {}
    for cell in cells:
        rows.setdefault(cell.case.label, {})[cell.role] = cell
    width = max(len(label) for label in rows)
    print()
    print(f"{heading:<{width}}  " + "  ".join(f"{r:>10}" for r in ROLES))
    for label, by_role in rows.items():
        shown = []
        for role in ROLES:
            cell = by_role[role]
            if cell.expected is None:
                text = "—"
            elif cell.ok:
                text = str(cell.got)
            else:
                text = f"{cell.got}≠{cell.expected}" + ("!" if cell.problems else "")
            shown.append(f"{text:>10}")
        print(f"{label:<{width}}  " + "  ".join(shown))
    checked = [c for c in cells if c.expected is not None]
    bad = [c for c in checked if not c.ok]
    say(f"{summary}{len(rows)} rows, {len(checked)} cells checked, {len(bad)} violations")
    for cell in bad:
        say(f"  {cell.case.label} as {cell.role}: got {cell.got}, expected {cell.expected}; {cell.problems}")


def assert_no_violations(cells: list[Cell]) -> None:
    violations = [c for c in cells if not c.ok]
    assert not violations, "\n".join(f"{c.case.label} as {c.role}: got {c.got}, expected {c.expected} {c.problems}"
                                     for c in violations)


def app_routes(keep: Callable[[str, Any], bool]) -> set[tuple[str, str]]:
    """(method, path) of every route of the app that `keep(path, route)` keeps, through included routers."""
    from api.app import app

    # FastAPI 0.150 keeps included routers as wrappers in `app.routes`; `iter_route_contexts` flattens them.
    flatten = getattr(routing, "iter_route_contexts", None)
    found: set[tuple[str, str]] = set()
    for route in flatten(app.routes) if flatten else app.routes:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None or not methods or not keep(path, original):
            continue
        found |= {(method, path) for method in set(methods) - {"HEAD"}}
    return found


def assert_every_route_has_a_row(routes: set[tuple[str, str]], matrix: Iterable[Row], what: str) -> None:
    rows = list(matrix)
    covered = {case.route for case in rows}
    assert routes - covered == set(), f"{what} with no row in the access matrix: {sorted(routes - covered)}"
    assert covered - routes == set(), f"matrix rows for routes the app does not have: {sorted(covered - routes)}"
    # Every row with a path parameter is also tried on an object that does not exist.
    for route in {case.route for case in rows if "{" in case.path}:
        assert "unknown" in {case.target for case in rows if case.route == route}, route
