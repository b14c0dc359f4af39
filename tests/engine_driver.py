"""Drive the engine synchronously (no Prefect) the way a worker's flow would, for rule tests."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from core.incidents.engine import AdvanceResult, advance, finish_action, latest_tasks
from core.incidents.handoffs import complete
from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident
from core.incidents.service import open_incident
from core.learning.simulation import sample_outputs
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users.models import User

_UNTIL = (utcnow() + timedelta(hours=24)).astimezone(ZoneInfo("Asia/Shanghai")).replace(second=0, microsecond=0)
VALID_UNTIL = _UNTIL.isoformat()
"""A forecast's `valid_until` the flood plan accepts (not in the past, within its P3D horizon): a day ahead of
when the tests started, in Beijing time."""
VALID_UNTIL_LOCAL = _UNTIL.strftime("%Y-%m-%dT%H:%M")
"""The same moment as a page's `datetime-local` input sends it (Baton's zone in the tests is Asia/Shanghai)."""


def open_(type_key: str = "flood", level: str = "IV", **kwargs: Any) -> str:
    with session_scope() as session:
        return open_incident(session, type_key=type_key, level=level, title="test incident", actor="test:office",
                             **kwargs).incident.id


def step(incident_id: str, now: datetime | None = None, real_actions: bool = False) -> AdvanceResult:
    """One reconciliation, with automated steps finished: by their real task bodies when `real_actions`,
    else with a stand-in result."""
    while True:
        with session_scope() as session:
            result = advance(session, incident_id=incident_id, now=now)
            if not real_actions:
                for task_id in result.actions:
                    finish_action(session, task_id=task_id, outputs={"simulated": True})
        if real_actions:
            for task_id in result.actions:
                _run_real_action(task_id)
        if not result.actions:
            return result


def _run_real_action(task_id: str) -> None:
    from tasks.actions import ACTION_TASKS

    with session_scope() as session:
        row = session.get(DepartmentTask, task_id)
        assert row is not None
        incident = session.get(Incident, row.incident_id)
        assert incident is not None
        action = plan_for_version(session, incident.plan_version_id).step(row.step_key).action
    assert action is not None
    asyncio.run(ACTION_TASKS[action].fn(task_id))


def open_tasks(incident_id: str) -> dict[str, DepartmentTask]:
    with session_scope() as session:
        rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                         DepartmentTask.kind == "human",
                                                         col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
        return {row.step_key: row for row in rows}


def forecast_past_due() -> tuple[str, DepartmentTask]:
    """A level IV flood stepped one second past its rainstorm forecast's deadline (meteorology's task, which
    escalates to the city government, a body with no users): the incident's id and the task as it was due."""
    incident_id = open_("flood", level="IV")
    step(incident_id)
    task = open_tasks(incident_id)["rainstorm_forecast"]
    assert task.due_at is not None
    step(incident_id, now=task.due_at + timedelta(seconds=1))
    return incident_id, task


def tasks(incident_id: str) -> dict[str, DepartmentTask]:
    with session_scope() as session:
        return latest_tasks(session, incident_id)


def incident(incident_id: str) -> Incident:
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        return row


def complete_step(incident_id: str, step_key: str, outputs: dict[str, Any] | None = None,
                  actor: str = "test:dept") -> DepartmentTask:
    task = open_tasks(incident_id)[step_key]
    with session_scope() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        plan_step = plan_for_version(session, row.plan_version_id).step(step_key)
        values = outputs if outputs is not None else sample_outputs(plan_step, random.Random(1))
        return complete(session, task_id=task.id, actor=actor, outputs=values)


def run_to_end(incident_id: str, fills: dict[str, dict[str, Any]] | None = None, limit: int = 200) -> list[str]:
    """Complete every open task as it appears until the incident closes; returns the steps in order done."""
    done: list[str] = []
    for _ in range(limit):
        result = step(incident_id)
        if result.closed:
            return done
        for key in sorted(open_tasks(incident_id)):
            complete_step(incident_id, key, (fills or {}).get(key))
            done.append(key)
    raise AssertionError(f"incident did not close; done so far: {done}")


def person(username: str = "commander", *positions: str, role: str = "office",
           department: str | None = None) -> User:
    """A user (made once) holding `positions`; by default the flood headquarters' commander, who may decide
    every level of the flood plan."""
    from core.users.positions import grant
    from core.users.service import add_user
    from tests.fixtures.api import cheap_hashing

    with session_scope() as session, cheap_hashing():  # a test user needs no costly hash
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            user = add_user(session, username=username, role=role, department=department,
                            password="a-test-password-42", actor="test:setup")
        for ref in positions or (("commander@flood_control_hq",) if username == "commander" else ()):
            grant(session, user_id=user.id, ref=ref, actor="test:setup")
        return user
