"""Prevention work on the map (一张图): the open inspections of the campaigns (汛前检查, 隐患排查, drills), due or
overdue, and the open rectifications (整改) their findings opened, each at the place of the register entry it is
about (the risk point, the team's base).

It reads `core.prevention.service.list_tasks` with the prevention API's scope: `reader` is a department (its own
tasks) or None for those who see everything (the office, managers, administrators). What a popup shows is worded
for people in both languages: names, not keys; local times, not ISO stamps; 是/否, not booleans.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.maps.geojson import Feature, point, valid
from core.plans.wording import Wording
from core.platform.clock import as_utc, utcnow
from core.prevention import service
from core.prevention.campaigns import CAMPAIGNS
from core.prevention.models import PreventionKind, PreventionTask
from core.registers.models import REGISTER_TABLES, RegisterEntry

MAX_TASKS = 2000
TABLES = {kind.value: table for kind, table in REGISTER_TABLES.items()}
OVERDUE_COLOUR = "#c62828"  # what is past its deadline stands out from the layer's own colour

KIND_NAMES = {PreventionKind.inspection.value: {"zh": "检查", "en": "Inspection"},
              PreventionKind.rectification.value: {"zh": "整改", "en": "Rectification"}}
LABELS = {"task": {"zh": "任务", "en": "Task"}, "state": {"zh": "状态", "en": "Status"},
          "due": {"zh": "期限", "en": "Due"}, "department": {"zh": "责任单位", "en": "Responsible"},
          "code": {"zh": "编号", "en": "Code"}, "finding": {"zh": "发现的隐患", "en": "Hazard found"},
          "escalated": {"zh": "已上报", "en": "Escalated to"}}
OVERDUE = {"zh": "已逾期", "en": "Overdue"}
DUE = {"zh": "待完成", "en": "Due"}


def _both(say: Callable[[Wording], str]) -> dict[str, str]:
    """The same thing worded in Chinese and in English (`say(wording)` for each)."""
    return {lang: say(Wording(lang)) for lang in ("zh", "en")}


def _places(session: Session, tasks: list[PreventionTask]) -> dict[tuple[str, str], RegisterEntry]:
    """The register entries the tasks are about, one query per register."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        wanted[task.register_kind].add(task.entry_id)
    found: dict[tuple[str, str], RegisterEntry] = {}
    for kind, ids in wanted.items():
        table = TABLES.get(kind)
        if table is None:
            continue
        for entry in session.exec(select(table).where(col(table.id).in_(ids))).all():
            found[(kind, entry.id)] = entry
    return found


def _task_name(task: PreventionTask) -> dict[str, str]:
    campaign = CAMPAIGNS.get(task.campaign)
    kind = KIND_NAMES.get(task.kind, {"zh": task.kind, "en": task.kind})
    if campaign is None:
        return kind
    return {"zh": f"{campaign.name_zh} · {kind['zh']}", "en": f"{campaign.name_en} · {kind['en'].lower()}"}


def _feature(task: PreventionTask, entry: RegisterEntry, now: datetime) -> Feature | None:
    if not valid(entry.lat, entry.lon):
        return None
    due = as_utc(task.due_at)
    late = due < now  # by the clock, whether or not the sweep has escalated it yet (as the prevention page says)
    rows: list[list[Any]] = [
        [LABELS["task"], _task_name(task)],
        [LABELS["state"], OVERDUE if late else DUE],
        [LABELS["due"], _both(lambda w: w.when(due))],
        [LABELS["department"], _both(lambda w: w.dept(task.department))],
        [LABELS["code"], task.entry_code],
    ]
    if task.escalated_to:
        target = task.escalated_to
        rows.append([LABELS["escalated"], _both(lambda w: w.party(target))])
    if task.kind == PreventionKind.rectification and task.finding:
        rows.append([LABELS["finding"], task.finding])  # the department's own words, as data: the page sets text
    properties: dict[str, Any] = {
        "id": task.id, "code": task.entry_code, "overdue": late, "url": f"/prevention/tasks/{task.id}",
        "name": {"zh": task.entry_name_zh, "en": task.entry_name_en or task.entry_name_zh}, "rows": rows}
    if late:
        properties["colour"] = OVERDUE_COLOUR
    assert entry.lat is not None and entry.lon is not None  # valid() said so
    return point(entry.lat, entry.lon, **properties)


def open_work(session: Session, reader: str | None) -> list[Feature]:
    """The reader's open inspections and rectifications, soonest due first, at their register entry's place (an
    entry without a valid place is not on the map)."""
    tasks = service.list_tasks(session, department=reader, open_only=True, limit=MAX_TASKS)
    places = _places(session, tasks)
    now = utcnow()
    features = []
    for task in tasks:
        entry = places.get((task.register_kind, task.entry_id))
        feature = _feature(task, entry, now) if entry is not None else None
        if feature is not None:
            features.append(feature)
    return features
