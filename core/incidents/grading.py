"""Grading: when what departments report, or a monitoring signal, meets a higher level's criteria in the
plan, the office is proposed that level. The proposal is ledgered and shown on the incident and the board;
the person with the authority accepts it (the level changes) or declines it with a reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.incidents import authority
from core.incidents.models import DepartmentTask, Incident, LevelProposal, ProposalStatus, TaskStatus
from core.incidents.service import COMMAND, SYSTEM, change_level, lock_incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.platform.errors import BatonError, IncidentClosed, NotFound, ReasonRequired
from core.users.models import User
from process_defs.schema import IncidentType, level_rank


class ProposalStateConflict(BatonError):
    """The proposal was decided already, or a level change made it moot."""

    code = "level_proposal_conflict"
    http_status = 409


def observed_outputs(tasks: dict[str, DepartmentTask]) -> dict[str, Any]:
    """Completed steps' outputs as grading measures (`step.field`)."""
    return {f"{key}.{name}": value for key, task in tasks.items() if task.status == TaskStatus.completed
            for name, value in (task.outputs or {}).items()}


def observed_signal(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A monitoring signal's payload as grading measures (`signal:kind.field`)."""
    return {f"signal:{kind}.{name}": value for name, value in payload.items()}


def propose(session: Session, *, incident: Incident, plan: IncidentType, observed: dict[str, Any], source: str,
            now: datetime | None = None) -> LevelProposal | None:
    """Propose the level the observed values grade the incident at, when it is above the current level and
    no proposal at that level or higher is open or was declined (a declined level is not asked again)."""
    graded = plan.grade(observed)
    if graded is None or level_rank(graded[0]) <= level_rank(incident.level):
        return None
    level, met = graded
    grade = (plan.grading or {})[level]  # type: ignore[index]
    basis = {"text": grade.text.model_dump(),
             "met": [{"measure": c.measure, "op": c.op, "value": c.value, "observed": value} for c, value in met]}
    return propose_level(session, incident=incident, level=level, basis=basis, source=source, now=now)


def propose_level(session: Session, *, incident: Incident, level: str, basis: dict[str, Any], source: str,
                  now: datetime | None = None) -> LevelProposal | None:
    """Propose `level` on the grounds in `basis` (see `propose`), unless it is not above the current level or
    a proposal at that level or higher is open or was declined."""
    if level_rank(level) <= level_rank(incident.level):
        return None
    earlier = session.exec(select(LevelProposal).where(
        LevelProposal.incident_id == incident.id,
        col(LevelProposal.status).in_([ProposalStatus.open, ProposalStatus.declined]))).all()
    if any(level_rank(p.level) >= level_rank(level) for p in earlier):
        return None
    moment = now or utcnow()
    for old in earlier:
        if old.status == ProposalStatus.open:
            old.status = ProposalStatus.superseded
            old.decided_at = moment
            session.add(old)
    proposal = LevelProposal(incident_id=incident.id, level=level, from_level=incident.level, basis=basis,
                             source=source, created_at=moment)
    session.add(proposal)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.level_proposed, actor=SYSTEM, from_party=COMMAND,
                  to_party=COMMAND, idempotency_key=f"{proposal.id}:proposed", handed_over=basis,
                  details={"proposal_id": proposal.id, "level": level, "from": incident.level, "source": source},
                  at=moment)
    return proposal


def open_proposals(session: Session, incident_id: str) -> list[LevelProposal]:
    return list(session.exec(select(LevelProposal).where(LevelProposal.incident_id == incident_id,
                                                         LevelProposal.status == ProposalStatus.open)
                             .order_by(col(LevelProposal.created_at))).all())


def list_proposals(session: Session, incident_id: str) -> list[LevelProposal]:
    return list(session.exec(select(LevelProposal).where(LevelProposal.incident_id == incident_id)
                             .order_by(col(LevelProposal.created_at))).all())


def _open_proposal(session: Session, incident_id: str, proposal_id: str) -> tuple[Incident, LevelProposal]:
    incident = lock_incident(session, incident_id)
    proposal = session.get(LevelProposal, proposal_id)
    if proposal is None or proposal.incident_id != incident.id:
        raise NotFound(f"no level proposal '{proposal_id}' on incident {incident.code}")
    session.refresh(proposal)
    if incident.status != "open":
        raise IncidentClosed(f"incident {incident.code} is closed")
    if proposal.status != ProposalStatus.open:
        raise ProposalStateConflict(f"the proposal of level {proposal.level} is {proposal.status}")
    return incident, proposal


def accept(session: Session, *, incident_id: str, proposal_id: str, by: User, reason: str | None = None,
           ordered_by: str | None = None) -> Incident:
    """Raise the level as proposed, by the person with the authority to raise to it (see `change_level`);
    the ledger's level change names the proposal."""
    incident, proposal = _open_proposal(session, incident_id, proposal_id)
    wording = plan_for_version(session, incident.plan_version_id).grading or {}
    text = wording[proposal.level].text.zh if proposal.level in wording else ""
    level = proposal.level
    changed = change_level(session, incident_id=incident.id, level=level, by=by, ordered_by=ordered_by,
                           reason=reason or f"按分级标准：{text}（分级建议 {proposal.id}）", proposal_id=proposal.id)
    session.refresh(proposal)
    proposal.status = ProposalStatus.accepted
    proposal.decided_at, proposal.decided_by, proposal.reason = utcnow(), f"user:{by.username}", reason
    session.add(proposal)
    return changed


def decline(session: Session, *, incident_id: str, proposal_id: str, by: User, reason: str,
            ordered_by: str | None = None) -> LevelProposal:
    """Keep the level: the decision not to raise is taken by whoever may raise to the proposed level."""
    if not reason.strip():
        raise ReasonRequired("declining a proposed level needs a reason")
    incident, proposal = _open_proposal(session, incident_id, proposal_id)
    plan = plan_for_version(session, incident.plan_version_id)
    authorised = authority.authorise(session, plan=plan, act="raise", level=proposal.level, user=by,
                                     ordered_by=ordered_by)
    now = utcnow()
    actor = authorised.recorded_by
    proposal.status = ProposalStatus.declined
    proposal.decided_at, proposal.decided_by, proposal.reason = now, actor, reason
    session.add(proposal)
    ledger.append(session, incident=incident, kind=LedgerKind.level_proposal_declined, actor=actor,
                  from_party=actor, to_party=COMMAND, idempotency_key=f"{proposal.id}:declined",
                  handed_over={"reason": reason},
                  details={"proposal_id": proposal.id, "level": proposal.level, "reason": reason,
                           "authority": authorised.details()}, at=now)
    return proposal
