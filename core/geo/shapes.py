"""Places on the map: GeoJSON points and polygons in WGS-84 inside China, GCJ-02 input converted, and areas (a
CAP warning's polygons and circles) that say which places lie inside them.

Baton stores WGS-84 (GeoJSON's own datum, longitude first). Chinese map services (高德, 腾讯, Google's China
tiles) publish GCJ-02 (国测局坐标, "Mars coordinates"), shifted by up to some hundreds of metres; a source that says
its coordinates are GCJ-02 is converted with `prcoords` (public domain; its inverse is iterated to about 1e-9°).
Every parse refuses, with a stable reason: what is not GeoJSON, a type other than Point or Polygon, a coordinate
that is not a finite number, a position outside China's bounds, a ring that does not close (its last position is
not its first) or has fewer than four positions, a polygon that crosses itself.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import prcoords

from core.platform.errors import BatonError

if TYPE_CHECKING:
    from shapely.geometry import Polygon
    from shapely.geometry.base import BaseGeometry

# shapely (and numpy under it, about 0.2 s) is imported where a geometry is made or measured, not with this module:
# every Baton process imports it through the engine, and most never touch a geometry.

# China's bounds, islands included (曾母暗沙 ~3.9°N, 漠河 ~53.6°N, 帕米尔 ~73.5°E, 抚远 ~135.1°E), with a margin.
MIN_LON, MIN_LAT, MAX_LON, MAX_LAT = 73.0, 3.5, 135.5, 54.0
MAX_POSITIONS = 10_000  # a polygon of a district's outline fits; a whole country's coastline does not
EARTH_RADIUS_KM = 6371.0088
MAX_RADIUS_KM = 2000.0


class Datum(StrEnum):
    wgs84 = "wgs84"  # GPS, GeoJSON, 天地图 (CGCS2000 differs by centimetres)
    gcj02 = "gcj02"  # 国测局坐标: 高德, 腾讯, Google's China maps


class GeometryInvalid(BatonError):
    """A place that cannot be used; `reason` is a stable code (details: {"reason": …})."""

    code = "geometry_invalid"
    http_status = 422

    def __init__(self, reason: str, message: str, zh: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason
        self.zh = zh


def _refuse(reason: str, en: str, zh: str) -> GeometryInvalid:
    return GeometryInvalid(reason, en, zh)


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 (lon, lat) of a GCJ-02 position (iterated to about 1e-9°, well under a metre)."""
    result = prcoords.gcj_wgs_bored((lat, lon), False)
    return float(result.lon), float(result.lat)


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 (lon, lat) of a WGS-84 position (the published forward transformation)."""
    result = prcoords.wgs_gcj((lat, lon), False)
    return float(result.lon), float(result.lat)


def in_china(lon: float, lat: float) -> bool:
    return MIN_LON <= lon <= MAX_LON and MIN_LAT <= lat <= MAX_LAT


@dataclass(frozen=True)
class Place:
    """A checked WGS-84 geometry, with a representative point inside it and its bounding box."""

    shape: BaseGeometry

    @property
    def geojson(self) -> dict[str, Any]:
        from shapely.geometry import mapping

        return dict(mapping(self.shape))

    def text(self) -> str:
        """The GeoJSON as stored: compact, coordinates rounded to 1e-7° (about a centimetre)."""
        return json.dumps(_rounded(self.geojson), separators=(",", ":"))

    @property
    def point(self) -> tuple[float, float]:
        """(lon, lat) of the point, or of a point surely inside the polygon."""
        from shapely.geometry import Point

        spot = self.shape if isinstance(self.shape, Point) else self.shape.representative_point()
        return round(float(spot.x), 7), round(float(spot.y), 7)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat)."""
        min_lon, min_lat, max_lon, max_lat = self.shape.bounds
        return float(min_lon), float(min_lat), float(max_lon), float(max_lat)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 7)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _position(value: Any, datum: Datum) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise _refuse("bad_position", "a position is [longitude, latitude]", "坐标应为[经度, 纬度]")
    numbers = []
    for item in value[:2]:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _refuse("not_a_number", "a coordinate must be a number", "坐标必须是数字")
        if not math.isfinite(item):
            raise _refuse("not_finite", "a coordinate must be a finite number (not NaN or Infinity)",
                          "坐标必须是有限数值（不能是 NaN 或无穷大）")
        numbers.append(float(item))
    lon, lat = numbers
    if not in_china(lon, lat):
        hint = " (longitude first: [lon, lat])" if in_china(lat, lon) else ""
        raise _refuse("outside_china",
                      f"position {lon:g}, {lat:g} lies outside China's bounds ({MIN_LON:g}–{MAX_LON:g}°E, "
                      f"{MIN_LAT:g}–{MAX_LAT:g}°N){hint}",
                      f"坐标（{lon:g}, {lat:g}）不在中国境内"
                      f"（东经{MIN_LON:g}–{MAX_LON:g}°，北纬{MIN_LAT:g}–{MAX_LAT:g}°）"
                      + ("，经度应在前" if hint else ""))
    if datum is Datum.gcj02:
        lon, lat = gcj02_to_wgs84(lon, lat)
    # 1e-7° (about a centimetre): what is stored, so that a place read back and checked again is the same place.
    return round(lon, 7), round(lat, 7)


def _ring(value: Any, datum: Datum, which: str) -> list[tuple[float, float]]:
    if not isinstance(value, list) or len(value) < 4:
        raise _refuse("too_few_positions", f"the polygon's {which} ring needs at least four positions (closed)",
                      "多边形的环至少需要四个坐标（首尾相同）")
    raw = [value[0], value[-1]]
    if not all(isinstance(p, list | tuple) for p in raw) or list(raw[0][:2]) != list(raw[1][:2]):
        raise _refuse("ring_not_closed", f"the polygon's {which} ring does not close: its last position must be "
                      "its first", "多边形未闭合：最后一个坐标应与第一个相同")
    return [_position(p, datum) for p in value]


def from_geojson(value: str | Mapping[str, Any], *, datum: Datum = Datum.wgs84) -> Place:
    """A Point or Polygon (a GeoJSON geometry, or a Feature holding one) checked and in WGS-84."""
    from shapely.geometry import Point, Polygon
    from shapely.validation import explain_validity

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _refuse("not_geojson", "not GeoJSON (not JSON)", "不是 GeoJSON（无法解析）") from None
    if not isinstance(value, Mapping):
        raise _refuse("not_geojson", "not a GeoJSON geometry", "不是 GeoJSON 几何对象")
    if value.get("type") == "Feature":
        return from_geojson(value.get("geometry") or {}, datum=datum)
    kind, coordinates = value.get("type"), value.get("coordinates")
    if kind == "Point":
        lon, lat = _position(coordinates, datum)
        return Place(Point(lon, lat))
    if kind == "Polygon":
        if not isinstance(coordinates, list) or not coordinates:
            raise _refuse("too_few_positions", "a polygon needs an outer ring", "多边形缺少外环")
        if sum(len(r) if isinstance(r, list) else 0 for r in coordinates) > MAX_POSITIONS:
            raise _refuse("too_many_positions", f"a polygon has at most {MAX_POSITIONS} positions",
                          f"多边形最多{MAX_POSITIONS}个坐标")
        rings = [_ring(r, datum, "outer" if i == 0 else "inner") for i, r in enumerate(coordinates)]
        polygon = Polygon(rings[0], rings[1:])
        if not polygon.is_valid:
            raise _refuse("invalid_polygon", f"the polygon is not valid: {explain_validity(polygon)}",
                          "多边形无效（边自相交或环重叠）")
        return Place(polygon)
    shown = str(kind)[:40]
    raise _refuse("unsupported_type", f"a place is a GeoJSON Point or Polygon, not {shown}",
                  f"位置应为 GeoJSON 的 Point 或 Polygon，而不是 {shown}")


def from_point(lon: float, lat: float, *, datum: Datum = Datum.wgs84) -> Place:
    """A point from a longitude and a latitude (as a spreadsheet's two columns give them)."""
    from shapely.geometry import Point

    x, y = _position([lon, lat], datum)
    return Place(Point(x, y))


def stored(text: str) -> Place:
    """A place as Baton stored it (already checked)."""
    from shapely.geometry import shape

    return Place(shape(json.loads(text)))


# -- areas: a CAP warning's polygons and circles ----------------------------------------------------------------
def haversine_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_km: float

    def covers(self, place: Place) -> bool:
        """Whether any of the place lies within the circle (a polygon: its nearest point)."""
        from shapely.geometry import Point
        from shapely.ops import nearest_points

        centre = Point(self.lon, self.lat)
        near = place.shape if isinstance(place.shape, Point) else nearest_points(place.shape, centre)[0]
        if place.shape.covers(centre):
            return True
        return haversine_km(self.lon, self.lat, float(near.x), float(near.y)) <= self.radius_km

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        dlat = self.radius_km / 111.19
        dlon = self.radius_km / max(111.19 * math.cos(math.radians(self.lat)), 1e-6)
        return self.lon - dlon, self.lat - dlat, self.lon + dlon, self.lat + dlat


def cap_circle(text: str) -> tuple[float, float, float] | None:
    """A CAP circle, `lat,lon radius_km`, as numbers; None when it is not one (no bounds checked)."""
    try:
        point, radius = text.split()
        lat, lon = (float(v) for v in point.split(","))
        value = (lat, lon, float(radius))
    except ValueError:
        return None
    return value if all(math.isfinite(v) for v in value) else None


def cap_polygon(text: str) -> list[tuple[float, float]] | None:
    """A CAP polygon, `lat,lon lat,lon …`, as (lat, lon) pairs; None when it is not one (no bounds checked)."""
    points = []
    try:
        for pair in text.split():
            lat, lon = (float(v) for v in pair.split(","))
            points.append((lat, lon))
    except ValueError:
        return None
    return points if len(points) >= 3 and all(math.isfinite(v) for p in points for v in p) else None


@dataclass(frozen=True)
class Area:
    """Where a warning applies: its polygons and circles (WGS-84, as CAP 1.2 requires). A place is inside when it
    lies in (or, for a polygon, meets) any of them."""

    polygons: list[Polygon] = field(default_factory=list)
    circles: list[Circle] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.polygons or self.circles)

    def covers(self, place: Place) -> bool:
        return (any(p.intersects(place.shape) for p in self.polygons)
                or any(c.covers(place) for c in self.circles))

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        boxes = [tuple(float(v) for v in p.bounds) for p in self.polygons] + [c.bounds for c in self.circles]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                max(b[3] for b in boxes))


def parse_cap_area(*, polygons: Iterable[str] = (), circles: Iterable[str] = ()) -> Area:
    """An area from CAP `<polygon>` (`lat,lon …`, closed) and `<circle>` (`lat,lon radius_km`) texts; refuses
    what is not one, lies outside China or does not close."""
    shapes: list[Polygon] = []
    for text in polygons:
        pairs = cap_polygon(text)
        if pairs is None:
            raise _refuse("bad_cap_polygon", "a CAP polygon is 'lat,lon lat,lon …' (at least four pairs, closed)",
                          "CAP 多边形应为“纬度,经度 纬度,经度 …”（至少四对，首尾相同）")
        place = from_geojson({"type": "Polygon", "coordinates": [[[lon, lat] for lat, lon in pairs]]})
        assert place.shape.geom_type == "Polygon"
        shapes.append(place.shape)
    rounds: list[Circle] = []
    for text in circles:
        values = cap_circle(text)
        if values is None:
            raise _refuse("bad_cap_circle", "a CAP circle is 'lat,lon radius_km'", "CAP 圆应为“纬度,经度 半径（千米）”")
        lat, lon, radius = values
        from_point(lon, lat)
        if not 0 <= radius <= MAX_RADIUS_KM:
            raise _refuse("bad_radius", f"a circle's radius is 0 to {MAX_RADIUS_KM:g} km",
                          f"圆的半径应在0到{MAX_RADIUS_KM:g}千米之间")
        rounds.append(Circle(lat, lon, radius))
    return Area(shapes, rounds)


CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"


def cap_area_texts(element: ElementTree.Element) -> tuple[list[str], list[str]]:
    """The `<circle>` and `<polygon>` texts of the first `<area>` under a CAP `<info>` (or of every info under an
    `<alert>`, each once: the Chinese and English infos repeat the same area)."""
    ns = {"cap": CAP_NAMESPACE}
    infos = element.findall("cap:info", ns) if element.tag.endswith("alert") else [element]
    circles: list[str] = []
    polygons: list[str] = []
    for info in infos:
        for area in info.findall("cap:area", ns):
            circles += [c.text or "" for c in area.findall("cap:circle", ns) if (c.text or "") not in circles]
            polygons += [p.text or "" for p in area.findall("cap:polygon", ns) if (p.text or "") not in polygons]
    return circles, polygons


def cap_alert_area(xml: str) -> Area:
    """Where a stored CAP alert applies: its polygons and circles, each that can be read (one that cannot is left
    out rather than the whole area refused: the alert was already released)."""
    try:
        root = ElementTree.fromstring(xml.encode("utf-8"))
    except (ElementTree.ParseError, UnicodeError):
        return Area()
    circles, polygons = cap_area_texts(root)
    shapes: list[Polygon] = []
    rounds: list[Circle] = []
    for text in polygons:
        with contextlib.suppress(GeometryInvalid):
            shapes += parse_cap_area(polygons=[text]).polygons
    for text in circles:
        with contextlib.suppress(GeometryInvalid):
            rounds += parse_cap_area(circles=[text]).circles
    return Area(shapes, rounds)
