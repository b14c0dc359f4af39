"""Which Baton worker runs which incident: leases claimed, renewed and released in the database.

A worker that dies stops renewing; once its leases expire another worker claims those incidents and
resumes the same Prefect flow runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.platform.clock import utcnow
from core.platform.db import is_postgres


def claim(session: Session, *, worker_id: str, limit: int, lease_seconds: float,
          now: datetime | None = None) -> list[str]:
    """Take up to `limit` open incidents nobody holds (or whose holder's lease ran out)."""
    moment = now or utcnow()
    if limit <= 0:
        return []
    candidates = (select(Incident.id)
                  .where(col(Incident.status) == IncidentStatus.open,
                         or_(col(Incident.lease_owner).is_(None), col(Incident.lease_expires_at) < moment))
                  .order_by(col(Incident.created_at)).limit(limit))
    if is_postgres(session):
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(session.exec(candidates).all())
    if not ids:
        return []
    # The WHERE repeats the test so that, between two workers, only one UPDATE takes each row.
    result = session.execute(
        update(Incident)
        .where(col(Incident.id).in_(ids), col(Incident.status) == IncidentStatus.open,
               or_(col(Incident.lease_owner).is_(None), col(Incident.lease_expires_at) < moment))
        .values(lease_owner=worker_id, lease_expires_at=moment + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return []
    return list(session.exec(select(Incident.id).where(col(Incident.id).in_(ids),
                                                       col(Incident.lease_owner) == worker_id)).all())


def renew(session: Session, *, worker_id: str, incident_ids: list[str], lease_seconds: float,
          now: datetime | None = None) -> set[str]:
    """Extend this worker's leases on the incidents it is running; return those it still holds.

    Only running incidents: a lease the worker could not release (the database was down when its flow
    ended) must lapse so that some worker claims the incident again, rather than be kept alive by a worker
    that no longer runs it.
    """
    if not incident_ids:
        return set()
    moment = now or utcnow()
    mine = and_(col(Incident.lease_owner) == worker_id, col(Incident.status) == IncidentStatus.open,
                col(Incident.id).in_(incident_ids))
    session.execute(update(Incident).where(mine)
                    .values(lease_expires_at=moment + timedelta(seconds=lease_seconds))
                    .execution_options(synchronize_session=False))
    return set(session.exec(select(Incident.id).where(mine)).all())


def release(session: Session, *, worker_id: str, incident_ids: list[str] | None = None) -> None:
    condition = col(Incident.lease_owner) == worker_id
    if incident_ids is not None:
        condition = and_(condition, col(Incident.id).in_(incident_ids))
    session.execute(update(Incident).where(condition).values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False))


def recently_woken(session: Session, *, worker_id: str, since: datetime) -> list[tuple[str, datetime]]:
    rows = session.exec(select(Incident.id, Incident.woken_at)
                        .where(col(Incident.lease_owner) == worker_id, col(Incident.woken_at) >= since)).all()
    return [(row[0], row[1]) for row in rows]


def set_flow_run(session: Session, *, incident_id: str, flow_run_id: str | None) -> None:
    """Record the incident's flow run once; `None` forgets a run Prefect no longer has."""
    query = update(Incident).where(col(Incident.id) == incident_id)
    if flow_run_id is not None:
        query = query.where(col(Incident.flow_run_id).is_(None))
    session.execute(query.values(flow_run_id=flow_run_id).execution_options(synchronize_session=False))
