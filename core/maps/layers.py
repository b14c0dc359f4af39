"""The map's registry of layers (一张图), and its base layer.

A layer is one function `(session, user) -> list[Feature]` (GeoJSON features, `core.maps.geojson`) and one line
in `LAYERS` naming it, in Chinese and English, with its colour. A layer applies the rule of the domain it reads
(`core.incidents.reads` with the user's reader, `Step.visible_outputs`, the registers' `readable`, …) and never a
rule of its own. Another domain adds a layer like this:

    # core/maps/<domain>_layers.py
    def teams(session: Session, user: User) -> list[Feature]:
        return [point(t.lat, t.lon, name=t.name, rows=[[{"zh": "人数", "en": "Headcount"}, t.headcount]])
                for t in visible_teams(session, user)]

    # in LAYERS below
    Layer("teams", {"zh": "救援队伍", "en": "Rescue teams"}, "#00838f", teams),

The page draws each layer as a toggle of the map's layer control, in this order; a Point with a `radius_m`
property is drawn as a circle of that radius, any other Point as a dot, (Multi)Polygons as areas (filled with
the feature's `colour` property where it has one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core.maps import incident_layers, prevention_layers, register_layers
from core.maps.geojson import Feature, collection
from core.platform.settings import get_settings
from core.registers.models import RegisterKind
from core.users.models import User, reader_of

BOUNDARIES = Path(__file__).resolve().parent / "boundaries" / "hangzhou.geojson"

LayerFunction = Callable[[Session, User], list[Feature]]


def by_reader(build: Callable[[Session, str | None], list[Feature]]) -> LayerFunction:
    """A layer of incident data, read with the user's reader (a department, or None for who sees everything)."""
    return lambda session, user: build(session, reader_of(user))


@dataclass(frozen=True)
class Layer:
    key: str
    title: dict[str, str]  # {"zh": …, "en": …}
    colour: str  # the layer's colour on the map (a feature's own `colour` property wins)
    build: LayerFunction
    shown: bool = True  # on when the map opens


LAYERS: tuple[Layer, ...] = (
    Layer("warning_areas", {"zh": "预警区域", "en": "Warning areas"}, "#d62020",
          by_reader(incident_layers.warning_areas)),
    Layer("incidents", {"zh": "事件", "en": "Incidents"}, "#b3261e", by_reader(incident_layers.incidents)),
    Layer("task_locations", {"zh": "任务位置", "en": "Task locations"}, "#1e63d6",
          by_reader(incident_layers.task_locations)),
    *(Layer(f"register_{kind.value}", register_layers.title(kind), register_layers.COLOURS[kind],
            register_layers.layer(kind), shown=kind in (RegisterKind.risk_point, RegisterKind.shelter))
      for kind in RegisterKind),
    # Off when the map opens: a campaign's slot puts an inspection on every point it covers, which would hide the
    # response under it; the office and each department turn it on to see what is due and overdue.
    Layer("prevention", {"zh": "检查与整改", "en": "Inspections and rectifications"}, "#f9a825",
          by_reader(prevention_layers.open_work), shown=False),
)


def layers_for(session: Session, user: User, layers: tuple[Layer, ...] = LAYERS) -> dict[str, Any]:
    """Every layer, built for `user`: what `GET /api/map/layers` answers."""
    return {"layers": [{"key": layer.key, "title": layer.title, "colour": layer.colour, "shown": layer.shown,
                        "data": collection(layer.build(session, user))} for layer in layers]}


@lru_cache(maxsize=4)
def _boundaries(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def boundaries() -> dict[str, Any]:
    """The base layer: the city's district boundaries (`BATON_MAP_BOUNDARIES`, by default Hangzhou's, shipped
    in `boundaries/`), drawn when no tile server is set."""
    return _boundaries(get_settings().map_boundaries or BOUNDARIES)


def base() -> dict[str, str | None]:
    """What the page's map draws under the layers: a city's own tiles (`BATON_MAP_TILE_URL`, a template with
    {z}, {x} and {y}) when set, else the boundaries alone."""
    settings = get_settings()
    return {"tiles": settings.map_tile_url, "attribution": settings.map_tile_attribution}
