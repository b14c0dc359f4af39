from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from api.deps import (
    ActingUser,
    CurrentUser,
    OfficeUser,
    Principal,
    ReviewerUser,
    SessionDep,
    first_of_a_race,
    idempotency_digest,
)
from api.routes.tasks import alert_out
from api.schemas import (
    AlertOut,
    AuthorisationOut,
    IncidentCreate,
    IncidentPage,
    IncidentPublic,
    LedgerEntryOut,
    LedgerOut,
    Level,
    LevelChangeIn,
    LevelProposalOut,
    LinkedIncidentIn,
    ProposalDecisionIn,
    VerifyOut,
)
from core.incidents import alerts, authority, grading, reads
from core.incidents.cascade import chain, open_linked
from core.incidents.models import Incident, LevelAuthorisation
from core.incidents.service import change_level, lock_incident, open_incident
from core.ledger.chain import verify_incident
from core.platform.input_policy import Offset
from core.reports.activity_log import activity_log

router = APIRouter(prefix="/api/incidents", tags=["incidents"])


def public(incident: Incident) -> IncidentPublic:
    location = None
    if incident.location_name or incident.lat is not None:
        location = {"name": incident.location_name, "lat": incident.lat, "lon": incident.lon}
    return IncidentPublic(id=incident.id, code=incident.code, type=incident.type, level=incident.level,
                          status=incident.status, stage=incident.stage, title=incident.title, drill=incident.drill,
                          flow_run_id=incident.flow_run_id, created_at=incident.created_at,
                          closed_at=incident.closed_at, location=location, plan_version=incident.plan_version,
                          parent_id=incident.parent_id)


@router.post("", status_code=201, response_model=IncidentPublic)
def create(body: IncidentCreate, principal: OfficeUser, session: SessionDep, response: Response,
           idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> IncidentPublic:
    """Open an incident. A Baton worker starts its flow; `flow_run_id` appears once it has."""
    key = idempotency_digest(principal.user.id, idempotency_key) if idempotency_key else None
    kwargs: dict[str, Any] = {
        "type_key": body.type, "level": body.level, "title": body.title, "description": body.description,
        "drill": body.drill, "actor": principal.actor, "idempotency_key": key,
    }
    if body.location is not None:
        kwargs.update(location_name=body.location.name, lat=body.location.lat, lon=body.location.lon)
    opened = first_of_a_race(session, lambda: open_incident(session, **kwargs))
    if not opened.created:
        response.headers["Idempotent-Replayed"] = "true"
    return public(opened.incident)


@router.get("", response_model=IncidentPage)
def list_(principal: CurrentUser, session: SessionDep,
          status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
          type: Annotated[str | None, Query(max_length=64)] = None,
          level: Level | None = None,
          stage: Annotated[str | None, Query(pattern="^(warning|response|recovery|learning)$")] = None,
          limit: Annotated[int, Query(ge=1, le=200)] = 50,
          offset: Offset = 0) -> IncidentPage:
    department = None if principal.sees_all else principal.user.department
    page = reads.list_incidents(session, department=department, status=status, type_key=type, level=level,
                                stage=stage, limit=limit, offset=offset)
    return IncidentPage(items=[public(i) for i in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/{incident_id}", response_model=IncidentPublic)
def get(incident_id: str, principal: CurrentUser, session: SessionDep) -> IncidentPublic:
    department = None if principal.sees_all else principal.user.department
    return public(reads.get_incident(session, incident_id, department))


def _scope(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


@router.post("/{incident_id}/level", response_model=IncidentPublic)
def level(incident_id: str, body: LevelChangeIn, principal: ActingUser, session: SessionDep) -> IncidentPublic:
    """Raise or lower the response level, with the reason recorded in the ledger. Only a person holding a
    position the plan names for it may (403 `position_required` names them), or the office on that person's
    verbal order (`ordered_by`), flagged until they confirm it."""
    incident = reads.get_incident(session, incident_id, _scope(principal))
    return public(change_level(session, incident_id=incident.id, level=body.level, by=principal.user,
                               reason=body.reason, ordered_by=body.ordered_by, check_open_work=True,
                               confirm_open_work=body.confirm_open_work))


@router.get("/{incident_id}/alerts", response_model=list[AlertOut])
def incident_alerts(incident_id: str, principal: OfficeUser, session: SessionDep,
                    all: bool = False) -> list[AlertOut]:
    """The office's alerts on this incident's tasks: handed back (with the reason), or meant for a department
    nobody can act for. Open ones until the office chooses (reassign, take over, ask a leader); `all` adds
    the resolved ones with the choice."""
    incident = reads.get_incident(session, incident_id, None)
    found = alerts.alerts_of(session, incident.id) if all else alerts.open_alerts(session, incident_id=incident.id)
    return [alert_out(session, a) for a in found]


@router.get("/{incident_id}/authorisations", response_model=list[AuthorisationOut])
def authorisations(incident_id: str, principal: ReviewerUser, session: SessionDep) -> list[AuthorisationOut]:
    """Who authorised each level decision (start, raise, lower, end) and whether it awaits confirmation."""
    incident = reads.get_incident(session, incident_id, None)
    return [_authorisation(row) for row in authority.list_authorisations(session, incident.id)]


@router.post("/{incident_id}/authorisations/{authorisation_id}/confirm", response_model=AuthorisationOut)
def confirm_authorisation(incident_id: str, authorisation_id: str, principal: ActingUser,
                          session: SessionDep) -> AuthorisationOut:
    """The commander confirms a decision the office recorded on their verbal order (or a holder of the position
    confirms a response started without it)."""
    incident = reads.get_incident(session, incident_id, _scope(principal))
    incident = lock_incident(session, incident.id)
    return _authorisation(authority.confirm(session, incident=incident, authorisation_id=authorisation_id,
                                            user=principal.user))


def _authorisation(row: LevelAuthorisation) -> AuthorisationOut:
    return AuthorisationOut.model_validate({**row.model_dump(), "awaiting_confirmation": row.awaiting_confirmation})


@router.get("/{incident_id}/proposals", response_model=list[LevelProposalOut])
def proposals(incident_id: str, principal: ReviewerUser, session: SessionDep) -> list[LevelProposalOut]:
    """Levels the plan's grading proposed (open, accepted, declined, superseded), oldest first."""
    incident = reads.get_incident(session, incident_id, None)
    return [LevelProposalOut.model_validate(p, from_attributes=True)
            for p in grading.list_proposals(session, incident.id)]


@router.post("/{incident_id}/proposals/{proposal_id}", response_model=LevelProposalOut)
def decide_proposal(incident_id: str, proposal_id: str, body: ProposalDecisionIn, principal: ActingUser,
                    session: SessionDep) -> LevelProposalOut:
    """Accept a proposed level (the level changes) or decline it with a reason: the decision of whoever may
    raise to that level (see the level change)."""
    incident = reads.get_incident(session, incident_id, _scope(principal))
    if body.decision == "accept":
        grading.accept(session, incident_id=incident.id, proposal_id=proposal_id, by=principal.user,
                       reason=body.reason, ordered_by=body.ordered_by)
    else:
        grading.decline(session, incident_id=incident.id, proposal_id=proposal_id, by=principal.user,
                        reason=body.reason or "", ordered_by=body.ordered_by)
    row = next(p for p in grading.list_proposals(session, incident.id) if p.id == proposal_id)
    return LevelProposalOut.model_validate(row, from_attributes=True)


@router.get("/{incident_id}/timeline")
def timeline(incident_id: str, principal: ReviewerUser, session: SessionDep) -> dict[str, Any]:
    incident = reads.get_incident(session, incident_id, None)
    return {**reads.timeline(session, incident),
            "deadlines_by_department": reads.deadlines_by_department(session, incident)}


@router.get("/{incident_id}/ledger", response_model=LedgerOut)
def ledger(incident_id: str, principal: ReviewerUser, session: SessionDep) -> LedgerOut:
    incident = reads.get_incident(session, incident_id, None)
    view = reads.ledger_view(session, incident)
    entries = [LedgerEntryOut.model_validate(e, from_attributes=True) for e in view["entries"]]
    return LedgerOut(incident_id=incident.id, code=incident.code, entries=entries)


@router.get("/{incident_id}/ledger/verify", response_model=VerifyOut)
def verify(incident_id: str, principal: ReviewerUser, session: SessionDep) -> VerifyOut:
    incident = reads.get_incident(session, incident_id, None)
    result = verify_incident(session, incident.id)
    return VerifyOut(valid=result.valid, entries=result.entries, first_bad_seq=result.first_bad_seq,
                     reason=result.reason)


@router.get("/{incident_id}/shared")
def shared(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """What departments reported on this incident, as far as the plan shares it with the reader."""
    department = None if principal.sees_all else principal.user.department
    incident = reads.get_incident(session, incident_id, department)
    return {"incident_id": incident.id, "items": reads.shared_with(session, incident, department)}


@router.post("/{incident_id}/children", status_code=201, response_model=IncidentPublic)
def open_child(incident_id: str, body: LinkedIncidentIn, principal: OfficeUser, session: SessionDep,
               idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> IncidentPublic:
    """Open a linked incident of another type caused by this one (a cascade)."""
    parent = reads.get_incident(session, incident_id, None)
    key = idempotency_digest(principal.user.id, idempotency_key) if idempotency_key else str(uuid.uuid4())
    return public(open_linked(session, parent_id=parent.id, type_key=body.type, level=body.level,
                              title=body.title, actor=principal.actor, reason=body.reason, key=key))


@router.get("/{incident_id}/chain")
def incident_chain(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The incident's parents and linked children with their status."""
    department = None if principal.sees_all else principal.user.department
    return chain(session, reads.get_incident(session, incident_id, department), department)


@router.get("/{incident_id}/activity-log")
def activity(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """ICS-214-style activity log per department (a department sees its own unit's)."""
    department = None if principal.sees_all else principal.user.department
    return activity_log(session, reads.get_incident(session, incident_id, department), department)
