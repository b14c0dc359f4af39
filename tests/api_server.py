"""What the HTTP tests build and check: valid form values, a flood incident driven to a chosen step, the
error format, and readings of the database (the ledger, tasks, the audit trail, a fingerprint of everything a
refused request must leave as it was).

The servers, users and tokens are tests/fixtures/api.py's (the fixtures `api`, `api_server`, `loopback_api`);
their names are importable from here too, as they were before the fixtures moved there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select as sa_select
from sqlmodel import col, func, select

from core.attachments.models import Attachment
from core.incidents.models import DepartmentTask, Incident, LevelChange
from core.ledger.chain import DESK, REGISTERS
from core.ledger.models import LedgerEntry
from core.outbox.models import ChannelContact, NotifyChannel, OutboundDelivery
from core.platform.db import get_engine, session_scope
from core.prevention.models import PreventionEvidence, PreventionTask
from core.registers.models import REGISTER_TABLES, MaterialReserve
from core.reporting.models import UpwardReport
from core.resources.models import Replenishment, ResourceRequest
from core.sharing.models import AnswerRequest, CapAlert, SituationReport
from core.signals.models import Signal
from core.users.models import AccessToken, AuditEvent, DutyAbsence, LoginLock, RosterShift, User, UserPosition
from tests import engine_driver as drive
from tests.fixtures.api import (
    PASSWORD,
    STANDARD_POSITIONS,
    STANDARD_USERS,
    Api,
    ApiServer,
    InProcessApi,
    LoopbackApi,
    ProcessApi,
    csrf_of,
    expired_token,
    issued_token,
    login,
    make_user,
    page_client,
    run_api,
    serve_api,
    standard_api,
)
from tests.fixtures.api import api as api_fixture
from tests.fixtures.api import api_server as api_server_fixture

__all__ = ["ASSESSMENT", "FORECAST", "LIFT", "NEW_INCIDENT", "PASSWORD", "STANDARD_POSITIONS", "STANDARD_USERS",
           "VALID_OUTPUTS", "Api", "ApiServer", "FloodIncident", "InProcessApi", "LoopbackApi", "ProcessApi",
           "api_fixture", "api_server_fixture", "audit_actions", "csrf_of", "error_of", "expired_token", "fingerprint",
           "flood", "flood_with_proposal", "issued_token", "ledger_count", "ledger_kinds", "login", "make_user",
           "page_client", "run_api", "serve_api", "standard_api", "task_row"]

# Valid form values for the flood plan's first human steps.
FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": drive.VALID_UNTIL}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}
LIFT = {"decision": "respond"}
VALID_OUTPUTS: dict[str, dict[str, Any]] = {"rainstorm_forecast": FORECAST, "flood_risk_assessment": ASSESSMENT,
                                             "lift_warning": LIFT}
NEW_INCIDENT = {"type": "flood", "level": "IV", "title": "暴雨内涝 test"}

def ledger_count(incident_id: str | None = None) -> int:
    """Ledger entries of one incident, or of all of them."""
    with session_scope() as session:
        query = select(func.count()).select_from(LedgerEntry)
        if incident_id is not None:
            query = query.where(LedgerEntry.incident_id == incident_id)
        return int(session.exec(query).one())


CJK = re.compile(r"[\u4e00-\u9fff]")


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the response is `status` in the error format (with `code` when given), its message in the language
    the answer declares (Content-Language; Chinese with the service's English beside it as `message_en`); return
    the error."""
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text[:500]}"
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "message_en", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    language = response.headers.get("content-language")
    assert language in ("zh-CN", "en"), response.headers
    assert bool(CJK.search(error["message"])) == (language == "zh-CN"), (language, error)
    if "message_en" in error:  # the service's English (which may quote Chinese values) beside a Chinese message
        assert language == "zh-CN" and error["message_en"] != error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def said_in_english(error: dict[str, Any]) -> str:
    """The service's own English wording of an error answer (beside a Chinese message, or the message)."""
    return str(error.get("message_en", error["message"]))


@dataclass
class FloodIncident:
    """A flood incident driven by the engine as far as `until`; `tasks` maps step keys to task ids."""

    id: str
    code: str
    tasks: dict[str, str]


def flood(until: str = "forecast", level: str = "IV") -> FloodIncident:
    """A flood incident opened by the office and advanced until the named step is assigned:
    "forecast" (meteorology's rainstorm_forecast open), "assessment" (forecast done, water_affairs'
    flood_risk_assessment open) or "lift" (both done, the emergency office's lift_warning open)."""
    order = ["forecast", "assessment", "lift"]
    steps = ["rainstorm_forecast", "flood_risk_assessment", "lift_warning"]
    incident_id = drive.open_("flood", level=level)
    drive.step(incident_id)
    tasks: dict[str, str] = {}
    for index, key in enumerate(steps[:order.index(until) + 1]):
        if index:
            previous = steps[index - 1]
            drive.complete_step(incident_id, previous, VALID_OUTPUTS[previous], actor=f"test:{previous}")
            drive.step(incident_id)
        tasks[key] = drive.open_tasks(incident_id)[key].id
    return FloodIncident(id=incident_id, code=drive.incident(incident_id).code, tasks=tasks)


def flood_with_proposal() -> tuple[str, str]:
    """A flood at level IV in its response whose casualty report (12 dead) graded it at II: the incident's id
    and its open level proposal's id."""
    from core.incidents import grading

    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    for key, outputs in (("rainstorm_forecast", FORECAST), ("flood_risk_assessment", ASSESSMENT),
                         ("lift_warning", LIFT), ("activate_command", None),
                         ("casualty_report", {"deaths": 12, "missing": 0, "injured": 5, "people_moved": 300})):
        drive.complete_step(incident_id, key, outputs)
        drive.step(incident_id)
    with session_scope() as session:
        [proposal] = grading.open_proposals(session, incident_id)
    return incident_id, proposal.id


def ledger_kinds(incident_id: str) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                            .order_by(col(LedgerEntry.seq))).all()
        return [(row.kind, row.step_key) for row in rows]


def task_row(task_id: str) -> DepartmentTask:
    with session_scope() as session:
        row = session.get(DepartmentTask, task_id)
        assert row is not None
        return row


def audit_actions(username: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """Audit events (actor, action, detail) in order, those about `username` when given."""
    with session_scope() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    out = [(row.actor, row.action, dict(row.detail)) for row in rows]
    if username is not None:
        out = [e for e in out if e[0] == f"user:{username}" or e[2].get("username") == username]
    return out


def _fingerprint_queries() -> dict[str, Any]:
    """The statements fingerprint() reads, by name (built once: building them cost more than running them)."""
    def q(*columns: Any) -> Any:
        return sa_select(*columns)

    def count(model: Any, *where: Any) -> Any:
        return sa_select(func.count()).select_from(model).where(*where).scalar_subquery()

    return {
        # The outputs as stored (JSON text): any change to them shows.
        "tasks": q(DepartmentTask.id, DepartmentTask.status, col(DepartmentTask.acknowledged_at).is_not(None),
                        DepartmentTask.outputs),
        "levels": q(Incident.id, Incident.level),
        "deliveries": q(OutboundDelivery.id, OutboundDelivery.outcome, OutboundDelivery.replays),
        # Not the password hash: a user's first login re-hashes it at the production cost (see make_user).
        "users": q(User.username, User.display_name, User.active, User.failed_logins,
                        col(User.locked_until).is_not(None)),
        "upward": q(UpwardReport.id, UpwardReport.status, col(UpwardReport.edited_at).is_not(None),
                         col(UpwardReport.phoned_at).is_not(None)),
        "signals": q(Signal.id, Signal.outcome),
        "locks": q(LoginLock.user_id, LoginLock.source, LoginLock.failures,
                        col(LoginLock.locked_until).is_not(None)),
        "counts": q(count(LedgerEntry), count(Incident), count(LevelChange), count(UserPosition),
                         count(SituationReport), count(CapAlert),
                         count(AccessToken, col(AccessToken.revoked_at).is_not(None))),
        "duty": q(count(RosterShift), count(DutyAbsence), count(LedgerEntry, LedgerEntry.chain == DESK)),
        "files": q(Attachment.id, Attachment.linked_at),
        "registers": q(count(LedgerEntry, LedgerEntry.chain == REGISTERS),
                            *(count(table) for table in REGISTER_TABLES.values())),
        "requests": q(ResourceRequest.id, ResourceRequest.status),
        "reserves": q(MaterialReserve.id, MaterialReserve.quantity),
        "replenishments": q(Replenishment.id, Replenishment.status),
        "prevention_tasks": q(PreventionTask.id, PreventionTask.status),
        "evidence": q(PreventionEvidence.id),
        "channels": q(NotifyChannel.id, NotifyChannel.active, NotifyChannel.for_drills),
        "contacts": q(ChannelContact.id, ChannelContact.address),
        "stand_ins": q(UserPosition.id, UserPosition.stand_in_id),
        "answers": q(AnswerRequest.id, AnswerRequest.answered_at),
    }


_FINGERPRINT_SQL: dict[str, dict[str, str]] = {}  # by dialect: each statement as SQL text


def fingerprint() -> tuple[Any, ...]:
    """What a refused request must leave as it was: the ledger, incidents and their levels, positions held, tasks,
    reports, warnings, signals (and what each did), deliveries, revoked tokens, users (display name, active,
    failed logins, lockout) and their locks per address, upward reports, roster shifts and absences, the duty
    desk chain, attached files (and whether linked), register imports and entries, resources, prevention tasks and
    their evidence, notification channels and contacts, stand-ins, answers to warnings (叫应). Read as plain rows
    of SQL compiled once (the access matrices take one before and after each of a thousand requests): values as
    the driver gives them, which is all a comparison of before and after needs."""
    engine = get_engine()
    compiled = _FINGERPRINT_SQL.get(engine.dialect.name)
    if compiled is None:
        compiled = {name: str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                    for name, query in _fingerprint_queries().items()}
        _FINGERPRINT_SQL[engine.dialect.name] = compiled
    with engine.begin() as connection:
        got = {name: [tuple(row) for row in connection.exec_driver_sql(sql).all()] for name, sql in compiled.items()}

    def table(name: str) -> tuple[Any, ...]:
        return tuple(sorted(got[name], key=repr))

    counts, duty, registers = got["counts"][0], got["duty"][0], got["registers"][0]
    return (*counts[:6], table("signals"), counts[6], table("tasks"), table("levels"), table("deliveries"),
            table("users"), table("locks"), table("upward"), tuple(duty), table("files"), tuple(registers),
            (table("requests"), table("reserves"), table("replenishments")),
            (table("prevention_tasks"), table("evidence")),
            (table("channels"), table("contacts"), table("stand_ins"), table("answers")))
