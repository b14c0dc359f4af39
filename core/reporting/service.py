"""What people do with an upward report: edit the draft, record the report by phone, sign it off (签发), send it.

Sending delivers the signed content unchanged to each recipient's system (the signed webhooks of the outbox) and
mailbox (SMTP), archives it as HTML and as a Word document, and makes its casualty figures the incident's checked
set. Each action is one transaction with its ledger entry; every check comes before the first write, so a refused
action leaves nothing half-written. Services never commit.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.incidents.authority import require_position
from core.incidents.models import Incident
from core.incidents.service import COMMAND, lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import mail
from core.outbox import queue as outbox
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound, ReasonRequired
from core.reporting import documents
from core.reporting.drafting import checked
from core.reporting.models import (
    CasualtyFigures,
    ReportStatus,
    UpwardReport,
    UpwardReportArchive,
)
from core.users.models import User
from process_defs.schema import CASUALTY_KINDS, CASUALTY_NAMES, level_rank

MAX_TEXT = 20_000
MAX_FIGURE = 10_000_000


class UpwardReportInvalid(BatonError):
    code = "upward_report_invalid"
    http_status = 422


class ReportStateConflict(BatonError):
    """The report is not in a state that allows this (editing a signed report, phoning twice)."""

    code = "report_state_conflict"
    http_status = 409


class ReportNotSigned(BatonError):
    """A report that needs a leader's sign-off (签发) was sent without it."""

    code = "report_not_signed"
    http_status = 409


class SignerIsDrafter(BatonError):
    """The person who wrote the draft (拟稿人) cannot also sign it off (签发人)."""

    code = "signer_is_drafter"
    http_status = 409


class CasualtyDecreaseUnexplained(ReasonRequired):
    """A casualty figure lower than the checked one (核减) needs its reason."""

    code = "casualty_decrease_needs_reason"
    http_status = 422


def get_report(session: Session, report_id: str, department: str | None = None) -> UpwardReport:
    """A report by id; for a department's reader, only its own department's (another's reads as missing)."""
    report = session.get(UpwardReport, report_id)
    if report is None or (department is not None and report.department != department):
        raise NotFound(f"no upward report '{report_id}'")
    return report


def _locked(session: Session, report_id: str, department: str | None) -> tuple[Incident, UpwardReport]:
    report = get_report(session, report_id, department)
    incident = lock_incident(session, report.incident_id)
    session.refresh(report)
    return incident, report


def _decreases(casualties: dict[str, int], figures: CasualtyFigures | None) -> dict[str, tuple[int, int]]:
    current = checked(figures)
    return {kind: (current[kind], casualties[kind]) for kind in CASUALTY_KINDS if casualties[kind] < current[kind]}


def _check_decrease(content: dict[str, Any], figures: CasualtyFigures | None) -> None:
    lowered = _decreases(content["casualties"], figures)
    if lowered and not str(content.get("casualty_reason") or "").strip():
        listing = ", ".join(f"{kind} {old} → {new}" for kind, (old, new) in lowered.items())
        raise CasualtyDecreaseUnexplained(
            f"a casualty figure lower than the checked one (核减: {listing}) needs its reason",
            details={"decreases": {kind: {"checked": old, "reported": new} for kind, (old, new) in lowered.items()}})


def _clean_casualties(values: Any) -> dict[str, int]:
    if not isinstance(values, dict):
        raise UpwardReportInvalid("casualties must be an object of figures: dead, missing, injured, moved")
    unknown = sorted(set(values) - set(CASUALTY_KINDS))
    if unknown:
        raise UpwardReportInvalid(f"unknown casualty figure(s): {', '.join(map(str, unknown))[:200]} "
                                  f"(known: {', '.join(CASUALTY_KINDS)})")
    out: dict[str, int] = {}
    for kind, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FIGURE:
            raise UpwardReportInvalid(f"{kind} must be a whole number of people from 0 to {MAX_FIGURE}",
                                      details=[{"field": kind, "message": "a whole number of people"}])
        out[kind] = value
    return out


def edit_report(session: Session, *, report_id: str, actor: str, department: str | None = None,
                text: str | None = None, casualties: dict[str, Any] | None = None,
                casualty_reason: str | None = None) -> UpwardReport:
    """Change a draft's narrative and casualty figures; a figure lowered below the checked one needs a reason."""
    incident, report = _locked(session, report_id, department)
    if report.status != ReportStatus.drafting:
        raise ReportStateConflict(f"the report is {report.status}; a signed report is not edited")
    content = dict(report.content)
    if text is not None:
        if not text.strip() or len(text) > MAX_TEXT:
            raise UpwardReportInvalid(f"the report's text must have 1 to {MAX_TEXT} characters")
        if documents.NOT_XML.search(text):
            raise UpwardReportInvalid("the report's text holds control characters a document cannot carry")
        content["text"] = text
    if casualties is not None:
        content["casualties"] = {**content["casualties"], **_clean_casualties(casualties)}
    if casualty_reason is not None:
        content["casualty_reason"] = documents.xml_safe(casualty_reason).strip()[:2000] or None
    figures = session.get(CasualtyFigures, incident.id)
    _check_decrease(content, figures)
    now = utcnow()
    report.content = content
    report.edited_at = now
    report.edited_by = actor
    session.add(report)
    return report


def record_phone(session: Session, *, report_id: str, actor: str, note: str, department: str | None = None
                 ) -> UpwardReport:
    """The report by phone came first (an initial report): who called whom, when."""
    if not note.strip():
        raise ReasonRequired("say whom the report was phoned to")
    incident, report = _locked(session, report_id, department)
    if report.phone_due_at is None or report.phoned_at is not None:
        raise ReportStateConflict("this report has no report by phone to record, or it is recorded already")
    now = utcnow()
    report.phoned_at = now
    report.phoned_by = actor
    report.phone_note = documents.xml_safe(note).strip()[:2000]
    session.add(report)
    ledger.append(session, incident=incident, kind=LedgerKind.upward_report_phoned, actor=actor,
                  from_party=report.department, to_party=COMMAND, idempotency_key=f"{report.id}:phoned",
                  handed_over={"note": report.phone_note},
                  details={"report_id": report.id, "on_time": now <= report.phone_due_at}, at=now)
    wake(incident, now)
    session.add(incident)
    return report


def sign_off(session: Session, *, report_id: str, signer: User, department: str | None = None) -> UpwardReport:
    """A leader signs the report off (签发): its content is frozen from here on. The signer holds one of the
    positions the plan names for the report (by default the reporting department's leaders), else 403
    `position_required` naming them; the ledger records the position."""
    incident, report = _locked(session, report_id, department)
    actor = f"user:{signer.username}"
    if report.status != ReportStatus.drafting:
        raise ReportStateConflict(f"the report is {report.status} already")
    if report.edited_by == actor:
        raise SignerIsDrafter("the person who wrote the draft cannot sign it off; a leader signs it")
    reporting = plan_for_version(session, incident.plan_version_id).reporting
    needs = reporting.signers(report.kind) if reporting is not None else []
    position = require_position(session, user=signer, needs=needs, act="sign_off",
                                what=("签发本报告须由以下职务之一签发",
                                      "signing this report off needs one of these positions"))
    _check_decrease(report.content, session.get(CasualtyFigures, incident.id))
    now = utcnow()
    report.status = ReportStatus.signed
    report.signed_at = now
    report.signed_by = actor
    report.signed_digest = ledger.digest_of(report.content)
    session.add(report)
    ledger.append(session, incident=incident, kind=LedgerKind.upward_report_signed, actor=actor, from_party=actor,
                  to_party=report.department, idempotency_key=f"{report.id}:signed", handed_over=report.content,
                  details={"report_id": report.id, "kind": report.kind, "number": report.number,
                           "position": position}, at=now)
    wake(incident, now)
    session.add(incident)
    return report


def recipients_at(session: Session, report: UpwardReport, level: str) -> list[str]:
    """Who the report goes to at `level` (the plan's recipients from their level on)."""
    incident = session.get(Incident, report.incident_id)
    assert incident is not None
    reporting = plan_for_version(session, incident.plan_version_id).reporting
    rule = reporting.rule(report.kind) if reporting is not None else None
    if rule is None:
        return []
    return [r.department for r in rule.recipients if level_rank(level) >= level_rank(r.min_level)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send_report(session: Session, *, report_id: str, actor: str, department: str | None = None) -> UpwardReport:
    """Deliver the report (signed where the plan says so), archive it, and make its casualty figures the checked
    ones. Deliveries are queued; the incident's flow (or, for a closed incident, a worker's outbox) sends them."""
    incident, report = _locked(session, report_id, department)
    if report.status == ReportStatus.sent:
        raise ReportStateConflict("the report is sent already")
    if report.sign_off_required and report.status != ReportStatus.signed:
        raise ReportNotSigned("a leader must sign this report off (签发) before it is sent")
    figures = session.get(CasualtyFigures, incident.id)
    content = report.content
    _check_decrease(content, figures)
    now = utcnow()
    recipients = recipients_at(session, report, str(content["level"]))
    report.status = ReportStatus.sent
    report.sent_at = now
    report.sent_by = actor
    document = documents.view(report, recipients, now)
    html = documents.render_html(document)
    docx = documents.render_docx(document)
    session.add(report)
    session.add(UpwardReportArchive(report_id=report.id, html=html, docx=docx, html_sha256=_sha256(html.encode()),
                                    docx_sha256=_sha256(docx), archived_at=now))
    filename = f"{incident.code}-{report.kind}-{report.number}.docx"
    attachment = {"filename": filename, "media_type": documents.DOCX_MEDIA_TYPE,
                  "base64": base64.b64encode(docx).decode("ascii"), "sha256": _sha256(docx)}
    body = {"id": report.id, "kind": report.kind, "number": report.number, "content": content,
            "signed_by": report.signed_by, "signed_at": report.signed_at.isoformat() if report.signed_at else None,
            "sent_at": now.isoformat(), "department": report.department, "recipients": recipients}
    subject = ("【演练】" if incident.drill else "") + f"{document.title}（{document.issue}）"
    channels: dict[str, list[str]] = {}
    for target in recipients:
        used = channels.setdefault(target, [])
        if outbox.has_endpoint(target):
            outbox.queue(session, incident=incident, key=f"{report.id}:to:{target}", purpose="upward_report",
                           target=target, payload={"upward_report": body, "document": attachment})
            used.append("system")
        if mail.can_mail(target):
            outbox.queue(session, incident=incident, key=f"{report.id}:mail:{target}",
                           purpose=f"{mail.PREFIX}upward_report", target=target,
                           payload={"upward_report": {"id": report.id, "kind": report.kind, "number": report.number},
                                    "mail": {"subject": subject, "text": f"{document.title}\n\n{document.text}",
                                             "html": html, "attachments": [attachment]}})
            used.append("mail")
    _revise_casualties(session, incident=incident, report=report, figures=figures, actor=actor, now=now)
    ledger.append(session, incident=incident, kind=LedgerKind.upward_report_sent, actor=actor,
                  from_party=report.department, to_party=",".join(recipients) or COMMAND,
                  idempotency_key=f"{report.id}:sent", handed_over=content,
                  details={"report_id": report.id, "kind": report.kind, "number": report.number,
                           "on_time": now <= report.due_at, "channels": channels, "docx_sha256": _sha256(docx),
                           "signed_by": report.signed_by}, at=now)
    wake(incident, now)
    session.add(incident)
    return report


def _revise_casualties(session: Session, *, incident: Incident, report: UpwardReport,
                       figures: CasualtyFigures | None, actor: str, now: datetime) -> None:
    new = {kind: int(report.content["casualties"][kind]) for kind in CASUALTY_KINDS}
    old = checked(figures)
    if new == old and figures is not None:
        return
    if figures is None:
        figures = CasualtyFigures(incident_id=incident.id)
    for kind in CASUALTY_KINDS:
        setattr(figures, kind, new[kind])
    figures.revision += 1
    figures.report_id = report.id
    figures.updated_at = now
    figures.updated_by = actor
    session.add(figures)
    lowered = {kind: {"from": old[kind], "to": new[kind]} for kind in CASUALTY_KINDS if new[kind] < old[kind]}
    reason = report.content.get("casualty_reason") if lowered else None
    ledger.append(session, incident=incident, kind=LedgerKind.casualties_revised, actor=actor,
                  from_party=report.department, to_party=COMMAND,
                  idempotency_key=f"{incident.id}:casualties:{figures.revision}",
                  handed_over={"from": old, "to": new, "reason": reason},
                  details={"report_id": report.id, "revision": figures.revision, "from": old, "to": new,
                           "decreased": lowered, "reason": reason}, at=now)


def casualty_view(figures: CasualtyFigures | None) -> dict[str, Any]:
    return {"figures": checked(figures), "names": CASUALTY_NAMES, "revision": figures.revision if figures else 0,
            "report_id": figures.report_id if figures else None,
            "updated_at": figures.updated_at if figures else None,
            "updated_by": figures.updated_by if figures else None}
