"""Public warnings in CAP 1.2: issue, update and cancel (with `references`), and the active set for the feed.

A drill's alerts are kept with status Exercise and never published.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any
from xml.etree import ElementTree

from sqlmodel import Session, col, select

from core.incidents.engine import latest_tasks
from core.incidents.models import Incident
from core.incidents.service import COMMAND, lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import xml_safe
from core.platform.settings import get_settings
from core.sharing.cap import cap_time, render_alert
from core.sharing.models import CapAlert
from process_defs.actions import PublishWarningParams
from process_defs.schema import PUBLIC

log = logging.getLogger("baton.sharing")
CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


class WarningInvalid(BatonError):
    code = "warning_invalid"
    http_status = 422


def current(session: Session, incident_id: str) -> list[CapAlert]:
    """The incident's alerts not yet superseded by an update or cancellation."""
    return list(session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id,
                                                    col(CapAlert.superseded_by).is_(None))
                             .order_by(col(CapAlert.sent_at))).all())


def active_public(session: Session, limit: int = 200) -> list[CapAlert]:
    """What the public feed shows: published, not superseded, not a cancellation."""
    return list(session.exec(select(CapAlert).where(col(CapAlert.published).is_(True),
                                                    col(CapAlert.superseded_by).is_(None),
                                                    CapAlert.msg_type != "Cancel")
                             .order_by(col(CapAlert.sent_at).desc()).limit(limit)).all())


def public_alert(alert: CapAlert) -> tuple[str, ElementTree.Element] | None:
    """The alert's CAP XML as the public gets it, parsed: as stored, or (an alert rendered before the input policy
    held) with the characters XML cannot carry taken out. None if even that is not well-formed: the alert is left
    out rather than the feed failing for everyone; both are logged."""
    for candidate in (alert.xml, xml_safe(alert.xml)):
        try:
            root = ElementTree.fromstring(candidate.encode("utf-8"))
        except (ElementTree.ParseError, UnicodeError):
            continue
        if candidate is not alert.xml:
            log.warning("CAP alert %s is not well-formed as stored; published without the characters XML "
                        "cannot carry", alert.identifier)
        return candidate, root
    log.error("CAP alert %s is not well-formed XML and cannot be repaired; it is not published", alert.identifier)
    return None


def alert_texts(alert: CapAlert) -> dict[str, dict[str, str]]:
    """The alert's headline and instruction in Chinese and English, as its CAP infos say them (empty if the
    stored XML cannot be read)."""
    texts: dict[str, dict[str, str]] = {"headline": {}, "instruction": {}}
    published = public_alert(alert)
    if published is None:
        return texts
    for info in published[1].findall("cap:info", CAP_NS):
        lang = "en" if (info.findtext("cap:language", "", CAP_NS) or "").startswith("en") else "zh"
        for name in texts:
            texts[name][lang] = info.findtext(f"cap:{name}", "", CAP_NS)
    return texts


def feed_entries(session: Session) -> list[dict[str, Any]]:
    """The public Atom feed's entries: the active public alerts that can be published (see `public_alert`)."""
    entries = []
    for alert in active_public(session):
        published = public_alert(alert)
        if published is None:
            continue
        infos = published[1].findall("cap:info", CAP_NS)
        entries.append({"id": alert.id, "identifier": alert.identifier, "msg_type": alert.msg_type,
                        "headline": " / ".join(i.findtext("cap:headline", "", CAP_NS) for i in infos),
                        "summary": " / ".join(i.findtext("cap:instruction", "", CAP_NS) for i in infos),
                        "updated": alert.sent_at.astimezone(UTC).isoformat(timespec="seconds")})
    return entries


def issue(session: Session, *, incident_id: str, params: PublishWarningParams, actor: str, key: str,
          ledgered: bool = True) -> CapAlert:
    """Issue an Alert, or an Update/Cancel of the incident's current alerts. Idempotent on `key`."""
    existing = session.exec(select(CapAlert).where(CapAlert.idempotency_key == key)).first()
    if existing is not None:
        return existing
    incident = lock_incident(session, incident_id)
    previous = current(session, incident.id)
    if params.msg_type in ("Update", "Cancel") and not previous:
        raise WarningInvalid(f"there is no warning on {incident.code} to {params.msg_type.lower()}")
    sender = get_settings().sender
    references = " ".join(f"{sender},{a.identifier},{cap_time(a.sent_at)}" for a in previous) \
        if params.msg_type != "Alert" else None
    domain = sender.split("@")[-1]
    number = len(session.exec(select(CapAlert.id).where(CapAlert.incident_id == incident.id)).all()) + 1
    sent = utcnow()
    facts = _facts(session, incident)
    rendered = render_alert(incident, params, identifier=f"{domain}.{incident.code}.{number}", sent=sent,
                            references=references, description_zh="；".join(facts), description_en="; ".join(facts))
    alert = CapAlert(incident_id=incident.id, identifier=rendered.identifier, idempotency_key=key,
                     msg_type=params.msg_type, status=rendered.status, published=not incident.drill,
                     xml=rendered.xml, sent_at=sent, references=references, issued_by=actor)
    session.add(alert)
    session.flush()
    if params.msg_type != "Alert":
        for old in previous:
            old.superseded_by = alert.id
            session.add(old)
    if ledgered:
        ledger.append(session, incident=incident, kind=LedgerKind.warning_published, actor=actor,
                      from_party=COMMAND, to_party="public" if alert.published else "exercise",
                      idempotency_key=f"{alert.id}:issued", handed_over={"xml": alert.xml},
                      details={"identifier": alert.identifier, "msg_type": alert.msg_type,
                               "published": alert.published}, at=sent)
    wake(incident, sent)
    session.add(incident)
    return alert


def _facts(session: Session, incident: Incident) -> list[str]:
    """Short public facts for the description: the plain values of completed outputs whose share lets them reach
    the public (`reaches`, field by field), and nothing else: no internal text is ever published."""
    from core.plans.store import plan_for_version

    plan = plan_for_version(session, incident.plan_version_id)
    facts = []
    for key, task in latest_tasks(session, incident.id).items():
        step = plan.step(key)
        if task.status != "completed":
            continue
        for name, value in step.visible_outputs(PUBLIC, owner=task.department, outputs=task.outputs).items():
            field = step.field(name)
            if field is not None and not isinstance(value, dict | list):
                facts.append(f"{field.label.zh}/{field.label.en}: {value}{' ' + field.unit if field.unit else ''}")
    return facts[:12]
