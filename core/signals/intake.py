"""Monitoring signals in: API keys per source, rules to incidents, dedupe into the open incident, level raise.

Every incident a signal opens records that signal; every signal records what it did (opened, merged,
raised, ignored).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from sqlmodel import Session, col, select

from core.incidents.models import Incident, IncidentStatus
from core.incidents.service import change_level, open_incident
from core.plans.store import signal_rules
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import Refusals
from core.signals.models import Signal, SignalSource
from core.users.service import audit
from process_defs.schema import level_rank, parse_duration
from process_defs.signals import CAP_SEVERITY_LEVELS, SignalRule

CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
MAX_CAP_BYTES = 200_000
MAX_SIGNAL_TEXT = 1000


class SignalRejected(BatonError):
    code = "signal_rejected"
    http_status = 422


class SourceUnknown(BatonError):
    code = "not_authenticated"
    http_status = 401


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_source(session: Session, *, name: str, actor: str) -> str:
    """Register a monitoring source; returns its API key (shown once, stored only as a digest)."""
    if session.get(SignalSource, name) is not None:
        raise SignalRejected(f"source '{name}' already exists")
    key = "bts_" + secrets.token_urlsafe(32)
    session.add(SignalSource(name=name, key_digest=_digest(key)))
    audit(session, actor=actor, action="signal_source.added", source=name)
    return key


def source_for_key(session: Session, key: str | None) -> SignalSource:
    if not key:
        raise SourceUnknown("a monitoring source must send its API key in the X-Api-Key header")
    source = session.exec(select(SignalSource).where(SignalSource.key_digest == _digest(key))).first()
    if source is None or not source.active:
        raise SourceUnknown("unknown or disabled API key")
    return source


def _level_from_thresholds(rule: SignalRule, payload: dict[str, Any]) -> str | None:
    for threshold in rule.levels:
        value = payload.get(threshold.field)
        if value is None:
            continue
        try:
            if threshold.op == "ge":
                holds = value >= threshold.value
            elif threshold.op == "gt":
                holds = value > threshold.value
            elif threshold.op == "eq":
                holds = value == threshold.value
            else:
                holds = value in (threshold.value or [])
        except TypeError:
            raise SignalRejected(f"'{threshold.field}' must be comparable with {threshold.value!r}") from None
        if holds:
            return threshold.level
    return None


def _from_cap(payload: dict[str, Any]) -> dict[str, Any]:
    """Read severity, area and event from a CAP 1.2 alert sent by another authority."""
    xml = payload.get("xml")
    if not isinstance(xml, str) or len(xml.encode("utf-8")) > MAX_CAP_BYTES:
        raise SignalRejected("a CAP signal needs the alert as an 'xml' string (at most 200 kB)")
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise SignalRejected("CAP alerts with a DOCTYPE or entities are refused")
    try:
        root = ElementTree.fromstring(xml.encode("utf-8"))
    except ElementTree.ParseError as exc:
        raise SignalRejected(f"the CAP alert is not well-formed XML: {exc}") from None
    info = root.find("cap:info", CAP_NS)
    if root.tag != "{urn:oasis:names:tc:emergency:cap:1.2}alert" or info is None:
        raise SignalRejected("not a CAP 1.2 alert with an info block")
    severity = info.findtext("cap:severity", "", CAP_NS)
    if severity not in CAP_SEVERITY_LEVELS:
        raise SignalRejected(f"CAP severity '{severity}' does not map to a response level")
    def one_line(path: str, element: ElementTree.Element = info) -> str:
        # An element's text may be wrapped over lines in the XML; as a title or a place it is one line.
        return " ".join(element.findtext(path, "", CAP_NS).split())

    return {**payload, "area": one_line("cap:area/cap:areaDesc") or payload.get("area", ""),
            "event": one_line("cap:event"), "severity": severity, "msg_type": one_line("cap:msgType", root),
            "cap_identifier": one_line("cap:identifier", root)}


def _hold_to_policy(fields: dict[str, Any]) -> None:
    """A source without a user account writes incident titles and places that CAP publishes: every text it
    sends (or its CAP alert holds) is one line by the input policy, every number finite and bounded."""
    refusals = Refusals()
    for name, value in fields.items():
        if name == "xml":
            continue  # parsed above; what it holds is among the fields
        if isinstance(value, str):
            fields[name] = refusals.check(name, policy.text, value, max_length=MAX_SIGNAL_TEXT)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            fields[name] = refusals.check(name, policy.number, value)
        elif value is not None and not isinstance(value, bool):
            refusals.problems.append({"field": name, "reason": "not_a_value",
                                      "message": "must be text, a number, true or false"})
    refusals.raise_any(SignalRejected)


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        raise SignalRejected(f"the signal lacks '{key}', which its rule needs")


@dataclass
class Received:
    signal: Signal
    incident: Incident | None


def receive(session: Session, *, source: SignalSource, payload: dict[str, Any], now: datetime | None = None
            ) -> Received:
    kind = payload.get("kind")
    if not isinstance(kind, str):
        raise SignalRejected("a signal needs a 'kind'")
    rule = signal_rules().for_kind(kind)
    if rule is None:
        raise SignalRejected(f"no rule handles signals of kind '{kind}'")
    if rule.sources and source.name not in rule.sources:
        raise SignalRejected(f"source '{source.name}' may not send '{kind}' signals")
    fields = _from_cap(payload) if rule.cap else dict(payload)
    _hold_to_policy(fields)
    if rule.cap:
        level: str | None = CAP_SEVERITY_LEVELS[fields["severity"]]
    else:
        level = _level_from_thresholds(rule, fields)
    dedupe_key = rule.dedupe.format_map(_Fields(fields))[:200]
    title_zh = rule.title.zh.format_map(_Fields(fields))
    title_en = rule.title.en.format_map(_Fields(fields))
    moment = now or utcnow()
    record = Signal(source=source.name, kind=kind, dedupe_key=dedupe_key, rule=rule.key,
                    payload={k: v for k, v in payload.items() if k != "xml"} | ({"cap": True} if rule.cap else {}),
                    received_at=moment, outcome="ignored", level=level)
    session.add(record)
    session.flush()
    if level is None or (rule.cap and fields.get("msg_type") == "Cancel"):
        return Received(record, None)
    window_start = moment - parse_duration(rule.window)
    earlier = session.exec(
        select(Signal).join(Incident, col(Incident.id) == Signal.incident_id)
        .where(Signal.dedupe_key == dedupe_key, col(Signal.received_at) >= window_start,
               Incident.status == IncidentStatus.open, Incident.type == rule.type)
        .order_by(col(Signal.received_at).desc())).first()
    actor = f"signal:{source.name}"
    if earlier is not None and earlier.incident_id is not None:
        incident = session.get(Incident, earlier.incident_id)
        assert incident is not None
        record.incident_id = incident.id
        record.outcome = "merged"
        if level_rank(level) > level_rank(incident.level):
            change_level(session, incident_id=incident.id, level=level, actor=actor,
                         reason=f"{rule.name.zh} / {rule.name.en}: signal {record.id}")
            record.outcome = "raised"
        session.add(record)
        return Received(record, incident)
    opened = open_incident(session, type_key=rule.type, level=level, actor=actor,
                           title=f"{title_zh} {title_en}"[:200],
                           description=f"{rule.name.zh} / {rule.name.en}",
                           location_name=str(fields.get("area") or "")[:200] or None,
                           lat=fields.get("lat") if isinstance(fields.get("lat"), int | float) else None,
                           lon=fields.get("lon") if isinstance(fields.get("lon"), int | float) else None,
                           idempotency_key=f"signal:{record.id}")
    opened.incident.signal_id = record.id
    session.add(opened.incident)
    record.incident_id = opened.incident.id
    record.outcome = "opened"
    session.add(record)
    return Received(record, opened.incident)
