"""GeoJSON features for the map's layers (RFC 7946: WGS-84, longitude before latitude).

A CAP circle has no GeoJSON geometry: it is a Point whose `radius_m` property the page draws as a circle.
"""

from __future__ import annotations

import math
from typing import Any

Feature = dict[str, Any]


def valid(lat: Any, lon: Any) -> bool:
    """Whether (lat, lon) is a finite point on the globe (stored values are checked, but old rows may not be)."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (lat, lon)) \
        and -90 <= lat <= 90 and -180 <= lon <= 180


def point(lat: float, lon: float, **properties: Any) -> Feature:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": properties}


def circle(lat: float, lon: float, radius_km: float, **properties: Any) -> Feature:
    return point(lat, lon, radius_m=round(radius_km * 1000, 1), **properties)


def polygon(points: list[tuple[float, float]], **properties: Any) -> Feature:
    """A polygon from (lat, lon) points, closed if it is not."""
    ring = [[lon, lat] for lat, lon in points]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}


def collection(features: list[Feature]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}
