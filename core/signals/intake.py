"""Monitoring signals in: API keys per source, rules to incidents, dedupe into the open incident, level
proposals.

A signal's level is its plan's grading of its values (a CAP alert's, its severity). A warning is not a
response level: a signal opens an incident in its warning stage, and a later signal that grades higher
proposes that level to the office; it does not raise it by itself. Every incident a signal opens records that
signal; every signal records what it did (opened, merged, proposed, ignored, held). A source is held to a rate
(a token bucket with a burst, in its database row so that every API process shares it), its observations must
be recent (a replayed or stale signal is refused), its numbers finite, and it may open only so many incidents
an hour: beyond that its signals are held for the duty desk, which opens or dismisses each.
"""
from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from xml.etree import ElementTree

from sqlmodel import Session, col, func, select

from core.incidents import grading
from core.incidents.models import Incident, IncidentStatus, LevelProposal
from core.incidents.service import open_incident
from core.plans.store import plan_for_version, plan_in_use, signal_rules
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound, ReasonRequired
from core.platform.input_policy import Refusals
from core.platform.paging import Page, paged
from core.platform.settings import get_settings
from core.signals.models import Signal, SignalSource
from core.users.service import audit
from process_defs.schema import parse_duration
from process_defs.signals import CAP_SEVERITY_LEVELS, SignalRule

CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
MAX_CAP_BYTES = 200_000
MAX_SIGNAL_TEXT = 1000
HELD = "held"
# "raised": a signal of an earlier version that raised the level itself (signals now propose).
SignalStatus = Literal["opened", "merged", "proposed", "raised", "ignored", "held", "dismissed"]


class SignalRejected(BatonError):
    code = "signal_rejected"
    http_status = 422


class SignalOutOfWindow(SignalRejected):
    """Observed too long ago (a replay, or a backlog that no longer describes now) or ahead of this clock."""

    code = "signal_out_of_window"


class SignalRateLimited(BatonError):
    code = "signal_rate_limited"
    http_status = 429


class SignalNotHeld(BatonError):
    """The duty desk acts only on a held signal, and only once."""

    code = "signal_not_held"
    http_status = 409


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


def _locked_source(session: Session, name: str) -> SignalSource:
    """The source's row, locked to the end of the transaction: one source's signals are taken one at a time
    (its bucket and its hourly count of incidents are exact under concurrent requests). On SQLite every write
    transaction already holds the database's write lock (BEGIN IMMEDIATE)."""
    return session.exec(select(SignalSource).where(SignalSource.name == name).with_for_update()
                        .execution_options(populate_existing=True)).one()


def admit(session: Session, *, source: SignalSource, now: datetime | None = None) -> None:
    """Take one signal from the source's bucket: `signal_burst` at once, refilled at `signal_rate_per_minute`.
    An empty bucket refuses (429 with Retry-After); the first refusal of a run is audited. The caller commits
    either way, so that signals refused later for their content still count against the rate."""
    settings = get_settings()
    moment = now or utcnow()
    row = _locked_source(session, source.name)
    per_second = settings.signal_rate_per_minute / 60
    tokens = float(settings.signal_burst)
    if row.tokens is not None and row.tokens_at is not None:
        elapsed = max(0.0, (moment - row.tokens_at).total_seconds())
        tokens = min(tokens, row.tokens + elapsed * per_second)
    row.tokens_at = moment
    if tokens < 1:
        row.tokens = tokens
        retry_after = max(1, math.ceil((1 - tokens) / per_second))
        if row.limited_since is None:
            row.limited_since = moment
            audit(session, actor=f"signal:{row.name}", action="signal.rate_limited", source=row.name,
                  retry_after=retry_after)
        session.add(row)
        raise SignalRateLimited(f"source '{row.name}' sends more than {settings.signal_rate_per_minute:g} signals a "
                                f"minute (bursts of {settings.signal_burst}); try again later",
                                retry_after=retry_after)
    row.tokens = tokens - 1
    row.limited_since = None
    session.add(row)


def _finite(payload: dict[str, Any]) -> None:
    for key, value in payload.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SignalRejected(f"'{key}' must be a finite number", details=[{"field": key,
                                                                              "message": "not finite"}])


def _moment(value: Any, what: str) -> datetime:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise SignalRejected(f"{what} is not a date and time: {str(value)[:40]!r}") from None
    if moment.tzinfo is None:
        raise SignalRejected(f"{what} must carry a time zone (e.g. +08:00)")
    return moment


def _observed(payload: dict[str, Any], fields: dict[str, Any], now: datetime) -> datetime | None:
    """When the signal was observed (`observed_at`, or a CAP alert's `sent`), checked against the freshness
    window; None when the signal does not say (it is taken as observed on receipt)."""
    if payload.get("observed_at") is not None:
        observed = _moment(payload["observed_at"], "observed_at")
    elif fields.get("sent"):
        observed = _moment(fields["sent"], "the CAP alert's sent")
    else:
        return None
    settings = get_settings()
    oldest = now - timedelta(seconds=settings.signal_max_age_seconds)
    latest = now + timedelta(seconds=settings.signal_max_ahead_seconds)
    if observed < oldest:
        raise SignalOutOfWindow(f"observed at {observed.isoformat()}, more than "
                                f"{settings.signal_max_age_seconds / 60:g} minutes ago: too old to act on",
                                details={"observed_at": observed.isoformat(), "oldest": oldest.isoformat()})
    if observed > latest:
        raise SignalOutOfWindow(f"observed at {observed.isoformat()}, ahead of this server's clock",
                                details={"observed_at": observed.isoformat(), "latest": latest.isoformat()})
    return observed


def _graded_level(session: Session, rule: SignalRule, fields: dict[str, Any]) -> str | None:
    """The level the plan in use grades the signal's values at (its criteria on `signal: <kind>`)."""
    plan = plan_in_use(session, rule.type)[0]
    observed = grading.observed_signal(rule.kind, fields)
    for grade in (plan.grading or {}).values():
        for criterion in grade.any:
            value = observed.get(criterion.measure)
            if criterion.signal == rule.kind and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)):
                raise SignalRejected(f"'{criterion.field}' must be a number, not {str(value)[:40]!r}")
    graded = plan.grade(observed)
    return graded[0] if graded else None


def _propose(session: Session, incident: Incident, record: Signal, rule: SignalRule, fields: dict[str, Any],
             level: str, moment: datetime) -> LevelProposal | None:
    """A merged signal that grades the incident higher proposes that level to the office."""
    source = f"signal:{record.id}"
    if rule.cap:  # the alert's severity is its level
        basis = {"text": {"zh": f"{rule.name.zh}：严重程度 {fields['severity']}",
                          "en": f"{rule.name.en}: severity {fields['severity']}"},
                 "met": [{"measure": f"signal:{rule.kind}.severity", "observed": fields["severity"]}]}
        return grading.propose_level(session, incident=incident, level=level, basis=basis, source=source,
                                     now=moment)
    return grading.propose(session, incident=incident, plan=plan_for_version(session, incident.plan_version_id),
                           observed=grading.observed_signal(rule.kind, fields), source=source, now=moment)


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
            "cap_identifier": one_line("cap:identifier", root), "sent": one_line("cap:sent", root)}


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
    _finite(payload)
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
    moment = now or utcnow()
    observed = _observed(payload, fields, moment)
    if rule.cap:
        level: str | None = CAP_SEVERITY_LEVELS[fields["severity"]]
    else:
        level = _graded_level(session, rule, fields)
    dedupe_key = rule.dedupe.format_map(_Fields(fields))[:200]
    _titles(rule, fields)  # a rule's title needs fields the signal may lack: refused now, not when opened
    _locked_source(session, source.name)
    # Kept without the CAP document itself, but with what was read from it (to open the incident later).
    stored = {k: v for k, v in fields.items() if k != "xml"} | ({"cap": True} if rule.cap else {})
    record = Signal(source=source.name, kind=kind, dedupe_key=dedupe_key, rule=rule.key, payload=stored,
                    received_at=moment, outcome="ignored", level=level, observed_at=observed)
    session.add(record)
    session.flush()
    if level is None or (rule.cap and fields.get("msg_type") == "Cancel"):
        return Received(record, None)
    return _place(session, record, rule, fields, level, actor=f"signal:{source.name}", moment=moment,
                  may_open=_may_open(session, source.name, moment))


def _titles(rule: SignalRule, fields: dict[str, Any]) -> tuple[str, str]:
    return rule.title.zh.format_map(_Fields(fields)), rule.title.en.format_map(_Fields(fields))


def _may_open(session: Session, source: str, now: datetime) -> bool:
    """Whether the source is under its cap of incidents opened in the last hour (the duty desk's openings of
    its held signals do not count)."""
    opened = session.exec(select(func.count()).select_from(Signal).where(
        Signal.source == source, Signal.outcome == "opened", col(Signal.handled_by).is_(None),
        col(Signal.received_at) >= now - timedelta(hours=1))).one()
    return int(opened) < get_settings().signal_incidents_per_hour


def _place(session: Session, record: Signal, rule: SignalRule, fields: dict[str, Any], level: str, *, actor: str,
           moment: datetime, may_open: bool) -> Received:
    """Merge the signal into the incident open for its dedupe key (proposing a higher level), or open one; hold
    it for the duty desk instead when it may not open one."""
    window_start = moment - parse_duration(rule.window)
    earlier = session.exec(
        select(Signal).join(Incident, col(Incident.id) == Signal.incident_id)
        .where(Signal.dedupe_key == record.dedupe_key, col(Signal.received_at) >= window_start,
               Incident.status == IncidentStatus.open, Incident.type == rule.type)
        .order_by(col(Signal.received_at).desc())).first()
    if earlier is not None and earlier.incident_id is not None:
        incident = session.get(Incident, earlier.incident_id)
        assert incident is not None
        record.incident_id = incident.id
        record.outcome = "merged"
        if _propose(session, incident, record, rule, fields, level, moment) is not None:
            record.outcome = "proposed"
        session.add(record)
        return Received(record, incident)
    if not may_open:
        record.outcome = HELD
        session.add(record)
        return Received(record, None)
    title_zh, title_en = _titles(rule, fields)
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


# -- the duty desk: held signals ----------------------------------------------------------------------------
def list_signals(session: Session, *, status: str | None = None, source: str | None = None, limit: int = 100,
                 offset: int = 0) -> Page:
    """Signals as received, newest first; `status=held` is the duty desk's queue."""
    query = select(Signal)
    if status:
        query = query.where(Signal.outcome == status)
    if source:
        query = query.where(Signal.source == source)
    return paged(session, query, col(Signal.received_at).desc(), col(Signal.id), limit=limit, offset=offset)


def _held(session: Session, signal_id: str) -> Signal:
    record = session.exec(select(Signal).where(Signal.id == signal_id).with_for_update()
                          .execution_options(populate_existing=True)).first()
    if record is None:
        raise NotFound(f"no signal '{signal_id}'")
    if record.outcome != HELD:
        raise SignalNotHeld(f"signal {signal_id} is not held (it was {record.outcome})",
                            details={"status": record.outcome})
    return record


def release(session: Session, *, signal_id: str, actor: str) -> Received:
    """The duty desk opens the incident a held signal would have opened (or merges it into the one now open
    for its dedupe key)."""
    record = _held(session, signal_id)
    rule = signal_rules().for_kind(record.kind)
    if rule is None or record.level is None:
        raise SignalRejected(f"no rule handles signals of kind '{record.kind}' any more")
    result = _place(session, record, rule, dict(record.payload), record.level, actor=actor, moment=utcnow(),
                    may_open=True)
    record.handled_by, record.handled_at = actor, utcnow()
    session.add(record)
    audit(session, actor=actor, action="signal.released", signal_id=record.id, source=record.source,
          outcome=record.outcome, incident_id=record.incident_id)
    return result


def dismiss(session: Session, *, signal_id: str, actor: str, reason: str) -> Signal:
    """The duty desk decides a held signal needs no incident, and says why."""
    if not reason.strip():
        raise ReasonRequired("say why the signal is dismissed")
    record = _held(session, signal_id)
    record.outcome = "dismissed"
    record.handled_by, record.handled_at, record.reason = actor, utcnow(), reason.strip()[:2000]
    session.add(record)
    audit(session, actor=actor, action="signal.dismissed", signal_id=record.id, source=record.source,
          reason=record.reason)
    return record
