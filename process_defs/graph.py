"""Draw a plan's step graph: Mermaid text and a self-contained SVG (no graphviz needed).

Everything here is pure: functions take a validated `IncidentType` and return strings or layout data.

The SVG layout is layered: the four stages are vertical bands from left to right; inside a stage a step's
column is its dependency depth counting only dependencies in the same stage (a step that depends on nothing
in its stage is in the first column), so every arrow points right.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from process_defs.schema import STAGE_NAMES, STAGES, DepartmentRegistry, IncidentType, Step, StepKind

OPS: dict[str, str] = {"eq": "=", "ne": "≠", "gt": ">", "ge": "≥", "lt": "<", "le": "≤", "in": "∈", "truthy": ""}

# Mermaid words that cannot be node ids.
_MERMAID_RESERVED = {"end", "graph", "flowchart", "subgraph", "direction", "style", "class", "classdef", "click",
                     "linkstyle", "default", "call", "href"}


def condition_text(step: Step) -> str | None:
    """The step's output condition as `step.field > 0`, or None."""
    cond = step.when.condition if step.when else None
    if cond is None:
        return None
    if cond.op == "truthy":
        return f"{cond.step}.{cond.field}"
    value = ", ".join(map(str, cond.value)) if isinstance(cond.value, list) else str(cond.value)
    if cond.op == "in":
        value = "{" + value + "}"
    return f"{cond.step}.{cond.field} {OPS[cond.op]} {value}"


def stage_depths(plan: IncidentType) -> dict[str, int]:
    """step key -> dependency depth inside its stage (0 for a step with no dependency in its own stage)."""
    depths: dict[str, int] = {}
    for stage in STAGES:
        steps = {s.key: s for s in plan.stages.get(stage).steps}

        def depth(key: str, trail: frozenset[str], steps: dict[str, Step] = steps) -> int:
            if key in depths:
                return depths[key]
            inner = [d for d in steps[key].depends_on if d in steps and d not in trail and d != key]
            value = 1 + max((depth(d, trail | {key}) for d in inner), default=-1)
            depths[key] = value
            return value

        for key in steps:
            depth(key, frozenset())
    return depths


# --------------------------------------------------------------------------------------------- Mermaid


def mermaid_id(key: str) -> str:
    return f"{key}_" if key.lower() in _MERMAID_RESERVED else key


def mermaid_text(text: str) -> str:
    """Text safe inside a double-quoted Mermaid label."""
    out = []
    for char in text:
        if char in '"#<>&':
            out.append(f"#{ord(char)};")
        elif char in "\r\n\t":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def mermaid(plan: IncidentType, lang: str = "zh") -> str:
    """A Mermaid `flowchart LR`: one subgraph per stage, an edge per dependency, action and gate steps styled."""
    lines = [
        "flowchart LR",
        f"  %% {mermaid_text(plan.name.zh)} / {mermaid_text(plan.name.en)} ({plan.key} v{plan.version})",
    ]
    action_ids: list[str] = []
    gate_ids: list[str] = []
    conditional_ids: list[str] = []
    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        title = STAGE_NAMES[stage]["en" if lang.startswith("en") else "zh"]
        lines.append(f'  subgraph stage_{stage}["{mermaid_text(title)} ({stage})"]')
        if not stage_def.steps:
            lines.append(f'    stage_{stage}_empty(["{"no steps" if lang.startswith("en") else "无步骤"}"])')
        for step in stage_def.steps:
            node = mermaid_id(step.key)
            parts = [mermaid_text(step.title.get(lang)), mermaid_text(step.key)]
            extras = []
            if step.kind is StepKind.action:
                extras.append(f"action: {step.action}")
                action_ids.append(node)
            if step.min_level != "IV":
                extras.append(f"≥{step.min_level}")
            cond = condition_text(step)
            if cond is not None:
                extras.append(f"if {cond}")
                conditional_ids.append(node)
            if stage_def.gate == step.key:
                extras.append("GATE")
                gate_ids.append(node)
            if extras:
                parts.append(mermaid_text(" · ".join(extras)))
            label = "<br/>".join(parts)
            if stage_def.gate == step.key:
                lines.append(f'    {node}{{{{"{label}"}}}}')
            elif step.kind is StepKind.action:
                lines.append(f'    {node}[["{label}"]]')
            else:
                lines.append(f'    {node}["{label}"]')
        lines.append("  end")
    for _, step in plan.steps():
        for dep in step.depends_on:
            lines.append(f"  {mermaid_id(dep)} --> {mermaid_id(step.key)}")
    lines.append("  classDef action fill:#e3f2fd,stroke:#1565c0,color:#0d47a1")
    lines.append("  classDef gate stroke:#c62828,stroke-width:3px")
    lines.append("  classDef conditional stroke-dasharray:5 3")
    for name, ids in (("action", action_ids), ("gate", gate_ids), ("conditional", conditional_ids)):
        if ids:
            lines.append(f"  class {','.join(ids)} {name}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- SVG layout

BOX_W = 210
BOX_H = 76
COL_GAP = 56
ROW_GAP = 22
BAND_PAD = 20
BAND_HEADER = 46
TITLE_H = 58
LEGEND_H = 40
MARGIN = 16
FONT = 13
SMALL = 11


@dataclass(frozen=True)
class Box:
    key: str
    stage: str
    column: int
    row: int
    x: float
    y: float
    w: float = BOX_W
    h: float = BOX_H

    @property
    def left(self) -> tuple[float, float]:
        return self.x, self.y + self.h / 2

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.w, self.y + self.h / 2


@dataclass(frozen=True)
class Band:
    stage: str
    x: float
    w: float
    columns: int


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[str, Box] = field(default_factory=dict)
    bands: list[Band] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    """(dependency, dependent) pairs between drawn boxes."""


def layout(plan: IncidentType) -> Layout:
    """Positions of stage bands and step boxes; columns by in-stage dependency depth, rows by barycentre."""
    depths = stage_depths(plan)
    order = {step.key: i for i, (_, step) in enumerate(plan.steps())}
    rows: dict[str, int] = {}
    grid: dict[str, list[list[str]]] = {}
    for stage in STAGES:
        steps = plan.stages.get(stage).steps
        ncols = 1 + max((depths[s.key] for s in steps), default=0)
        columns: list[list[str]] = [[] for _ in range(ncols)]
        by_key = {s.key: s for s in steps}
        for s in steps:
            columns[depths[s.key]].append(s.key)
        for c, keys in enumerate(columns):
            if c > 0:  # put a step level with the average of its in-stage dependencies to limit crossings
                centres = {key: _barycentre(by_key[key], by_key, rows, order) for key in keys}
                keys.sort(key=centres.__getitem__)
            for r, key in enumerate(keys):
                rows[key] = r
        grid[stage] = columns

    max_rows = max((len(col) for cols in grid.values() for col in cols), default=0)
    body_h = max(max_rows, 1) * (BOX_H + ROW_GAP) - ROW_GAP
    top = MARGIN + TITLE_H
    result = Layout(width=0, height=top + BAND_HEADER + body_h + 2 * BAND_PAD + LEGEND_H + MARGIN)
    x = float(MARGIN)
    for stage in STAGES:
        columns = grid[stage]
        band_w = len(columns) * (BOX_W + COL_GAP) - COL_GAP + 2 * BAND_PAD
        result.bands.append(Band(stage=stage, x=x, w=band_w, columns=len(columns)))
        for c, keys in enumerate(columns):
            col_h = len(keys) * (BOX_H + ROW_GAP) - ROW_GAP
            y0 = top + BAND_HEADER + BAND_PAD + (body_h - col_h) / 2  # centre each column vertically
            for r, key in enumerate(keys):
                result.boxes[key] = Box(key=key, stage=stage, column=c, row=r,
                                        x=x + BAND_PAD + c * (BOX_W + COL_GAP), y=y0 + r * (BOX_H + ROW_GAP))
        x += band_w + COL_GAP / 2
    result.width = x - COL_GAP / 2 + MARGIN
    result.edges = [(dep, step.key) for _, step in plan.steps() for dep in step.depends_on if dep in result.boxes]
    return result


def _barycentre(step: Step, stage_steps: dict[str, Step], rows: dict[str, int], order: dict[str, int]
                ) -> tuple[float, int]:
    parents = [rows[d] for d in step.depends_on if d in rows and d in stage_steps]
    return (sum(parents) / len(parents) if parents else float("inf")), order[step.key]


# --------------------------------------------------------------------------------------------- SVG drawing


def char_width(char: str, size: float) -> float:
    """Rough advance width: CJK and other wide characters are square, Latin about 0.6 of the size."""
    return size if unicodedata.east_asian_width(char) in ("W", "F") else size * 0.6


def text_width(text: str, size: float) -> float:
    return sum(char_width(c, size) for c in text)


def fit_lines(text: str, size: float, width: float, max_lines: int = 2) -> list[str]:
    """Break `text` into at most `max_lines` lines of at most `width`, ending with … when it does not fit."""
    lines: list[str] = []
    current = ""
    for char in text:
        if text_width(current + char, size) > width:
            lines.append(current)
            current = char.lstrip()
            if len(lines) == max_lines:
                break
        else:
            current += char
    else:
        lines.append(current)
        return [line for line in lines if line] or [""]
    last = lines[-1]
    while last and text_width(last + "…", size) > width:
        last = last[:-1]
    lines[-1] = last + "…"
    return lines


def xml_text(text: str) -> str:
    """Escape text for an XML element, dropping characters XML 1.0 forbids."""
    return escape(_xml_chars(text))


def xml_attr(text: str) -> str:
    """A quoted, escaped XML attribute value."""
    return quoteattr(_xml_chars(text))


def _xml_chars(text: str) -> str:
    return "".join(c for c in text if c in "\t\n\r" or (0x20 <= ord(c) <= 0xD7FF) or (0xE000 <= ord(c) <= 0xFFFD)
                   or 0x10000 <= ord(c) <= 0x10FFFF)


_STYLE = """
text { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       fill: #1a1a1a; }
.title { font-size: 18px; font-weight: bold; }
.subtitle { font-size: 12px; fill: #555; }
.band { fill: #f5f7fa; stroke: #d0d7de; }
.band.alt { fill: #eef2f6; }
.band-title { font-size: 15px; font-weight: bold; }
.band-note { font-size: 11px; fill: #555; }
.box { fill: #ffffff; stroke: #57606a; stroke-width: 1.2; }
.action .box { fill: #e3f2fd; stroke: #1565c0; }
.conditional .box { stroke-dasharray: 5 3; }
.gate .box { stroke: #c62828; stroke-width: 3; }
.step-title { font-size: 13px; }
.step-key { font-size: 11px; fill: #444; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.step-meta { font-size: 10px; fill: #666; }
.badge { font-size: 10px; font-weight: bold; fill: #c62828; }
.edge { fill: none; stroke: #6e7781; stroke-width: 1.3; }
.edge.cross { stroke-dasharray: 4 3; }
.legend { font-size: 11px; fill: #444; }
"""


def svg(plan: IncidentType, lang: str = "zh", registry: DepartmentRegistry | None = None) -> str:
    """The step graph as a standalone SVG document (UTF-8 text)."""
    en = lang.startswith("en")
    lay = layout(plan)
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
        f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" role="img" aria-label={xml_attr(plan.name.get(lang))}>',
        f"<title>{xml_text(f'{plan.name.zh} / {plan.name.en} ({plan.key})')}</title>",
        f"<style>{_STYLE}</style>",
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6e7781"/></marker>',
        "</defs>",
        f'<rect x="0" y="0" width="{lay.width:.0f}" height="{lay.height:.0f}" fill="#ffffff"/>',
        f'<text class="title" x="{MARGIN}" y="{MARGIN + 20}">{xml_text(plan.name.zh)}  {xml_text(plan.name.en)}</text>',
        f'<text class="subtitle" x="{MARGIN}" y="{MARGIN + 42}">'
        + xml_text(f"{plan.key} · {plan.category.value} · v{plan.version} · {plan.code_prefix} · "
                   + ("default level " if en else "默认级别 ") + plan.default_level)
        + "</text>",
    ]
    band_top = MARGIN + TITLE_H
    band_h = lay.height - band_top - LEGEND_H - MARGIN
    for i, band in enumerate(lay.bands):
        stage_def = plan.stages.get(band.stage)
        name = STAGE_NAMES[band.stage]
        out.append(f'<g class="stage" id={xml_attr("stage-" + band.stage)}>')
        out.append(f'<rect class="band{" alt" if i % 2 else ""}" x="{band.x:.1f}" y="{band_top}" '
                   f'width="{band.w:.1f}" height="{band_h:.1f}" rx="8"/>')
        heading = f"{name['en']}" if en else f"{name['zh']} {name['en']}"
        out.append(f'<text class="band-title" x="{band.x + BAND_PAD:.1f}" y="{band_top + 22}">'
                   f"{xml_text(heading)}</text>")
        note = f"{len(stage_def.steps)} " + ("steps" if en else "步")
        if stage_def.gate:
            note += (" · gate: " if en else " · 关卡: ") + stage_def.gate
        out.append(f'<text class="band-note" x="{band.x + BAND_PAD:.1f}" y="{band_top + 38}">{xml_text(note)}</text>')
        out.append("</g>")

    # Edges under the boxes.
    for dep, key in lay.edges:
        a, b = lay.boxes[dep], lay.boxes[key]
        (x1, y1), (x2, y2) = a.right, b.left
        bend = max(24.0, (x2 - x1) / 2)
        cross = " cross" if a.stage != b.stage else ""
        out.append(f'<path class="edge{cross}" data-from={xml_attr(dep)} data-to={xml_attr(key)} '
                   f'd="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2 - 1:.1f},{y2:.1f}" '
                   'marker-end="url(#arrow)"/>')

    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        for step in stage_def.steps:
            out.extend(_svg_box(step, lay.boxes[step.key], stage_def.gate == step.key, lang, registry))

    legend_y = lay.height - MARGIN - LEGEND_H / 2
    x = float(MARGIN)
    items = [("box", "human step" if en else "人工步骤", ""),
             ("action", "automated action" if en else "自动动作", ""),
             ("gate", "gate (ends the stage)" if en else "关卡（完成即结束本阶段）", ""),
             ("conditional", "only if a condition holds" if en else "满足条件才启动", "")]
    for cls, label, _ in items:
        group = "" if cls == "box" else cls
        out.append(f'<g class="{group}"><rect class="box" x="{x:.1f}" y="{legend_y - 9:.1f}" width="26" height="18" '
                   'rx="4"/></g>')
        out.append(f'<text class="legend" x="{x + 32:.1f}" y="{legend_y + 4:.1f}">{xml_text(label)}</text>')
        x += 32 + text_width(label, 11) + 24
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_box(step: Step, box: Box, gate: bool, lang: str, registry: DepartmentRegistry | None) -> list[str]:
    classes = ["step", step.kind.value]
    if gate:
        classes.append("gate")
    if step.when and step.when.condition:
        classes.append("conditional")
    badges = []
    if gate:
        badges.append("GATE" if lang.startswith("en") else "关卡")
    if step.min_level != "IV":
        badges.append(f"≥{step.min_level}")
    badge = " ".join(badges)
    # The badge sits in the top right corner; the first title line must stay clear of it.
    title_lines = fit_lines(step.title.get(lang), FONT, BOX_W - 20 - (text_width(badge, 10) if badge else 0),
                            max_lines=2)
    out = [f'<g class="{" ".join(classes)}" id={xml_attr("step-" + step.key)} data-key={xml_attr(step.key)}>',
           f"<title>{xml_text(_tooltip(step, lang, registry))}</title>",
           f'<rect class="box" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w}" height="{box.h}" rx="6"/>']
    if len(title_lines) == 1:
        ys = [box.y + 24]
        key_y = box.y + 44
    else:
        ys = [box.y + 18, box.y + 34]
        key_y = box.y + 51
    for y, line in zip(ys, title_lines, strict=False):
        out.append(f'<text class="step-title" x="{box.x + 8:.1f}" y="{y:.1f}">{xml_text(line)}</text>')
    out.append(f'<text class="step-key" x="{box.x + 8:.1f}" y="{key_y:.1f}">{xml_text(step.key)}</text>')
    meta = []
    if registry is not None:
        dept = registry.department(step.department)
        meta.append(dept.name.get(lang) if dept else step.department)
    else:
        meta.append(step.department)
    if step.kind is StepKind.action and step.action:
        meta.append(step.action)
    meta_text = fit_lines(" · ".join(meta), 10, BOX_W - 16, max_lines=1)[0]
    out.append(f'<text class="step-meta" x="{box.x + 8:.1f}" y="{box.y + box.h - 8:.1f}">{xml_text(meta_text)}</text>')
    if badge:
        out.append(f'<text class="badge" x="{box.x + box.w - 6 - text_width(badge, 10):.1f}" y="{box.y + 13:.1f}">'
                   f"{xml_text(badge)}</text>")
    out.append("</g>")
    return out


def _tooltip(step: Step, lang: str, registry: DepartmentRegistry | None) -> str:
    parts = [f"{step.title.get(lang)} ({step.key})"]
    dept = registry.department(step.department) if registry else None
    parts.append(dept.name.get(lang) if dept else step.department)
    if step.depends_on:
        parts.append("depends on: " + ", ".join(step.depends_on))
    cond = condition_text(step)
    if cond:
        parts.append("only if " + cond)
    return " | ".join(parts)
