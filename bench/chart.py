"""The benchmark's picture: latencies against their targets, and stock Prefect beside Baton (log scale)."""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

from bench.targets import LATENCY_P95


def bar_chart_svg(results: dict[str, Any]) -> str:
    rows: list[tuple[str, float, float, float | None]] = []  # label, p50, p95, target
    for key, goal in LATENCY_P95.items():
        if key in results:
            rows.append((f"Baton {key.replace('_', ' ')}", results[key]["p50"], results[key]["p95"], goal))
    for key, row in results.get("stock_prefect", {}).items():
        rows.append((f"Prefect {key}", row["p50"], row["p95"], None))
    width, left, row_h, top = 900, 330, 34, 50
    height = top + row_h * len(rows) + 50
    low, high = 0.005, max([r[2] for r in rows] + [1.0]) * 1.5

    def x(value: float) -> float:
        value = min(max(value, low), high)
        return left + (width - left - 30) * (math.log10(value) - math.log10(low)) / (
            math.log10(high) - math.log10(low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="24" font-size="15" font-weight="bold">Trigger and handoff latency '
             f'(seconds, log scale; bar = p50, whisker = p95, red tick = target)</text>']
    tick = low
    while tick <= high:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top - 8}" x2="{x(tick):.1f}" y2="{height - 40}" '
                     f'stroke="#ddd"/><text x="{x(tick):.1f}" y="{height - 24}" text-anchor="middle">{tick:g}</text>')
        tick *= 10
    for i, (label, p50, p95, target) in enumerate(rows):
        y = top + i * row_h
        colour = "#2b6cb0" if label.startswith("Baton") else "#a0aec0"
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 5}" width="{max(x(p50) - left, 1):.1f}" height="18" '
                     f'fill="{colour}"/>')
        parts.append(f'<line x1="{x(p50):.1f}" y1="{y + 14}" x2="{x(p95):.1f}" y2="{y + 14}" stroke="#1a202c"/>'
                     f'<line x1="{x(p95):.1f}" y1="{y + 8}" x2="{x(p95):.1f}" y2="{y + 20}" stroke="#1a202c"/>')
        if target is not None:
            parts.append(f'<line x1="{x(target):.1f}" y1="{y + 2}" x2="{x(target):.1f}" y2="{y + 26}" '
                         f'stroke="#e53e3e" stroke-width="2"/>')
    parts.append("</svg>")
    return "\n".join(parts)
