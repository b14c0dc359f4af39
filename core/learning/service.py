"""The learning stage's output: lessons, the follow-up work they turn into, and proposed plan changes.

A lesson is recorded on an incident by the emergency office. It can become follow-ups, each assigned to a
department with a due date and tracked to closure like a task (the department sees only its own and
completes it once), and it can propose a new version of a plan: Baton sets the version, keeps the proposal as
full text and as a unified diff against the current version, and checks it like any plan file. A planner
accepts or rejects it; an accepted version is stored in the database and new incidents of the type use it,
while open incidents keep the version they started with.

Every lesson, assignment, completion and decision on a lesson's proposal is a ledger entry on the incident it
came from (also after the incident closed), written under the incident's lock with an idempotency key.
"""

from __future__ import annotations

import difflib
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text as sql_text
from sqlmodel import Session, col, select

from core.incidents.models import Incident
from core.incidents.service import COMMAND, lock_incident
from core.learning.models import FollowUp, Lesson, PlanProposal
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.models import PlanVersion
from core.plans.store import current_plan_text, latest_accepted, list_types, parse_plan_text, registry, store_accepted
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.errors import BatonError, NotFound, PlanInvalid
from core.platform.input_policy import Refusals
from core.platform.paging import Page, paged
from core.platform.settings import get_settings
from core.users.service import audit
from process_defs.validation import parse_plan


class LessonInvalid(BatonError):
    code = "lesson_invalid"
    http_status = 422


class FollowUpInvalid(BatonError):
    code = "follow_up_invalid"
    http_status = 422


class FollowUpStateConflict(BatonError):
    """The follow-up is already done (or cancelled)."""

    code = "follow_up_state_conflict"
    http_status = 409


class ProposalInvalid(BatonError):
    """A proposal that is not a change at all, or names an unknown plan."""

    code = "proposal_invalid"
    http_status = 422


class ProposalStateConflict(BatonError):
    """The proposal was decided already, or the plan moved on since it was made."""

    code = "proposal_state_conflict"
    http_status = 409


MAX_LESSON = 20_000
MAX_NOTE = 10_000
MAX_PLAN = 500_000


# -- lessons -----------------------------------------------------------------------------------------------


def record_lesson(session: Session, *, incident_id: str, text: str, actor: str) -> Lesson:
    """Record a lesson on an incident (open or closed) and ledger it there."""
    body = text.strip()
    if not body:
        raise LessonInvalid("a lesson needs its text")
    if len(body) > MAX_LESSON:
        raise LessonInvalid(f"a lesson is at most {MAX_LESSON} characters")
    incident = lock_incident(session, incident_id)
    now = utcnow()
    lesson = Lesson(incident_id=incident.id, text=body, author=actor, created_at=now)
    session.add(lesson)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.lesson_recorded, actor=actor, from_party=actor,
                  to_party=COMMAND, idempotency_key=f"{lesson.id}:recorded", handed_over={"text": body},
                  details={"lesson_id": lesson.id, "stage": incident.stage}, at=now)
    return lesson


def get_lesson(session: Session, lesson_id: str) -> Lesson:
    lesson = session.get(Lesson, lesson_id)
    if lesson is None:
        raise NotFound(f"no lesson '{lesson_id}'")
    return lesson


def list_lessons(session: Session, incident_id: str) -> list[Lesson]:
    return list(session.exec(select(Lesson).where(Lesson.incident_id == incident_id)
                             .order_by(col(Lesson.created_at), col(Lesson.id))).all())


# -- follow-ups --------------------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """A due date without a UTC offset is read in Baton's time zone (Asia/Shanghai by default)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(get_settings().timezone))
    return moment.astimezone(UTC)


def assign_follow_up(session: Session, *, lesson_id: str, department: str, title: str, due_at: datetime,
                     actor: str, note: str | None = None) -> FollowUp:
    """Turn a lesson into work for a department, due at `due_at`; ledgered on the lesson's incident."""
    lesson = get_lesson(session, lesson_id)
    problems = []
    if registry().department(department) is None:
        problems.append({"field": "department", "message": f"unknown department '{department[:64]}'"})
    clean_title = title.strip()
    if not clean_title or len(clean_title) > 300:
        problems.append({"field": "title", "message": "needs 1 to 300 characters"})
    refusals = Refusals()
    clean_title = refusals.check("title", policy.text, clean_title, max_length=300)
    # A due date past year 9999 in UTC cannot even be converted: the policy's range is checked first.
    refused = len(refusals.problems)
    due_local = refusals.check("due_at", policy.moment, due_at, local=ZoneInfo(get_settings().timezone))
    due = as_utc(due_local) if len(refusals.problems) == refused else None
    if note is not None:
        note = refusals.check("note", policy.text, note, max_length=MAX_NOTE, multiline=True)
    now = utcnow()
    if due is not None and due <= now:
        problems.append({"field": "due_at", "message": "must be in the future"})
    problems += [{"field": p["field"], "message": p["message"]} for p in refusals.problems]
    if problems or due is None:
        raise FollowUpInvalid("; ".join(f"{p['field']}: {p['message']}" for p in problems), details=problems)
    incident = lock_incident(session, lesson.incident_id)
    follow_up = FollowUp(incident_id=incident.id, lesson_id=lesson.id, department=department, title=clean_title,
                         due_at=due, created_by=actor, created_at=now, note=note)
    session.add(follow_up)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.follow_up_assigned, actor=actor, from_party=COMMAND,
                  to_party=department, idempotency_key=f"{follow_up.id}:assigned",
                  handed_over={"lesson": lesson.text, "title": clean_title, "due_at": due.isoformat(), "note": note},
                  details={"follow_up_id": follow_up.id, "lesson_id": lesson.id, "due_at": due.isoformat()}, at=now)
    return follow_up


def get_follow_up(session: Session, follow_up_id: str, department: str | None = None) -> FollowUp:
    """A follow-up; another department's reads as missing (`department=None`: any)."""
    follow_up = session.get(FollowUp, follow_up_id)
    if follow_up is None or (department is not None and follow_up.department != department):
        raise NotFound(f"no follow-up '{follow_up_id}'")
    return follow_up


def is_overdue(follow_up: FollowUp, now: datetime | None = None) -> bool:
    if follow_up.status == "cancelled":
        return False
    end = follow_up.completed_at if follow_up.status == "done" else None
    return (end or now or utcnow()) > follow_up.due_at


def list_follow_ups(session: Session, *, department: str | None, status: str | None = None,
                    incident_id: str | None = None, lesson_id: str | None = None, overdue: bool = False,
                    limit: int = 100, offset: int = 0) -> Page:
    query = select(FollowUp)
    if department is not None:
        query = query.where(FollowUp.department == department)
    if status is not None:
        query = query.where(FollowUp.status == status)
    if incident_id is not None:
        query = query.where(FollowUp.incident_id == incident_id)
    if lesson_id is not None:
        query = query.where(FollowUp.lesson_id == lesson_id)
    if overdue:
        query = query.where(FollowUp.status == "open", col(FollowUp.due_at) < utcnow())
    return paged(session, query, col(FollowUp.due_at), col(FollowUp.created_at), limit=limit, offset=offset)


def complete_follow_up(session: Session, *, follow_up_id: str, actor: str, note: str | None = None,
                       department: str | None = None) -> FollowUp:
    """The department reports the follow-up done; a second time is a conflict, never a second entry."""
    if note is not None and len(note) > MAX_NOTE:
        raise FollowUpInvalid(f"note: at most {MAX_NOTE} characters")
    follow_up = get_follow_up(session, follow_up_id, department)
    incident = lock_incident(session, follow_up.incident_id)
    session.refresh(follow_up)
    if follow_up.status != "open":
        raise FollowUpStateConflict(f"the follow-up is {follow_up.status} and cannot be completed")
    now = utcnow()
    follow_up.status = "done"
    follow_up.completed_at = now
    follow_up.completed_by = actor
    if note:
        follow_up.note = f"{follow_up.note}\n\n{note}" if follow_up.note else note
    session.add(follow_up)
    ledger.append(session, incident=incident, kind=LedgerKind.follow_up_completed, actor=actor,
                  from_party=follow_up.department, to_party=COMMAND, idempotency_key=f"{follow_up.id}:completed",
                  handed_over={"note": note},
                  details={"follow_up_id": follow_up.id, "lesson_id": follow_up.lesson_id,
                           "on_time": now <= follow_up.due_at}, at=now)
    return follow_up


# -- plan change proposals ---------------------------------------------------------------------------------

_VERSION_LINE = re.compile(r"^version:[ \t]*[^#\n]*?(?P<comment>[ \t]+#[^\n]*)?[ \t]*$", re.MULTILINE)


def with_version(text: str, version: int) -> str:
    """`text` with its top-level `version:` set to `version` (added at the end if it has none).

    Only that line changes, so the line numbers of any problem still point into the file as written."""
    match = _VERSION_LINE.search(text)
    if match is not None:
        return f"{text[:match.start()]}version: {version}{match.group('comment') or ''}{text[match.end():]}"
    separator = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{separator}version: {version}\n"


@dataclass(frozen=True)
class CurrentPlan:
    type: str
    version: int
    text: str
    source: str  # "file" or "accepted"


def current_plan(session: Session, type_key: str) -> CurrentPlan:
    """The version new incidents of `type_key` get (see `core.plans.store.snapshot_current`), without storing it."""
    text = current_plan_text(type_key)
    shipped = parse_plan_text(text, f"{type_key}.yaml")
    accepted = latest_accepted(session, type_key)
    if accepted is not None and accepted.version >= shipped.version:
        return CurrentPlan(type_key, accepted.version, accepted.content, "accepted")
    return CurrentPlan(type_key, shipped.version, text, "file")


def plan_diff(old: str, new: str, type_key: str, old_version: int, new_version: int) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{type_key}.yaml (v{old_version})",
                                        tofile=f"{type_key}.yaml (v{new_version})"))


def _texts(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every text in a plan's data, with where it is (`stages.response.steps[1].title.zh`)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _texts(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _texts(item, f"{path}[{index}]")]
    return []


def check_proposed(session: Session, type_key: str, text: str) -> None:
    """Raise PlanInvalid (422) naming every problem as `file:line path: message`."""
    file = f"{type_key}.yaml"
    plan, problems = parse_plan(text, file, registry())
    messages = [str(p) for p in problems]
    try:
        policy.text(text, max_length=MAX_PLAN, multiline=True)
    except policy.Violation as exc:
        messages.append(f"{file}: the file {exc.message}")
    if plan is not None:
        # YAML escapes ("\x01") put into a text what the file itself does not show; plan texts are published.
        for path, value in _texts(plan.model_dump(mode="json", by_alias=True)):
            try:
                policy.text(value, max_length=MAX_PLAN, multiline=True)
            except policy.Violation as exc:
                messages.append(f"{file} {path}: {exc.message}")
        for other in list_types():
            if other == type_key:
                continue
            other_plan = parse_plan_text(current_plan_text(other), f"{other}.yaml")
            if other_plan.code_prefix == plan.code_prefix:
                line = next((n for n, row in enumerate(text.splitlines(), 1) if row.startswith("code_prefix:")), 1)
                messages.append(f"{file}:{line} code_prefix: '{plan.code_prefix}' is already the prefix of "
                                f"the {other} plan")
    if messages:
        count = f"{len(messages)} problem{'s' if len(messages) != 1 else ''}"
        raise PlanInvalid(f"the proposed {type_key} plan has {count}: {messages[0]}", details=messages)


def _incident_of(session: Session, lesson_id: str | None) -> Incident | None:
    if lesson_id is None:
        return None
    lesson = get_lesson(session, lesson_id)
    return lock_incident(session, lesson.incident_id)


def _lock_plan(session: Session, type_key: str) -> None:
    """Serialise decisions on one plan (SQLite's write lock already does; PostgreSQL needs a lock of its own)."""
    if is_postgres(session):
        session.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": zlib.crc32(f"baton-plan:{type_key}".encode())})


def propose(session: Session, *, type_key: str, text: str, actor: str, lesson_id: str | None = None) -> PlanProposal:
    """Propose `text` as the next version of the `type_key` plan; its version is set to the current one + 1."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", type_key) or type_key not in list_types():
        raise ProposalInvalid(f"no response plan for incident type '{type_key[:64]}'")
    if lesson_id is not None:
        get_lesson(session, lesson_id)
    current = current_plan(session, type_key)
    proposed = with_version(text.replace("\r\n", "\n"), current.version + 1)
    check_proposed(session, type_key, proposed)
    if with_version(current.text, current.version + 1) == proposed:
        raise ProposalInvalid(f"the proposed {type_key} plan is the same as version {current.version}")
    diff = plan_diff(current.text, proposed, type_key, current.version, current.version + 1)
    incident = _incident_of(session, lesson_id)
    now = utcnow()
    proposal = PlanProposal(type=type_key, base_version=current.version, lesson_id=lesson_id, proposed_text=proposed,
                            diff=diff, proposed_by=actor, created_at=now)
    session.add(proposal)
    session.flush()
    audit(session, actor=actor, action="plan.proposed", proposal_id=proposal.id, type=type_key,
          base_version=current.version, lesson_id=lesson_id)
    if incident is not None:
        ledger.append(session, incident=incident, kind=LedgerKind.plan_change_proposed, actor=actor,
                      from_party=COMMAND, to_party=COMMAND, idempotency_key=f"{proposal.id}:proposed",
                      handed_over={"diff": diff},
                      details={"proposal_id": proposal.id, "lesson_id": lesson_id, "type": type_key,
                               "base_version": current.version, "version": current.version + 1}, at=now)
    return proposal


def get_proposal(session: Session, proposal_id: str) -> PlanProposal:
    proposal = session.get(PlanProposal, proposal_id)
    if proposal is None:
        raise NotFound(f"no plan proposal '{proposal_id}'")
    return proposal


def list_proposals(session: Session, *, type_key: str | None = None, status: str | None = None,
                   lesson_id: str | None = None, limit: int = 100, offset: int = 0) -> Page:
    query = select(PlanProposal)
    if type_key is not None:
        query = query.where(PlanProposal.type == type_key)
    if status is not None:
        query = query.where(PlanProposal.status == status)
    if lesson_id is not None:
        query = query.where(PlanProposal.lesson_id == lesson_id)
    return paged(session, query, col(PlanProposal.created_at).desc(), limit=limit, offset=offset)


def _decidable(session: Session, proposal_id: str) -> tuple[PlanProposal, Incident | None]:
    proposal = get_proposal(session, proposal_id)
    incident = _incident_of(session, proposal.lesson_id)
    _lock_plan(session, proposal.type)
    session.refresh(proposal)
    if proposal.status != "proposed":
        raise ProposalStateConflict(f"the proposal was {proposal.status} already")
    return proposal, incident


def accept(session: Session, *, proposal_id: str, actor: str) -> tuple[PlanProposal, PlanVersion]:
    """Make the proposal the plan's new version: new incidents of the type get it, open ones keep theirs."""
    proposal, incident = _decidable(session, proposal_id)
    current = current_plan(session, proposal.type)
    if current.version != proposal.base_version:
        raise ProposalStateConflict(f"the {proposal.type} plan is at version {current.version} now, not "
                                    f"{proposal.base_version}; propose the change again against it")
    check_proposed(session, proposal.type, proposal.proposed_text)  # the registry may have changed since
    row = store_accepted(session, proposal.type, proposal.proposed_text)
    now = utcnow()
    proposal.status = "accepted"
    proposal.decided_by = actor
    proposal.decided_at = now
    proposal.new_version = row.version
    session.add(proposal)
    audit(session, actor=actor, action="plan.accepted", proposal_id=proposal.id, type=proposal.type,
          version=row.version, digest=row.digest)
    if incident is not None:
        ledger.append(session, incident=incident, kind=LedgerKind.plan_change_accepted, actor=actor,
                      from_party=COMMAND, to_party=COMMAND, idempotency_key=f"{proposal.id}:decided",
                      handed_over={"digest": row.digest},
                      details={"proposal_id": proposal.id, "type": proposal.type, "version": row.version}, at=now)
    return proposal, row


def reject(session: Session, *, proposal_id: str, actor: str, reason: str) -> PlanProposal:
    if not reason.strip():
        raise ProposalInvalid("rejecting a proposal needs a reason")
    proposal, incident = _decidable(session, proposal_id)
    now = utcnow()
    proposal.status = "rejected"
    proposal.decided_by = actor
    proposal.decided_at = now
    session.add(proposal)
    audit(session, actor=actor, action="plan.rejected", proposal_id=proposal.id, type=proposal.type, reason=reason)
    if incident is not None:
        ledger.append(session, incident=incident, kind=LedgerKind.plan_change_rejected, actor=actor,
                      from_party=COMMAND, to_party=COMMAND, idempotency_key=f"{proposal.id}:decided",
                      handed_over={"reason": reason},
                      details={"proposal_id": proposal.id, "type": proposal.type, "reason": reason[:500]}, at=now)
    return proposal


def plan_versions(session: Session, type_key: str) -> list[dict[str, Any]]:
    """The versions of a plan incidents were opened with or a planner accepted, newest first."""
    rows = session.exec(select(PlanVersion).where(PlanVersion.type == type_key)
                        .order_by(col(PlanVersion.version).desc(), col(PlanVersion.id).desc())).all()
    return [{"id": r.id, "version": r.version, "source": r.source, "digest": r.digest, "created_at": r.created_at}
            for r in rows]
