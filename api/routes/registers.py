"""Registers (风险隐患点, 避难场所, 应急物资, 救援队伍, 专家库, 重点人群): list and search, import and export (CSV,
XLSX, GeoJSON), and the map layers. Who reads and writes what is `core.registers.service`'s: every logged-in user
reads the shared registers, vulnerable residents only their community and the office; the office imports every
entry, a department only its own."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StrictInt

from api.deps import CurrentUser, SessionDep
from api.schemas import Strict, uploaded
from core.geo.shapes import Datum
from core.registers import files, importing, occupancy, service
from core.registers.columns import KIND_NAMES, columns
from core.registers.models import RegisterEntry, RegisterKind, Shelter

router = APIRouter(prefix="/api/registers", tags=["registers"])
MAX_FILE_CHARS = 900_000
MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "geojson": "application/geo+json"}


class RegisterOut(BaseModel):
    kind: str
    name: dict[str, str]
    entries: int | None = Field(description="How many entries the reader reads; None for a register it may not.")


class ImportIn(Strict):
    filename: str = Field(min_length=5, max_length=200, pattern=r"^[^/\\\x00-\x1f]+$",
                          description="The file's name; its suffix says how it is read (.csv, .xlsx, .geojson).")
    content: str | None = Field(default=None, max_length=MAX_FILE_CHARS, description="A CSV or GeoJSON file's text.")
    content_base64: str | None = Field(default=None, max_length=MAX_FILE_CHARS,
                                       description="An XLSX file (or any), base64-encoded.")
    datum: Datum = Field(default=Datum.wgs84,
                         description="The datum of the file's coordinates: wgs84, or gcj02 (高德, 腾讯), converted "
                                     "to WGS-84; a row's `datum` overrides.")


class RowProblemOut(BaseModel):
    row: int
    field: str
    code: str
    message: str
    message_zh: str


class ImportOut(BaseModel):
    kind: str
    source: str
    rows: int
    added: int
    updated: int
    unchanged: int
    refused: list[RowProblemOut]
    record: int | None = Field(description="The import's record in the register chain (ledger kind "
                                           "register.imported).")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def entry_out(kind: RegisterKind, entry: RegisterEntry) -> dict[str, Any]:
    shown = {"id": entry.id, **{c.key: _plain(getattr(entry, c.key)) for c in columns(kind)
                                if c.key not in ("lon", "lat", "datum")}}
    shown.update(lon=entry.lon, lat=entry.lat, updated_at=entry.updated_at.isoformat(), updated_by=entry.updated_by)
    if isinstance(entry, Shelter):  # when its occupancy was last reported (not a column of the register's files)
        shown["occupancy_at"] = _plain(entry.occupancy_at)
    return shown


@router.get("", response_model=list[RegisterOut])
def registers(principal: CurrentUser, session: SessionDep) -> list[RegisterOut]:
    """The registers, with how many entries of each the reader reads."""
    out = []
    for kind in RegisterKind:
        count = len(service.all_entries(session, kind=kind, user=principal.user)) \
            if service.may_read(principal.user, kind) else None
        zh, en = KIND_NAMES[kind]
        out.append(RegisterOut(kind=kind.value, name={"zh": zh, "en": en}, entries=count))
    return out


@router.get("/layers")
def layers(principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Each register the reader reads as a GeoJSON FeatureCollection (for the map)."""
    return service.register_layers(session, principal.user)


@router.get("/{kind}")
def list_entries(kind: str, principal: CurrentUser, session: SessionDep,
                 q: Annotated[str, Query(max_length=100, description="Search code, names, address, district.")] = "",
                 organisation: Annotated[str | None, Query(max_length=64)] = None,
                 sub_kind: Annotated[str | None, Query(alias="type", max_length=32,
                                                       description="A risk point's or shelter's type.")] = None,
                 limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 100,
                 offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[dict[str, Any]]:
    """A register's entries the reader reads, by code."""
    register = service.register_kind(kind)
    rows = service.entries(session, kind=register, user=principal.user, query=q, organisation=organisation,
                           sub_kind=sub_kind, limit=limit, offset=offset)
    return [entry_out(register, e) for e in rows]


@router.post("/{kind}/import", response_model=ImportOut)
def import_file(kind: str, body: ImportIn, principal: CurrentUser, session: SessionDep) -> ImportOut:
    """Import a register file: each bad row is refused with its row, field and a stable code (`refused`), the
    good rows are kept; the same file twice changes nothing; a file that cannot be read as a whole (wrong sheet,
    merged header cells, missing column) is refused whole (422 `register_file_invalid`)."""
    register = service.register_kind(kind)
    data = uploaded(body.content, body.content_base64)
    service.may_import(principal.user, register)
    rows = files.read_rows(register, body.filename, data)
    result = importing.import_rows(session, kind=register, rows=rows, source=body.filename, data=data,
                                   user=principal.user, datum=body.datum)
    return ImportOut(kind=register.value, source=result.source, rows=result.rows, added=result.added,
                     updated=result.updated, unchanged=result.unchanged, record=result.record_id,
                     refused=[RowProblemOut(**p.as_dict()) for p in result.problems])


class OccupancyIn(Strict):
    occupancy: StrictInt = Field(description="People in the shelter now: a whole number from 0 to its capacity.")


@router.post("/shelter/{shelter_id}/occupancy")
def report_occupancy(shelter_id: str, body: OccupancyIn, principal: CurrentUser,
                     session: SessionDep) -> dict[str, Any]:
    """Report how many people are in a shelter now (during an incident): the shelter's owning department or the
    office; `occupancy_at` is set and the report recorded in the register chain (ledger kind
    `shelter.occupancy_reported`). Another department: 403 `forbidden`; negative: 422 `occupancy_invalid`; over
    the capacity: 409 `over_capacity` (`details.capacity`); the message in the reader's language."""
    shelter = occupancy.report(session, shelter_id=shelter_id, occupancy=body.occupancy, user=principal.user,
                               actor=principal.actor)
    return entry_out(RegisterKind.shelter, shelter)


@router.get("/{kind}/export")
def export(kind: str, principal: CurrentUser, session: SessionDep,
           format: Annotated[Literal["csv", "xlsx", "geojson"], Query()] = "csv") -> Response:
    """The entries the reader reads as a file that imports again unchanged."""
    register = service.register_kind(kind)
    data = files.write(register, service.all_entries(session, kind=register, user=principal.user), format)
    return Response(data, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{register.value}.{format}"'})
