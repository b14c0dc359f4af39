"""Cascading incidents: one incident opens a linked child of another type (typhoon → flood, earthquake →
chemical leak), from a plan step or by the office. Both ledgers record the link; each shows the other."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.incidents.reads import involved
from core.incidents.service import COMMAND, lock_incident, open_incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_in_use
from core.platform.errors import IncidentClosed


def open_linked(session: Session, *, parent_id: str, type_key: str, actor: str, reason: str, key: str,
                level: str | None = None, title: str | None = None) -> Incident:
    """Open (once per `key`) a child incident of `type_key` linked to the parent; a drill's children are drills."""
    parent = lock_incident(session, parent_id)
    if parent.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {parent.code} is closed; it cannot open a linked incident")
    if title is None:
        # Not the parent's title: the child's departments need not be on the parent, nor may read about it.
        name = plan_in_use(session, type_key)[0].name
        title = f"{name.zh}（关联事件）/ {name.en} (linked incident)"
    opened = open_incident(session, type_key=type_key, level=level or parent.level, actor=actor, title=title[:200],
                           description=reason, location_name=parent.location_name, lat=parent.lat, lon=parent.lon,
                           drill=parent.drill, clock_speed=parent.clock_speed,
                           idempotency_key=f"cascade:{parent.id}:{key}")
    child = opened.incident
    if opened.created:
        child.parent_id = parent.id
        session.add(child)
        ledger.append(session, incident=parent, kind=LedgerKind.incident_linked, actor=actor, from_party=COMMAND,
                      to_party=child.code, idempotency_key=f"{parent.id}:linked:{child.id}",
                      handed_over={"child": child.code, "type": type_key, "reason": reason},
                      details={"child_id": child.id, "child_code": child.code, "type": type_key, "reason": reason})
        ledger.append(session, incident=child, kind=LedgerKind.incident_linked, actor=actor, from_party=parent.code,
                      to_party=COMMAND, idempotency_key=f"{child.id}:linked-from:{parent.id}",
                      handed_over={"parent": parent.code, "reason": reason},
                      details={"parent_id": parent.id, "parent_code": parent.code, "reason": reason})
    return child


def _brief(incident: Incident) -> dict[str, Any]:
    return {"id": incident.id, "code": incident.code, "type": incident.type, "level": incident.level,
            "status": incident.status, "stage": incident.stage, "title": incident.title}


def chain(session: Session, incident: Incident, reader: str | None) -> dict[str, Any]:
    """The incident's parent (and its parents) and its children, with their status: those `reader` (a department,
    or None for those who see everything) may open; the others are only counted (`hidden`), never named."""
    def may_open(other: Incident) -> bool:
        return reader is None or involved(session, other.id, reader)

    ancestors: list[Incident] = []
    current = incident
    while current.parent_id is not None and len(ancestors) < 20:
        parent = session.get(Incident, current.parent_id)
        if parent is None:
            break
        ancestors.append(parent)
        current = parent
    children = session.exec(select(Incident).where(Incident.parent_id == incident.id)
                            .order_by(col(Incident.created_at))).all()
    parents = [p for p in ancestors if may_open(p)]
    shown_children = [c for c in children if may_open(c)]
    return {"incident": _brief(incident), "parents": [_brief(p) for p in parents],
            "children": [_brief(c) for c in shown_children],
            "hidden": {"parents": len(ancestors) - len(parents), "children": len(children) - len(shown_children)}}
