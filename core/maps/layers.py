"""The map's registry of layers (一张图), and its base layer.

A layer is one function `(session, reader) -> list[Feature]` (GeoJSON features, `core.maps.geojson`) and one line
in `LAYERS` naming it, in Chinese and English, with its colour. `reader` is the scope every read in Baton takes: a
department key, or None for those who see everything (office, managers, administrators); a layer applies the rule
of the domain it reads (`core.incidents.reads`, `Step.visible_outputs`, …) and never a rule of its own. Another
domain adds a layer like this:

    # core/maps/registers.py (or the domain's own module, if it sits below maps)
    def shelters(session: Session, reader: str | None) -> list[Feature]:
        return [point(s.lat, s.lon, name=s.name, occupancy=s.occupancy) for s in visible_shelters(session, reader)]

    # in LAYERS below
    Layer("shelters", {"zh": "避难场所", "en": "Shelters"}, "#2e7d32", shelters),

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

from core.maps import incident_layers
from core.maps.geojson import Feature, collection
from core.platform.settings import get_settings

BOUNDARIES = Path(__file__).resolve().parent / "boundaries" / "hangzhou.geojson"

LayerFunction = Callable[[Session, str | None], list[Feature]]


@dataclass(frozen=True)
class Layer:
    key: str
    title: dict[str, str]  # {"zh": …, "en": …}
    colour: str  # the layer's colour on the map (a feature's own `colour` property wins)
    build: LayerFunction
    shown: bool = True  # on when the map opens


LAYERS: tuple[Layer, ...] = (
    Layer("warning_areas", {"zh": "预警区域", "en": "Warning areas"}, "#d62020", incident_layers.warning_areas),
    Layer("incidents", {"zh": "事件", "en": "Incidents"}, "#b3261e", incident_layers.incidents),
    Layer("task_locations", {"zh": "任务位置", "en": "Task locations"}, "#1e63d6", incident_layers.task_locations),
)


def layers_for(session: Session, reader: str | None, layers: tuple[Layer, ...] = LAYERS) -> dict[str, Any]:
    """Every layer, built for `reader`: what `GET /api/map/layers` answers."""
    return {"layers": [{"key": layer.key, "title": layer.title, "colour": layer.colour, "shown": layer.shown,
                        "data": collection(layer.build(session, reader))} for layer in layers]}


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
