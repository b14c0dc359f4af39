"""A public warning's words: its texts written as Chinese public notices are (市气象台发布暴雨红色预警信号：…), in
Chinese and English, from the plan's templates. Values are worded for people (红色 / Red, 是 / Yes, 6月1日18时 /
18:00 on 1 June, Beijing time, 80 mm): never a raw value, a dict or an ISO timestamp.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.plans.wording import ZH_UNIT_NAMES, Wording
from core.platform.settings import get_settings
from process_defs.actions import PublishWarningParams
from process_defs.schema import FieldType, FormField

LANGS = ("zh", "en")
COLOUR_NAMES: dict[str, dict[str, str]] = {
    "blue": {"zh": "蓝色", "en": "Blue"}, "yellow": {"zh": "黄色", "en": "Yellow"},
    "orange": {"zh": "橙色", "en": "Orange"}, "red": {"zh": "红色", "en": "Red"},
}
WHOLE_CITY = {"zh": "全市", "en": "the whole city"}
Worded = dict[str, str]  # {"zh": …, "en": …}


def zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def worded_time(moment: datetime, lang: str) -> str:
    """A moment in Beijing time (Baton's zone) as a notice says it: 6月1日18时30分 / 18:30 on 1 June (Beijing
    time)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    try:
        local = aware.astimezone(zone())
    except (OverflowError, ValueError):  # past the year 9999 there (stored before the input policy held)
        local = aware
    if lang == "en":
        return f"{local:%H:%M} on {local.day} {local:%B} (Beijing time)"
    return f"{local.month}月{local.day}日{local.hour}时" + (f"{local.minute:02d}分" if local.minute else "")


def worded_hours(span: timedelta) -> str:
    """Whole hours (at least one): 预计未来{hours}小时 / in the next {hours} hours."""
    return str(max(1, round(span.total_seconds() / 3600)))


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def worded_value(form_field: FormField | None, value: Any, lang: str) -> str | None:
    """One output value as a public notice words it, or None when there is nothing to say (no value, a file)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return ("是" if value else "否") if lang == "zh" else ("Yes" if value else "No")
    kind = form_field.type if form_field is not None else None
    if kind is FieldType.attachment:
        return None
    if kind is FieldType.choice and form_field is not None:
        labels = {c.value: c.label.get(lang) for c in form_field.choices or []}
        if value in COLOUR_NAMES and str(value) not in labels:
            labels[str(value)] = COLOUR_NAMES[str(value)][lang]
        values = value if isinstance(value, list) else [value]
        return ("、" if lang == "zh" else ", ").join(labels.get(str(v), str(v)) for v in values)
    if kind is FieldType.datetime and isinstance(value, str):
        try:
            return worded_time(datetime.fromisoformat(value), lang)
        except ValueError:
            return None
    if isinstance(value, Mapping):
        name = value.get("name")
        return str(name) if name else None
    if isinstance(value, list):
        return ("、" if lang == "zh" else ", ").join(str(v) for v in value if not isinstance(v, Mapping | list))
    if isinstance(value, int | float):
        unit = form_field.unit if form_field is not None else None
        if not unit:
            return _number(value)
        if not unit.isascii():  # 级, 人, 万户: Chinese units; the English template words the quantity itself
            return f"{_number(value)}{unit}" if lang == "zh" else _number(value)
        if lang == "zh" and unit in ZH_UNIT_NAMES:  # a public notice in Chinese says 80毫米, not 80 mm
            return f"{_number(value)}{ZH_UNIT_NAMES[unit]}"
        return f"{_number(value)} {unit}"
    return str(value)


def fill(template: str, values: Mapping[str, str | None]) -> str | None:
    """The template with its placeholders filled, or None when one of them has no value."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None:
            return None
        out.append(value)
    return "".join(out)


def plain(template: str) -> str:
    """A text without placeholders as it reads (`{{` is a brace)."""
    return fill(template, {}) or template


def compose(params: PublishWarningParams, *, issuer: Worded, colour: str, area: Worded, drafted_at: datetime,
            expires_at: datetime, outputs: Mapping[str, Worded]) -> dict[str, Worded]:
    """The warning's headline, description and instruction in both languages. `outputs` are the public outputs
    worded (`step.field` → zh/en). A description sentence naming a missing output is left out; with no
    sentences, the description is the public outputs, labelled."""
    texts: dict[str, Worded] = {"headline": {}, "description": {}, "instruction": {}}
    for lang in LANGS:
        values: dict[str, str | None] = {
            "issuer": issuer[lang], "colour": COLOUR_NAMES[colour][lang], "area": area[lang],
            "expires": worded_time(expires_at, lang), "hours": worded_hours(expires_at - drafted_at),
            "event": plain(params.event.get(lang))}
        values.update({ref: worded.get(lang) for ref, worded in outputs.items()})
        texts["headline"][lang] = fill(params.headline.get(lang), values) or plain(params.event.get(lang))
        texts["instruction"][lang] = fill(params.instruction.get(lang), values) or ""
        sentences = [fill(s.get(lang), values) for s in params.description]
        texts["description"][lang] = ("" if lang == "zh" else " ").join(s.strip() for s in sentences if s)
    return texts


def facts(labelled: Mapping[str, tuple[Worded, Worded]]) -> Worded:
    """A description from the public outputs alone (a plan that words none): 标签：值；… / Label: value; …"""
    return {"zh": "；".join(f"{label['zh']}：{value['zh']}" for label, value in labelled.values()),
            "en": "; ".join(f"{label['en']}: {value['en']}" for label, value in labelled.values())}


class NoticeWording(Wording):
    """What the public page needs: `Wording` with a warning's times worded as its notice words them."""

    def notice_time(self, moment: datetime | None) -> str:
        return worded_time(moment, self.lang) if moment is not None else "—"

    def colour(self, key: str | None) -> str:
        return COLOUR_NAMES.get(key or "", {}).get(self.lang, key or "")
