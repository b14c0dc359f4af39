"""The report's SVG pictures: stage durations, handoff waits against deadlines, and the timeline. Every text in
them is escaped here, where it is built, so the templates may mark them safe."""

from __future__ import annotations

from html import escape

from core.incidents.models import TaskStatus
from core.learning.after_action.compute import OPEN
from core.learning.after_action.model import AfterActionReport
from core.learning.after_action.text import ReportText
from core.learning.timeline_svg import render_timeline
from core.plans.store import registry

FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'PingFang SC', 'Microsoft YaHei', system-ui, sans-serif"
STAGE_COLOURS = {"warning": "#e0a800", "response": "#d84315", "recovery": "#2e7d32", "learning": "#1565c0"}
RED, GREEN, BLUE, GREY, INK = "#c62828", "#2e7d32", "#1565c0", "#9e9e9e", "#222222"


def fit(text: str, pixels: float, size: float) -> str:
    """`text` cut to what fits in `pixels` at font `size` (CJK characters count about double)."""
    if not text:
        return ""
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    average = size * (0.55 + 0.45 * wide / len(text))
    limit = max(3, int(pixels / average))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_open(width: int, height: int, label: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css_class)}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" font-family="{FONT}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')


def stage_chart(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    """Each stage's duration as a horizontal bar (a stage still running is drawn lighter)."""
    label_w, right, row, top = 150, 150, 30, 10
    stages = [s for s in report.stages if s.duration_s is not None]
    height = top * 2 + max(1, len(stages)) * row
    longest = max((s.duration_s or 0.0 for s in stages), default=0.0) or 1.0
    out = [svg_open(width, height, rt.t({"zh": "各阶段用时", "en": "Stage durations"}), "stage-chart")]
    for index, item in enumerate(stages):
        y = top + index * row
        length = (width - label_w - right) * (item.duration_s or 0.0) / longest
        colour = STAGE_COLOURS.get(item.stage, GREY)
        name = rt.stage(item.stage)
        out.append(f'<g class="bar" data-stage="{escape(item.stage)}" data-seconds="{item.duration_s}">')
        out.append(f'<text x="8" y="{y + 19}" font-size="13" fill="{INK}">{escape(fit(name, label_w - 12, 13))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 6}" width="{max(2.0, round(length, 1))}" height="16" rx="3" '
                   f'fill="{colour}" fill-opacity="{0.45 if item.open else 1}"/>')
        note = rt.dur(item.duration_s) + (" …" if item.open else "")
        out.append(f'<text x="{label_w + max(2.0, length) + 6:.1f}" y="{y + 19}" font-size="12" fill="{INK}">'
                   f'{escape(note)}</text>')
        out.append(f"<title>{escape(name)}: {escape(note)}</title></g>")
    if not stages:
        out.append(f'<text x="{label_w}" y="{top + 18}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)


def waits_chart(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    """Each handoff's wait as a share of its deadline: the dashed line is the deadline (100%); the dark part of a
    bar is the wait for acknowledgement, the whole bar the wait for completion (or the time open so far, or until
    it was handed back or cancelled: grey). Red bars missed their deadline. One scale for all, so a 20-minute and
    a 7-day deadline compare."""
    label_w, right, row, top, axis = 300, 170, 26, 8, 22
    cap = 2.0
    rows = [h for h in report.handoffs if h.deadline_s]
    plot = width - label_w - right
    height = top + axis + max(1, len(rows)) * row + 8
    out = [svg_open(width, height, rt.t({"zh": "交接等待与时限", "en": "Handoff waits against deadlines"}),
                    "waits-chart")]

    def x(share: float) -> float:
        return round(label_w + plot * min(cap, max(0.0, share)) / cap, 1)

    for tick in (0.0, 0.5, 1.0, 1.5, 2.0):
        tx = x(tick)
        dashed = ' stroke-dasharray="5 3"' if tick == 1.0 else ""
        out.append(f'<line x1="{tx}" y1="{top + axis - 4}" x2="{tx}" y2="{height - 6}" stroke="#000" '
                   f'stroke-opacity="{0.5 if tick == 1.0 else 0.1}" stroke-width="{2 if tick == 1.0 else 1}"{dashed}/>')
        label = f"{tick * 100:.0f}%" + ("+" if tick == cap else "")
        out.append(f'<text x="{tx}" y="{top + axis - 8}" font-size="11" text-anchor="middle" fill="#555">'
                   f'{escape(label)}</text>')
    for index, item in enumerate(rows):
        y = top + axis + index * row
        deadline = item.deadline_s or 1.0
        waited = item.held_s
        if item.outcome == "missed":
            colour = RED
        elif item.status == TaskStatus.completed:
            colour = GREEN
        elif item.status in OPEN:
            colour = BLUE
        else:
            colour = GREY  # handed back or cancelled in time
        title = rt.t(item.title) + (f" (#{item.attempt})" if item.attempt > 1 else "")
        out.append(f'<g class="wait" data-step="{escape(item.step)}" data-attempt="{item.attempt}" '
                   f'data-outcome="{escape(item.outcome)}">')
        if index % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#f6f7f9"/>')
        out.append(f'<text x="8" y="{y + 12}" font-size="11.5" fill="{RED if item.outcome == "missed" else INK}">'
                   f'{escape(fit(title, label_w - 14, 11.5))}</text>')
        out.append(f'<text x="8" y="{y + 23}" font-size="9.5" fill="#666">'
                   f'{escape(fit(rt.dept(item.department), label_w - 14, 9.5))}</text>')
        if waited is not None:
            share = waited / deadline
            out.append(f'<rect x="{label_w}" y="{y + 7}" width="{max(2.0, x(share) - label_w):.1f}" height="12" rx="2" '
                       f'fill="{colour}" fill-opacity="{0.55 if item.status in OPEN else 0.85}"/>')
            if share > cap:
                out.append(f'<path d="M {x(cap) + 2} {y + 7} L {x(cap) + 9} {y + 13} L {x(cap) + 2} {y + 19} Z" '
                           f'fill="{colour}"/>')
        if item.ack_wait_s is not None:
            ack_w = max(1.5, x(item.ack_wait_s / deadline) - label_w)
            out.append(f'<rect class="ack" x="{label_w}" y="{y + 10}" width="{ack_w:.1f}" height="6" fill="#0b2e13" '
                       f'fill-opacity="0.6"/>')
        note = f"{rt.dur(waited)} / {rt.dur(item.deadline_s)}"
        out.append(f'<text x="{width - right + 14}" y="{y + 17}" font-size="11" fill="{INK}">{escape(note)}</text>')
        out.append(f"<title>{escape(title)} · {escape(rt.dept(item.department))} · {escape(note)}</title></g>")
    if not rows:
        out.append(f'<text x="{label_w}" y="{top + axis + 16}" font-size="12" fill="#888">–</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_picture(report: AfterActionReport, rt: ReportText, *, width: int = 960) -> str:
    names = {d.key: rt.t(d.name) for d in registry().departments}
    now = report.generated_at
    if report.time_basis == "plan":
        now = report.opened_at + (report.generated_at - report.opened_at) * report.clock_speed
    return render_timeline(report.timeline, lang=rt.lang, now=now, tz=rt.zone, department_names=names, width=width)
