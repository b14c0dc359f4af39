"""An incident's key figures (the dead, missing and injured, people moved and rescued, shelters open, direct
economic loss) from what departments reported: one rule for the situation board's summary and the after-action
report's damage summary.

The plans name these figures by their form fields' keys (`casualty_report.deaths`, `evacuate_residents.
people_evacuated`, `damage_survey.economic_loss`, …); `KEY_FIGURES` lists the keys each figure is read from.
A department's later report replaces its earlier one (a daily casualty report is a count, not an increment), and
the departments' latest reports are added up: each department counts what happened in its own area or line of
work. Every total keeps its sources (department, step or report, when), so a reader can see where it came from.

The caller decides what a reader may see: the board passes only the values the reader may read (the same values
its items show), so a figure shared with some departments never reaches a total another department reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class KeyFigure:
    key: str
    label: dict[str, str]
    unit: str
    fields: tuple[str, ...]  # the plans' form field keys (and a situation report's figure names) it is read from


KEY_FIGURES: tuple[KeyFigure, ...] = (
    KeyFigure("dead", {"zh": "死亡", "en": "Dead"}, "人", ("deaths", "deceased", "dead")),
    KeyFigure("missing", {"zh": "失踪", "en": "Missing"}, "人", ("missing", "still_missing")),
    KeyFigure("injured", {"zh": "受伤", "en": "Injured"}, "人", ("injured", "people_injured")),
    KeyFigure("moved", {"zh": "转移安置", "en": "People moved to safety"}, "人",
              ("people_evacuated", "people_moved", "people_resettled", "moved")),
    KeyFigure("rescued", {"zh": "救出人员", "en": "People rescued"}, "人", ("people_rescued", "rescued")),
    KeyFigure("shelters_open", {"zh": "开放安置点", "en": "Shelters open"}, "处", ("shelters_open",)),
    KeyFigure("economic_loss", {"zh": "直接经济损失", "en": "Direct economic loss"}, "万元",
              ("economic_loss", "direct_loss")),
)
DAMAGE_FIGURES = ("dead", "missing", "injured", "moved", "economic_loss")
"""The figures of an after-action report's damage summary."""

_BY_FIELD = {name: figure for figure in KEY_FIGURES for name in (figure.key, *figure.fields)}


def figure_of(name: str) -> KeyFigure | None:
    """The key figure a form field or report figure of this name counts towards, if any."""
    return _BY_FIELD.get(name)


@dataclass(frozen=True)
class Reported:
    """One number a department reported: in a step's form (`step` is the step's key) or a situation report."""

    department: str
    at: datetime | None
    name: str  # the field or figure name as reported
    value: float
    step: str | None = None
    title: Mapping[str, str] | None = None  # the step's (or report's) title, to name the source


@dataclass
class FigureTotal:
    key: str
    label: dict[str, str]
    unit: str
    total: float
    sources: list[Reported] = field(default_factory=list)  # each department's latest report, counted in the total

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "unit": self.unit, "total": self.total,
                "sources": [{"department": s.department, "at": s.at, "field": s.name, "value": s.value,
                             "step": s.step, "title": dict(s.title) if s.title else None} for s in self.sources]}


def number(value: Any) -> float | None:
    """A reported value that counts: a number, not a flag."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def summarise(reported: Iterable[Reported], only: Iterable[str] | None = None) -> list[FigureTotal]:
    """The key figures (all, or `only` these keys, in that order) with their totals: per department the latest
    report, added up over the departments. A figure nobody reported is left out."""
    latest: dict[tuple[str, str], Reported] = {}
    for item in reported:
        figure = figure_of(item.name)
        if figure is None:
            continue
        slot = (figure.key, item.department)
        seen = latest.get(slot)
        if seen is None or (item.at is not None and (seen.at is None or item.at >= seen.at)):
            latest[slot] = item
    wanted = list(only) if only is not None else [f.key for f in KEY_FIGURES]
    catalogue = {f.key: f for f in KEY_FIGURES}
    out = []
    for key in wanted:
        figure = catalogue[key]
        sources = sorted((r for (k, _), r in latest.items() if k == key), key=lambda r: r.department)
        if not sources:
            continue
        total = sum(r.value for r in sources)
        out.append(FigureTotal(key=key, label=figure.label, unit=figure.unit,
                               total=int(total) if float(total).is_integer() else round(total, 2), sources=sources))
    return out
