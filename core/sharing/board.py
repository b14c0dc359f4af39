"""The situation board: everything shared on an incident, newest first, as far as the reader may see it, and
its key figures summed from those same items (`key_figures`), so a value the reader may not see never reaches
a total the reader reads.

Items are completed step outputs the plan shares, ad-hoc situation reports, public warnings, and, for the
command (office, managers), the levels the plan's grading proposed and level decisions awaiting the
commander's confirmation. Posting a report also sends it to the
departments in its scope (when they have a system endpoint).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.incidents import authority, grading
from core.incidents.models import Incident
from core.incidents.reads import shared_steps
from core.incidents.scope import EVERYONE, can_see, reaches, recipients
from core.incidents.service import lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import queue as outbox
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import Refusals
from core.reporting.figures import FigureTotal, Reported, number, summarise
from core.reporting.reads import views as upward_reports
from core.sharing.models import CapAlert, SituationReport
from core.sharing.warnings import alert_texts
from process_defs.schema import LEVEL_NUMERALS, Classification, Share


class ReportInvalid(BatonError):
    code = "report_invalid"
    http_status = 422


def board(session: Session, incident: Incident, reader: str | None, since: datetime | None = None
          ) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for shared in shared_steps(session, incident, reader):
        task, step = shared["task"], shared["step"]
        items.append({"kind": "step", "id": task.id, "step": step.key, "at": task.completed_at,
                      "department": task.department,
                      "title": step.title.model_dump(), "classification": shared["classification"],
                      "fields": [{"key": k, "value": v,
                                  "label": (f.label.model_dump() if (f := step.field(k)) else {"zh": k, "en": k}),
                                  "unit": f.unit if f else None} for k, v in shared["outputs"].items()],
                      "note": task.note if reaches(reader, owner=task.department, share=step.share) else None})
    reports = session.exec(select(SituationReport).where(SituationReport.incident_id == incident.id)).all()
    for report in reports:
        if not can_see(reader, owner=report.department, share_with=report.share_with,
                       classification=report.classification):
            continue
        items.append({"kind": "report", "id": report.id, "at": report.created_at, "department": report.department,
                      "title": {"zh": "情况报告", "en": "Situation report"}, "classification": report.classification,
                      "text": report.text, "figures": report.figures,
                      "location": {"name": report.location_name, "lat": report.lat, "lon": report.lon}
                      if report.location_name or report.lat is not None else None, "author": report.author})
    alerts = session.exec(select(CapAlert).where(CapAlert.incident_id == incident.id)).all()
    for alert in alerts:
        if reader is not None and alert.state != "issued":
            continue  # a draft is the issuing agency's and the office's until a leader signs it off
        items.append({"kind": "warning", "id": alert.id, "at": alert.sent_at,
                      "department": alert.department or "emergency_office",
                      "title": {"zh": "预警信息", "en": "Warning"}, "classification": "public",
                      "identifier": alert.identifier, "msg_type": alert.msg_type, "status": alert.status,
                      "published": alert.published, "state": alert.state, "colour": alert.colour,
                      **alert_texts(alert)})
    items.extend(upward_report_items(session, incident, reader))
    if reader is None:  # the level is the command's decision; departments see the level, not its deliberation
        for proposal in grading.list_proposals(session, incident.id):
            items.append({"kind": "proposal", "id": proposal.id, "at": proposal.created_at,
                          "department": "emergency_office", "classification": "internal",
                          "title": {"zh": f"分级建议：{LEVEL_NUMERALS.get(proposal.level, proposal.level)}级",
                                    "en": f"Proposed level {proposal.level}"},
                          "level": proposal.level, "from_level": proposal.from_level, "status": proposal.status,
                          "basis": proposal.basis, "decided_by": proposal.decided_by, "reason": proposal.reason})
        for row in authority.awaiting(session, incident.id):
            items.append({"kind": "authorisation", "id": row.id, "at": row.at, "department": "emergency_office",
                          "classification": "internal",
                          "title": {"zh": f"{LEVEL_NUMERALS.get(row.level, row.level)}级响应决定待确认",
                                    "en": f"Level {row.level} decision to confirm"},
                          "act": row.act, "level": row.level, "verbal": row.verbal, "needs": row.needs,
                          "authorised_by": row.authorised_by, "recorded_by": row.recorded_by})
    items.sort(key=lambda item: item["at"] or utcnow(), reverse=True)  # newest first: a board, not a log
    return after(items, since)


def after(items: list[dict[str, Any]], since: datetime | None) -> list[dict[str, Any]]:
    """The board's items newer than `since` (all of them without it)."""
    return items if since is None else [item for item in items if item["at"] and item["at"] > since]


def key_figures(items: list[dict[str, Any]]) -> list[FigureTotal]:
    """The key figures of a board as its reader sees it: summed from the items' own values (completed steps'
    visible fields and the figures of the situation reports the reader may see), so nothing the reader may not
    see is counted. Per department the latest report counts (`core.reporting.figures`)."""
    reported: list[Reported] = []
    for item in items:
        if item["kind"] == "step":
            values = [(f["key"], f["value"]) for f in item["fields"]]
        elif item["kind"] == "report":
            values = list((item.get("figures") or {}).items())
        else:
            continue
        for name, value in values:
            amount = number(value)
            if amount is not None:
                reported.append(Reported(department=item["department"], at=item["at"], name=name, value=amount,
                                         step=item.get("step"), title=item["title"]))
    return summarise(reported)


def upward_report_items(session: Session, incident: Incident, reader: str | None) -> list[dict[str, Any]]:
    """Reports to the bodies above, for readers who see everything and the reporting department: when sent, or,
    not yet sent, when due; a late one (迟报) flagged."""
    return [{"kind": "upward_report", "id": v["id"], "at": v["sent_at"] or v["due_at"], "department": v["department"],
             "title": v["title"], "classification": "internal", "report_kind": v["kind"], "number": v["number"],
             "status": v["status"], "late": v["late"], "due_at": v["due_at"], "sent_at": v["sent_at"]}
            for v in upward_reports(session, incident.id) if reader is None or v["department"] == reader]


def post_report(session: Session, *, incident_id: str, department: str, author: str, text: str,
                figures: dict[str, Any] | None = None, location_name: str | None = None,
                lat: float | None = None, lon: float | None = None, share_with: list[str] | None = None,
                classification: str = "internal") -> SituationReport:
    incident = lock_incident(session, incident_id)
    if not text.strip():
        raise ReportInvalid("a situation report needs text")
    if classification not in ("public", "internal", "restricted"):
        raise ReportInvalid("classification must be public, internal or restricted")
    scope = share_with or [EVERYONE]
    reg = registry()
    unknown = [d for d in scope if d != EVERYONE and reg.department(d) is None]
    if unknown:
        raise ReportInvalid(f"unknown department(s) in the scope: {', '.join(unknown)}")
    if classification == "restricted" and scope == [EVERYONE]:
        raise ReportInvalid("a restricted report must name the departments it goes to")
    # Figures are JSON on disk and in deliveries: a NaN or Infinity there is not JSON any more.
    refusals = Refusals()
    text = refusals.check("text", policy.text, text, max_length=10_000, multiline=True)
    if location_name is not None:
        location_name = refusals.check("location_name", policy.text, location_name, max_length=200)
    clean_figures: dict[str, Any] = {}
    for name, value in (figures or {}).items():
        key = refusals.check("figures", policy.text, str(name), max_length=64)
        clean_figures[key] = refusals.check(f"figures.{key}", policy.number, value)
    refusals.raise_any(ReportInvalid)
    figures = clean_figures
    now = utcnow()
    report = SituationReport(incident_id=incident.id, department=department, author=author, text=text,
                             figures=figures or {}, location_name=location_name, lat=lat, lon=lon,
                             share_with=scope, classification=classification, created_at=now)
    session.add(report)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.report_shared, actor=author, from_party=department,
                  to_party=",".join(scope), idempotency_key=f"{report.id}:shared",
                  handed_over={"text": text, "figures": figures or {}}, details={"classification": classification},
                  at=now)
    share = Share(with_=scope, classification=Classification(classification))
    for target in recipients(session, incident.id, owner=department, shares=[share]):
        if outbox.has_endpoint(target):
            outbox.queue(session, incident=incident, key=f"{report.id}:to:{target}", purpose="shared",
                         target=target, payload={"report": {"id": report.id, "department": department,
                                                            "text": text, "figures": figures or {},
                                                            "classification": classification}})
    wake(incident, now)
    session.add(incident)
    return report


def reports_for(session: Session, incident_id: str) -> list[SituationReport]:
    return list(session.exec(select(SituationReport).where(SituationReport.incident_id == incident_id)
                             .order_by(col(SituationReport.created_at))).all())
