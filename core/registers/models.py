"""Tables of the registers domain: the daily side of emergency work (平战结合) — risk points, shelters, material
reserves, rescue teams, experts and vulnerable residents, each with its location.

Every entry has a stable `id`, a natural key by which an import finds it again (`code`, with the risk point's
`kind`, the vulnerable resident's community), its names in Chinese and English, the organisation that owns it (a
registry key: department, headquarters or community) and its location as WGS-84 GeoJSON (a Point or Polygon, as
text; `core.geo` parses and checks it), with a representative point and bounding box kept beside it so that an area
query filters in SQL before shapely decides.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class RegisterKind(StrEnum):
    risk_point = "risk_point"  # 风险隐患点
    shelter = "shelter"  # 避难场所
    reserve = "reserve"  # 应急物资储备
    team = "team"  # 救援队伍
    expert = "expert"  # 专家库
    vulnerable_resident = "vulnerable_resident"  # 重点人群（独居老人等）: restricted
    area = "area"  # 辖区: a sub-district's or community's boundary


class RiskKind(StrEnum):
    waterlogging = "waterlogging"  # 积水点（易涝点）
    geohazard = "geohazard"  # 地质灾害隐患点
    hazardous_chemicals = "hazardous_chemicals"  # 危化企业
    crowded_place = "crowded_place"  # 人员密集场所
    dilapidated_housing = "dilapidated_housing"  # 危旧房


class ShelterKind(StrEnum):
    """After GB 21734: how long people may stay."""

    emergency = "emergency"  # 紧急避难场所
    short_term = "short_term"  # 短期（固定）避难场所
    long_term = "long_term"  # 中长期（中心）避难场所


class RegisterEntry(SQLModel):
    """What every register entry has (not a table)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    code: str = Field(max_length=64)  # the owner's own code for it: the natural key of an import
    name_zh: str = Field(max_length=200)
    name_en: str = Field(default="", max_length=200)
    organisation: str = Field(max_length=64, index=True)  # the owning registry key (department, community …)
    # WGS-84 GeoJSON geometry (Point or Polygon) as text; None where a kind has no place (an expert).
    geometry: str | None = Field(default=None, sa_type=Text)
    lon: float | None = None  # a representative point (the point itself, or a point inside the polygon)
    lat: float | None = None
    min_lon: float | None = None  # the bounding box, for filtering in SQL before shapely decides
    min_lat: float | None = None
    max_lon: float | None = None
    max_lat: float | None = None
    district: str = Field(default="", max_length=100)  # 区县 / 街道, as the source names it
    address: str = Field(default="", max_length=300)
    contact_name: str = Field(default="", max_length=100)
    contact_phone: str = Field(default="", max_length=40)
    note: str = Field(default="", sa_type=Text)
    source: str = Field(default="", max_length=200)  # the file it was last imported from
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=100)


class RiskPoint(RegisterEntry, table=True):
    """A risk or hazard point (风险隐患点): 积水点, 地质灾害隐患点, 危化企业, 人员密集场所, 危旧房."""

    __tablename__ = "register_risk_point"
    __table_args__ = (UniqueConstraint("kind", "code", name="uq_register_risk_point"),
                      Index("ix_register_risk_point_box", "min_lon", "max_lon", "min_lat", "max_lat"))

    kind: str = Field(max_length=32, index=True)  # RiskKind
    level: str = Field(default="", max_length=16)  # the source's grading: 一般 / 较大 / 重大 / 特大, or I–IV
    people_at_risk: int | None = None  # 威胁人数 / 涉及人数


class Shelter(RegisterEntry, table=True):
    """An emergency shelter (应急避难场所) and how full it is."""

    __tablename__ = "register_shelter"
    __table_args__ = (UniqueConstraint("code", name="uq_register_shelter"),
                      CheckConstraint("capacity >= 0 AND occupancy >= 0", name="ck_register_shelter_counts"),
                      Index("ix_register_shelter_box", "min_lon", "max_lon", "min_lat", "max_lat"))

    kind: str = Field(default=ShelterKind.emergency, max_length=32)  # ShelterKind
    capacity: int = 0  # people it holds (可容纳人数)
    occupancy: int = 0  # people in it now
    area_m2: int | None = None
    is_open: bool = False  # opened for an incident now
    occupancy_at: datetime | None = None  # when the occupancy was last reported
    # The occupancy the last imported file gave. A file that gives it again is the same figure: the count reported
    # live since then stands; a different figure replaces it (core/registers/importing.py).
    counted_occupancy: int | None = None


class MaterialReserve(RegisterEntry, table=True):
    """A reserve of one emergency material (应急物资) in one warehouse. `quantity` is a whole number of `unit`s,
    never below zero (a check constraint; a draw-down is one guarded UPDATE … WHERE quantity >= n)."""

    __tablename__ = "register_reserve"
    __table_args__ = (UniqueConstraint("code", name="uq_register_reserve"),
                      CheckConstraint("quantity >= 0 AND safety_stock >= 0", name="ck_register_reserve_quantity"),
                      Index("ix_register_reserve_box", "min_lon", "max_lon", "min_lat", "max_lat"))

    category: str = Field(max_length=7, index=True)  # GB/T 38565-2020 code: 1 digit, then up to three 2-digit levels
    specification: str = Field(default="", max_length=200)  # 规格型号
    unit: str = Field(max_length=16)  # 件, 只, 顶, 吨, 袋 …
    quantity: int = 0
    # The quantity the last imported stock count (盘点) gave. A file that gives it again is the same count: the
    # draw-downs, returns and restocking since then stand (core/registers/importing.py).
    counted_quantity: int | None = None
    safety_stock: int = 0  # below this a replenishment is due (安全库存)
    warehouse: str = Field(default="", max_length=200)  # 储备库
    expires_on: date | None = None


class RescueTeam(RegisterEntry, table=True):
    """A rescue team (救援队伍): professional, fire, militia, social or volunteer."""

    __tablename__ = "register_team"
    __table_args__ = (UniqueConstraint("code", name="uq_register_team"),
                      CheckConstraint("headcount >= 0", name="ck_register_team_headcount"),
                      Index("ix_register_team_box", "min_lon", "max_lon", "min_lat", "max_lat"))

    speciality: str = Field(default="", max_length=100)  # 防汛抢险, 危化救援, 山地搜救 …
    headcount: int = 0
    equipment: str = Field(default="", sa_type=Text)
    on_call: bool = True  # on standby (备勤) now


class Expert(RegisterEntry, table=True):
    """An expert of the expert pool (专家库)."""

    __tablename__ = "register_expert"
    __table_args__ = (UniqueConstraint("code", name="uq_register_expert"),)

    speciality: str = Field(default="", max_length=100)  # 水利, 地质, 化工, 医疗 …
    title: str = Field(default="", max_length=100)  # 职称
    employer: str = Field(default="", max_length=200)  # 工作单位


class VulnerableResident(RegisterEntry, table=True):
    """A resident who needs help to be warned or moved (独居老人, 残疾人, 重病, 孕产妇 …). Restricted: only the owning
    community (`organisation`) and the emergency office read any of it (`core.registers.service`)."""

    __tablename__ = "register_vulnerable_resident"
    __table_args__ = (UniqueConstraint("organisation", "code", name="uq_register_vulnerable_resident"),
                      Index("ix_register_vulnerable_resident_box", "min_lon", "max_lon", "min_lat", "max_lat"))

    category: str = Field(default="", max_length=32)  # elderly_alone, disabled, bedridden, pregnant, child, other
    keeper_name: str = Field(default="", max_length=100)  # 包保责任人
    keeper_phone: str = Field(default="", max_length=40)


class AdministrativeArea(RegisterEntry, table=True):
    """The area a sub-district (街道) or community (社区) answers for (辖区): its boundary polygon, one per organisation
    (`organisation` is the natural key; `code` is the organisation's key unless the file gives one). A 叫应 reaches
    the organisation's posts only when this area meets the warning's (`core.sharing.answers`)."""

    __tablename__ = "register_area"
    __table_args__ = (UniqueConstraint("organisation", name="uq_register_area"),
                      Index("ix_register_area_box", "min_lon", "max_lon", "min_lat", "max_lat"))


REGISTER_TABLES: dict[RegisterKind, type[RegisterEntry]] = {
    RegisterKind.risk_point: RiskPoint,
    RegisterKind.shelter: Shelter,
    RegisterKind.reserve: MaterialReserve,
    RegisterKind.team: RescueTeam,
    RegisterKind.expert: Expert,
    RegisterKind.vulnerable_resident: VulnerableResident,
    RegisterKind.area: AdministrativeArea,
}
