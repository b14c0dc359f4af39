"""The timeline picture's words (its hover texts and the status shown where a step has no bar) in the reader's
language: Chinese statuses and labels for a Chinese reader, the English ones for an English reader."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.incidents.models import IncidentStatus, TaskStatus
from core.learning.timeline_svg import render_timeline
from core.plans.wording import STATUS_NAMES, Wording

T0 = datetime(2026, 7, 20, 2, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=40)
NS = "{http://www.w3.org/2000/svg}"
ENGLISH_WORDS = re.compile(r"\b(completed|assigned|acknowledged|skipped|due|escalated|pending|cancelled|handed|"
                           r"overdue)\b", re.IGNORECASE)


def step(key: str, status: str, **times: Any) -> dict[str, Any]:
    row = {"task_id": key, "step": key, "title": {"zh": f"步骤{key} <&>", "en": f"Step {key} <&>"},
           "stage": "response", "department": "water_affairs", "kind": "human", "attempt": 1, "status": status,
           "assigned_at": None, "acknowledged_at": None, "completed_at": None, "due_at": None,
           "escalated_at": None, "escalated_to": None, "overdue": False}
    row.update(times)
    return row


def timeline() -> dict[str, Any]:
    steps = [
        step("a", "completed", assigned_at=T0, acknowledged_at=T0 + timedelta(minutes=2),
             completed_at=T0 + timedelta(minutes=9), due_at=T0 + timedelta(minutes=30)),
        step("b", "assigned", assigned_at=T0 + timedelta(minutes=5), due_at=T0 + timedelta(minutes=15),
             overdue=True),
        step("c", "acknowledged", assigned_at=T0, acknowledged_at=T0 + timedelta(minutes=1)),
        step("d", "escalated", assigned_at=T0, escalated_at=T0 + timedelta(minutes=20), overdue=True),
        step("e", "skipped"),
        step("f", "pending"),
        step("g", "cancelled", assigned_at=T0),
        step("h", "handed_back", assigned_at=T0, attempt=2),
    ]
    return {"incident_id": "i", "code": "FLD-1", "opened_at": T0, "closed_at": None,
            "stages": [{"stage": "warning", "entered_at": T0, "left_at": T0 + timedelta(minutes=3)},
                       {"stage": "response", "entered_at": T0 + timedelta(minutes=3), "left_at": None}],
            "steps": steps,
            "level_changes": [{"from": "IV", "to": "II", "actor": "user:x", "reason": "<rain>",
                               "at": T0 + timedelta(minutes=3)}]}


def words_of(svg: str) -> list[str]:
    """Every text a reader sees (the texts drawn and the hover titles), parsed: the SVG is well-formed."""
    tree = ET.fromstring(svg)
    return [text for element in tree.iter() if element.tag in (f"{NS}text", f"{NS}title")
            for text in ["".join(element.itertext())] if text]


def titles_of(svg: str) -> dict[str, str]:
    tree = ET.fromstring(svg)
    return {str(g.get("data-step")): "".join(t.itertext()) for g in tree.iter(f"{NS}g") if g.get("data-step")
            for t in g.iter(f"{NS}title")}


def test_every_task_and_incident_status_is_named_in_both_languages() -> None:
    """One table names a status for the badges, the after-action report and this timeline (STATUS_NAMES)."""
    for status in [*TaskStatus, *IncidentStatus]:
        assert STATUS_NAMES[status.value]["zh"] and STATUS_NAMES[status.value]["en"]
        assert not re.search(r"[A-Za-z]", STATUS_NAMES[status.value]["zh"])
        assert Wording("zh").status(status.value) == STATUS_NAMES[status.value]["zh"]


def test_a_chinese_reader_reads_no_english_status_or_label() -> None:
    svg = render_timeline(timeline(), lang="zh", now=NOW, department_names={"water_affairs": "市水务局"})
    words = words_of(svg)
    english = [text for text in words if ENGLISH_WORDS.search(text)]
    assert english == []
    titles = titles_of(svg)
    assert "已完成" in titles["a"] and "分派时间 07-20 10:00:00" in titles["a"]
    assert "签收时间 07-20 10:02:00" in titles["a"]
    assert "完成时间 07-20 10:09:00" in titles["a"] and "办理期限 07-20 10:30:00" in titles["a"]
    assert "已分派" in titles["b"] and "已超时" in titles["b"] and "签收时间 —" in titles["b"]
    assert "已签收" in titles["c"] and "已升级督办" in titles["d"] and "已取消" in titles["g"]
    assert "不适用" in titles["e"] and "待分派" in titles["f"] and "已退回" in titles["h"]
    # A step without a bar shows its status in words; a second attempt and a level change read as Chinese.
    assert "不适用" in words and "待分派" in words
    assert any(text.startswith("步骤h <&>（第2次）") for text in words)
    assert "Ⅳ级→Ⅱ级" in words and "Ⅳ级→Ⅱ级：<rain>" in words
    assert "预警：07-20 10:00:00 – 07-20 10:03:00" in words and "响应：07-20 10:03:00 – 至今" in words
    # Every text stays escaped.
    assert "步骤a &lt;&amp;&gt;" in svg and "&lt;rain&gt;" in svg and "<rain>" not in svg


def test_an_english_reader_reads_the_english_statuses() -> None:
    svg = render_timeline(timeline(), lang="en", now=NOW, department_names={"water_affairs": "Water Affairs"})
    titles = titles_of(svg)
    assert titles["a"] == ("Step a <&> · Water Affairs · completed · assigned 07-20 10:00:00"
                           " · acknowledged 07-20 10:02:00 · completed 07-20 10:09:00 · due 07-20 10:30:00")
    assert "assigned · overdue · assigned 07-20 10:05:00 · acknowledged - ·" in titles["b"]
    assert " · skipped · " in titles["e"] and " · handed back · " in titles["h"]
    words = words_of(svg)
    assert "skipped" in words and "IV→II" in words and not any(re.search(r"[\u4e00-\u9fff]", t) for t in words)


@pytest.mark.parametrize("lang", ["zh-en", "zh-CN"])
def test_other_reader_languages_read_the_chinese(lang: str) -> None:
    svg = render_timeline(timeline(), lang=lang, now=NOW)
    assert not [text for text in words_of(svg) if ENGLISH_WORDS.search(text)]
