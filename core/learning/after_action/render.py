"""The report rendered: the templates' context (report, words, pictures) and the printable HTML document."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from core.learning.after_action.charts import stage_chart, timeline_picture, waits_chart
from core.learning.after_action.model import AfterActionReport
from core.learning.after_action.text import ReportText
from core.plans.wording import PeopleOf
from core.platform.templating import render


def report_context(report: AfterActionReport, lang: str = "zh", people: PeopleOf | None = None) -> dict[str, Any]:
    """The templates' context: the report, the words helper (naming people by `people`, as pages do) and the
    three pictures (built escaped here)."""
    rt = ReportText(lang, plan_clock=(report.opened_at, report.clock_speed) if report.time_basis == "plan" else None,
                    people=people)
    return {"report": report, "rt": rt, "counts": report.counts(), "damage": {f.key: f for f in report.damage},
            # Every text in the pictures is escaped where they are built; nothing else is marked safe.
            "charts": {"timeline": Markup(timeline_picture(report, rt)), "stages": Markup(stage_chart(report, rt)),
                       "waits": Markup(waits_chart(report, rt))}}


def render_report_html(report: AfterActionReport, lang: str = "zh", people: PeopleOf | None = None) -> str:
    """The report as a standalone HTML document for printing (no scripts, no outside resources)."""
    return render("reports/after_action_print.html", lang, **report_context(report, lang, people))
