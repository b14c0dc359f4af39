"""The learning stage: lessons on incidents, follow-ups assigned to departments, proposed plan changes.

Lessons are recorded by the emergency office and read by whoever sees the incident. Follow-ups are scoped like
tasks: a department sees and completes its own, another department's reads as missing. Plan proposals are the
planners' (office and admin propose and decide; managers read).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from api.deps import ActingUser, CurrentUser, OfficeUser, Principal, ReviewerUser, SessionDep
from api.errors import ApiError
from api.schemas import Strict
from core.incidents import reads
from core.incidents.models import Incident
from core.incidents.permissions import may_act
from core.learning import service as learning
from core.learning.models import FollowUp, Lesson, PlanProposal
from core.plans.store import registry
from core.platform.errors import NotFound
from core.platform.input_policy import Line, Lines, LocalMoment, Offset

router = APIRouter(tags=["learning"])


class LessonIn(Strict):
    text: Lines = Field(min_length=1, max_length=learning.MAX_LESSON)


class FollowUpIn(Strict):
    department: Line = Field(min_length=1, max_length=64)
    title: Line = Field(min_length=1, max_length=300)
    due_at: LocalMoment = Field(description="When it is due; without a UTC offset it is read in Baton's time zone.")
    note: Lines | None = Field(default=None, max_length=learning.MAX_NOTE)


class FollowUpDoneIn(Strict):
    note: Lines | None = Field(default=None, max_length=learning.MAX_NOTE)


class ProposalIn(Strict):
    type: Line = Field(min_length=1, max_length=64)
    text: Lines = Field(min_length=1, max_length=500_000, description="The whole proposed plan file (YAML).")
    lesson_id: Line | None = Field(default=None, max_length=36)


class RejectIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


class FollowUpOut(BaseModel):
    id: str
    incident_id: str
    incident_code: str | None
    lesson_id: str
    lesson: str | None
    department: str
    department_name: dict[str, str] | None
    title: str
    due_at: datetime
    status: str
    overdue: bool
    created_by: str
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    note: str | None


class FollowUpPageOut(BaseModel):
    items: list[FollowUpOut]
    total: int
    limit: int
    offset: int


class ProposalOut(BaseModel):
    id: str
    type: str
    base_version: int
    version: int
    lesson_id: str | None
    status: str
    proposed_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    new_version: int | None
    diff: str


class ProposalDetail(ProposalOut):
    proposed_text: str


class ProposalPage(BaseModel):
    items: list[ProposalOut]
    total: int
    limit: int
    offset: int


class LessonOut(BaseModel):
    id: str
    incident_id: str
    incident_code: str | None
    text: str
    author: str
    created_at: datetime
    follow_ups: list[FollowUpOut]
    proposals: list[dict[str, Any]]


class LessonList(BaseModel):
    incident_id: str
    items: list[LessonOut]


def _scope(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def follow_up_out(session: Session, follow_up: FollowUp) -> FollowUpOut:
    incident = session.get(Incident, follow_up.incident_id)
    lesson = session.get(Lesson, follow_up.lesson_id)
    dept = registry().department(follow_up.department)
    return FollowUpOut(id=follow_up.id, incident_id=follow_up.incident_id,
                       incident_code=incident.code if incident else None, lesson_id=follow_up.lesson_id,
                       lesson=lesson.text if lesson else None, department=follow_up.department,
                       department_name=dept.name.model_dump() if dept else None, title=follow_up.title,
                       due_at=follow_up.due_at, status=follow_up.status, overdue=learning.is_overdue(follow_up),
                       created_by=follow_up.created_by, created_at=follow_up.created_at,
                       completed_at=follow_up.completed_at, completed_by=follow_up.completed_by, note=follow_up.note)


def proposal_out(proposal: PlanProposal, detail: bool = False) -> ProposalOut:
    fields: dict[str, Any] = dict(
        id=proposal.id, type=proposal.type, base_version=proposal.base_version, version=proposal.base_version + 1,
        lesson_id=proposal.lesson_id, status=proposal.status, proposed_by=proposal.proposed_by,
        created_at=proposal.created_at, decided_by=proposal.decided_by, decided_at=proposal.decided_at,
        new_version=proposal.new_version, diff=proposal.diff)
    if detail:
        return ProposalDetail(**fields, proposed_text=proposal.proposed_text)
    return ProposalOut(**fields)


def lesson_out(session: Session, lesson: Lesson, principal: Principal) -> LessonOut:
    incident = session.get(Incident, lesson.incident_id)
    follow_ups = learning.list_follow_ups(session, department=_scope(principal), lesson_id=lesson.id, limit=500)
    proposals: list[dict[str, Any]] = []
    if principal.sees_all:
        rows = learning.list_proposals(session, lesson_id=lesson.id, limit=100).items
        proposals = [{"id": p.id, "type": p.type, "status": p.status, "version": p.base_version + 1} for p in rows]
    return LessonOut(id=lesson.id, incident_id=lesson.incident_id, incident_code=incident.code if incident else None,
                     text=lesson.text, author=lesson.author, created_at=lesson.created_at,
                     follow_ups=[follow_up_out(session, f) for f in follow_ups.items], proposals=proposals)


def _readable_lesson(session: Session, principal: Principal, lesson_id: str) -> Lesson:
    """A lesson, for those who see its incident or hold one of its follow-ups."""
    lesson = learning.get_lesson(session, lesson_id)
    department = _scope(principal)
    if department is not None and not reads.involved(session, lesson.incident_id, department):
        own = session.exec(select(FollowUp.id).where(FollowUp.lesson_id == lesson.id,
                                                     FollowUp.department == department).limit(1)).first()
        if own is None:
            raise NotFound(f"no lesson '{lesson_id}'")
    return lesson


# -- lessons -----------------------------------------------------------------------------------------------


@router.post("/api/incidents/{incident_id}/lessons", status_code=201, response_model=LessonOut)
def record_lesson(incident_id: str, body: LessonIn, principal: OfficeUser, session: SessionDep) -> LessonOut:
    """Record a lesson from the incident's review (open or closed); it is ledgered on the incident."""
    incident = reads.get_incident(session, incident_id, None)
    lesson = learning.record_lesson(session, incident_id=incident.id, text=body.text, actor=principal.actor)
    return lesson_out(session, lesson, principal)


@router.get("/api/incidents/{incident_id}/lessons", response_model=LessonList)
def lessons(incident_id: str, principal: CurrentUser, session: SessionDep) -> LessonList:
    incident = reads.get_incident(session, incident_id, _scope(principal))
    return LessonList(incident_id=incident.id,
                      items=[lesson_out(session, lesson, principal)
                             for lesson in learning.list_lessons(session, incident.id)])


@router.get("/api/lessons/{lesson_id}", response_model=LessonOut)
def lesson(lesson_id: str, principal: CurrentUser, session: SessionDep) -> LessonOut:
    return lesson_out(session, _readable_lesson(session, principal, lesson_id), principal)


# -- follow-ups --------------------------------------------------------------------------------------------


@router.post("/api/lessons/{lesson_id}/follow-ups", status_code=201, response_model=FollowUpOut)
def assign_follow_up(lesson_id: str, body: FollowUpIn, principal: OfficeUser, session: SessionDep) -> FollowUpOut:
    """Turn the lesson into work for a department with a due date (ledgered on the lesson's incident)."""
    follow_up = learning.assign_follow_up(session, lesson_id=lesson_id, department=body.department, title=body.title,
                                          due_at=body.due_at, actor=principal.actor, note=body.note)
    return follow_up_out(session, follow_up)


@router.get("/api/follow-ups", response_model=FollowUpPageOut)
def follow_ups(principal: CurrentUser, session: SessionDep,
               status: Annotated[Literal["open", "done", "cancelled"] | None, Query()] = None,
               incident: Annotated[str | None, Query(max_length=64)] = None,
               department: Annotated[str | None, Query(max_length=64)] = None,
               overdue: bool = False,
               limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Offset = 0) -> FollowUpPageOut:
    """A department's follow-ups; office, managers and admins see every department's (filter `department`)."""
    scope = department if principal.sees_all else principal.user.department
    incident_id = None
    if incident is not None:
        row = session.get(Incident, incident) or session.exec(select(Incident).where(Incident.code == incident)).first()
        own = principal.sees_all or (row is not None and (
            reads.involved(session, row.id, principal.user.department or "") or session.exec(
                select(FollowUp.id).where(FollowUp.incident_id == row.id,
                                          FollowUp.department == principal.user.department).limit(1)).first()))
        if row is None or not own:
            raise NotFound(f"no incident '{incident}'")
        incident_id = row.id
    page = learning.list_follow_ups(session, department=scope, status=status, incident_id=incident_id,
                                    overdue=overdue, limit=limit, offset=offset)
    return FollowUpPageOut(items=[follow_up_out(session, f) for f in page.items], total=page.total, limit=limit,
                           offset=offset)


@router.get("/api/follow-ups/{follow_up_id}", response_model=FollowUpOut)
def follow_up(follow_up_id: str, principal: CurrentUser, session: SessionDep) -> FollowUpOut:
    return follow_up_out(session, learning.get_follow_up(session, follow_up_id, _scope(principal)))


@router.post("/api/follow-ups/{follow_up_id}/complete", response_model=FollowUpOut)
def complete_follow_up(follow_up_id: str, body: FollowUpDoneIn, principal: ActingUser,
                       session: SessionDep) -> FollowUpOut:
    """The department reports it done (409 if it is already)."""
    row = learning.get_follow_up(session, follow_up_id, _scope(principal))
    if not may_act(principal.user, row):
        # Office and admin read every follow-up but act only for the emergency office.
        raise ApiError(403, "forbidden", f"only {row.department} can complete this follow-up")
    done = learning.complete_follow_up(session, follow_up_id=row.id, actor=principal.actor, note=body.note)
    return follow_up_out(session, done)


# -- plan change proposals ---------------------------------------------------------------------------------


@router.post("/api/plan-proposals", status_code=201, response_model=ProposalDetail)
def propose(body: ProposalIn, principal: OfficeUser, session: SessionDep) -> ProposalOut:
    """Propose a whole new plan file; Baton sets its version to the current one + 1, checks it (422 lists every
    problem as `file:line path: message`) and keeps the unified diff against the current version."""
    proposal = learning.propose(session, type_key=body.type, text=body.text, actor=principal.actor,
                                lesson_id=body.lesson_id)
    return proposal_out(proposal, detail=True)


@router.get("/api/plan-proposals", response_model=ProposalPage)
def proposals(principal: ReviewerUser, session: SessionDep,
              type: Annotated[str | None, Query(max_length=64)] = None,
              status: Annotated[Literal["proposed", "accepted", "rejected"] | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50,
              offset: Offset = 0) -> ProposalPage:
    page = learning.list_proposals(session, type_key=type, status=status, limit=limit, offset=offset)
    return ProposalPage(items=[proposal_out(p) for p in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/api/plan-proposals/{proposal_id}", response_model=ProposalDetail)
def proposal(proposal_id: str, principal: ReviewerUser, session: SessionDep) -> ProposalOut:
    return proposal_out(learning.get_proposal(session, proposal_id), detail=True)


@router.post("/api/plan-proposals/{proposal_id}/accept", response_model=ProposalOut)
def accept(proposal_id: str, principal: OfficeUser, session: SessionDep) -> ProposalOut:
    """Accept: the plan gets the proposal's version; new incidents of the type use it, open ones keep theirs."""
    accepted, _ = learning.accept(session, proposal_id=proposal_id, actor=principal.actor)
    return proposal_out(accepted)


@router.post("/api/plan-proposals/{proposal_id}/reject", response_model=ProposalOut)
def reject(proposal_id: str, body: RejectIn, principal: OfficeUser, session: SessionDep) -> ProposalOut:
    return proposal_out(learning.reject(session, proposal_id=proposal_id, actor=principal.actor, reason=body.reason))
