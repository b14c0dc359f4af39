"""The map's data (一张图): its layers as GeoJSON, built for the reader with the scope of every other read, and the
offline base layer (the city's district boundaries). For logged-in users only, as every route but the public
warnings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep
from core.maps import layers

router = APIRouter(tags=["map"])


@router.get("/api/map/layers")
def map_layers(principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Every layer of the map as a GeoJSON FeatureCollection (`data`), with its key, title (zh, en), colour and
    whether it is shown when the map opens: open incidents, warning areas in force, places reported on tasks, the
    registers, and the open inspections and rectifications (整改) of the prevention campaigns; a department gets
    only the incidents it is on, the fields it may read and its own prevention work."""
    return layers.layers_for(session, principal.user)


@router.get("/api/map/boundaries")
def map_boundaries(principal: CurrentUser) -> dict[str, Any]:
    """The base layer: the city's district boundaries as a GeoJSON FeatureCollection (properties `name`,
    `name_en`, `adcode`)."""
    return layers.boundaries()
