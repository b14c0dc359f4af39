"""Plan texts, names, times and values in the reader's language: what pages and reports both show."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.plans.store import registry
from core.platform.settings import get_settings
from process_defs.schema import LEVEL_NAMES, LEVEL_NUMERALS, STAGE_NAMES, FieldType, FormField

# The plans write units in Chinese, as forms in China do; an English reader reads them in English.
UNIT_NAMES: dict[str, str] = {
    "人": "people", "人次": "visits", "处": "sites", "户": "households", "万户": "×10,000 households",
    "万元": "×10,000 yuan", "辆": "vehicles", "个": "", "条": "", "家": "", "例": "cases", "座": "", "栋": "buildings",
    "间": "rooms", "所": "", "台": "units", "项": "items", "艘": "vessels", "段": "sections", "支": "teams",
    "级": "", "株": "trees", "张": "", "层": "floors", "天": "days", "件": "items", "万平方米": "×10,000 m²",
    "起": "cases", "小时": "h", "列": "trains", "人/平方米": "people/m²", "顶": "", "部": "", "道": "", "度": "",
    "套": "sets", "块": "", "场": "events", "吨": "t", "万条": "×10,000", "万套": "×10,000 sets",
    "万只": "×10,000", "万人": "×10,000 people",
}
# Units some plans write as symbols (mm, h): a Chinese page names them in Chinese (毫米, 小时), as a form in a
# Chinese government office does; an English page keeps the symbol.
ZH_UNIT_NAMES: dict[str, str] = {
    "mm": "毫米", "h": "小时", "km": "公里", "m": "米", "m/s": "米/秒", "t": "吨", "mg/m³": "毫克/立方米",
}
CLASSIFICATION_NAMES: dict[str, dict[str, str]] = {
    "public": {"zh": "公开", "en": "Public"},
    "internal": {"zh": "内部", "en": "Internal"},
    "restricted": {"zh": "限定范围", "en": "Restricted"},
}
# A task's or an incident's status, as its badge on a page, the after-action report and the review's timeline name it.
STATUS_NAMES: dict[str, dict[str, str]] = {
    "pending": {"zh": "待分派", "en": "Pending"},
    "assigned": {"zh": "已分派", "en": "Assigned"},
    "acknowledged": {"zh": "已签收", "en": "Acknowledged"},
    "completed": {"zh": "已完成", "en": "Completed"},
    "handed_back": {"zh": "已退回", "en": "Handed back"},
    "escalated": {"zh": "已升级督办", "en": "Escalated"},
    "cancelled": {"zh": "已取消", "en": "Cancelled"},
    "skipped": {"zh": "不适用", "en": "Skipped"},
    "open": {"zh": "处置中", "en": "Open"},
    "closed": {"zh": "已关闭", "en": "Closed"},
}
# What a CAP message does, as people say it.
MSG_TYPE_NAMES: dict[str, dict[str, str]] = {
    "Alert": {"zh": "发布", "en": "Issued"},
    "Update": {"zh": "更新", "en": "Updated"},
    "Cancel": {"zh": "解除", "en": "Cancelled"},
}
YES_NO = {"zh": ("是", "否"), "en": ("Yes", "No")}
# China's one time zone, as people in China name it (北京时间), whichever city's name the zone database gives it.
CHINA_ZONES = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "Asia/Urumqi", "PRC"})
BEIJING_TIME = {"zh": "北京时间", "en": "Beijing time"}
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


# Who acted, when it was not a person signed in: worded for the reader (actors are `kind:name` in the ledger).
ACTOR_KINDS = {"cli": {"zh": "命令行", "en": "command line"}, "demo": {"zh": "演示", "en": "demo"},
               "drill": {"zh": "演练", "en": "drill"}, "signal": {"zh": "监测信号", "en": "monitoring signal"}}
SYSTEM_ACTOR = {"zh": "系统自动", "en": "Baton (automatic)"}
# Short names actors use for a department (`demo:office`).
DEPARTMENT_ALIASES = {"office": "emergency_office", "command": "emergency_office"}


PeopleOf = Callable[[], dict[str, tuple[str, str | None]]]
"""Each user name with the name people know them by and their department (core.users.service.people), asked
for the first time a person is named."""


class Wording:
    """Chinese first: a bilingual text shows the reader's language, falling back to the other one."""

    def __init__(self, lang: str = "zh", tz: str | None = None, *, people: PeopleOf | None = None) -> None:
        self.lang = "en" if lang == "en" else "zh"
        self.zone = ZoneInfo(tz or get_settings().timezone)
        self._people_of = people
        self._people: dict[str, tuple[str, str | None]] | None = None

    def person(self, actor: str | None) -> str:
        if not actor:
            return ""
        kind, _, name = actor.partition(":")
        if not name:
            return self.plain(SYSTEM_ACTOR) if kind in ("baton", "system") else actor
        if kind == "user":
            if self._people is None:
                self._people = self._people_of() if self._people_of is not None else {}
            shown, department = self._people.get(name, (name, None))
            return f"{shown} · {self.dept(department)}" if department else shown
        if kind in ACTOR_KINDS:
            # `demo:water_affairs` names a department; a name that is none (`demo:office`) is not shown raw.
            label = self.plain(ACTOR_KINDS[kind])
            unit = DEPARTMENT_ALIASES.get(name, name)
            if registry().department(unit) is None:
                return label
            return f"{label}（{self.dept(unit)}）" if self.lang == "zh" else f"{label} ({self.dept(unit)})"
        return actor

    def party(self, party: str | None) -> str:
        """A ledger entry's from- or to-party as people say it: a department (or several, `a,b`), a position,
        or a person (`user:zhang`)."""
        if not party:
            return ""
        names = []
        for part in party.split(","):
            if ":" in part:
                names.append(self.person(part))
            elif "@" in part:
                names.append(self.position(part))
            else:
                names.append(self.dept(part))
        return ("、" if self.lang == "zh" else ", ").join(names)

    def t(self, text: Any) -> str:
        """A bilingual text in the reader's language, falling back to the other one."""
        return self.plain(text)

    def plain(self, text: Any) -> str:
        """`t` as text, whatever a subclass adds for a page (api/pages/rendering.py marks its English): what the
        other wordings here build on."""
        if text is None:
            return ""
        if hasattr(text, "model_dump"):
            text = text.model_dump()
        if isinstance(text, Mapping):
            first, second = ("en", "zh") if self.lang == "en" else ("zh", "en")
            return str(text.get(first) or text.get(second) or "")
        return str(text)

    def other(self, text: Any) -> str:
        """The plan text in the other language (shown beside the reader's)."""
        return Wording("zh" if self.lang == "en" else "en", self.zone.key).t(text)

    def dept(self, key: str | None) -> str:
        if not key:
            return ""
        department = registry().department(key)
        return self.plain(department.name) if department else key

    def position(self, ref: str) -> str:
        """`commander@flood_control_hq` as people say it: 市防汛抗旱指挥部总指挥."""
        return registry().position_name(ref, self.lang)

    def stage(self, key: str) -> str:
        return self.plain(STAGE_NAMES.get(key, {"zh": key, "en": key}))

    def level(self, key: str) -> str:
        return self.plain(LEVEL_NAMES.get(key, {"zh": key, "en": key}))

    def numeral(self, key: str | None) -> str:
        """A level's numeral: Ⅱ (the Roman numeral character) in Chinese, II in English. The one home of how a
        level is numbered in text (`Ⅱ级`, `Level II`)."""
        return LEVEL_NUMERALS.get(key or "", key or "") if self.lang == "zh" else key or ""

    def level_short(self, key: str | None) -> str:
        """`Ⅱ级`, `Level II`."""
        return f"{self.numeral(key)}级" if self.lang == "zh" else f"Level {key or ''}"

    def remaining(self, delta: timedelta | None) -> str:
        """Time left to a deadline as people say it: `还剩 1小时20分`, `1 h 20 min left`."""
        if delta is None:
            return "—"
        minutes = max(0, int(delta.total_seconds() // 60))
        hours, mins = divmod(minutes, 60)
        if self.lang == "zh":
            return "还剩 " + (f"{hours}小时{mins}分" if hours else f"{mins}分钟")
        return (f"{hours} h {mins} min" if hours else f"{mins} min") + " left"

    def when(self, moment: datetime | None, seconds: bool = False) -> str:
        return self.local(moment, "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def local(self, moment: datetime | None, pattern: str) -> str:
        """`moment` in Baton's time zone by `pattern`. A moment the zone cannot hold (past the year 9999 there,
        stored before the input policy held) is shown as it was given rather than failing the page."""
        if moment is None:
            return "—"
        value = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        try:
            return value.astimezone(self.zone).strftime(pattern)
        except (OverflowError, ValueError):
            return value.isoformat(timespec="minutes")

    def zone_label(self) -> str:
        """Baton's time zone as people name it: 北京时间 (Beijing time) in China, else its UTC offset."""
        offset = datetime.now(self.zone).strftime("%z")
        if self.zone.key in CHINA_ZONES:
            return self.plain(BEIJING_TIME)
        return f"UTC{offset[:3]}:{offset[3:]}"

    def clock(self, moment: datetime | None = None) -> str:
        """The duty desk's clock: `北京时间 14:05`."""
        return f"{self.zone_label()} {self.local(moment or datetime.now(UTC), '%H:%M')}"

    def yes_no(self, value: bool) -> str:
        yes, no = YES_NO[self.lang]
        return yes if value else no

    def unit(self, unit: str | None) -> str:
        """A plan's unit in the reader's language (人 → people, mm → 毫米); the unit as written otherwise."""
        if not unit:
            return ""
        return UNIT_NAMES.get(unit, unit) if self.lang == "en" else ZH_UNIT_NAMES.get(unit, unit)

    def number(self, value: float) -> str:
        """A number as people write it: whole numbers without a decimal point, others to two places at most."""
        if isinstance(value, float) and not value.is_integer():
            return f"{value:.2f}".rstrip("0").rstrip(".")
        return str(int(value))

    def quantity(self, value: float | None, unit: str | None) -> str:
        """A number with its unit in the reader's language: `320 人`, `320 people`."""
        if value is None:
            return "—"
        shown = self.unit(unit)
        return f"{self.number(value)} {shown}" if shown else self.number(value)

    def status(self, key: str | None) -> str:
        """A status by its name (`STATUS_NAMES`); one not named there as it is stored."""
        return self.t(STATUS_NAMES.get(key or "", {"zh": key or "", "en": key or ""}))

    def classification(self, key: str | None) -> str:
        return self.plain(CLASSIFICATION_NAMES.get(key or "", {"zh": key or "", "en": key or ""}))

    def msg_type(self, key: str | None) -> str:
        return self.plain(MSG_TYPE_NAMES.get(key or "", {"zh": key or "", "en": key or ""}))

    def value(self, form_field: FormField | None, value: Any) -> str:
        """An output value as people read it: 是/否 (Yes/No), choices by their label, places by name, moments in
        Baton's time zone, numbers with their unit in the reader's language; lists and objects as words, never as
        Python writes them."""
        separator = "、" if self.lang == "zh" else ", "
        if value is None or value == "":
            return ""
        if isinstance(value, bool):
            return self.yes_no(value)
        if form_field is not None and form_field.type is FieldType.choice and form_field.choices:
            labels = {c.value: self.plain(c.label) for c in form_field.choices}
            values = value if isinstance(value, list) else [value]
            return separator.join(labels.get(str(v), self.value(None, v)) for v in values)
        if isinstance(value, Mapping):
            if "name" in value or "lat" in value:
                parts = [str(value.get("name") or "")]
                if value.get("lat") is not None:
                    parts.append(f"({value.get('lat')}, {value.get('lon')})")
                return " ".join(p for p in parts if p)
            return separator.join(f"{self.plain(k) if isinstance(k, Mapping) else k}: {self.value(None, v)}"
                                  for k, v in value.items())
        if isinstance(value, list):
            return separator.join(self.value(form_field, v) for v in value)
        if isinstance(value, int | float):
            return self.quantity(value, form_field.unit if form_field is not None else None)
        if isinstance(value, datetime):
            return self.when(value)
        if isinstance(value, str) and _ISO_MOMENT.match(value.strip()):
            try:
                return self.when(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
            except ValueError:
                return value
        text = str(value)
        shown = self.unit(form_field.unit) if form_field is not None else ""
        return f"{text} {shown}" if shown else text
