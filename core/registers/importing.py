"""Importing a register file: every row checked on its own (a bad row is named by its number and field, with a
stable code and why, and left out; the good rows are kept), each entry found again by its natural key (so the
same file twice changes nothing, and a changed row updates its entry; a reserve's stock moved by incidents since
its last count stays unless the file counts anew, and so does a shelter's occupancy reported live since the file
last gave it), and the import recorded whole, with its counts and refused rows, as an entry of the ledger chain
`registers` (kind `register.imported`).

Who imports what: the office every entry; a department only its own organisation's (a blank organisation is its
own; a row naming another is refused, as is a row whose code another organisation's entry already has).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from core.geo.shapes import Datum, GeometryInvalid, Place, from_geojson, from_point
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.plans.store import registry
from core.platform.clock import utcnow
from core.platform.db import new_id
from core.platform.tabular import RowProblem
from core.registers import columns as cols
from core.registers.files import Row
from core.registers.models import REGISTER_TABLES, MaterialReserve, RegisterEntry, RegisterKind, Shelter
from core.registers.service import AREA_ORGANISATIONS, RESTRICTED, may_import, writes_all
from core.users.models import User

PLACE_KEYS = ("lon", "lat", "geometry", "datum")
STORED_PROBLEMS = 200  # the record keeps the first refused rows; the answer names them all




@dataclass
class ImportResult:
    register: RegisterKind
    source: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    record_id: int | None = None

    @property
    def kept(self) -> int:
        return self.added + self.updated + self.unchanged

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "refused": len(self.problems)}


def _place(cells: dict[str, Any], default_datum: Datum) -> Place | None:
    datum_text = str(cells.get("datum") or "").strip().lower().replace("-", "")
    if datum_text and datum_text not in ("wgs84", "gcj02"):
        raise cols.CellRefused("datum", "bad_datum", "datum is wgs84 or gcj02", "坐标系应为 wgs84 或 gcj02")
    datum = Datum(datum_text) if datum_text else default_datum
    geometry = cells.get("geometry")
    try:
        if geometry not in (None, ""):
            return from_geojson(geometry, datum=datum)
        lon, lat = cells.get("lon"), cells.get("lat")
        if lon in (None, "") and lat in (None, ""):
            return None
        lon_value = _coordinate("lon", lon)
        lat_value = _coordinate("lat", lat)
        return from_point(lon_value, lat_value, datum=datum)
    except GeometryInvalid as refused:
        fld = "geometry" if geometry not in (None, "") else "lon"
        raise cols.CellRefused(fld, refused.reason, refused.message, refused.zh) from None


def _coordinate(name: str, value: Any) -> float:
    if value in (None, ""):
        raise cols.CellRefused(name, "missing", f"{name} is required with the other coordinate",
                               "经度和纬度须同时填写")
    if isinstance(value, bool):
        raise cols.CellRefused(name, "not_a_number", f"{name} must be a number", "坐标必须是数字")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise cols.CellRefused(name, "not_a_number", f"'{str(value)[:40]}' is not a number",
                               f"“{str(value)[:40]}”不是数字") from None


def _organisation(user: User, kind: RegisterKind, value: Any) -> str:
    column = cols.ORGANISATION
    given = cols.cell(column, value) if value not in (None, "") else ""
    if not given:
        if writes_all(user):
            raise cols.CellRefused("organisation", "missing", "organisation (责任单位) is required",
                                   "“责任单位”（organisation）必填")
        return str(user.department)
    found = registry().department(given) or next(
        (d for d in registry().departments if given in (d.name.zh, d.name.en)), None)
    if found is None:
        raise cols.CellRefused("organisation", "unknown_organisation", f"'{given[:64]}' is not an organisation "
                               "of the registry", f"“{given[:64]}”不是已登记的单位")
    if kind in RESTRICTED and found.kind != "community":
        raise cols.CellRefused("organisation", "not_a_community", "a vulnerable resident belongs to a community",
                               "重点人群应归属社区")
    if kind is RegisterKind.area and found.kind.value not in AREA_ORGANISATIONS:
        raise cols.CellRefused("organisation", "not_an_area_organisation",
                               f"'{found.key}' is not a sub-district, town or community: only they have an area "
                               "(辖区)", f"“{found.key}”不是街道、乡镇或社区（村），不登记辖区")
    if not writes_all(user) and found.key != user.department:
        raise cols.CellRefused("organisation", "not_your_organisation",
                               f"a department imports only its own entries ({user.department})",
                               f"部门只能导入本单位的条目（{user.department}）")
    return found.key


def _values(user: User, kind: RegisterKind, cells: dict[str, Any], datum: Datum) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in cols.columns(kind):
        if column.key in PLACE_KEYS or column.key == "organisation":
            continue
        values[column.key] = cols.cell(column, cells.get(column.key))
    values["organisation"] = _organisation(user, kind, cells.get("organisation"))
    if kind is RegisterKind.area and not values["code"]:
        values["code"] = values["organisation"]
    place = _place(cells, datum)
    if kind is RegisterKind.area and place is not None and place.geojson.get("type") != "Polygon":
        raise cols.CellRefused("geometry", "not_a_polygon", "an administrative area is a polygon (GeoJSON Polygon)",
                               "辖区应为多边形（GeoJSON Polygon）")
    if place is None and kind in cols.PLACE_REQUIRED:
        raise cols.CellRefused("lon", "no_location", "a place is required: lon and lat, or geometry (GeoJSON)",
                               "必须填写位置：经度和纬度，或几何（GeoJSON）")
    if place is None:
        values.update(geometry=None, lon=None, lat=None, min_lon=None, min_lat=None, max_lon=None, max_lat=None)
    else:
        lon, lat = place.point
        min_lon, min_lat, max_lon, max_lat = place.bounds
        values.update(geometry=place.text(), lon=lon, lat=lat, min_lon=min_lon, min_lat=min_lat, max_lon=max_lon,
                      max_lat=max_lat)
    return values


def _natural_key(kind: RegisterKind, values: dict[str, Any]) -> tuple[Any, ...]:
    if kind is RegisterKind.risk_point:
        return (values["kind"], values["code"])
    if kind is RegisterKind.vulnerable_resident:
        return (values["organisation"], values["code"])
    if kind is RegisterKind.area:
        return (values["organisation"],)
    return (values["code"],)


def _existing(session: Session, kind: RegisterKind, values: dict[str, Any]) -> RegisterEntry | None:
    table = REGISTER_TABLES[kind]
    if kind is RegisterKind.area:  # one area per organisation, whatever its code
        return session.exec(select(table).where(col(table.organisation) == values["organisation"])).first()
    statement = select(table).where(col(table.code) == values["code"])
    if kind is RegisterKind.risk_point:
        statement = statement.where(col(table.kind) == values["kind"])  # type: ignore[attr-defined]
    if kind is RegisterKind.vulnerable_resident:
        statement = statement.where(col(table.organisation) == values["organisation"])
    return session.exec(statement).first()


def _keep_live_stock(found: RegisterEntry | None, values: dict[str, Any]) -> None:
    """A reserve's quantity in a file is a stock count. The count the last import gave, given again (the same file
    re-imported, or another column corrected), leaves the stock as incidents have moved it since; a different
    count is a new stock-take and replaces it."""
    values["counted_quantity"] = values["quantity"]
    if isinstance(found, MaterialReserve) and found.counted_quantity == values["quantity"]:
        values["quantity"] = found.quantity


def _keep_live_occupancy(found: RegisterEntry | None, values: dict[str, Any]) -> None:
    """A shelter's occupancy in a file is the figure of its day; the count reported live during an incident
    (`core.registers.occupancy`) is newer. The figure the last import gave, given again (the same file
    re-imported, or another column corrected), leaves the live count and its time in place; a different figure
    replaces it, and no longer carries the time of a live report it is not. A shelter reported live before its
    file's figure was kept (migration 0031) has none to compare: the live count stands."""
    values["counted_occupancy"] = values["occupancy"]
    if not isinstance(found, Shelter):
        return
    same_figure = found.counted_occupancy == values["occupancy"] or (
        found.counted_occupancy is None and found.occupancy_at is not None)
    if same_figure or found.occupancy == values["occupancy"]:
        values["occupancy"], values["occupancy_at"] = found.occupancy, found.occupancy_at
    else:
        values["occupancy_at"] = None


def import_rows(session: Session, *, kind: RegisterKind, rows: list[Row], source: str, data: bytes, user: User,
                datum: Datum = Datum.wgs84, actor: str | None = None) -> ImportResult:
    """Import a register file's rows (from `core.registers.files.read_rows`) as `user` (the actor recorded is
    theirs unless `actor` names another, as the CLI's); the caller commits."""
    may_import(user, kind)
    actor = actor or f"user:{user.username}"
    result = ImportResult(register=kind, source=source[:200])
    seen: set[tuple[Any, ...]] = set()
    for number, cells in rows:
        result.rows += 1
        try:
            values = _values(user, kind, cells, datum)
            key = _natural_key(kind, values)
            if key in seen and kind is RegisterKind.area:
                raise cols.CellRefused("organisation", "duplicate_key", f"the area of {values['organisation']} "
                                       "appears earlier in the file", f"{values['organisation']} 的辖区在文件中重复")
            if key in seen:
                raise cols.CellRefused("code", "duplicate_key", f"the code {values['code']} appears earlier in the "
                                       "file", f"编号 {values['code']} 在文件中重复")
            seen.add(key)
            found = _existing(session, kind, values)
            if found is not None and not writes_all(user) and found.organisation != user.department:
                raise cols.CellRefused("code", "owned_by_other", f"the entry {values['code']} belongs to "
                                       f"{found.organisation}", f"条目 {values['code']} 属于{found.organisation}")
        except cols.CellRefused as refused:
            result.problems.append(RowProblem(number, refused.field, refused.code, refused.en, refused.zh))
            continue
        if kind is RegisterKind.reserve:
            _keep_live_stock(found, values)
        if kind is RegisterKind.shelter:
            _keep_live_occupancy(found, values)
        if found is None:
            session.add(REGISTER_TABLES[kind](**values, source=source[:200], updated_by=actor))
            result.added += 1
        elif any(getattr(found, k) != v for k, v in values.items()):
            for name, value in values.items():
                setattr(found, name, value)
            found.source, found.updated_by, found.updated_at = source[:200], actor, utcnow()
            session.add(found)
            result.updated += 1
        else:
            result.unchanged += 1
    session.flush()
    record = _record(session, result, actor=actor, organisation=None if writes_all(user) else user.department,
                     data=data)
    result.record_id = record.id
    return result


def _record(session: Session, result: ImportResult, *, actor: str, organisation: str | None,
            data: bytes) -> LedgerEntry:
    """Append the import's record to the ledger chain `registers` (its head is locked for it): the file's name and
    SHA-256, the counts and the first refused rows."""
    sha256 = hashlib.sha256(data).hexdigest()
    details = {"register": result.register.value, "organisation": organisation, "source": result.source,
               "file_sha256": sha256, "rows": result.rows, "added": result.added, "updated": result.updated,
               "unchanged": result.unchanged, "refused": len(result.problems),
               "problems": [p.as_dict() for p in result.problems[:STORED_PROBLEMS]]}
    return ledger.append_to(session, chain=ledger.REGISTERS, kind=LedgerKind.register_imported, actor=actor,
                            idempotency_key=f"import:{new_id()}", subject=f"register:{result.register.value}",
                            from_party=organisation or "", handed_over={"file_sha256": sha256}, details=details)
