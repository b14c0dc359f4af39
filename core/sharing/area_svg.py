"""The map of the public warnings' areas, drawn as inline SVG from their CAP `<area>` (circles and polygons).

A plain equirectangular drawing with a scale bar: enough to show where each warning applies without a tile server
(issue 18 brings Leaflet). Presentation attributes only (no `style`), so the pages' CSP holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

from core.geo.shapes import cap_circle, cap_polygon

WIDTH, HEIGHT, MARGIN = 640, 360, 24
KM_PER_DEGREE = 111.32
FILLS = {"blue": "#1e63d6", "yellow": "#e0b400", "orange": "#f07800", "red": "#d62020"}


@dataclass(frozen=True)
class Shape:
    """One warning's area: circles `(lat, lon, radius_km)` and polygons (lists of `(lat, lon)`)."""

    label: str
    colour: str | None
    circles: list[tuple[float, float, float]]
    polygons: list[list[tuple[float, float]]]


# One home for reading a CAP circle or polygon: core.geo.shapes (lenient here: an unreadable one is not drawn).
def shape(label: str, colour: str | None, circles: list[str], polygons: list[str]) -> Shape:
    return Shape(label, colour, [c for c in map(cap_circle, circles) if c is not None],
                 [p for p in map(cap_polygon, polygons) if p is not None])


def draw(shapes: list[Shape], title: str) -> Markup | None:
    """The SVG of the areas, or None when no warning has a circle or polygon (its area is words only)."""
    boxes = []
    for item in shapes:
        for lat, lon, radius in item.circles:
            dlat = radius / KM_PER_DEGREE
            dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
            boxes += [(lat - dlat, lon - dlon), (lat + dlat, lon + dlon)]
        for polygon in item.polygons:
            boxes += polygon
    if not boxes:
        return None
    south, north = min(p[0] for p in boxes), max(p[0] for p in boxes)
    west, east = min(p[1] for p in boxes), max(p[1] for p in boxes)
    kx = math.cos(math.radians((south + north) / 2))
    span_x, span_y = max((east - west) * kx, 1e-6), max(north - south, 1e-6)
    scale = min((WIDTH - 2 * MARGIN) / span_x, (HEIGHT - 2 * MARGIN) / span_y)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        x = MARGIN + ((lon - west) * kx) * scale + ((WIDTH - 2 * MARGIN) - span_x * scale) / 2
        y = MARGIN + (north - lat) * scale + ((HEIGHT - 2 * MARGIN) - span_y * scale) / 2
        return round(x, 1), round(y, 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="warning-map" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#f4f6f8" stroke="#c8cdd2"/>']
    for number, item in enumerate(shapes, start=1):
        fill = FILLS.get(item.colour or "", "#777777")
        label = escape(item.label)
        for lat, lon, radius in item.circles:
            x, y = xy(lat, lon)
            r = round(radius / KM_PER_DEGREE * scale, 1)
            parts.append(f'<circle cx="{x}" cy="{y}" r="{r}" fill="{fill}" fill-opacity="0.3" stroke="{fill}" '
                         f'stroke-width="2"><title>{label}</title></circle>')
            parts.append(f'<text x="{x}" y="{y}" text-anchor="middle" dominant-baseline="middle" '
                         f'font-size="16" font-weight="bold" fill="#222222">{number}</text>')
        for polygon in item.polygons:
            points = " ".join(f"{x},{y}" for x, y in (xy(lat, lon) for lat, lon in polygon))
            parts.append(f'<polygon points="{points}" fill="{fill}" fill-opacity="0.3" stroke="{fill}" '
                         f'stroke-width="2"><title>{label}</title></polygon>')
            x, y = xy(sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon))
            parts.append(f'<text x="{x}" y="{y}" text-anchor="middle" font-size="16" font-weight="bold" '
                         f'fill="#222222">{number}</text>')
    bar_km = _nice(span_x * KM_PER_DEGREE / 4)
    bar = round(bar_km / KM_PER_DEGREE * scale, 1)
    parts.append(f'<line x1="{MARGIN}" y1="{HEIGHT - 10}" x2="{MARGIN + bar}" y2="{HEIGHT - 10}" stroke="#222222" '
                 f'stroke-width="2"/><text x="{MARGIN + bar + 6}" y="{HEIGHT - 6}" font-size="12" '
                 f'fill="#222222">{bar_km:g} km</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(km: float) -> float:
    """A round length for the scale bar (1, 2 or 5 times a power of ten)."""
    if km <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(km))
    return next(step * power for step in (5, 2, 1) if step * power <= km)
