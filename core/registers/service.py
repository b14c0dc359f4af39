"""Who reads and writes the registers, and the reads: a register's entries (searched), the entries inside a
warning's area, and the registers as map layers.

Every register but one is shared: each logged-in user reads it (平战结合: a department plans with the shelters,
reserves and teams of others). The office (and an administrator) writes every entry; a department writes only the
entries its organisation owns. Vulnerable residents are restricted: only the owning community and the emergency
office read any field of them (not the manager, not an administrator, not another department), on every path —
list, search, export, page, API, area query and map layer all go through `readable`. The administrative areas
(辖区: a sub-district's or community's boundary) are read by everyone and imported by the office alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import false
from sqlmodel import Session, col, or_, select

from core.geo.shapes import Area, cap_alert_area, stored
from core.plans.store import registry
from core.platform.errors import BatonError, NotFound
from core.registers.columns import KIND_NAMES
from core.registers.models import (
    REGISTER_TABLES,
    AdministrativeArea,
    RegisterEntry,
    RegisterKind,
    Shelter,
    VulnerableResident,
)
from core.sharing.models import CapAlert, in_force_where
from core.users.models import Role, User
from process_defs.schema import FieldType, Step

RESTRICTED = {RegisterKind.vulnerable_resident}
# The kinds of organisation that have an administrative area (辖区), kept by the office alone.
AREA_ORGANISATIONS = ("sub_district", "town", "community")
MAX_LIST = 500


class RegisterForbidden(BatonError):
    """The user may not import into this register (the same code as every other refusal by role)."""

    code = "forbidden"
    http_status = 403


class UnknownRegister(NotFound):
    """No register of that name."""


def register_kind(value: str) -> RegisterKind:
    try:
        return RegisterKind(value)
    except ValueError:
        raise UnknownRegister(f"no register '{value[:40]}' (one of {', '.join(k.value for k in RegisterKind)})") \
            from None


def writes_all(user: User) -> bool:
    return user.role in (Role.office, Role.admin)


def may_read(user: User, kind: RegisterKind) -> bool:
    """Whether the user reads any of the register (for a restricted one: its own community's entries, or all for
    the office)."""
    if kind not in RESTRICTED:
        return True
    return user.role == Role.office or _community(user)


def _community(user: User) -> bool:
    """Whether the user works for a community (社区居委会), which keeps its own vulnerable residents."""
    if user.role != Role.department or not user.department:
        return False
    department = registry().department(user.department)
    return department is not None and department.kind == "community"


def readable(user: User, kind: RegisterKind) -> Any:
    """The WHERE clause limiting a register's query to what the user reads (None: all of it)."""
    table = REGISTER_TABLES[kind]
    if kind not in RESTRICTED:
        return None
    if user.role == Role.office:
        return None
    if _community(user):
        return col(table.organisation) == user.department
    return false()  # nothing (a literal no row matches; PostgreSQL refuses a NUL in a string)


def may_import(user: User, kind: RegisterKind) -> None:
    """Refuse a user who may not import into the register at all (a manager; for the restricted register, a
    department that is not a community)."""
    if writes_all(user) and not (kind in RESTRICTED and user.role == Role.admin):
        return
    if kind is RegisterKind.area:
        raise RegisterForbidden("the administrative areas (辖区) are imported by the emergency office")
    if user.role == Role.department and user.department:
        if kind in RESTRICTED and not _community(user):
            raise RegisterForbidden("only a community (or the emergency office) keeps vulnerable residents")
        return
    raise RegisterForbidden("this register is imported by the emergency office or the owning department")


def entries(session: Session, *, kind: RegisterKind, user: User, query: str = "", organisation: str | None = None,
            sub_kind: str | None = None, limit: int = MAX_LIST, offset: int = 0) -> list[RegisterEntry]:
    """A register's entries the user reads, by code; `query` searches code, names, address and district."""
    table = REGISTER_TABLES[kind]
    statement = select(table)
    where = readable(user, kind)
    if where is not None:
        statement = statement.where(where)
    if organisation:
        statement = statement.where(col(table.organisation) == organisation)
    if sub_kind and hasattr(table, "kind"):
        statement = statement.where(col(table.kind) == sub_kind)
    text = query.strip()
    if text:
        like = f"%{text.replace('%', '').replace('_', '')[:100]}%"
        statement = statement.where(or_(col(table.code).like(like), col(table.name_zh).like(like),
                                        col(table.name_en).like(like), col(table.address).like(like),
                                        col(table.district).like(like)))
    statement = statement.order_by(col(table.code)).offset(max(offset, 0)).limit(max(1, min(limit, MAX_LIST)))
    return list(session.exec(statement).all())


def all_entries(session: Session, *, kind: RegisterKind, user: User) -> list[RegisterEntry]:
    """Every entry of a register the user reads (for an export), by code."""
    table = REGISTER_TABLES[kind]
    statement = select(table)
    where = readable(user, kind)
    if where is not None:
        statement = statement.where(where)
    return list(session.exec(statement.order_by(col(table.code))).all())


def entries_within(session: Session, *, area: Area, kinds: Iterable[RegisterKind],
                   principal: User) -> dict[RegisterKind, list[RegisterEntry]]:
    """The entries of each register kind inside a warning's area (a CAP polygon or circle; a polygon entry that
    meets it counts), of those the principal reads: the bounding boxes filter in SQL, shapely decides."""
    found: dict[RegisterKind, list[RegisterEntry]] = {}
    box = area.bounds
    for kind in kinds:
        found[kind] = []
        if box is None or not may_read(principal, kind):
            continue
        table = REGISTER_TABLES[kind]
        min_lon, min_lat, max_lon, max_lat = box
        statement = select(table).where(col(table.geometry).is_not(None), col(table.max_lon) >= min_lon,
                                        col(table.min_lon) <= max_lon, col(table.max_lat) >= min_lat,
                                        col(table.min_lat) <= max_lat)
        where = readable(principal, kind)
        if where is not None:
            statement = statement.where(where)
        for entry in session.exec(statement.order_by(col(table.code))).all():
            if entry.geometry and area.covers(stored(entry.geometry)):
                found[kind].append(entry)
    return found


def area_meets(session: Session, *, organisation: str, area: Area) -> bool | None:
    """Whether the organisation's administrative area (辖区) meets `area` (a warning's polygons and circles: any
    overlap or touch counts); None when the organisation has no area on file."""
    kept = session.exec(select(AdministrativeArea).where(AdministrativeArea.organisation == organisation)).first()
    if kept is None or not kept.geometry:
        return None
    return area.covers(stored(kept.geometry))


# -- as GeoJSON (exports, map layers) ---------------------------------------------------------------------------
SUMMARY_FIELDS: dict[RegisterKind, Sequence[str]] = {
    RegisterKind.risk_point: ("kind", "level", "people_at_risk"),
    RegisterKind.shelter: ("kind", "capacity", "occupancy", "occupancy_at", "is_open"),
    RegisterKind.reserve: ("category", "unit", "quantity", "safety_stock", "warehouse"),
    RegisterKind.team: ("speciality", "headcount", "on_call"),
    RegisterKind.expert: ("speciality", "title"),
    RegisterKind.vulnerable_resident: ("category",),
    RegisterKind.area: (),
}


def feature(kind: RegisterKind, entry: RegisterEntry) -> dict[str, Any]:
    properties: dict[str, Any] = {"id": entry.id, "register": kind.value, "code": entry.code,
                                  "name_zh": entry.name_zh, "name_en": entry.name_en,
                                  "organisation": entry.organisation}
    for name in SUMMARY_FIELDS[kind]:
        value = getattr(entry, name)
        properties[name] = value.isoformat() if isinstance(value, datetime) else value
    if isinstance(entry, VulnerableResident):
        properties["address"] = entry.address
    return {"type": "Feature", "geometry": json.loads(entry.geometry) if entry.geometry else None,
            "properties": properties}


def register_layers(session: Session, principal: User,
                    kinds: Sequence[RegisterKind] = tuple(RegisterKind)) -> dict[str, dict[str, Any]]:
    """Each register the principal reads as a GeoJSON FeatureCollection (entries with a place), for the map:
    `risk_point`, `shelter` (with occupancy), `reserve`, `team`, `expert`, and `vulnerable_resident` only for
    its community and the office."""
    layers: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        if not may_read(principal, kind):
            continue
        table = REGISTER_TABLES[kind]
        statement = select(table).where(col(table.geometry).is_not(None))
        where = readable(principal, kind)
        if where is not None:
            statement = statement.where(where)
        rows = session.exec(statement.order_by(col(table.code)).limit(5000)).all()
        zh, en = KIND_NAMES[kind]
        layers[kind.value] = {"type": "FeatureCollection", "name": kind.value, "title": {"zh": zh, "en": en},
                              "features": [feature(kind, e) for e in rows]}
    return layers


# -- a step's register entries: those inside the incident's warning area -----------------------------------------
NO_WARNING_AREA = "no_warning_area"  # no warning with an area (polygon or circle) was in force: nothing searched


def warning_area(session: Session, *, incident_id: str, now: datetime) -> tuple[Area, list[CapAlert]]:
    """The area of the incident's warnings in force at `now` (their CAP polygons and circles together), and those
    warnings (oldest first); an empty area when none is in force or none has a polygon or circle."""
    alerts = list(session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id, *in_force_where(now))
                               .order_by(col(CapAlert.sent_at))).all())
    polygons, circles = [], []
    with_area = []
    for alert in alerts:
        area = cap_alert_area(alert.xml)
        if area:
            with_area.append(alert)
            polygons += area.polygons
            circles += area.circles
    return Area(polygons, circles), with_area


def holder(department: str) -> User:
    """The department holding a task as a reader of the registers (not stored): what `readable` lets it read."""
    return User(username=f"department:{department}", password_hash="", role=Role.department, department=department)


def entry_summary(kind: RegisterKind, entry: RegisterEntry) -> dict[str, Any]:
    """What a task shows of an entry: its names, register and sub-kind, place, owner and, for a shelter, its
    capacity and occupancy as they stood."""
    summary: dict[str, Any] = {"register": kind.value, "id": entry.id, "code": entry.code,
                               "name": {"zh": entry.name_zh, "en": entry.name_en or entry.name_zh},
                               "kind": getattr(entry, "kind", None), "organisation": entry.organisation,
                               "district": entry.district, "address": entry.address, "lon": entry.lon,
                               "lat": entry.lat}
    if isinstance(entry, Shelter):
        summary.update(capacity=entry.capacity, occupancy=entry.occupancy, is_open=entry.is_open)
    return summary


def entries_for_task(session: Session, *, incident_id: str, kinds: Sequence[str], within: str, department: str,
                     now: datetime) -> dict[str, Any]:
    """A step's register entries as handed to its task (`registers:` in the plan): those of `kinds` inside the area
    of the incident's warnings in force, of those the holding department may read (`readable`: vulnerable residents
    only for their own community), or a note that no warning has an area yet. Stored with the task."""
    wanted = [RegisterKind(k) for k in kinds if k in RegisterKind.__members__]
    area, alerts = warning_area(session, incident_id=incident_id, now=now)
    handed: dict[str, Any] = {"within": within, "kinds": [k.value for k in wanted], "at": now.isoformat(),
                              "warnings": [{"id": a.id, "identifier": a.identifier, "colour": a.colour}
                                           for a in alerts], "entries": [], "note": None}
    if not area:
        handed["note"] = NO_WARNING_AREA
        return handed
    found = entries_within(session, area=area, kinds=wanted, principal=holder(department))
    handed["entries"] = [entry_summary(kind, e) for kind in wanted for e in found[kind]]
    return handed


def readable_handed(session: Session, handed: dict[str, Any] | None, *, user: User) -> dict[str, Any] | None:
    """A task's stored register entries as `user` may read them: each register's entries filtered by `readable`
    (a manager reading a community's task does not see its vulnerable residents)."""
    if not handed:
        return handed
    kept = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in handed.get("entries") or []:
        by_kind.setdefault(str(item.get("register")), []).append(item)
    for name, items in by_kind.items():
        if name not in RegisterKind.__members__:
            continue
        kind = RegisterKind(name)
        if not may_read(user, kind):
            continue
        where = readable(user, kind)
        if where is None:
            kept += items
            continue
        table = REGISTER_TABLES[kind]
        ids = set(session.exec(select(table.id).where(col(table.id).in_([i.get("id") for i in items]), where)).all())
        kept += [i for i in items if i.get("id") in ids]
    order = {id(item): n for n, item in enumerate(handed.get("entries") or [])}
    return {**handed, "entries": sorted(kept, key=lambda i: order[id(i)])}


def prefill(step: Step, handed: dict[str, Any] | None) -> dict[str, Any]:
    """Form answers from a task's register entries, for the fields the step's `registers.fill` names: a text field
    gets their names, one a line (in Chinese, the form's first language); a number field how many there are. Only
    where entries were found (a field is not pre-filled with nothing)."""
    if step.registers is None or not handed or handed.get("note") == NO_WARNING_AREA:
        return {}
    values: dict[str, Any] = {}
    for key, kind in step.registers.fill.items():
        form_field = step.field(key)
        items = [i for i in handed.get("entries") or [] if i.get("register") == kind]
        if form_field is None or not items:
            continue
        if form_field.type is FieldType.number:
            values[key] = len(items)
        elif form_field.type is FieldType.text:
            values[key] = "\n".join(str((i.get("name") or {}).get("zh") or i.get("code")) for i in items)
    return values
