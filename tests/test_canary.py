"""The canary: no restricted or internal value reaches a reader outside its scope, by any path.

A scenario with cascades (a typhoon; the office opens a linked flood from it; the flood opens a chemical leak the
way a plan's `open_linked_incident` step does) is filled with unique markers: every text, number, place and
attachment a department reports (the bytes of a stored file, and a typed file number) and every completion note,
situation reports (text and figure names and values), a hand-back reason, a level-change reason, the cascades'
reasons, the office's incident description, incident titles, a lesson, a follow-up (title and notes), a plan
proposal and its rejection. Then every reader (anonymous, office, manager, admin, and a user of every department in
the registry) reads every GET route of the app (the route table enumerated as the access matrices do, every path
parameter filled with every object of its kind, `incident=` and `lang=` queries too): JSON, pages, exports (sitrep,
ICS-214 activity log, CSV, report HTML, the PDF's text, the text of a .docx should a route ever send one), the
public feed and warnings; and every webhook body the local receiver got is read as its target department. A marker
found where its scope does not reach the reader fails the test; so does a marker no reader was shown at all (the
canary would not notice that one leaking).

Each marker's scope is worked out here from the plan, independently of Baton's code (`departments_reached`): a value
reaches the office, managers and administrators; its owner; the departments its field's share (else its step's)
names, or every department for `all` unless it is restricted; the public only when it is public. An incident's
title reaches the departments on the incident (in webhooks also those its plan names at its level) and the public
once the incident has a published warning. Office texts (reasons, descriptions, proposals) reach no department.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import random
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from sqlmodel import col, select

from core.attachments import service as attachments
from core.attachments.models import Attachment
from core.desk.models import DutyLog, EventSheet, Instruction
from core.incidents.cascade import open_linked
from core.incidents.engine import escalation_target
from core.incidents.handoffs import complete, hand_back
from core.incidents.models import DepartmentTask, Incident
from core.learning.models import FollowUp, Lesson, PlanProposal
from core.learning.simulation import sample_value
from core.outbox.models import OutboundDelivery
from core.plans.store import current_plan_text, current_plans, plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.prevention.models import PreventionEvidence
from core.registers.models import RegisterKind
from core.reporting.models import UpwardReport
from core.resources.models import ResourceRequest
from core.sharing.models import CapAlert, SituationReport
from core.users.models import User
from core.users.service import issue_token
from process_defs.schema import EVERYONE, FieldType, FormField, IncidentType, Share, Step
from tests import engine_driver as drive
from tests.access_matrix import app_routes
from tests.api_server import issued_token, make_user
from tests.conftest import Say
from tests.fixtures.api import app_client
from tests.receiver import Receiver, running_receiver
from tests.test_after_action import pdf_text

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
SECRET = "canary-receiver-secret"
# A text marker, a number marker (a report's figures are floats: 73190033.0), or a small one for a field whose
# max is lower (0.731900331: rainfall in mm).
FOUND = re.compile(r"(QXJ\d{5}K)|(?<![\d.])(7319\d{4})(?:\.0)?(?![\d.])|(?<![\d.])(0\.7319\d{4}1)(?![\d.])")
WARNING = {"event": {"zh": "危化品泄漏", "en": "Chemical leak"},
           "headline": {"zh": "危化品泄漏预警", "en": "Chemical leak warning"},
           "instruction": {"zh": "关闭门窗，听从指挥", "en": "Close windows and follow directions"}}


# -- markers and their scopes ------------------------------------------------------------------------------------
@dataclass
class Scope:
    """Who may be shown a marker: besides the office, managers and administrators (who see everything)."""

    what: str
    departments: frozenset[str] = frozenset()
    public: bool = False
    webhook: frozenset[str] | None = None  # departments in webhook bodies, when wider than in Baton itself
    title_of: str | None = None  # an incident's title: its scope is settled once the scenario is over


@dataclass(frozen=True)
class Reader:
    name: str
    department: str | None = None
    sees_all: bool = False
    webhook: bool = False

    def may_see(self, scope: Scope) -> bool:
        if self.sees_all or scope.public:
            return True
        if self.department is None:
            return False
        if self.webhook and scope.webhook is not None:
            return self.department in scope.webhook
        return self.department in scope.departments


ANONYMOUS = Reader("anonymous")


def departments_reached(share: Share | None, *, owner: str) -> frozenset[str]:
    """The documented rule, stated again here so that the test does not take Baton's word for it."""
    departments = {d.key for d in registry().departments}
    if share is None:
        return frozenset({owner})
    named = set(share.with_) & departments
    if share.classification.value != "restricted" and EVERYONE in share.with_:
        named = departments
    return frozenset(named | {owner})


class Markers:
    def __init__(self) -> None:
        self.scopes: dict[str, Scope] = {}
        self._next = itertools.count(1)

    def text(self, scope: Scope) -> str:
        marker = f"QXJ{next(self._next):05d}K"
        self.scopes[marker] = scope
        return marker

    def number(self, scope: Scope, form_field: FormField | None = None) -> int | float | None:
        """A unique number: 7319nnnn, or 0.7319nnnn1 where the field's max is lower (rainfall in mm); None
        where no marker fits the field's bounds (a whole number up to 18), which then carries none."""
        count = next(self._next)
        marker: int | float = 73190000 + count
        if form_field is not None and form_field.max is not None and marker > form_field.max:
            marker = float(f"0.7319{count:04d}1")  # ends in 1: printed as written
            if form_field.integer or (form_field.min is not None and marker < form_field.min):
                return None
        self.scopes[str(marker)] = scope
        return marker

    def swap(self, first: Any, second: Any) -> None:
        """Two markers trade places (a check between fields wants them the other way round): so do their scopes."""
        if str(first) in self.scopes and str(second) in self.scopes:
            self.scopes[str(first)], self.scopes[str(second)] = self.scopes[str(second)], self.scopes[str(first)]

    def value(self, what: str, share: Share | None, owner: str) -> Scope:
        return Scope(what, departments_reached(share, owner=owner),
                     public=share is not None and share.classification.value == "public")

    def office_only(self, what: str) -> str:
        return self.text(Scope(what))


# -- the scenario --------------------------------------------------------------------------------------------------
def _choice(plan: IncidentType, step: Step, key: str, values: list[str]) -> str:
    """A choice that moves the incident on: "respond", else one a condition waits for, else the first."""
    if "respond" in values:
        return "respond"
    for _, other in plan.steps():
        condition = other.when.condition if other.when else None
        if condition is not None and (condition.step, condition.field) == (step.key, key):
            wanted = condition.value if isinstance(condition.value, list) else [condition.value]
            for value in wanted:
                if value in values:
                    return str(value)
    return values[0]


@dataclass
class Scenario:
    markers: Markers
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # name -> id
    tasks: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (incident, step) -> (task, dept)
    outputs: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # (incident, step, field) -> value

    def outputs_for(self, incident_id: str, task: DepartmentTask) -> tuple[dict[str, Any], str]:
        with session_scope() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            plan = plan_for_version(session, incident.plan_version_id)
            code = incident.code
        step = plan.step(task.step_key)
        owner = task.department
        values: dict[str, Any] = {}
        for item in step.form:
            where = f"{code} {step.key}.{item.key} by {owner}"
            scope = self.markers.value(where, step.field_share(item.key), owner)
            if item.criterion is not None:
                # A termination's criteria are answered as met, so the response can end (as simulated
                # departments answer them); a value the criterion fixes can carry no marker.
                values[item.key] = sample_value(item, random.Random(0))
            elif item.type is FieldType.text:
                values[item.key] = self.markers.text(scope)
            elif item.type is FieldType.number:
                number = self.markers.number(scope, item)
                values[item.key] = sample_value(item, random.Random(0)) if number is None else number
            elif item.type is FieldType.location:
                values[item.key] = {"name": self.markers.text(scope), "lat": 30.25, "lon": 120.17}
            elif item.type is FieldType.attachment:
                # A stored file holding a marker (read through GET /api/attachments/{id}), named by reference;
                # a field of several files also names a file number, a marker of its own.
                stored = self.attach(task, step, self.markers.text(scope))
                values[item.key] = [stored, self.markers.text(scope)] if item.multiple else stored
            elif item.type is FieldType.boolean:
                values[item.key] = True
            elif item.type is FieldType.datetime and (item.not_before or item.not_after or item.horizon):
                values[item.key] = sample_value(item, random.Random(0))  # a time the field's bounds accept
            elif item.type is FieldType.datetime:
                values[item.key] = "2030-07-20T18:00:00+08:00"
            else:
                chosen = _choice(plan, step, item.key, [c.value for c in item.choices or []])
                values[item.key] = [chosen] if item.multiple else chosen
        for check in step.checks:  # markers in the order the checks between fields want (rain 1 h ≤ 24 h)
            first, second = values.get(check.field), values.get(check.other)
            if first is not None and second is not None and not check.holds(first, second):
                values[check.field], values[check.other] = second, first
                self.markers.swap(first, second)
        for key, value in values.items():
            self.outputs[(incident_id, step.key, key)] = value
        note = self.markers.text(Scope(f"{code} {step.key} note by {owner}",
                                       departments_reached(step.share, owner=owner)))
        return values, note

    @staticmethod
    def attach(task: DepartmentTask, step: Step, marker: str) -> str:
        """A "photo" (a PNG's signature, then the marker) uploaded for the task: its reference."""
        with session_scope() as session:
            row = session.get(DepartmentTask, task.id)
            assert row is not None
            photo = io.BytesIO(b"\x89PNG\r\n\x1a\n" + marker.encode())
            stored = attachments.store(session, task=row, step=step, uploaded_by=f"user:{task.department}",
                                       filename="photo.png", stream=photo)
            return attachments.reference(stored.id)

    def work(self, incident_id: str, *, rounds: int = 80, stop: Callable[[], bool] | None = None) -> None:
        """Complete every open task as it comes, until the incident closes (or `stop` says so)."""
        for _ in range(rounds):
            if drive.step(incident_id, real_actions=True).closed or (stop is not None and stop()):
                return
            for key, task in sorted(drive.open_tasks(incident_id).items()):
                values, note = self.outputs_for(incident_id, task)
                with session_scope() as session:
                    complete(session, task_id=task.id, actor=f"user:{task.department}", outputs=values, note=note)
                self.tasks[(incident_id, key)] = (task.id, task.department)
        raise AssertionError(f"incident {incident_id} did not close")

    def api(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.clients[name].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path} as {name}: {response.status_code} {response.text[:300]}"
        return response.json()


def stage(incident_id: str) -> str:
    return drive.incident(incident_id).stage


def build(scenario: Scenario) -> None:
    m = scenario.markers
    # The typhoon, opened by the office with an internal description.
    typhoon = scenario.api("office", "POST", "/api/incidents", json={
        "type": "typhoon", "level": "II", "title": m.text(Scope("typhoon title", title_of="typhoon")),
        "description": m.office_only("typhoon description"), "location": {"name": "滨江区", "lat": 30.2,
                                                                          "lon": 120.2}})
    scenario.incidents["typhoon"] = typhoon["id"]
    scenario.work(typhoon["id"], stop=lambda: stage(typhoon["id"]) == "response")
    scenario.api("office", "POST", f"/api/incidents/{typhoon['id']}/level",
                 json={"level": "I", "reason": m.office_only("level-change reason")})
    # The medical team hands its casualty task back (the reason is its own): the office is alerted with the reason
    # (the office reads everything) and the task waits for its choice; no other department sees the reason.
    scenario.work(typhoon["id"], stop=lambda: "casualty_treatment" in drive.open_tasks(typhoon["id"]))
    task = drive.open_tasks(typhoon["id"])["casualty_treatment"]
    with session_scope() as session:
        hand_back(session, task_id=task.id, actor=f"user:{task.department}",
                  reason=m.text(Scope("hand-back reason", frozenset({task.department}))))
    # Situation reports: restricted to one department, internal to all, public.
    on_typhoon = sorted({t.department for t in drive.tasks(typhoon["id"]).values()} - {"emergency_office"})
    author, other = on_typhoon[0], on_typhoon[1]
    for classification, share_with in (("restricted", [other]), ("internal", ["all"]), ("public", ["all"])):
        share = Share(with_=share_with, classification=classification)
        scope = m.value(f"{classification} report by {author}", share, author)
        scenario.api(f"d_{author}", "POST", f"/api/incidents/{typhoon['id']}/reports", json={
            "text": m.text(scope), "figures": {m.text(scope): m.number(scope)}, "share_with": share_with,
            "classification": classification})
    # The office opens a linked flood (its title and reason given); the flood cascades to a chemical leak as a
    # plan step does (no title: Baton names it), and the office warns the public about the leak at once.
    flood = scenario.api("office", "POST", f"/api/incidents/{typhoon['id']}/children", json={
        "type": "flood", "level": "I", "title": m.text(Scope("flood title", title_of="flood")),
        "reason": m.office_only("flood cascade reason")})
    scenario.incidents["flood"] = flood["id"]
    scenario.work(flood["id"], stop=lambda: stage(flood["id"]) == "response")
    with session_scope() as session:
        leak = open_linked(session, parent_id=flood["id"], type_key="hazmat_leak", actor="baton",
                           reason=m.office_only("chemical leak cascade reason"), key="canary")
        scenario.incidents["hazmat_leak"] = leak.id
    # The duty desk: a phone report recorded as an event record sheet (the office's own, never a department's), and
    # a leader's instruction on the typhoon for two departments (those named read it; nobody else).
    scenario.api("office", "POST", "/api/sheets", json={
        "source": "phone", "caller": m.office_only("sheet caller"), "callback": "13800000000",
        "place": m.office_only("sheet place"), "occurred_at": (utcnow() - timedelta(minutes=5)).isoformat(),
        "what": m.office_only("sheet what happened"), "injured": 1})
    named = [author, other]
    scenario.api("office", "POST", f"/api/incidents/{typhoon['id']}/instructions", json={
        "text": m.text(Scope("leader's instruction", frozenset(named))), "departments": named,
        "leader": m.text(Scope("instructing leader", frozenset(named)))})
    warning = scenario.api("office", "POST", f"/api/incidents/{leak.id}/warnings", json=WARNING)
    release_warning(leak.id, warning["id"])
    # A linked power cut nobody has worked on yet (no warning: its title is not public) and the epidemic it
    # cascades to: a department on one of them must not learn of the others through the chain.
    outage = scenario.api("office", "POST", f"/api/incidents/{typhoon['id']}/children", json={
        "type": "power_outage", "level": "III", "title": m.text(Scope("power cut title", title_of="power_outage")),
        "reason": m.office_only("power cut cascade reason")})
    scenario.incidents["power_outage"] = outage["id"]
    drive.step(outage["id"], real_actions=True)
    with session_scope() as session:
        epidemic = open_linked(session, parent_id=outage["id"], type_key="epidemic", actor="baton",
                               reason=m.office_only("epidemic cascade reason"), key="canary")
        scenario.incidents["epidemic"] = epidemic.id
    drive.step(epidemic.id, real_actions=True)
    # The typhoon's open tasks run out of time: escalations go out.
    drive.step(typhoon["id"], now=utcnow() + timedelta(days=3))
    for name in ("hazmat_leak", "flood", "typhoon"):
        scenario.work(scenario.incidents[name])
    # Learning: a lesson on the typhoon, a follow-up for a department not on it, a proposal and its rejection.
    with session_scope() as session:
        on = {t.department for t in session.exec(select(DepartmentTask).where(
            DepartmentTask.incident_id == typhoon["id"])).all()}
    outsider = next(d.key for d in registry().departments if d.key not in on)
    lesson = scenario.api("office", "POST", f"/api/incidents/{typhoon['id']}/lessons",
                          json={"text": m.text(Scope("typhoon lesson", frozenset(on | {outsider})))})
    follow_up = scenario.api("office", "POST", f"/api/lessons/{lesson['id']}/follow-ups", json={
        "department": outsider, "title": m.text(Scope("follow-up title", frozenset({outsider}))),
        "due_at": (utcnow() + timedelta(days=30)).isoformat(),
        "note": m.text(Scope("follow-up note", frozenset({outsider})))})
    scenario.api(f"d_{outsider}", "POST", f"/api/follow-ups/{follow_up['id']}/complete",
                 json={"note": m.text(Scope("follow-up done note", frozenset({outsider})))})
    proposal = scenario.api("office", "POST", "/api/plan-proposals", json={
        "type": "flood", "lesson_id": lesson["id"],
        "text": current_plan_text("flood") + f"# {m.office_only('proposed plan text')}\n"})
    scenario.api("office", "POST", f"/api/plan-proposals/{proposal['id']}/reject",
                 json={"reason": m.office_only("proposal rejection reason")})


def release_warning(incident_id: str, alert_id: str) -> None:
    """The office reviews its drafted warning and the emergency management bureau's director signs it off: only
    then is it published (审核签发)."""
    from core.sharing import warnings as release

    make_user("em_director", "office", positions=["bureau_director@emergency_office"])
    with session_scope() as session:
        leader = session.exec(select(User).where(User.username == "em_director")).one()
        release.review(session, incident_id=incident_id, alert_id=alert_id, actor="user:office")
        assert release.sign(session, incident_id=incident_id, alert_id=alert_id, signer=leader).published


def settle_titles(scenario: Scenario) -> None:
    """An incident title reaches the departments on it, in webhooks also those its plan names at its level (a
    share names them, a step notifies or escalates to them), and never the public: a warning's texts are its
    plan's (or the office's) words, not the incident's title, even once it is published."""
    with session_scope() as session:
        for name, incident_id in scenario.incidents.items():
            incident = session.get(Incident, incident_id)
            assert incident is not None
            plan = plan_for_version(session, incident.plan_version_id)
            on = {t.department for t in session.exec(select(DepartmentTask).where(
                DepartmentTask.incident_id == incident_id)).all()}
            named = set(on)
            for _, step in plan.steps():
                if step.active_at(incident.level):
                    named |= {step.department, escalation_target(step), *(step.params.get("target") or "",)}
                    named |= {d for share in step.shares() for d in share.with_}
            for report in session.exec(select(SituationReport).where(
                    SituationReport.incident_id == incident_id)).all():
                named |= set(report.share_with)
            for scope in scenario.markers.scopes.values():
                if scope.title_of == name:
                    scope.departments = frozenset(on)
                    scope.webhook = frozenset(named - {"", EVERYONE})
                    scope.public = False


# -- reading everything as everyone ------------------------------------------------------------------------------
def docx_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return " ".join(re.sub(r"<[^>]+>", " ", archive.read(name).decode("utf-8", "replace"))
                        for name in archive.namelist() if name.endswith(".xml"))


def body_text(content_type: str, content: bytes) -> str:
    if content_type.startswith("application/pdf"):
        return pdf_text(content)
    if "wordprocessingml" in content_type:
        return docx_text(content)
    return content.decode("utf-8", "replace")


def get_routes() -> list[tuple[str, set[str]]]:
    """Every GET route of the app (through included routers) with the names of its query parameters."""
    found: dict[str, set[str]] = {}

    def keep(path: str, route: Any) -> bool:
        dependant = getattr(route, "dependant", None)
        if "GET" in (getattr(route, "methods", None) or ()):
            found[path] = {p.alias for p in dependant.query_params} if dependant is not None else set()
        return True

    return sorted((path, found.get(path, set())) for method, path in app_routes(keep) if method == "GET")


def object_ids(scenario: Scenario) -> dict[str, list[str]]:
    with session_scope() as session:
        def ids(model: Any) -> list[str]:
            return [str(row) for row in session.exec(select(model.id)).all()]

        return {"incident_id": list(scenario.incidents.values()),
                "task_id": [str(t) for t in session.exec(select(DepartmentTask.id).order_by(
                    col(DepartmentTask.created_at))).all()],
                "lesson_id": ids(Lesson), "follow_up_id": ids(FollowUp), "proposal_id": ids(PlanProposal),
                "delivery_id": ids(OutboundDelivery), "alert_id": ids(CapAlert), "user_id": ids(User),
                "identifier": [str(row) for row in session.exec(select(CapAlert.identifier)).all()],
                "report_id": ids(UpwardReport), "attachment_id": ids(Attachment),
                "type_key": sorted({i.type for i in session.exec(select(Incident)).all()}),
                "sheet_id": ids(EventSheet), "log_id": ids(DutyLog), "instruction_id": ids(Instruction),
                "request_id": ids(ResourceRequest), "evidence_id": ids(PreventionEvidence),
                "kind": [k.value for k in RegisterKind],
                # An answer link is its own credential and never stored: the canary shows a made-up one is refused.
                "token": ["not-a-real-link"]}


def urls(path: str, query: set[str], ids: dict[str, list[str]]) -> Iterator[str]:
    names = re.findall(r"{(\w+)}", path)
    missing = [n for n in names if n not in ids]
    assert not missing, f"{path}: the canary cannot fill {missing}; add objects of that kind to object_ids()"
    queries = [""]
    if "incident" in query:
        queries += [f"?incident={i}" for i in ids["incident_id"]]
    if "lang" in query:
        queries.append("?lang=en")
    for values in itertools.product(*(ids[n] for n in names)):
        filled = path
        for name, value in zip(names, values, strict=True):
            filled = filled.replace(f"{{{name}}}", value, 1)
        for q in queries:
            yield filled + q


ALL_SEEING_SAMPLE = 40
ACCOUNTS_SHOWN = 3


def ids_for(reader: Reader, ids: dict[str, list[str]], owners: dict[str, tuple[str, str]],
            attachment_tasks: dict[str, str]) -> dict[str, list[str]]:
    """A department reads its own incidents and tasks and, to show that others stay closed, one incident it is
    not on and two of each incident's other tasks (the access matrices try every role on every route; here the
    question is what an open page shows). Those who see everything cannot be shown too much: they read a spread
    of each kind's objects, to find the markers shown and any page that fails."""
    if reader.sees_all:
        return {kind: found[::max(1, -(-len(found) // ALL_SEEING_SAMPLE))] for kind, found in ids.items()}
    if reader.department is None:
        return ids
    # Its incidents (those it holds a task on: `core.incidents.reads.involved`) and, to show the door stays
    # closed to a route that forgot to ask, the first incident it has no part in.
    on = {incident for incident, department in owners.values() if department == reader.department}
    outside = [i for i in ids["incident_id"] if i not in on][:1]
    incidents = [i for i in ids["incident_id"] if i in on] + outside
    own = [t for t in ids["task_id"] if owners[t][1] == reader.department]
    foreign: dict[str, list[str]] = {}
    for task_id in ids["task_id"]:
        incident, department = owners[task_id]
        if department != reader.department and len(foreign.setdefault(incident, [])) < 2:
            foreign[incident].append(task_id)
    tasks = own + [t for found in foreign.values() for t in found]
    # Files likewise: those of the tasks it reads (its own, and the two of each other incident it is shown to be
    # refused), not every department's every file (the access matrices try every role on the route).
    files = [a for a in ids["attachment_id"] if attachment_tasks.get(a) in tasks]
    # Accounts hold no marker, and their pages are the administrators' (the access matrices try every role on them):
    # a department is shown three, not every account, each on every account route (about 85 s a run).
    return {**ids, "incident_id": incidents, "task_id": tasks, "attachment_id": files,
            "user_id": ids["user_id"][:ACCOUNTS_SHOWN]}


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    shown: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (reader, where) -> markers
    responses: int = 0

    def check(self, reader: Reader, where: str, text: str, scopes: dict[str, Scope]) -> None:
        markers = {m for pair in FOUND.findall(text) for m in pair if m in scopes}
        self.shown[(reader.name, where)] = markers
        for marker in markers:
            if reader.may_see(scopes[marker]):
                self.seen.add(marker)
            else:
                self.violations.append(f"{reader.name} was shown {marker} ({scopes[marker].what}) in {where}")


BYSTANDERS = 2


def with_two_bystanders(readers: dict[Reader, httpx.Client], scopes: dict[str, Scope],
                        owners: dict[str, tuple[str, str]]) -> dict[Reader, httpx.Client]:
    """Every department with a part in the scenario reads, and two of those with none. A bystander holds no task
    and no marker names it (it sees what is shared with `all`, as every department does), so nothing tells one
    bystander from another: Baton's rules key on tasks held and departments named, and two of them (the first and
    the last in the registry) stand for the other twenty-odd at a tenth of the cost."""
    every = {d.key for d in registry().departments}
    named = {d for scope in scopes.values() for group in (scope.departments, scope.webhook or frozenset())
             if group != every for d in group}
    involved = named | {department for _incident, department in owners.values()}
    bystanders = [r for r in readers if r.department is not None and r.department not in involved]
    kept = set(bystanders[:1] + bystanders[-1:]) if len(bystanders) >= BYSTANDERS else set(bystanders)
    assert len(bystanders) >= BYSTANDERS, "the scenario should leave departments with no part in it"
    return {r: c for r, c in readers.items() if r.department is None or r.department in involved or r in kept}


def read_everything(scenario: Scenario, readers: dict[Reader, httpx.Client], findings: Findings) -> int:
    """Every GET route as every reader. The office, managers and administrators see everything, so for a route
    with an object in its path the first of them it admits reads every object and the others skip it; one printed
    PDF (of the first incident) shows what the print holds."""
    ids = object_ids(scenario)
    with session_scope() as session:
        owners = {t.id: (t.incident_id, t.department) for t in session.exec(select(DepartmentTask)).all()}
        attachment_tasks = {a.id: a.task_id for a in session.exec(select(Attachment)).all()}
    scopes = scenario.markers.scopes
    readers = with_two_bystanders(readers, scopes, owners)
    for path, query in get_routes():
        read_by_all_seeing = False
        for reader, client in readers.items():
            if "{" in path and reader.sees_all and read_by_all_seeing:
                continue
            objects = ids_for(reader, ids, owners, attachment_tasks)
            if path.endswith(".pdf") and reader.sees_all:
                objects = {**objects, "incident_id": objects["incident_id"][:1]}
            for n, url in enumerate(urls(path, query, objects)):
                response = client.get(url, follow_redirects=False)
                findings.responses += 1
                # 503s that say what is missing: Prefect (not run here) for /api/health, Chromium for a PDF.
                unavailable = response.status_code == 503 and (path == "/api/health" or path.endswith(".pdf"))
                if response.status_code >= 500 and not unavailable:
                    findings.errors.append(f"GET {url} as {reader.name}: {response.status_code}")
                findings.check(reader, f"GET {url}", body_text(response.headers.get("content-type", ""),
                                                                response.content), scopes)
                if n == 0 and reader.sees_all and response.status_code < 400:
                    read_by_all_seeing = True
                if "{" in path and (response.status_code in (401, 403) or (reader == ANONYMOUS
                                                                              and response.is_redirect)):
                    break  # refused for the role, not for the object: the route's other objects are too
    return len(readers)


def read_webhooks(scenario: Scenario, receiver: Receiver, findings: Findings) -> int:
    from tasks.delivery import send_once

    async def send(pending: list[str]) -> None:
        gate = asyncio.Semaphore(8)

        async def one(delivery_id: str) -> None:
            async with gate:
                await send_once(delivery_id)

        await asyncio.gather(*(one(d) for d in pending))

    for _ in range(10):
        with session_scope() as session:
            pending = list(session.exec(select(OutboundDelivery.id).where(
                OutboundDelivery.outcome == "pending")).all())
        if not pending:
            break
        asyncio.run(send(pending))
    with session_scope() as session:
        targets = {d.id: d.target for d in session.exec(select(OutboundDelivery)).all()}
    for message in receiver.received:
        target = targets[message["message_id"]]
        reader = Reader(f"webhook to {target}", department=target, webhook=True)
        findings.check(reader, f"{message['purpose']} webhook {message['sent_for']}",
                       json.dumps(message, ensure_ascii=False), scenario.markers.scopes)
    return len(receiver.received)


# -- the test ------------------------------------------------------------------------------------------------------
@pytest.fixture
def receiver(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A department system on loopback for every department that has an endpoint in the registry."""
    with running_receiver(SECRET) as rec:
        endpoints = {d.endpoint: {"url": rec.url, "secret": SECRET} for d in registry().departments if d.endpoint}
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps(endpoints))
        get_settings.cache_clear()
        yield rec
    get_settings.cache_clear()


def command_positions() -> list[str]:
    """Every position a shipped plan names for a level decision: the canary's office user holds them all, as it
    opens and raises the scenario's incidents (who may is the plans-by-law tests' question, not this one's)."""
    plans, _problems = current_plans()
    return sorted({ref for _key, plan in plans for authority in (plan.authority or {}).values()
                   for act in ("start", "raise", "lower") for ref in authority.needed(act)})


def clients(portal: BlockingPortal) -> tuple[dict[Reader, httpx.Client], dict[str, httpx.Client]]:
    """A client for every reader (a bearer token for the API and a page session), by reader and by user name."""
    cast: list[tuple[str, str, str | None]] = [("office", "office", None), ("manager", "manager", None),
                                               ("admin", "admin", None)]
    cast += [(f"d_{d.key}", "department", d.key) for d in registry().departments]
    by_reader: dict[Reader, httpx.Client] = {ANONYMOUS: app_client(portal)}
    by_name: dict[str, httpx.Client] = {}
    for name, role, department in cast:
        make_user(name, role, department, positions=command_positions() if name == "office" else None)
        with session_scope() as session:
            user = session.exec(select(User).where(User.username == name)).one()
            page = issue_token(session, user=user, kind="session").token
        client = app_client(portal, cookies={"baton_session": page},
                            headers={"Authorization": f"Bearer {issued_token(name)}"})
        by_reader[Reader(name, department=department, sees_all=department is None)] = client
        by_name[name] = client
    return by_reader, by_name


@BOTH
@pytest.mark.timeout(1800)  # 14,500 reads: over eight minutes on a busy 2-core machine
def test_no_marker_reaches_a_reader_out_of_its_scope(receiver: Receiver, figures: Say,
                                                      asgi_portal: BlockingPortal) -> None:
    started = time.monotonic()
    readers, by_name = clients(asgi_portal)
    scenario = Scenario(markers=Markers(), clients=by_name)
    build(scenario)
    settle_titles(scenario)
    built = time.monotonic()
    findings = Findings()
    webhooks = read_webhooks(scenario, receiver, findings)
    reading = read_everything(scenario, readers, findings)
    scopes = scenario.markers.scopes
    figures(f"canary: {len(scopes)} markers in {len(scenario.incidents)} incidents; {reading} of {len(readers)} "
            f"readers, {findings.responses} responses and {webhooks} webhook bodies read in "
            f"{time.monotonic() - built:.0f} s (scenario {built - started:.0f} s); "
            f"{len(findings.violations)} markers out of scope, {len(set(scopes) - findings.seen)} never shown")
    assert not findings.errors, "\n".join(findings.errors[:30])
    assert not findings.violations, f"{len(findings.violations)} leaks:\n" + "\n".join(
        sorted(set(findings.violations))[:60])
    unseen = sorted(f"{m} ({scopes[m].what})" for m in set(scopes) - findings.seen)
    assert not unseen, "markers no reader was shown (the canary would miss them leaking):\n" + "\n".join(unseen)
    assert webhooks > 20
    expect_shown(scenario, findings)
    expect_chain(scenario)


def expect_shown(scenario: Scenario, findings: Findings) -> None:
    """What field-level scoping still lets through, where the plan shares it: the publicity department's press
    release gets the flood's public head count (not the shelters, which stay restricted); the health commission's
    medical task gets the rescue's casualty figure; the public warning's description holds public figures."""
    flood = scenario.incidents["flood"]

    def shown(reader: str, path: str) -> set[str]:
        return findings.shown.get((reader, f"GET {path}"), set())

    press_task, _ = scenario.tasks[(flood, "press_release")]
    press = shown("d_publicity", f"/api/tasks/{press_task}")
    assert str(scenario.outputs[(flood, "evacuate_residents", "people_evacuated")]) in press
    assert str(scenario.outputs[(flood, "evacuate_residents", "shelters_open")]) not in press
    assert str(scenario.outputs[(flood, "traffic_control", "roads_closed")]) in shown("d_publicity",
                                                                                     f"/tasks/{press_task}")
    medical_task, _ = scenario.tasks[(flood, "medical_support")]
    assert str(scenario.outputs[(flood, "water_rescue", "casualties")]) in shown(
        "d_health_commission", f"/api/tasks/{medical_task}")


def expect_chain(scenario: Scenario) -> None:
    """The chain names a linked incident only to those who may open it, and counts the others."""
    typhoon, outage = scenario.incidents["typhoon"], scenario.incidents["power_outage"]
    with session_scope() as session:
        def on(incident_id: str) -> set[str]:
            return set(session.exec(select(DepartmentTask.department).where(
                DepartmentTask.incident_id == incident_id)).all())

        typhoon_only = sorted(on(typhoon) - on(outage))
        both = sorted(on(typhoon) & on(outage))
    assert typhoon_only and both
    outsider = scenario.api(f"d_{typhoon_only[0]}", "GET", f"/api/incidents/{typhoon}/chain")
    assert outage not in {c["id"] for c in outsider["children"]} and outsider["hidden"]["children"] >= 1
    insider = scenario.api(f"d_{both[0]}", "GET", f"/api/incidents/{typhoon}/chain")
    assert outage in {c["id"] for c in insider["children"]}
    office = scenario.api("office", "GET", f"/api/incidents/{typhoon}/chain")
    assert {c["id"] for c in office["children"]} >= {outage, scenario.incidents["flood"]}
    assert office["hidden"] == {"parents": 0, "children": 0}
