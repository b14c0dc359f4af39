"""core.geo: GeoJSON places inside China, GCJ-02 → WGS-84, and CAP areas (polygon and circle)."""

from __future__ import annotations

import json
import math

import pytest

from core.geo.shapes import (
    Datum,
    GeometryInvalid,
    from_geojson,
    from_point,
    gcj02_to_wgs84,
    haversine_km,
    parse_cap_area,
    stored,
    wgs84_to_gcj02,
)

# Published test pairs of an independent implementation (eviltransform's suite): wgs lat, lon → gcj lat, lon.
KNOWN = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), KNOWN)
def test_gcj02_known_pairs(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert lon == pytest.approx(glon, abs=1e-9) and lat == pytest.approx(glat, abs=1e-9)
    lon, lat = gcj02_to_wgs84(glon, glat)
    assert haversine_km(lon, lat, wlon, wlat) < 0.001  # under a metre
    # and a GCJ-02 source's point is stored converted
    place = from_point(glon, glat, datum=Datum.gcj02)
    assert haversine_km(*place.point, wlon, wlat) < 0.001
    assert haversine_km(glon, glat, wlon, wlat) > 0.1  # the shift is real (hundreds of metres)


def test_point_and_polygon_round_trip() -> None:
    point = from_geojson('{"type": "Point", "coordinates": [113.2644, 23.1291]}')
    assert point.point == (113.2644, 23.1291)
    ring = [[113.2, 23.1], [113.3, 23.1], [113.3, 23.2], [113.2, 23.2], [113.2, 23.1]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    polygon = from_geojson(feature)
    again = stored(polygon.text())
    assert again.shape.equals(polygon.shape)
    assert json.loads(polygon.text())["type"] == "Polygon"
    assert polygon.bounds == (113.2, 23.1, 113.3, 23.2)
    assert polygon.shape.covers(stored(json.dumps({"type": "Point", "coordinates": list(polygon.point)})).shape)


@pytest.mark.parametrize(("value", "reason"), [
    ({"type": "Point", "coordinates": [2.35, 48.85]}, "outside_china"),  # Paris
    ({"type": "Point", "coordinates": [23.1291, 113.2644]}, "outside_china"),  # lat, lon swapped
    ({"type": "Point", "coordinates": [math.nan, 23.1]}, "not_finite"),
    ({"type": "Point", "coordinates": [math.inf, 23.1]}, "not_finite"),
    ({"type": "Point", "coordinates": ["113", 23.1]}, "not_a_number"),
    ({"type": "Point", "coordinates": [113.2]}, "bad_position"),
    ({"type": "Polygon", "coordinates": [[[113.2, 23.1], [113.3, 23.1], [113.3, 23.2], [113.2, 23.2]]]},
     "ring_not_closed"),
    ({"type": "Polygon", "coordinates": [[[113.2, 23.1], [113.3, 23.1], [113.2, 23.1]]]}, "too_few_positions"),
    ({"type": "Polygon", "coordinates": [[[113.2, 23.1], [113.3, 23.2], [113.3, 23.1], [113.2, 23.2],
                                          [113.2, 23.1]]]}, "invalid_polygon"),  # a bow tie
    ({"type": "LineString", "coordinates": [[113.2, 23.1], [113.3, 23.1]]}, "unsupported_type"),
    ("{not json", "not_geojson"),
    ([1, 2], "not_geojson"),
])
def test_bad_places_are_refused_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(GeometryInvalid) as caught:
        from_geojson(value)  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert caught.value.code == "geometry_invalid" and caught.value.zh


def test_outside_china_says_the_bounds() -> None:
    with pytest.raises(GeometryInvalid, match="outside China's bounds"):
        from_point(-74.0, 40.7)


def test_cap_area_polygon_and_circle() -> None:
    area = parse_cap_area(polygons=["23.1,113.2 23.1,113.3 23.2,113.3 23.2,113.2 23.1,113.2"],
                          circles=["30.0,120.0 10"])
    assert area.covers(from_point(113.25, 23.15))
    assert not area.covers(from_point(113.35, 23.15))
    assert area.covers(from_point(120.05, 30.05))  # about 7 km from the centre
    assert not area.covers(from_point(120.2, 30.0))  # about 19 km
    # a polygon entry that only touches the area is inside
    assert area.covers(from_geojson({"type": "Polygon", "coordinates": [[[113.29, 23.19], [113.5, 23.19],
                                                                         [113.5, 23.5], [113.29, 23.19]]]}))
    min_lon, _, _, max_lat = area.bounds or (0, 0, 0, 0)
    assert min_lon == 113.2 and max_lat > 30.08


@pytest.mark.parametrize(("polygons", "circles", "reason"), [
    (["23.1,113.2 23.1,113.3 23.2,113.3 23.2,113.2"], [], "ring_not_closed"),
    (["nonsense"], [], "bad_cap_polygon"),
    ([], ["48.8,2.3 5"], "outside_china"),
    ([], ["30.0,120.0 -1"], "bad_radius"),
    ([], ["30.0,120.0"], "bad_cap_circle"),
])
def test_bad_cap_areas(polygons: list[str], circles: list[str], reason: str) -> None:
    with pytest.raises(GeometryInvalid) as caught:
        parse_cap_area(polygons=polygons, circles=circles)
    assert caught.value.reason == reason
