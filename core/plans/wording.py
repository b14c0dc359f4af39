"""Plan texts, names, times and values in the reader's language: what pages and reports both show."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.plans.store import registry
from core.platform.settings import get_settings
from process_defs.schema import LEVEL_NAMES, STAGE_NAMES, FieldType, FormField


class Wording:
    """Chinese first: a bilingual text shows the reader's language, falling back to the other one."""

    def __init__(self, lang: str = "zh", tz: str | None = None) -> None:
        self.lang = "en" if lang == "en" else "zh"
        self.zone = ZoneInfo(tz or get_settings().timezone)

    def t(self, text: Any) -> str:
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
        return self.t(department.name) if department else key

    def position(self, ref: str) -> str:
        """`commander@flood_control_hq` as people say it: 市防汛抗旱指挥部总指挥."""
        return registry().position_name(ref, self.lang)

    def stage(self, key: str) -> str:
        return self.t(STAGE_NAMES.get(key, {"zh": key, "en": key}))

    def level(self, key: str) -> str:
        return self.t(LEVEL_NAMES.get(key, {"zh": key, "en": key}))

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
        offset = datetime.now(self.zone).strftime("%z")
        return f"{self.zone.key}, UTC{offset[:3]}:{offset[3:]}"

    def value(self, form_field: FormField | None, value: Any) -> str:
        """An output value as text: choices by their label, booleans as ✓/✗, places by name, local times."""
        if isinstance(value, bool):
            return "✓" if value else "✗"
        if form_field is not None and form_field.type is FieldType.choice and form_field.choices:
            labels = {c.value: self.t(c.label) for c in form_field.choices}
            values = value if isinstance(value, list) else [value]
            return ("、" if self.lang == "zh" else ", ").join(labels.get(str(v), str(v)) for v in values)
        if isinstance(value, Mapping):
            parts = [str(value.get("name") or "")]
            if value.get("lat") is not None:
                parts.append(f"({value.get('lat')}, {value.get('lon')})")
            return " ".join(p for p in parts if p)
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        if form_field is not None and form_field.type is FieldType.datetime and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return value
            return self.when(parsed)
        text = "" if value is None else str(value)
        return f"{text} {form_field.unit}" if form_field is not None and form_field.unit and text else text
