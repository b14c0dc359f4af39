"""An upward report as a document: a standalone HTML page and a Word document (.docx, made with python-docx) in
the layout of a government report (公文: red header, 签发人, 主送机关, numbered sections, 落款). Reports go to
Chinese authorities, so the document is in Chinese; a drill says so on its first line."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Pt, RGBColor
from docx.text.paragraph import Paragraph

from core.plans.store import registry
from core.platform.settings import get_settings
from core.platform.templating import render
from core.reporting.models import UpwardReport
from process_defs.schema import CASUALTY_KINDS, CASUALTY_NAMES, LEVEL_NAMES, STAGE_NAMES

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
NUMERALS = "一二三四五六七八九十"
RED = RGBColor(0xC0, 0x00, 0x00)
TITLE_FONT, BODY_FONT, HEADING_FONT = "方正小标宋简体", "仿宋_GB2312", "黑体"
# What XML 1.0 (and so a Word document) cannot hold: control characters other than tab and line breaks.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` without the characters a Word document cannot hold (an incident's title may carry any)."""
    return NOT_XML.sub("", text)


def _moment(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(ZoneInfo(get_settings().timezone)).strftime("%Y年%m月%d日%H时%M分")


def _date(value: datetime | None) -> str:
    if value is None:
        return "—"
    local = value.astimezone(ZoneInfo(get_settings().timezone))
    return f"{local.year}年{local.month}月{local.day}日"


def _name(key: str | None) -> str:
    if not key:
        return "—"
    if key.startswith("user:"):
        return key[5:]
    department = registry().department(key)
    return department.name.zh if department else key


@dataclass
class DocumentView:
    """What both documents show, in Chinese."""

    heading: str
    issue: str
    title: str
    drill: bool
    recipients: str
    signed_by: str
    drafted_by: str
    sender: str
    date: str
    text: str
    facts: list[tuple[str, str]]
    casualties: list[tuple[str, int, int]]  # name, this report, the checked figure before it
    casualty_reason: str | None
    actions: list[str]
    figures: list[tuple[str, str, str]]  # step, item, value with unit


def view(report: UpwardReport, recipients: list[str], moment: datetime | None) -> DocumentView:
    content: dict[str, Any] = report.content
    incident = content["incident"]
    previous = content.get("checked_casualties") or {}
    issue = {"initial": "初报", "final": "终报"}.get(report.kind, f"续报第{report.number}期")
    department = registry().department(report.department)
    duty = department.duty_phone if department else None
    return DocumentView(
        heading="突发事件信息报告", issue=issue, title=content["title"]["zh"], drill=bool(incident.get("drill")),
        recipients="、".join(_name(r) for r in recipients) + "：", signed_by=_name(report.signed_by),
        drafted_by=_name(report.edited_by or "baton"), sender=_name(report.department), date=_date(moment),
        text=str(content.get("text") or ""),
        facts=[("事件编号", incident["code"]), ("事件类型", incident["type_name"]["zh"]),
               ("发生地点", incident.get("location") or "—"), ("发生时间", _moment(incident["opened_at"])),
               ("响应级别", LEVEL_NAMES[content["level"]]["zh"]), ("所处阶段", STAGE_NAMES[content["stage"]]["zh"]),
               ("信息截至", _moment(content.get("as_of")))] + ([("值班电话", duty)] if duty else []),
        casualties=[(CASUALTY_NAMES[k]["zh"], int(content["casualties"][k]), int(previous.get(k, 0)))
                    for k in CASUALTY_KINDS],
        casualty_reason=content.get("casualty_reason"),
        actions=[f"{a['title']['zh']}（{_name(a['department'])}，{_moment(a['completed_at'])}完成）"
                 for a in content.get("actions") or []],
        figures=[(f["title"]["zh"], f["label"]["zh"], f"{f['value']:g}{f['unit'] or ''}")
                 for f in content.get("figures") or []])


def render_html(document: DocumentView) -> str:
    return render("reports/upward_report.html", "zh", doc=document)


# -- Word ----------------------------------------------------------------------------------------------------
def _run(paragraph: Paragraph, text: str) -> Any:
    return paragraph.add_run(xml_safe(text))


def _font(run: Any, name: str, size: float, *, bold: bool = False, colour: RGBColor | None = None) -> None:
    run.font.name = name
    run.font.size = Pt(size)
    run.font.bold = bold
    if colour is not None:
        run.font.color.rgb = colour
    # Word picks the font of Chinese text from the East Asian slot, which `font.name` does not set.
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), name)


def _line(paragraph: Paragraph, text: str, font: str = BODY_FONT, size: float = 16, *, bold: bool = False,
          colour: RGBColor | None = None, align: Any = None, indent: bool = False) -> Paragraph:
    run = _run(paragraph, text)
    _font(run, font, size, bold=bold, colour=colour)
    if align is not None:
        paragraph.alignment = align
    if indent:
        paragraph.paragraph_format.first_line_indent = Pt(size * 2)
    return paragraph


def _red_rule(paragraph: Paragraph) -> None:
    """The red line under a government document's header (版头分隔线)."""
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for name, value in (("w:val", "single"), ("w:sz", "18"), ("w:space", "1"), ("w:color", "C00000")):
        bottom.set(qn(name), value)
    borders.append(bottom)
    paragraph._p.get_or_add_pPr().append(borders)


def render_docx(document: DocumentView) -> bytes:
    doc = Document()
    add = doc.add_paragraph
    if document.drill:
        _line(add(), "【演练】", HEADING_FONT, 14, colour=RED)
    _line(add(), document.heading, TITLE_FONT, 26, bold=True, colour=RED, align=WD_ALIGN_PARAGRAPH.CENTER)
    issue = _line(add(), f"（{document.issue}）", BODY_FONT, 16, align=WD_ALIGN_PARAGRAPH.CENTER)
    _red_rule(issue)
    _line(add(), f"签发人：{document.signed_by}", BODY_FONT, 16, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _line(add(), document.title, TITLE_FONT, 22, align=WD_ALIGN_PARAGRAPH.CENTER)
    _line(add(), document.recipients)
    _line(add(), document.text, indent=True)

    sections = 0

    def section(text: str) -> None:
        nonlocal sections
        _line(add(), f"{NUMERALS[sections]}、{text}", HEADING_FONT, 16, indent=True)
        sections += 1

    def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        grid = doc.add_table(rows=1, cols=len(header))
        grid.style = "Table Grid"
        grid.alignment = WD_TABLE_ALIGNMENT.CENTER
        for cell, text in zip(grid.rows[0].cells, header, strict=True):
            _font(_run(cell.paragraphs[0], text), HEADING_FONT, 12)
        for row in rows:
            cells = grid.add_row().cells
            for cell, text in zip(cells, row, strict=True):
                _font(_run(cell.paragraphs[0], text), BODY_FONT, 12)

    section("基本情况")
    for label, value in document.facts:
        _line(add(), f"{label}：{value}", indent=True)
    section("人员伤亡及转移安置情况")
    table(("项目", "本次报告（人）", "上次核报（人）"),
          [(name, str(now), str(before)) for name, now, before in document.casualties])
    if document.casualty_reason:
        _line(add(), f"核减说明：{document.casualty_reason}", indent=True)
    section("已采取的处置措施")
    if document.actions:
        for index, action in enumerate(document.actions, start=1):
            _line(add(), f"（{index}）{action}", indent=True)
    else:
        _line(add(), "暂无已完成的处置措施。", indent=True)
    if document.figures:
        section("有关数据")
        table(("措施", "项目", "数值"), list(document.figures))
    _line(add(), "")
    _line(add(), document.sender, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _line(add(), document.date, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _line(add(), f"拟稿：{document.drafted_by}　　签发：{document.signed_by}", BODY_FONT, 14)
    doc.core_properties.title = xml_safe(document.title)
    doc.core_properties.subject = f"{document.heading}（{document.issue}）"
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
