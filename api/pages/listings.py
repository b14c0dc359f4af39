"""What the office, inbox and review pages' lists share: open tasks in the order to do them, the incidents and
step titles they show, plan names, and an incident's link to its flow run in Prefect's UI."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from core.incidents import reads
from core.incidents.models import DepartmentTask, Incident
from core.plans.store import current_plans, plan_for_version
from core.platform.settings import get_settings


def plans() -> list[tuple[str, Any]]:
    return current_plans()[0]


def incident_context(incidents: list[Incident]) -> dict[str, Any]:
    return {"plan_names": {key: plan.name for key, plan in plans()}, "incidents": incidents}


def sorted_open(tasks: list[DepartmentTask]) -> list[DepartmentTask]:
    """Overdue first, then by due time (no due time last)."""
    far = datetime.max.replace(tzinfo=ZoneInfo("UTC"))
    return sorted(tasks, key=lambda t: (not reads.is_overdue(t), t.due_at is None, t.due_at or far))


def incidents_of(session: Session, tasks: list[DepartmentTask]) -> dict[str, Incident]:
    out: dict[str, Incident] = {}
    for task in tasks:
        if task.incident_id not in out:
            incident = session.get(Incident, task.incident_id)
            if incident is not None:
                out[incident.id] = incident
    return out


def titles(session: Session, tasks: list[DepartmentTask], incidents: Mapping[str, Incident]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for task in tasks:
        incident = incidents.get(task.incident_id)
        if incident is not None:
            found[task.id] = plan_for_version(session, incident.plan_version_id).step(task.step_key).title
    return found


def flow_run_url(incident: Incident) -> str | None:
    api_url = get_settings().resolved_prefect_api_url()
    if not api_url or not incident.flow_run_id:
        return None
    base = api_url.rstrip("/")
    base = base.removesuffix("/api")
    return f"{base}/runs/flow-run/{incident.flow_run_id}"
