"""The registers on the map (一张图): risk points, shelters with their occupancy, reserves, teams, experts and, for
their community and the office only, vulnerable residents. Each layer reads `core.registers.service`'s
`register_layers`, which applies the registers' own scope rule (`readable`); nothing here decides who sees what.
A popup's values are worded for people: a stored choice (`waterlogging`, `emergency`, `elderly_alone`) by its name
in both languages, a reserve's GB/T 38565 code with its class's name, yes/no for a flag."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.maps.geojson import Feature
from core.plans.wording import Wording
from core.registers.columns import (
    CATEGORY_CLASSES,
    KIND_NAMES,
    RESIDENT_CATEGORY_NAMES,
    RISK_KIND_NAMES,
    SHELTER_KIND_NAMES,
    names,
)
from core.registers.models import RegisterKind
from core.registers.service import SUMMARY_FIELDS, register_layers
from core.users.models import User

COLOURS = {RegisterKind.risk_point: "#e65100", RegisterKind.shelter: "#2e7d32", RegisterKind.reserve: "#6a1b9a",
           RegisterKind.team: "#00838f", RegisterKind.expert: "#5d4037", RegisterKind.vulnerable_resident: "#ad1457",
           RegisterKind.area: "#455a64"}


TIMES = frozenset({"occupancy_at"})  # stored as ISO stamps: shown as local times, as every popup shows times
NOT_REPORTED = {"zh": "未上报", "en": "not reported"}


# The stored choices a popup names, by register and field: the value → (Chinese, English).
CHOICE_NAMES: dict[tuple[RegisterKind, str], dict[str, tuple[str, str]]] = {
    (RegisterKind.risk_point, "kind"): RISK_KIND_NAMES, (RegisterKind.shelter, "kind"): SHELTER_KIND_NAMES,
    (RegisterKind.vulnerable_resident, "category"): RESIDENT_CATEGORY_NAMES}


def _shown(kind: RegisterKind, name: str, value: Any) -> Any:
    if name in TIMES:
        if not value:
            return NOT_REPORTED
        moment = datetime.fromisoformat(value)
        return {lang: Wording(lang).when(moment) for lang in ("zh", "en")}
    if isinstance(value, bool):
        return {"zh": "是" if value else "否", "en": "yes" if value else "no"}
    if value is None:
        return ""
    named = CHOICE_NAMES.get((kind, name), {}).get(value) if isinstance(value, str) else None
    if named is not None:
        return {"zh": named[0], "en": named[1]}
    if kind is RegisterKind.reserve and name == "category" and isinstance(value, str) and value[:1] in CATEGORY_CLASSES:
        zh, en = CATEGORY_CLASSES[value[:1]]  # the code stays: it is what a warehouse's sheet and GB/T 38565 say
        return {"zh": f"{value}（{zh}）", "en": f"{value} ({en})"}
    return value


def layer(kind: RegisterKind) -> Callable[[Session, User], list[Feature]]:
    def build(session: Session, user: User) -> list[Feature]:
        found = register_layers(session, user, kinds=(kind,)).get(kind.value)
        if found is None:
            return []
        labels = names(kind)
        features: list[Feature] = []
        for entry in found["features"]:
            p = entry["properties"]
            rows = [[labels.get(name, {"zh": name, "en": name}), _shown(kind, name, p.get(name))]
                    for name in SUMMARY_FIELDS[kind]]
            features.append({"type": "Feature", "geometry": entry["geometry"],
                             "properties": {"id": p["id"], "code": p["code"],
                                            "name": {"zh": p["name_zh"], "en": p["name_en"] or p["name_zh"]},
                                            "rows": rows}})
        return features
    return build


def title(kind: RegisterKind) -> dict[str, str]:
    zh, en = KIND_NAMES[kind]
    return {"zh": zh, "en": en[:1].upper() + en[1:]}
