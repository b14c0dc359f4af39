"""Maintenance flows that `deploy/prefect.yaml` deploys to the `baton-maintenance` process work pool.

They work on Baton's database only and never touch an incident's own flow run:

* `deadline-sweep` (every minute) wakes incidents with a reminder or deadline that passed while the worker
  holding them was busy (`core.incidents.deadlines`, and the answer deadlines of `core.sharing.answers`), through
  the incidents service's `wake` (the `woken_at` that workers poll). The incident's flow then reminds or
  escalates as usual; the sweep itself writes no ledger entry for them. It also flags leaders' instructions'
  tasks (批示, `core.desk.instructions`) past their time limit, once each: ledgered to the office and sent to the
  department's own system.
* `ledger-audit` (nightly) verifies every incident's hash chain and fails its flow run if any is broken.

Each database write or read here is a short transaction of its own: on SQLite every transaction holds the
write lock, and on PostgreSQL one-row transactions cannot deadlock with the workers' multi-row lease updates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from sqlmodel import col, select

from core.desk import instructions
from core.incidents.deadlines import passed_unhandled
from core.incidents.models import Incident
from core.incidents.service import wake_unless_woken_since
from core.ledger.chain import named_chains, verify_chain, verify_incident
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.sharing import answers


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called through `.fn` or from a plain script
        return logging.getLogger("baton.maintenance")


def sweep_deadlines(now: datetime | None = None) -> list[str]:
    """Wake every open incident with a passed, unhandled reminder or deadline that has not been woken
    since; returns their ids. Waking twice is harmless (the flow re-reads everything), so a sweep that
    races the incident's own timer costs one extra reconciliation at most."""
    moment = now or utcnow()
    with session_scope() as session:
        passed = passed_unhandled(session, now=moment)
        # 叫应: an official unanswered at their limit, a red warning with no response (core.sharing.answers).
        for incident_id, at in answers.passed_unhandled(session, now=moment).items():
            passed[incident_id] = max(at, passed.get(incident_id, at))
    woken: list[str] = []
    for incident_id, passed_at in sorted(passed.items()):
        with session_scope() as session:
            if wake_unless_woken_since(session, incident_id=incident_id, since=passed_at, now=moment):
                woken.append(incident_id)
    return woken


def sweep_instructions(now: datetime | None = None) -> list[str]:
    """Flag every instruction task past its time limit that is not flagged yet; returns their ids. One short
    transaction per task (its incident locked first, as every writer does); a task flagged by a sweep racing this
    one is skipped, so none is escalated twice."""
    moment = now or utcnow()
    with session_scope() as session:
        due = instructions.overdue_unflagged(session, now=moment)
    flagged: list[str] = []
    for task_id in due:
        with session_scope() as session:
            if instructions.flag_overdue(session, task_id=task_id, now=moment):
                flagged.append(task_id)
    return flagged


@flow(name="deadline-sweep")
def deadline_sweep() -> dict[str, Any]:
    """Wake incidents whose reminder or deadline passed while their worker was busy; flag overdue instruction
    tasks."""
    woken = sweep_deadlines()
    if woken:
        _logger().info("woke %d incident(s) with a passed reminder or deadline: %s", len(woken), ", ".join(woken))
    late = sweep_instructions()
    if late:
        _logger().info("flagged %d instruction task(s) overdue: %s", len(late), ", ".join(late))
    return {"woken": woken, "instructions_overdue": late}


@dataclass(frozen=True)
class BrokenChain:
    code: str  # the incident's code, or a named chain's name
    incident_id: str  # the incident's id, or a named chain's name
    first_bad_seq: int | None
    reason: str | None

    def __str__(self) -> str:
        where = self.code if self.code == self.incident_id else f"{self.code} ({self.incident_id})"
        return f"{where}: first bad entry {self.first_bad_seq} ({self.reason})"


class LedgerBroken(RuntimeError):
    """At least one ledger chain no longer verifies: it was edited, cut short or reordered."""

    def __init__(self, broken: list[BrokenChain], checked: int) -> None:
        self.broken = broken
        lines = "\n".join(f"  - {item}" for item in broken)
        super().__init__(f"{len(broken)} of {checked} ledger chain(s) are broken:\n{lines}")


def audit_ledgers() -> tuple[int, list[BrokenChain]]:
    """Verify every chain: each incident's (open and closed), then the named ones (desk, prevention runs,
    registers); one short transaction per chain."""
    with session_scope() as session:
        incidents = [(row[0], row[1]) for row in
                     session.exec(select(Incident.id, Incident.code).order_by(col(Incident.created_at))).all()]
        names = named_chains(session)
    broken: list[BrokenChain] = []
    for incident_id, code in incidents:
        with session_scope() as session:
            result = verify_incident(session, incident_id)
        if not result.valid:
            broken.append(BrokenChain(code, incident_id, result.first_bad_seq, result.reason))
    for name in names:
        with session_scope() as session:
            result = verify_chain(session, name)
        if not result.valid:
            broken.append(BrokenChain(name, name, result.first_bad_seq, result.reason))
    return len(incidents) + len(names), broken


@flow(name="ledger-audit")
def ledger_audit() -> dict[str, Any]:
    """Verify every ledger chain; the flow run fails, naming each broken chain, if any does not verify."""
    checked, broken = audit_ledgers()
    if broken:
        raise LedgerBroken(broken, checked)
    _logger().info("all %d ledger chain(s) verify", checked)
    return {"checked": checked, "broken": 0}
