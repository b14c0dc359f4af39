"""The map's layers of the response itself: open incidents, the areas of the warnings in force, and the places
departments reported on their tasks' forms (fields of kind location).

Each reads through the scope everything else has: the incidents a reader may see (`reads.list_incidents`; a
department sees those it is on), the fields of a task it may read (`Step.visible_outputs`, `reaches` field by
field). `reader` is a department key, or None for those who see everything (office, managers, administrators).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from core.geo.shapes import cap_circle, cap_polygon
from core.incidents import reads
from core.incidents.engine import latest_tasks
from core.incidents.models import Incident, TaskStatus
from core.maps.geojson import Feature, circle, point, polygon, valid
from core.plans.store import plan_for_version, registry
from core.plans.wording import Wording
from core.platform.errors import NotFound
from core.sharing import warnings as release
from process_defs.schema import FieldType

MAX_INCIDENTS = 500


def _open_incidents(session: Session, reader: str | None) -> list[Incident]:
    return list(reads.list_incidents(session, department=reader, status="open", limit=MAX_INCIDENTS).items)


def _department(key: str) -> dict[str, str]:
    found = registry().department(key)
    return found.name.model_dump() if found is not None else {"zh": key, "en": key}


def incidents(session: Session, reader: str | None) -> list[Feature]:
    """The open incidents the reader may see that have a place with coordinates."""
    return [point(i.lat, i.lon, id=i.id, code=i.code, title=i.title, type=i.type, level=i.level, stage=i.stage,
                  drill=i.drill, place=i.location_name)
            for i in _open_incidents(session, reader)
            if i.lat is not None and i.lon is not None and valid(i.lat, i.lon)]


def warning_areas(session: Session, reader: str | None) -> list[Feature]:
    """The circles and polygons of the warnings in force (released, not superseded, cancelled or expired) of the
    incidents the reader may see, coloured by their signal; `expires` is the expiry worded in Baton's time zone
    (`expires_at` the moment itself)."""
    features: list[Feature] = []
    seen: dict[str, Incident | None] = {}
    for alert in release.in_force(session, limit=MAX_INCIDENTS):
        if alert.incident_id not in seen:
            try:
                seen[alert.incident_id] = reads.get_incident(session, alert.incident_id, reader)
            except NotFound:
                seen[alert.incident_id] = None
        incident = seen[alert.incident_id]
        view = release.public_view(alert) if incident is not None else None
        if incident is None or view is None:
            continue
        expires = alert.expires_at
        properties: dict[str, Any] = {
            "id": alert.id, "incident_id": incident.id, "code": incident.code, "colour": alert.colour,
            "headline": view["headline"], "area": view["area"], "exercise": alert.status == "Exercise",
            "expires_at": expires.isoformat() if expires else None,
            # Shown in the city's time as every popup's times are, not in the time zone of whoever's browser.
            "expires": {lang: Wording(lang).when(expires) for lang in ("zh", "en")} if expires else None}
        for text in view["shapes"]["circles"]:
            found = cap_circle(text)
            if found is not None and valid(found[0], found[1]):
                features.append(circle(found[0], found[1], found[2], **properties))
        for text in view["shapes"]["polygons"]:
            shape = cap_polygon(text)
            if shape is not None and all(valid(lat, lon) for lat, lon in shape):
                features.append(polygon(shape, **properties))
    return features


def task_locations(session: Session, reader: str | None) -> list[Feature]:
    """The places with coordinates that departments reported on completed tasks of the open incidents the reader
    may see, each only where the reader may read that field."""
    features: list[Feature] = []
    for incident in _open_incidents(session, reader):
        plan = plan_for_version(session, incident.plan_version_id)
        for key, task in latest_tasks(session, incident.id).items():
            if task.status != TaskStatus.completed or task.kind != "human" or not task.outputs:
                continue
            step = plan.step(key)
            visible = step.visible_outputs(reader, owner=task.department, outputs=task.outputs)
            for form_field in step.form:
                value = visible.get(form_field.key)
                if form_field.type is not FieldType.location or not isinstance(value, dict) \
                        or not valid(value.get("lat"), value.get("lon")):
                    continue
                features.append(point(
                    value["lat"], value["lon"], task_id=task.id, incident_id=incident.id, code=incident.code,
                    step=key, field=form_field.key, title=step.title.model_dump(), label=form_field.label.model_dump(),
                    place=value.get("name"), department=task.department, department_name=_department(task.department),
                    completed_at=task.completed_at.isoformat() if task.completed_at else None))
    return features
