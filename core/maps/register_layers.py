"""The registers on the map (一张图): risk points, shelters with their occupancy, reserves, teams, experts and, for
their community and the office only, vulnerable residents. Each layer reads `core.registers.service`'s
`register_layers`, which applies the registers' own scope rule (`readable`); nothing here decides who sees what."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from core.maps.geojson import Feature
from core.registers.columns import KIND_NAMES, columns
from core.registers.models import RegisterKind
from core.registers.service import SUMMARY_FIELDS, register_layers
from core.users.models import User

COLOURS = {RegisterKind.risk_point: "#e65100", RegisterKind.shelter: "#2e7d32", RegisterKind.reserve: "#6a1b9a",
           RegisterKind.team: "#00838f", RegisterKind.expert: "#5d4037", RegisterKind.vulnerable_resident: "#ad1457",
           RegisterKind.area: "#455a64"}


def _labels(kind: RegisterKind) -> dict[str, dict[str, str]]:
    return {c.key: {"zh": c.zh, "en": c.key.replace("_", " ")} for c in columns(kind)}


def _shown(value: Any) -> Any:
    if isinstance(value, bool):
        return {"zh": "是" if value else "否", "en": "yes" if value else "no"}
    return "" if value is None else value


def layer(kind: RegisterKind) -> Callable[[Session, User], list[Feature]]:
    def build(session: Session, user: User) -> list[Feature]:
        found = register_layers(session, user, kinds=(kind,)).get(kind.value)
        if found is None:
            return []
        labels = _labels(kind)
        features: list[Feature] = []
        for entry in found["features"]:
            p = entry["properties"]
            rows = [[labels.get(name, {"zh": name, "en": name}), _shown(p.get(name))] for name in SUMMARY_FIELDS[kind]]
            features.append({"type": "Feature", "geometry": entry["geometry"],
                             "properties": {"id": p["id"], "code": p["code"],
                                            "name": {"zh": p["name_zh"], "en": p["name_en"] or p["name_zh"]},
                                            "rows": rows}})
        return features
    return build


def title(kind: RegisterKind) -> dict[str, str]:
    zh, en = KIND_NAMES[kind]
    return {"zh": zh, "en": en[:1].upper() + en[1:]}
