"""Who reads and writes the registers, and the reads: a register's entries (searched), the entries inside a
warning's area, and the registers as map layers.

Every register but one is shared: each logged-in user reads it (平战结合: a department plans with the shelters,
reserves and teams of others). The office (and an administrator) writes every entry; a department writes only the
entries its organisation owns. Vulnerable residents are restricted: only the owning community and the emergency
office read any field of them (not the manager, not an administrator, not another department), on every path —
list, search, export, page, API, area query and map layer all go through `readable`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session, col, or_, select

from core.geo.shapes import Area, stored
from core.plans.store import registry
from core.platform.errors import BatonError, NotFound
from core.registers.columns import KIND_NAMES
from core.registers.models import REGISTER_TABLES, RegisterEntry, RegisterKind, VulnerableResident
from core.users.models import Role, User

RESTRICTED = {RegisterKind.vulnerable_resident}
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
    return col(table.id) == "\x00none"  # nothing


def may_import(user: User, kind: RegisterKind) -> None:
    """Refuse a user who may not import into the register at all (a manager; for the restricted register, a
    department that is not a community)."""
    if writes_all(user) and not (kind in RESTRICTED and user.role == Role.admin):
        return
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


# -- as GeoJSON (exports, map layers) ---------------------------------------------------------------------------
SUMMARY_FIELDS: dict[RegisterKind, Sequence[str]] = {
    RegisterKind.risk_point: ("kind", "level", "people_at_risk"),
    RegisterKind.shelter: ("kind", "capacity", "occupancy", "is_open"),
    RegisterKind.reserve: ("category", "unit", "quantity", "safety_stock", "warehouse"),
    RegisterKind.team: ("speciality", "headcount", "on_call"),
    RegisterKind.expert: ("speciality", "title"),
    RegisterKind.vulnerable_resident: ("category",),
}


def feature(kind: RegisterKind, entry: RegisterEntry) -> dict[str, Any]:
    properties: dict[str, Any] = {"id": entry.id, "register": kind.value, "code": entry.code,
                                  "name_zh": entry.name_zh, "name_en": entry.name_en,
                                  "organisation": entry.organisation}
    for name in SUMMARY_FIELDS[kind]:
        value = getattr(entry, name)
        properties[name] = value
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
