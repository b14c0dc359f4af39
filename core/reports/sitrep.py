"""An EDXL-SitRep-like situation report of an incident, built from the board and so scoped like it."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from core.incidents.models import DepartmentTask, Incident, TaskStatus
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.sharing.board import board
from process_defs.schema import LEVEL_COLOURS, LEVEL_NAMES, STAGE_NAMES

SITREP_SCHEMA = "baton-sitrep/1 (after OASIS EDXL-SitRep 1.0)"


def sitrep(session: Session, incident: Incident, reader: str | None, prepared_by: str) -> dict[str, Any]:
    plan = plan_for_version(session, incident.plan_version_id)
    tasks = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id,
                                                      DepartmentTask.kind == "human")
                         .order_by(col(DepartmentTask.created_at))).all()
    open_now = [t for t in tasks if TaskStatus(t.status).is_open]
    if reader is not None:
        open_now = [t for t in open_now if t.department == reader]
    items = board(session, incident, reader)
    return {
        "schema": SITREP_SCHEMA,
        "messageID": f"{incident.code}-sitrep-{utcnow().strftime('%Y%m%dT%H%M%SZ')}",
        "preparedBy": prepared_by,
        "dateTimePrepared": utcnow().isoformat(),
        "reportPurpose": "situation",
        "reportVersion": "Initial" if incident.status == "open" else "Final",
        "incident": {"id": incident.id, "code": incident.code, "type": incident.type, "name": plan.name.model_dump(),
                     "title": incident.title, "status": incident.status, "stage": incident.stage,
                     "stageName": STAGE_NAMES[incident.stage], "level": incident.level,
                     "levelName": LEVEL_NAMES[incident.level], "colour": LEVEL_COLOURS[incident.level],
                     "drill": incident.drill, "location": {"name": incident.location_name, "lat": incident.lat,
                                                          "lon": incident.lon},
                     "opened": incident.created_at.isoformat(), "closed": incident.closed_at.isoformat()
                     if incident.closed_at else None},
        "situationInformation": [{"kind": item["kind"], "at": item["at"].isoformat() if item["at"] else None,
                                  "department": item["department"], "title": item["title"],
                                  "classification": item["classification"],
                                  "content": {k: v for k, v in item.items()
                                              if k not in ("kind", "at", "department", "title", "classification")}}
                                 for item in items],
        "openTasks": [{"step": t.step_key, "department": t.department, "status": t.status,
                       "due": t.due_at.isoformat() if t.due_at else None,
                       "title": plan.step(t.step_key).title.model_dump()} for t in open_now],
    }
