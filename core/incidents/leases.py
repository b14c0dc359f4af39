"""Which Baton worker runs which incident: leases claimed, renewed and released in the database.

A worker that dies stops renewing; once its leases expire another worker claims those incidents and
resumes the same Prefect flow runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, case, event, inspect, or_, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.settings import get_settings

# PostgreSQL: a transaction that wakes an incident held by a worker also notifies this channel (delivered when it
# commits, never if it rolls back) with "<incident id> <woken_at>"; each worker listens and wakes its flow at once.
# The wake poll (`recently_woken`) stays: on SQLite it is the only way, and on PostgreSQL it catches a notification
# lost while a worker's listening connection was down, one poll interval later.
WAKE_CHANNEL = "baton_wake"
# And a transaction that opens an incident notifies this one (no payload), so that a worker claims it at once
# rather than at its next claim poll.
CLAIM_CHANNEL = "baton_claim"
_WOKEN = "baton_woken"
_OPENED = "baton_opened"


@event.listens_for(Session, "after_flush")
def _note_wakes(session: Session, _context: Any) -> None:
    """What the commit will notify: the leased incidents this flush woke, and whether it opened one."""
    if any(isinstance(item, Incident) for item in session.new):
        session.info[_OPENED] = True
    for item in session.dirty:
        if isinstance(item, Incident) and item.lease_owner is not None \
                and inspect(item).attrs.woken_at.history.has_changes():
            session.info.setdefault(_WOKEN, {})[item.id] = item.woken_at


@event.listens_for(Session, "before_commit")
def _notify_wakes(session: Session) -> None:
    if not is_postgres(session):
        return
    session.flush()  # the commit's own flush comes after this event: the wakes it writes are noted first
    woken: dict[str, datetime] = session.info.pop(_WOKEN, {})
    if session.info.pop(_OPENED, False):
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CLAIM_CHANNEL})
    if woken:
        session.execute(text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"),
                        {"channel": WAKE_CHANNEL,
                         "payloads": [f"{key} {moment.isoformat()}" for key, moment in woken.items()]})


@event.listens_for(Session, "after_soft_rollback")
def _forget_wakes(session: Session, _previous: Any) -> None:
    session.info.pop(_WOKEN, None)
    session.info.pop(_OPENED, None)


def wake_listener_conninfo() -> str | None:
    """Where a worker listens for wake notifications (a libpq URI), or None where there are none (SQLite)."""
    url = make_url(get_settings().resolved_database_url())
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def parse_wake(payload: str) -> tuple[str, datetime] | None:
    """A notification's incident id and `woken_at`; None for a payload not of that form."""
    incident_id, _, stamp = payload.partition(" ")
    try:
        return incident_id, datetime.fromisoformat(stamp)
    except ValueError:
        return None


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
    """Extend this worker's leases on the open incidents it is running; return those it still holds.

    Only running incidents: a lease the worker could not release (the database was down when its flow
    ended) must lapse so that some worker claims the incident again, rather than be kept alive by a worker
    that no longer runs it. An incident that has just closed is still held (its flow is finishing: taken for
    lost, its run was cancelled and shown Crashed in Prefect), though its lease is no longer extended.
    """
    if not incident_ids:
        return set()
    expires = (now or utcnow()) + timedelta(seconds=lease_seconds)
    # On PostgreSQL the ids go as one array: with 5,000 held, an IN list of 5,000 parameters cost the database three
    # times the CPU and the worker ten times (`python -m bench.leases`, docs/scaling.md). One statement either way:
    # the open ones extended, a closed one's lease rewritten as it is, every one still held returned.
    among = (col(Incident.id) == any_(bindparam("held", incident_ids, type_=ARRAY(String))) if is_postgres(session)
             else col(Incident.id).in_(incident_ids))
    extended = case((col(Incident.status) == IncidentStatus.open, expires), else_=col(Incident.lease_expires_at))
    rows = session.execute(update(Incident).where(col(Incident.lease_owner) == worker_id, among)
                           .values(lease_expires_at=extended).returning(col(Incident.id))
                           .execution_options(synchronize_session=False))
    return set(rows.scalars())


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
