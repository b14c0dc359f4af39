"""A report's draft, pre-filled from the run: level, stage, the actions taken, the figures departments reported,
the casualty figures. The reporting department edits the narrative and the casualties; the rest follows the run
until a leader signs the report off."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.incidents.models import DepartmentTask, Incident, TaskStatus
from core.platform.settings import get_settings
from core.reporting.models import CasualtyFigures, UpwardReport
from process_defs.schema import (
    CASUALTY_KINDS,
    CASUALTY_NAMES,
    LEVEL_NAMES,
    REPORT_KIND_NAMES,
    STAGE_NAMES,
    FieldType,
    IncidentType,
    Reporting,
)

EDITABLE = ("text", "casualties", "casualty_reason")
"""What a person may change in a draft; everything else is the run's data."""


def checked(figures: CasualtyFigures | None) -> dict[str, int]:
    """The incident's checked casualty figures (all zero before any report was sent)."""
    return {kind: int(getattr(figures, kind)) if figures is not None else 0 for kind in CASUALTY_KINDS}


def _completed(tasks: dict[str, DepartmentTask]) -> list[DepartmentTask]:
    done = [t for t in tasks.values() if t.status == TaskStatus.completed and t.completed_at is not None]
    return sorted(done, key=lambda t: (t.completed_at, t.step_key))


def casualties_in_run(reporting: Reporting, tasks: dict[str, DepartmentTask]) -> dict[str, int | None]:
    """Each casualty figure as the run's data says it: the value of its source completed last (None: no source
    has reported it)."""
    out: dict[str, int | None] = {}
    for kind in CASUALTY_KINDS:
        latest: tuple[datetime, int] | None = None
        for ref in reporting.casualties.of(kind):
            step_key, _, field_key = ref.partition(".")
            task = tasks.get(step_key)
            if task is None or task.status != TaskStatus.completed or task.completed_at is None:
                continue
            value = (task.outputs or {}).get(field_key)
            if isinstance(value, int | float) and not isinstance(value, bool) and (
                    latest is None or task.completed_at >= latest[0]):
                latest = (task.completed_at, int(value))
        out[kind] = latest[1] if latest is not None else None
    return out


def proposed_casualties(run: dict[str, int | None], current: dict[str, int]) -> dict[str, int]:
    """What a draft proposes: the run's figure where it is higher than the checked one. A draft never lowers a
    figure by itself; a decrease (核减) is a person's decision with a reason."""
    return {kind: max(current[kind], run[kind] or 0) for kind in CASUALTY_KINDS}


def title_of(kind: str, number: int, incident: Incident) -> dict[str, str]:
    name = REPORT_KIND_NAMES[kind]
    if kind == "follow_up":
        return {"zh": f"关于{incident.title}的续报（第{number}期）",
                "en": f"{name['en']} no. {number} on {incident.title}"}
    return {"zh": f"关于{incident.title}的{name['zh']}", "en": f"{name['en']} on {incident.title}"}


def _local(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(get_settings().timezone)).strftime("%Y年%m月%d日%H时%M分")


def _narrative(incident: Incident, plan: IncidentType, level: str, stage: str, actions: int,
               casualties: dict[str, int]) -> str:
    """A first paragraph in the form of a report (时间、地点、事件、级别、进展、伤亡); the department rewrites it."""
    place = incident.location_name or "辖区内"
    lost = "，".join(f"{CASUALTY_NAMES[kind]['zh']}{casualties[kind]}人" for kind in CASUALTY_KINDS if casualties[kind])
    return (f"{_local(incident.created_at)}，{place}发生{plan.name.zh}（{incident.title}）。"
            f"目前执行{LEVEL_NAMES[level]['zh']}应急响应，处于{STAGE_NAMES[stage]['zh']}阶段，"
            f"已完成{actions}项处置措施。" + (f"人员情况：{lost}。" if lost else "暂无人员伤亡报告。"))


def draft(*, report: UpwardReport, incident: Incident, plan: IncidentType, tasks: dict[str, DepartmentTask],
          figures: CasualtyFigures | None, now: datetime) -> dict[str, Any]:
    """The report's content as of `now`, keeping what a person already wrote into it."""
    assert plan.reporting is not None
    current = checked(figures)
    done = _completed(tasks)
    actions, numbers = [], []
    for task in done:
        try:
            step = plan.step(task.step_key)
        except KeyError:
            continue
        if task.kind == "human" or step.action is not None:
            actions.append({"step": step.key, "title": step.title.model_dump(), "department": task.department,
                            "completed_at": task.completed_at.isoformat() if task.completed_at else None})
        for form_field in step.form:
            value = (task.outputs or {}).get(form_field.key)
            if form_field.type is FieldType.number and isinstance(value, int | float) and not isinstance(value, bool):
                numbers.append({"step": step.key, "title": step.title.model_dump(), "field": form_field.key,
                                "label": form_field.label.model_dump(), "value": value, "unit": form_field.unit})
    proposed = proposed_casualties(casualties_in_run(plan.reporting, tasks), current)
    content: dict[str, Any] = {
        "kind": report.kind, "number": report.number, "title": title_of(report.kind, report.number, incident),
        "incident": {"code": incident.code, "title": incident.title, "type": incident.type,
                     "type_name": plan.name.model_dump(), "location": incident.location_name,
                     "opened_at": incident.created_at.isoformat(), "drill": incident.drill},
        "level": incident.level, "stage": incident.stage, "status": incident.status, "as_of": now.isoformat(),
        "actions": actions, "figures": numbers, "casualties": proposed, "checked_casualties": current,
        "casualty_reason": None,
        "text": _narrative(incident, plan, incident.level, incident.stage, len(actions), proposed),
    }
    if report.edited_at is not None:
        for key in EDITABLE:
            content[key] = report.content.get(key)
    return content
