"""The columns of each register, as a file names them (an English key, or the Chinese header a city's sheet uses),
and how each cell is read: text, a whole count (≥ 0), yes/no, a date, one of a list, a GB/T 38565 category code,
an organisation (a registry key). A cell that does not read is a `CellRefused` with a stable code, the field and
why, in English and Chinese."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.registers.models import RegisterKind, RiskKind, ShelterKind

MAX_COUNT = 10**12
FAR_FUTURE_YEARS = 30  # an expiry further ahead than this is a typing error (2206 for 2026)
# GB/T 38565-2020: four levels, seven digits: a class 1–3 (基本生活保障物资, 应急装备及配套物资,
# 工程材料与机械加工设备), then 2-digit middle, small and fine classes; a register may name a category at any level.
CATEGORY = re.compile(r"[123](\d{2}){0,3}")
CATEGORY_CLASSES = {"1": ("基本生活保障物资", "basic living supplies"),
                    "2": ("应急装备及配套物资", "emergency equipment and accessories"),
                    "3": ("工程材料与机械加工设备", "engineering materials and machinery")}


class CellRefused(Exception):
    def __init__(self, fld: str, code: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.field, self.code, self.en, self.zh = fld, code, en, zh


@dataclass(frozen=True)
class Column:
    key: str  # the table's attribute, and the English header a file may use
    zh: str  # the Chinese header
    en: str  # the column's name in English, as pages and the map's popups show it
    kind: str = "text"  # text, multiline, count, bool, date, choice
    required: bool = False
    max_length: int = 200
    default: Any = None  # for a blank cell that is not required
    choices: Mapping[str, str] = field(default_factory=dict)  # what a file may write → the stored value
    aliases: tuple[str, ...] = ()


def _choices(enum: type[Any], zh: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    found = {member.value: member.value for member in enum}
    for value, names in zh.items():
        found.update({name: value for name in names})
    return found


RISK_KINDS = _choices(RiskKind, {"waterlogging": ("积水点", "易涝点", "内涝点"),
                                 "geohazard": ("地质灾害隐患点", "地灾隐患点"),
                                 "hazardous_chemicals": ("危化企业", "危险化学品企业"),
                                 "crowded_place": ("人员密集场所",), "dilapidated_housing": ("危旧房", "危房")})
SHELTER_KINDS = _choices(ShelterKind, {"emergency": ("紧急", "紧急避难场所"),
                                       "short_term": ("短期", "固定", "短期避难场所"),
                                       "long_term": ("中长期", "中心", "中长期避难场所")})
RESIDENT_CATEGORIES = {"elderly_alone": ("独居老人",), "disabled": ("残疾人",), "bedridden": ("失能", "卧床"),
                       "pregnant": ("孕产妇",), "child": ("留守儿童", "儿童"), "other": ("其他",)}
RESIDENT_CHOICES = {k: k for k in RESIDENT_CATEGORIES} | {
    n: k for k, names in RESIDENT_CATEGORIES.items() for n in names}
KIND_NAMES: dict[RegisterKind, tuple[str, str]] = {
    RegisterKind.risk_point: ("风险隐患点", "risk points"), RegisterKind.shelter: ("应急避难场所", "shelters"),
    RegisterKind.reserve: ("应急物资", "material reserves"), RegisterKind.team: ("救援队伍", "rescue teams"),
    RegisterKind.expert: ("专家库", "experts"), RegisterKind.vulnerable_resident: ("重点人群", "vulnerable residents"),
    RegisterKind.area: ("辖区", "administrative areas")}
RISK_KIND_NAMES = {"waterlogging": ("积水点", "waterlogging point"),
                   "geohazard": ("地质灾害隐患点", "geological hazard"),
                   "hazardous_chemicals": ("危化企业", "hazardous chemicals plant"),
                   "crowded_place": ("人员密集场所", "crowded place"),
                   "dilapidated_housing": ("危旧房", "dilapidated housing")}
SHELTER_KIND_NAMES = {"emergency": ("紧急避难场所", "emergency shelter"),
                      "short_term": ("短期避难场所", "short-term shelter"),
                      "long_term": ("中长期避难场所", "long-term shelter")}
RESIDENT_CATEGORY_NAMES = {"elderly_alone": ("独居老人", "elderly living alone"), "disabled": ("残疾人", "disabled"),
                           "bedridden": ("失能卧床", "bedridden"), "pregnant": ("孕产妇", "pregnant or new mother"),
                           "child": ("留守儿童", "child left behind"), "other": ("其他", "other")}

COMMON_HEAD = [Column("code", "编号", "Code", required=True, max_length=64, aliases=("编码", "代码")),
               Column("name_zh", "名称", "Name", required=True, aliases=("中文名称", "姓名")),
               Column("name_en", "英文名称", "English name", default="")]
ORGANISATION = Column("organisation", "责任单位", "Responsible organisation", max_length=64,
                      aliases=("所属单位", "权属单位", "社区"))
COMMON_TAIL = [Column("district", "所在区域", "District", max_length=100, default="", aliases=("区县", "街道")),
               Column("address", "地址", "Address", max_length=300, default=""),
               Column("contact_name", "联系人", "Contact", max_length=100, default="", aliases=("责任人",)),
               Column("contact_phone", "联系电话", "Contact phone", max_length=40, default="", aliases=("电话",)),
               Column("note", "备注", "Note", kind="multiline", max_length=2000, default="")]
# Where it is: a GeoJSON geometry, or longitude and latitude; `datum` says the source's datum (wgs84 or gcj02).
PLACE = [Column("lon", "经度", "Longitude", aliases=("longitude",)),
         Column("lat", "纬度", "Latitude", aliases=("latitude",)),
         Column("geometry", "几何", "Geometry", max_length=200_000, aliases=("geojson",)),
         Column("datum", "坐标系", "Coordinate datum", max_length=16)]

SPECIFIC: dict[RegisterKind, list[Column]] = {
    RegisterKind.risk_point: [
        Column("kind", "类型", "Type", kind="choice", required=True, max_length=32, choices=RISK_KINDS),
        Column("level", "等级", "Risk level", max_length=16, default="", aliases=("风险等级",)),
        Column("people_at_risk", "威胁人数", "People at risk", kind="count", aliases=("涉及人数",))],
    RegisterKind.shelter: [
        Column("kind", "类型", "Type", kind="choice", max_length=32, default="emergency", choices=SHELTER_KINDS),
        Column("capacity", "容纳人数", "Capacity", kind="count", required=True, aliases=("可容纳人数",)),
        Column("occupancy", "当前人数", "Occupancy", kind="count", default=0, aliases=("已安置人数",)),
        Column("area_m2", "面积", "Area (m²)", kind="count", aliases=("面积（平方米）",)),
        Column("is_open", "是否开放", "Open", kind="bool", default=False)],
    RegisterKind.reserve: [
        Column("category", "分类代码", "Category code", kind="category", required=True, max_length=7,
               aliases=("物资分类",)),
        Column("specification", "规格型号", "Specification", default=""),
        Column("unit", "单位", "Unit", required=True, max_length=16, aliases=("计量单位",)),
        Column("quantity", "数量", "Quantity", kind="count", required=True, aliases=("库存数量",)),
        Column("safety_stock", "安全库存", "Safety stock", kind="count", default=0),
        Column("warehouse", "储备库", "Warehouse", default="", aliases=("仓库",)),
        Column("expires_on", "有效期至", "Expires on", kind="date", aliases=("有效期",))],
    RegisterKind.team: [
        Column("speciality", "专业", "Speciality", max_length=100, default="", aliases=("队伍类型",)),
        Column("headcount", "人数", "Headcount", kind="count", required=True, aliases=("队伍人数",)),
        Column("equipment", "装备", "Equipment", kind="multiline", max_length=4000, default="", aliases=("主要装备",)),
        Column("on_call", "是否备勤", "On call", kind="bool", default=True, aliases=("备勤",))],
    RegisterKind.expert: [
        Column("speciality", "专业", "Speciality", max_length=100, default="", aliases=("专业领域",)),
        Column("title", "职称", "Professional title", max_length=100, default=""),
        Column("employer", "工作单位", "Employer", default="")],
    RegisterKind.vulnerable_resident: [
        Column("category", "类别", "Category", kind="choice", max_length=32, default="other",
               choices=RESIDENT_CHOICES),
        Column("keeper_name", "包保责任人", "Keeper", max_length=100, default="", aliases=("转移责任人",)),
        Column("keeper_phone", "包保人电话", "Keeper's phone", max_length=40, default="")],
    RegisterKind.area: [],
}
# A kind without a place may leave it out; the others need one.
PLACE_REQUIRED = {RegisterKind.risk_point, RegisterKind.shelter, RegisterKind.reserve, RegisterKind.area}
# An administrative area (辖区) is found again by its organisation: its code may be left blank (the organisation's key).
AREA_CODE = Column("code", "编号", "Code", max_length=64, default="", aliases=("编码", "代码"))
# A register's sheet in a workbook, by either name.
SHEETS = {kind: (kind.value, names[0]) for kind, names in KIND_NAMES.items()}


def columns(kind: RegisterKind) -> list[Column]:
    """The columns of a register, in the order an export writes them (the place last)."""
    head = [AREA_CODE, *COMMON_HEAD[1:]] if kind is RegisterKind.area else COMMON_HEAD
    return [*head, *SPECIFIC[kind], ORGANISATION, *COMMON_TAIL, *PLACE]


# What is kept beside an entry but is no column of the register's files, named as its columns are.
KEPT_BESIDE = {"occupancy_at": ("人数上报时间", "Occupancy reported")}


def names(kind: RegisterKind) -> dict[str, dict[str, str]]:
    """Each column's name in both languages (and of what is kept beside the entries), as the registers page and
    the map's popups show them."""
    return {**{c.key: {"zh": c.zh, "en": c.en} for c in columns(kind)},
            **{key: {"zh": zh, "en": en} for key, (zh, en) in KEPT_BESIDE.items()}}


def headers(kind: RegisterKind) -> dict[str, str]:
    """Every header a file may use for a column → its key."""
    found: dict[str, str] = {}
    for column in columns(kind):
        for name in (column.key, column.zh, *column.aliases):
            found[name.strip().lower()] = column.key
    return found


# -- reading one cell -------------------------------------------------------------------------------------------
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(column: Column, value: Any) -> str:
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        value = str(int(value))
    try:
        # Checked before stripping: str.strip() would quietly take off a trailing C1 control (U+0085).
        text = policy.text(str(value), multiline=column.kind == "multiline").strip()
    except policy.Violation as violation:
        raise CellRefused(column.key, "control_character", violation.message, "含有不可见的控制字符") from None
    if len(text) > column.max_length:
        raise CellRefused(column.key, "too_long", f"at most {column.max_length} characters",
                          f"最多{column.max_length}个字符")
    return text


def count(column: Column, value: Any) -> int:
    """A whole number of things, ≥ 0: 12, 12.0 and "12" read; -1, 1.5, NaN, Infinity and "many" do not."""
    if isinstance(value, bool):
        raise CellRefused(column.key, "not_a_number", "must be a whole number", "应为整数")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().replace(",", "").replace("，", "")
        try:
            number = float(text)
        except ValueError:
            raise CellRefused(column.key, "not_a_number", f"'{text[:40]}' is not a number",
                              f"“{text[:40]}”不是数字") from None
    if not math.isfinite(number):
        raise CellRefused(column.key, "not_finite", "must be a finite number (not NaN or Infinity)",
                          "必须是有限数值（不能是 NaN 或无穷大）")
    if number < 0:
        raise CellRefused(column.key, "negative", "must not be negative", "不能为负数")
    if not number.is_integer():
        raise CellRefused(column.key, "not_whole", "must be a whole number", "应为整数")
    if number > MAX_COUNT:
        raise CellRefused(column.key, "too_large", f"must be at most {MAX_COUNT:.0e}", "数值过大")
    return int(number)


YES = {"1", "true", "yes", "y", "是", "有", "开放", "备勤"}
NO = {"0", "false", "no", "n", "否", "无", "关闭", "未开放"}


def _bool(column: Column, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(column, value).lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise CellRefused(column.key, "not_yes_no", f"'{text[:20]}' is not yes or no (是/否)", f"“{text[:20]}”应为是或否")


def _date(column: Column, value: Any) -> date:
    day: date | None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = _text(column, value).replace("/", "-").replace(".", "-")
        try:
            day = date.fromisoformat(text[:10]) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text[:10]) else None
        except ValueError:
            day = None
    if day is None:
        text = str(value).strip()
        raise CellRefused(column.key, "bad_date", f"'{text[:40]}' is not a date (YYYY-MM-DD)",
                          f"“{text[:40]}”不是日期（年-月-日）")
    today = utcnow().date()
    if day > today + timedelta(days=365 * FAR_FUTURE_YEARS):
        raise CellRefused(column.key, "far_future", f"{day.isoformat()} is more than {FAR_FUTURE_YEARS} years ahead",
                          f"{day.isoformat()}晚于{FAR_FUTURE_YEARS}年之后，请核对")
    if day.year < policy.MIN_YEAR:
        raise CellRefused(column.key, "bad_date", f"{day.isoformat()} is before {policy.MIN_YEAR}",
                          f"{day.isoformat()}早于{policy.MIN_YEAR}年")
    return day


def cell(column: Column, value: Any) -> Any:
    """The stored value of one cell (the column's default for a blank one), or CellRefused."""
    if _blank(value):
        if column.required:
            raise CellRefused(column.key, "missing", f"{column.key} ({column.zh}) is required",
                              f"“{column.zh}”（{column.key}）必填")
        return column.default
    if column.kind == "count":
        return count(column, value)
    if column.kind == "bool":
        return _bool(column, value)
    if column.kind == "date":
        return _date(column, value)
    text = _text(column, value)
    if column.kind == "choice":
        chosen = column.choices.get(text) or column.choices.get(text.lower())
        if chosen is None:
            allowed = sorted(set(column.choices.values()))
            named = "、".join(k for k in column.choices if k not in allowed)
            raise CellRefused(column.key, "bad_choice", f"'{text[:40]}' is not one of {', '.join(allowed)}",
                              f"“{text[:40]}”不在可选值内（{named}）")
        return chosen
    if column.kind == "category" and not CATEGORY.fullmatch(text):
        raise CellRefused(column.key, "bad_category", f"'{text[:20]}' is not a GB/T 38565 category code "
                          "(1, 2 or 3, then up to three 2-digit levels: 1010101)",
                          f"“{text[:20]}”不是 GB/T 38565 应急物资分类代码（如 1010101）")
    return text
