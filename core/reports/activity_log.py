"""An ICS-214-style activity log of an incident: per department, who did what when, from the ledger.

A department reads only its own unit's log; the office and managers read every unit's."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from core.incidents.models import Incident
from core.ledger.chain import read_chain
from core.ledger.kinds import LedgerKind
from core.plans.store import plan_for_version, registry

ACTIVITY: dict[str, tuple[str, str]] = {
    LedgerKind.task_assigned: ("接受任务", "Received task"), LedgerKind.task_acknowledged: ("签收", "Acknowledged"),
    LedgerKind.task_completed: ("完成并报送", "Completed and reported"),
    LedgerKind.task_handed_back: ("退回", "Handed back"),
    LedgerKind.task_escalated: ("超时升级", "Escalated as overdue"), LedgerKind.task_reassigned: ("转办", "Reassigned"),
    LedgerKind.task_cancelled: ("取消", "Cancelled"),
    LedgerKind.report_shared: ("发布情况报告", "Shared a situation report"),
    LedgerKind.task_chased_up: ("催办超时任务", "Chased up an overdue task"),
}


def activity_log(session: Session, incident: Incident, reader: str | None) -> dict[str, Any]:
    plan = plan_for_version(session, incident.plan_version_id)
    units: dict[str, list[dict[str, Any]]] = {}
    for entry in read_chain(session, incident.id):
        if entry.kind not in ACTIVITY:
            continue
        # The unit is the department that held or handed the baton in this entry.
        received = entry.kind in (LedgerKind.task_assigned, LedgerKind.task_reassigned)
        unit = entry.to_party if received else entry.from_party
        for part in unit.split(","):
            if registry().department(part) is None or (reader is not None and part != reader):
                continue
            zh, en = ACTIVITY[entry.kind]
            step = plan.step(entry.step_key).title.model_dump() if entry.step_key else None
            units.setdefault(part, []).append({"at": entry.at, "actor": entry.actor, "activity": {"zh": zh, "en": en},
                                               "step": entry.step_key, "step_title": step, "ledger_seq": entry.seq})
    reg = registry()
    return {"form": "ICS-214-style activity log", "incident": {"id": incident.id, "code": incident.code,
                                                               "title": incident.title},
            "units": [{"department": key, "name": d.name.model_dump() if (d := reg.department(key)) else None,
                       "activities": rows} for key, rows in sorted(units.items())]}
