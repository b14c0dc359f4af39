"""Draw an incident's timeline (the output of `core.incidents.reads.timeline()`) as an SVG picture.

A pure function of its input: stages are bands on a time axis, each step is one row from when it was
assigned to when it was completed (or now), its due time is marked, overdue steps are red, an acknowledgement
is a tick and a level change a vertical line. All text is escaped; colours are presentation attributes (no
`style`), so the picture works inline under a strict Content-Security-Policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from core.plans.wording import Wording
from core.platform.clock import as_utc
from process_defs.schema import LEVEL_NUMERALS, STAGE_NAMES

LABEL_WIDTH = 300
RIGHT_PAD = 28
STAGE_BAND = 22
AXIS_BAND = 22
ROW_HEIGHT = 34
BOTTOM_PAD = 18
TICK_STEPS = [timedelta(seconds=s) for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                                             10800, 21600, 43200, 86400, 172800, 604800)]
STAGE_FILLS = {"warning": "#fff4d6", "response": "#fde0dc", "recovery": "#e0f2e9", "learning": "#e3ecfa"}
COLOURS = {"done": "#2e7d32", "open": "#1565c0", "overdue": "#c62828", "action": "#00838f", "closed": "#9e9e9e"}
OPEN = {"pending", "assigned", "acknowledged", "escalated"}
# The hover text's labels in the reader's language: Chinese as an emergency office words a task's times, English
# as the statuses read (a status's own name is core.plans.wording.STATUS_NAMES, the badge's).
LABELS: dict[str, dict[str, str]] = {
    "assigned": {"zh": "分派时间", "en": "assigned"},
    "acknowledged": {"zh": "签收时间", "en": "acknowledged"},
    "completed": {"zh": "完成时间", "en": "completed"},
    "due": {"zh": "办理期限", "en": "due"},
    "overdue": {"zh": "已超时", "en": "overdue"},
    "none": {"zh": "—", "en": "-"},
    "ongoing": {"zh": "至今", "en": "-"},
    "colon": {"zh": "：", "en": ": "},
}


def _utc(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def _text(value: Any, lang: str) -> str:
    if isinstance(value, Mapping):
        first, second = ("en", "zh") if lang.startswith("en") else ("zh", "en")
        return str(value.get(first) or value.get(second) or "")
    return "" if value is None else str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _width_limit(text: str, pixels: float, size: float) -> int:
    """How many characters of `text` fit in `pixels` (CJK characters are about twice as wide)."""
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    average = size * (0.55 + 0.45 * (wide / len(text) if text else 0))
    return max(4, int(pixels / average))


def _tick_step(span: timedelta, wanted: int = 6) -> timedelta:
    for step in TICK_STEPS:
        if span / step <= wanted:
            return step
    return TICK_STEPS[-1]


def _tick_label(moment: datetime, step: timedelta, span: timedelta, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    if span >= timedelta(days=2):
        return local.strftime("%m-%d %H:%M")
    if step < timedelta(minutes=1):
        return local.strftime("%H:%M:%S")
    return local.strftime("%H:%M")


def _fmt(moment: datetime | None, zone: tzinfo, missing: str = "-") -> str:
    return moment.astimezone(zone).strftime("%m-%d %H:%M:%S") if moment else missing


def _language(lang: str) -> str:
    """The reader's language for the picture's own words: English when asked, Chinese otherwise (a reader of
    both reads the Chinese)."""
    return "en" if lang.startswith("en") else "zh"


def _level(key: Any, lang: str) -> str:
    """A level as the reader writes it: `Ⅱ级` in Chinese, `II` in English."""
    value = "" if key is None else str(key)
    return Wording(lang).level_short(value) if lang == "zh" and value in LEVEL_NUMERALS else value


def render_timeline(  # noqa: C901  (one drawing pass; its branches are the picture's parts)
    data: Mapping[str, Any],
    *,
    lang: str = "zh",
    now: datetime | None = None,
    tz: tzinfo | str = "Asia/Shanghai",
    department_names: Mapping[str, str] | None = None,
    width: int = 960,
) -> str:
    """The timeline as an `<svg>` element (a string, every text escaped)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    words = _language(lang)

    def word(key: str) -> str:
        return LABELS[key][words]

    wording = Wording(words)

    def status_word(value: str) -> str:
        # The status's name (core.plans.wording.STATUS_NAMES); in English lower case, inside the step's title line.
        shown = wording.status(value)
        return shown[:1].lower() + shown[1:] if words == "en" else shown
    names = department_names or {}
    moment_now = _utc(now) or datetime.now(UTC)
    steps: Sequence[Mapping[str, Any]] = data.get("steps") or []
    stages: Sequence[Mapping[str, Any]] = data.get("stages") or []
    changes: Sequence[Mapping[str, Any]] = data.get("level_changes") or []

    start = _utc(data.get("opened_at"))
    seen = [t for step in steps for t in (_utc(step.get(k)) for k in
                                          ("assigned_at", "acknowledged_at", "completed_at", "escalated_at")) if t]
    seen += [t for t in (_utc(c.get("at")) for c in changes) if t]
    seen += [t for s in stages for t in (_utc(s.get("entered_at")), _utc(s.get("left_at"))) if t]
    if start is None:
        start = min(seen) if seen else moment_now
    end = _utc(data.get("closed_at")) or moment_now
    end = max([end, *seen])
    if end - start < timedelta(seconds=30):
        end = start + timedelta(seconds=30)
    span = end - start

    x0, x1 = float(LABEL_WIDTH), float(width - RIGHT_PAD)
    top = STAGE_BAND + AXIS_BAND
    rows_height = max(1, len(steps)) * ROW_HEIGHT
    height = top + rows_height + BOTTOM_PAD

    def x(moment: datetime) -> float:
        share = (moment - start) / span
        return round(x0 + max(0.0, min(1.0, share)) * (x1 - x0), 1)

    code = escape(str(data.get("code") or ""))
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{code}" '
        f'font-family="system-ui, -apple-system, \'PingFang SC\', \'Noto Sans CJK SC\', sans-serif">',
        f'<rect class="timeline-bg" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]

    # Stages: coloured bands behind the rows, named at the top.
    for stage in stages:
        entered = _utc(stage.get("entered_at"))
        if entered is None:
            continue
        left = _utc(stage.get("left_at")) or end
        sx, ex = x(entered), x(left)
        key = str(stage.get("stage") or "")
        label = _text(STAGE_NAMES.get(key, {"zh": key, "en": key}), lang)
        out.append(f'<g class="stage" data-stage="{escape(key)}">'
                   f'<rect x="{sx}" y="0" width="{max(1.0, ex - sx)}" height="{top + rows_height}" '
                   f'fill="{STAGE_FILLS.get(key, "#eeeeee")}"/>')
        if ex - sx > 24:
            out.append(f'<text x="{sx + 4}" y="15" font-size="12" font-weight="600" fill="#444">'
                       f'{escape(_clip(label, _width_limit(label, ex - sx - 6, 12)))}</text>')
        stage_tip = (f"{label}{word('colon')}{_fmt(entered, zone)} – "
                     f"{_fmt(_utc(stage.get('left_at')), zone, word('ongoing'))}")
        out.append(f"<title>{escape(stage_tip)}</title></g>")

    # Time axis with grid lines.
    step = _tick_step(span)
    tick = datetime.fromtimestamp(math.ceil(start.timestamp() / step.total_seconds()) * step.total_seconds(), UTC)
    out.append('<g class="axis">')
    out.append(f'<line x1="{x0}" y1="{top}" x2="{x1}" y2="{top}" stroke="#888" stroke-width="1"/>')
    while tick < end:
        tx = x(tick)
        out.append(f'<line x1="{tx}" y1="{top - 4}" x2="{tx}" y2="{top + rows_height}" stroke="#000" '
                   f'stroke-opacity="0.12" stroke-width="1"/>')
        out.append(f'<text x="{tx}" y="{top - 7}" font-size="10" text-anchor="middle" fill="#555">'
                   f'{escape(_tick_label(tick, step, span, zone))}</text>')
        tick += step
    out.append("</g>")

    # One row per step.
    for index, item in enumerate(steps):
        y = top + index * ROW_HEIGHT
        mid = y + ROW_HEIGHT / 2
        key = str(item.get("step") or "")
        status = str(item.get("status") or "")
        department = str(item.get("department") or "")
        overdue = bool(item.get("overdue"))
        title = _text(item.get("title"), lang) or key
        dept_name = names.get(department, department)
        assigned = _utc(item.get("assigned_at"))
        acknowledged = _utc(item.get("acknowledged_at"))
        completed = _utc(item.get("completed_at"))
        due = _utc(item.get("due_at"))
        escalated = _utc(item.get("escalated_at"))
        attempt = int(item.get("attempt") or 1)
        classes = ["row", f"status-{status}"] + (["overdue"] if overdue else [])
        out.append(f'<g class="{" ".join(escape(c) for c in classes)}" data-step="{escape(key)}" '
                   f'data-department="{escape(department)}" data-status="{escape(status)}" '
                   f'data-overdue="{"true" if overdue else "false"}">')
        none = word("none")
        tip = (f"{title} · {dept_name} · {status_word(status)}" + (f" · {word('overdue')}" if overdue else "")
               + f" · {word('assigned')} {_fmt(assigned, zone, none)}"
               f" · {word('acknowledged')} {_fmt(acknowledged, zone, none)}"
               f" · {word('completed')} {_fmt(completed, zone, none)} · {word('due')} {_fmt(due, zone, none)}")
        out.append(f"<title>{escape(tip)}</title>")
        if index % 2:
            out.append(f'<rect x="0" y="{y}" width="{x0}" height="{ROW_HEIGHT}" fill="#f6f7f9"/>')
        again = (f"（第{attempt}次）" if words == "zh" else f" (#{attempt})") if attempt > 1 else ""
        shown = title + again
        out.append(f'<text class="label" x="8" y="{y + 14}" font-size="12" fill="{"#b71c1c" if overdue else "#222"}">'
                   f'{escape(_clip(shown, _width_limit(shown, LABEL_WIDTH - 14, 12)))}</text>')
        out.append(f'<text class="dept" x="8" y="{y + 28}" font-size="10" fill="#666">'
                   f'{escape(_clip(dept_name, _width_limit(dept_name, LABEL_WIDTH - 14, 10)))}</text>')
        if assigned is not None:
            if completed is not None:
                finish = completed
            elif status in OPEN:
                finish = end
            else:
                finish = assigned
            if overdue:
                colour = COLOURS["overdue"]
            elif item.get("kind") == "action":
                colour = COLOURS["action"]
            elif status == "completed":
                colour = COLOURS["done"]
            elif status in OPEN:
                colour = COLOURS["open"]
            else:
                colour = COLOURS["closed"]
            bx, ex = x(assigned), x(finish)
            out.append(f'<rect class="bar" x="{bx}" y="{mid - 6}" width="{max(3.0, ex - bx)}" height="12" rx="3" '
                       f'fill="{colour}"/>')
        else:
            out.append(f'<text x="{x0 + 4}" y="{mid + 4}" font-size="10" fill="#888">'
                       f'{escape(status_word(status))}</text>')
        if due is not None:
            if due <= end:
                dx = x(due)
                out.append(f'<line class="due" x1="{dx}" y1="{y + 3}" x2="{dx}" y2="{y + ROW_HEIGHT - 3}" '
                           f'stroke="{COLOURS["overdue"] if overdue else "#333"}" stroke-width="2" '
                           f'stroke-dasharray="3 2"/>')
            else:
                # Due after the right edge of the picture: an arrow head at the edge.
                out.append(f'<path class="due due-later" d="M {x1 + 4} {mid - 6} L {x1 + 12} {mid} '
                           f'L {x1 + 4} {mid + 6} Z" fill="#333"/>')
        if acknowledged is not None:
            ax = x(acknowledged)
            out.append(f'<path class="ack" d="M {ax - 4} {mid - 11} L {ax - 1} {mid - 8} L {ax + 5} {mid - 15}" '
                       f'fill="none" stroke="#1b5e20" stroke-width="2"/>')
        if escalated is not None:
            ex2 = x(escalated)
            out.append(f'<circle class="escalated" cx="{ex2}" cy="{mid}" r="4" fill="#ffffff" '
                       f'stroke="{COLOURS["overdue"]}" stroke-width="2"/>')
        out.append("</g>")
    if not steps:
        out.append(f'<text x="{x0 + 4}" y="{top + 20}" font-size="12" fill="#888">–</text>')

    for change in changes:
        at = _utc(change.get("at"))
        if at is None:
            continue
        cx = x(at)
        label = f"{_level(change.get('from'), words)}→{_level(change.get('to'), words)}"
        out.append(f'<g class="level-change"><line x1="{cx}" y1="{STAGE_BAND}" x2="{cx}" '
                   f'y2="{top + rows_height + 4}" stroke="#6a1b9a" stroke-width="2"/>'
                   f'<text x="{cx + 3}" y="{top + rows_height + 13}" font-size="10" fill="#6a1b9a">'
                   f'{escape(label)}</text>'
                   f'<title>{escape(label)}{word("colon")}{escape(str(change.get("reason") or ""))}</title></g>')
    out.append("</svg>")
    return "".join(out)
