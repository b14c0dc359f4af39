"""Public warnings in CAP 1.2, released as Chinese law has it (审核签发): the issuing agency drafts, the emergency
office reviews (or returns the draft with a reason for the agency to redraft), a leader signs it off, and only the
sign-off publishes it. A published warning is then updated or cancelled (with `references`) in one action by the
office or a signer. Every step is a ledger entry.

A drill's (and the demo's) warnings are released with CAP status Exercise and never reach the public feed or page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from sqlmodel import Session, col, select

from core.geo.shapes import cap_area_texts, parse_cap_area
from core.incidents.authority import OFFICE_ROLES, require_position
from core.incidents.engine import latest_tasks
from core.incidents.models import Incident
from core.incidents.service import COMMAND, lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import registry
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound, ReasonRequired
from core.platform.input_policy import xml_safe
from core.platform.settings import get_settings
from core.reporting.service import SignerIsDrafter
from core.sharing import notice
from core.sharing.cap import cap_time, render_alert
from core.sharing.models import CapAlert, WarningState, in_force_where
from core.users.models import User
from core.users.positions import holds
from process_defs.actions import WARNING_COLOURS, PublishWarningParams
from process_defs.schema import LEVEL_COLOURS, PUBLIC, FieldType, FormField, leaders_of, parse_duration

log = logging.getLogger("baton.sharing")
CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
MAX_TEXT = 2000


class WarningInvalid(BatonError):
    code = "warning_invalid"
    http_status = 422


class WarningStateConflict(BatonError):
    """The warning is not in a state that allows this (reviewing a signed one, updating a draft)."""

    code = "warning_state_conflict"
    http_status = 409


class WarningNotReviewed(BatonError):
    """A leader may sign off only a draft the emergency office has reviewed."""

    code = "warning_not_reviewed"
    http_status = 409


class WarningExpired(BatonError):
    """The draft's validity ended before it was signed off: it is redrafted with a new expiry."""

    code = "warning_expired"
    http_status = 409


# -- reading --------------------------------------------------------------------------------------------------
def current(session: Session, incident_id: str) -> list[CapAlert]:
    """The incident's released alerts not yet superseded by an update or cancellation."""
    return list(session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id,
                                                    CapAlert.state == WarningState.issued,
                                                    col(CapAlert.superseded_by).is_(None))
                             .order_by(col(CapAlert.sent_at))).all())


def of_incident(session: Session, incident_id: str) -> list[CapAlert]:
    return list(session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)
                             .order_by(col(CapAlert.sent_at), col(CapAlert.identifier))).all())


def awaiting_signature(session: Session, *, user: User) -> list[CapAlert]:
    """The reviewed drafts this person may sign off (a leader of the issuing agency, say): those whose signer
    positions they hold, oldest first. Shown to them wherever they work (the inbox), since a department's leader
    has no office page."""
    reviewed = session.exec(select(CapAlert).where(CapAlert.state == WarningState.reviewed)
                            .order_by(col(CapAlert.sent_at))).all()
    return [a for a in reviewed if a.drafted_by != f"user:{user.username}" and holds(session, user, list(a.signers))]


def get_alert(session: Session, *, incident_id: str, alert_id: str) -> CapAlert:
    alert = session.get(CapAlert, alert_id)
    if alert is None or alert.incident_id != incident_id:
        raise NotFound(f"no warning '{alert_id}' on this incident")
    return alert


def in_force(session: Session, limit: int = 200, now: datetime | None = None,
             published_only: bool = False) -> list[CapAlert]:
    """The warnings in force, newest first: released (signed off; an exercise's too unless `published_only`), not
    superseded, not a cancellation, not expired."""
    moment = now or utcnow()
    query = select(CapAlert).where(*in_force_where(moment))
    if published_only:
        query = query.where(col(CapAlert.published).is_(True))
    return list(session.exec(query.order_by(col(CapAlert.sent_at).desc()).limit(limit)).all())


def active_public(session: Session, limit: int = 200, now: datetime | None = None) -> list[CapAlert]:
    """What the public feed and page show: published (signed off, of a real incident), not superseded, not a
    cancellation, not expired."""
    return in_force(session, limit=limit, now=now, published_only=True)


def public_by_identifier(session: Session, identifier: str) -> CapAlert:
    """One published warning by its CAP identifier (the address in its `<web>`), or NotFound: a draft, a drill's
    exercise or an unknown identifier does not exist for the public."""
    alert = session.exec(select(CapAlert).where(CapAlert.identifier == identifier)).first()
    if alert is None or not alert.published or alert.state != WarningState.issued:
        raise NotFound("no such public warning")
    return alert


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


def public_view(alert: CapAlert) -> dict[str, Any] | None:
    """A published warning as the public page shows it, read from its CAP XML (what was signed off), with the
    area's circle or polygon for the map; None when the XML cannot be published."""
    published = public_alert(alert)
    if published is None:
        return None
    infos = {(i.findtext("cap:language", "", CAP_NS) or "")[:2]: i for i in published[1].findall("cap:info", CAP_NS)}

    def text(path: str) -> dict[str, str]:
        return {lang: (infos[lang].findtext(path, "", CAP_NS) if lang in infos else "") for lang in ("zh", "en")}

    first = next(iter(infos.values()), None)
    circles, polygons = cap_area_texts(first) if first is not None else ([], [])
    shapes = {"circles": circles, "polygons": polygons}
    return {"id": alert.id, "identifier": alert.identifier, "msg_type": alert.msg_type, "colour": alert.colour,
            "headline": text("cap:headline"), "description": text("cap:description"),
            "instruction": text("cap:instruction"), "issuer": text("cap:senderName"),
            "area": text("cap:area/cap:areaDesc"),
            "event": text("cap:event"), "sent_at": alert.sent_at, "expires_at": alert.expires_at, "shapes": shapes}


# -- what a warning says --------------------------------------------------------------------------------------
def public_outputs(session: Session, incident: Incident) -> dict[str, tuple[FormField | None, Any]]:
    """`step.field` → (field, value) for the completed outputs whose share lets them reach the public (`reaches`,
    field by field, through `visible_outputs`), and nothing else: no internal value is ever published."""
    from core.plans.store import plan_for_version

    plan = plan_for_version(session, incident.plan_version_id)
    found: dict[str, tuple[FormField | None, Any]] = {}
    for key, task in latest_tasks(session, incident.id).items():
        if task.status != "completed":
            continue
        step = plan.step(key)
        for name, value in step.visible_outputs(PUBLIC, owner=task.department, outputs=task.outputs).items():
            found[f"{key}.{name}"] = (step.field(name), value)
    return found


def _worded_outputs(outputs: dict[str, tuple[FormField | None, Any]]
                    ) -> tuple[dict[str, notice.Worded], dict[str, tuple[notice.Worded, notice.Worded]]]:
    worded: dict[str, notice.Worded] = {}
    labelled: dict[str, tuple[notice.Worded, notice.Worded]] = {}
    for ref, (form_field, value) in outputs.items():
        zh, en = notice.worded_value(form_field, value, "zh"), notice.worded_value(form_field, value, "en")
        if zh is None or en is None:
            continue
        worded[ref] = {"zh": zh, "en": en}
        if form_field is not None:
            labelled[ref] = ({"zh": form_field.label.zh, "en": form_field.label.en}, worded[ref])
    return worded, labelled


def _colour(params: PublishWarningParams, incident: Incident,
            outputs: dict[str, tuple[FormField | None, Any]]) -> tuple[str, str]:
    """The signal colour and where it came from: the issuing agency's output the plan names, else the colour of
    the incident's response level (a plan that names no source, or an output not given)."""
    if params.colour_from:
        value = outputs.get(params.colour_from, (None, None))[1]
        if isinstance(value, str) and value in WARNING_COLOURS:
            return value, params.colour_from
    return LEVEL_COLOURS[incident.level], "level"


def _expiry(params: PublishWarningParams, now: datetime,
            outputs: dict[str, tuple[FormField | None, Any]]) -> tuple[datetime, str]:
    if params.expires_from:
        form_field, value = outputs.get(params.expires_from, (None, None))
        if isinstance(value, str) and (form_field is None or form_field.type is FieldType.datetime):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
            if moment is not None:
                moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
                if moment > now:
                    return moment, params.expires_from
    return now + parse_duration(params.valid_for), params.valid_for


def _issuer(params: PublishWarningParams, department: str) -> notice.Worded:
    """Who issues the notice: the plan's issuer, else the department; a municipal one named with the city's
    name when Baton knows it (市气象台 → 杭州市气象台), as public notices name their issuer."""
    if params.issuer is not None:
        named = params.issuer.model_dump()
    else:
        dept = registry().department(department)
        named = dept.name.model_dump() if dept is not None else {"zh": department, "en": department}
    settings = get_settings()
    if settings.city_name and named["zh"].startswith("市"):
        named["zh"] = settings.city_name + named["zh"][1:]
    if settings.city_name_en and named["en"].startswith(("Municipal ", "City ")):
        named["en"] = f"{settings.city_name_en} {named['en']}"
    return named


def _area(incident: Incident) -> notice.Worded:
    return {"zh": incident.location_name, "en": incident.location_name} if incident.location_name \
        else dict(notice.WHOLE_CITY)


def _circle(incident: Incident) -> str | None:
    if incident.lat is None or incident.lon is None:
        return None
    return f"{incident.lat:.4f},{incident.lon:.4f} 5.0"


MAX_POLYGONS = 20


def _polygons(polygons: list[str] | None) -> list[str] | None:
    """The warning's own area as CAP polygons (`lat,lon lat,lon …`, closed, in China), checked by `core.geo`; None
    when none are given."""
    if polygons is None:
        return None
    if len(polygons) > MAX_POLYGONS:
        raise WarningInvalid(f"a warning has at most {MAX_POLYGONS} polygons")
    cleaned = [" ".join(text.split()) for text in polygons]
    parse_cap_area(polygons=cleaned)  # GeometryInvalid (422, with its reason) for one that is not a closed polygon
    return cleaned


def _compose(params: PublishWarningParams, *, incident: Incident, department: str, colour: str, now: datetime,
             expires_at: datetime, worded: dict[str, notice.Worded],
             labelled: dict[str, tuple[notice.Worded, notice.Worded]]) -> dict[str, Any]:
    texts = notice.compose(params, issuer=_issuer(params, department), colour=colour, area=_area(incident),
                           drafted_at=now, expires_at=expires_at, outputs=worded)
    if not params.description:
        texts["description"] = notice.facts(labelled)
    return {"event": {lang: notice.plain(params.event.get(lang)) for lang in notice.LANGS}, **texts,
            "area": _area(incident), "issuer": _issuer(params, department), "category": params.category,
            "response_type": params.response_type}


def _render(alert: CapAlert, incident: Incident, *, sent: datetime, references: str | None = None) -> str:
    assert alert.colour is not None and alert.expires_at is not None
    return render_alert(identifier=alert.identifier, sent=sent, status=alert.status, msg_type=alert.msg_type,
                        content=alert.content, colour=alert.colour, level=incident.level, expires=alert.expires_at,
                        references=references, circle=_circle(incident),
                        polygons=list(alert.content.get("polygons") or []))


def _status(incident: Incident) -> str:
    """Exercise for a drill (the demo opens its incident as one); Actual otherwise."""
    return "Exercise" if incident.drill else "Actual"


def _identifier(session: Session, incident: Incident) -> str:
    domain = get_settings().sender.split("@")[-1]
    number = len(session.exec(select(CapAlert.id).where(CapAlert.incident_id == incident.id)).all()) + 1
    return f"{domain}.{incident.code}.{number}"


def _references(alerts: list[CapAlert]) -> str:
    sender = get_settings().sender
    return " ".join(f"{sender},{a.identifier},{cap_time(a.sent_at)}" for a in alerts)


# -- the release: draft, review, return, redraft, sign off ----------------------------------------------------
def draft(session: Session, *, incident_id: str, params: PublishWarningParams, department: str, actor: str,
          key: str, step_key: str | None = None, colour: str | None = None,
          polygons: list[str] | None = None) -> CapAlert | None:
    """The issuing agency's draft (not published, in no public feed), idempotent on `key`. Its colour and expiry
    come from the outputs the plan names; its texts are the plan's templates, worded. An Update or Cancel drafts
    against the released warnings; with none released, the unreleased drafts are withdrawn and None is
    returned (nothing was ever public, so there is nothing to cancel). `colour`: the drafter's own choice (the
    office drafting a warning itself). `polygons`: the area it applies to, as CAP polygons the drafter drew (the
    incident's place gives a circle in any case)."""
    area = _polygons(polygons)
    existing = session.exec(select(CapAlert).where(CapAlert.idempotency_key == key)).first()
    if existing is not None:
        return existing
    incident = lock_incident(session, incident_id)
    now = utcnow()
    released = current(session, incident.id)
    if params.msg_type != "Alert" and not released:
        _withdraw_unreleased(session, incident=incident, actor=actor, now=now, why=key)
        return None
    if params.msg_type != "Alert" and colour is None and not params.colour_from:
        colour = released[-1].colour  # an update or all-clear keeps the colour of the warning it replaces
    outputs = public_outputs(session, incident)
    worded, labelled = _worded_outputs(outputs)
    colour_source: str
    colour, colour_source = (colour, "drafter") if colour in WARNING_COLOURS else _colour(params, incident, outputs)
    expires_at, expires_source = _expiry(params, now, outputs)
    content = _compose(params, incident=incident, department=department, colour=colour, now=now,
                       expires_at=expires_at, worded=worded, labelled=labelled)
    content.update(colour_source=colour_source, expires_source=expires_source,
                   params=params.model_dump(mode="json"), outputs=worded, labelled={
                       ref: [label, value] for ref, (label, value) in labelled.items()})
    if area:
        content["polygons"] = area
    alert = CapAlert(incident_id=incident.id, identifier=_identifier(session, incident), idempotency_key=key,
                     msg_type=params.msg_type, status=_status(incident), published=False, xml="",
                     sent_at=now, issued_by=actor, state=WarningState.draft, department=department,
                     step_key=step_key, colour=colour, expires_at=expires_at, content=content,
                     signers=list(params.signed_by) or leaders_of(department), drafted_by=actor, drafted_at=now)
    alert.xml = _render(alert, incident, sent=now)
    session.add(alert)
    session.flush()
    _ledger(session, incident, alert, LedgerKind.warning_drafted, actor=actor, from_party=department,
            to_party=COMMAND, at=now, handed_over=_handed(alert))
    return alert


def _withdraw_unreleased(session: Session, *, incident: Incident, actor: str, now: datetime, why: str) -> None:
    for alert in of_incident(session, incident.id):
        if alert.state in WarningState.UNRELEASED:
            alert.state = WarningState.withdrawn
            session.add(alert)
            _ledger(session, incident, alert, LedgerKind.warning_withdrawn, actor=actor, from_party=COMMAND,
                    to_party=alert.department or COMMAND, at=now, extra={"by": why})


def _handed(alert: CapAlert) -> dict[str, Any]:
    """What a step hands over: the warning's words, colour and expiry (the digest the ledger keeps)."""
    return {"colour": alert.colour, "expires_at": alert.expires_at.isoformat() if alert.expires_at else None,
            **{k: alert.content.get(k) for k in ("headline", "description", "instruction", "area", "issuer")}}


def _ledger(session: Session, incident: Incident, alert: CapAlert, kind: LedgerKind, *, actor: str,
            from_party: str, to_party: str, at: datetime, handed_over: dict[str, Any] | None = None,
            extra: dict[str, Any] | None = None) -> None:
    ledger.append(session, incident=incident, kind=kind, actor=actor, from_party=from_party, to_party=to_party,
                  step_key=alert.step_key, idempotency_key=f"{alert.id}:{kind.value}:{alert.revision}",
                  handed_over=handed_over, at=at,
                  details={"alert_id": alert.id, "identifier": alert.identifier, "msg_type": alert.msg_type,
                           "state": alert.state, "revision": alert.revision, "colour": alert.colour,
                           "status": alert.status, **(extra or {})})
    wake(incident, at)
    session.add(incident)


def _locked(session: Session, incident_id: str, alert_id: str) -> tuple[Incident, CapAlert]:
    get_alert(session, incident_id=incident_id, alert_id=alert_id)
    incident = lock_incident(session, incident_id)
    alert = get_alert(session, incident_id=incident.id, alert_id=alert_id)
    session.refresh(alert)
    return incident, alert


def review(session: Session, *, incident_id: str, alert_id: str, actor: str) -> CapAlert:
    """The emergency office has reviewed the draft (审核): it goes to a leader for sign-off."""
    incident, alert = _locked(session, incident_id, alert_id)
    if alert.state != WarningState.draft:
        raise WarningStateConflict(f"the warning is {alert.state}; only a draft is reviewed")
    now = utcnow()
    alert.state, alert.reviewed_by, alert.reviewed_at = WarningState.reviewed, actor, now
    session.add(alert)
    _ledger(session, incident, alert, LedgerKind.warning_reviewed, actor=actor, from_party=COMMAND,
            to_party="signer", at=now, handed_over=_handed(alert))
    return alert


def return_draft(session: Session, *, incident_id: str, alert_id: str, actor: str, reason: str) -> CapAlert:
    """The office returns the draft to the drafting department with its reason (退回修改)."""
    reason = xml_safe(reason).strip()
    if not reason:
        raise ReasonRequired("say why the draft is returned")
    if len(reason) > MAX_TEXT:
        raise WarningInvalid(f"the reason has at most {MAX_TEXT} characters")
    incident, alert = _locked(session, incident_id, alert_id)
    if alert.state not in (WarningState.draft, WarningState.reviewed):
        raise WarningStateConflict(f"the warning is {alert.state}; only an unsigned draft is returned")
    now = utcnow()
    alert.state, alert.returned_reason = WarningState.returned, reason
    alert.reviewed_by = alert.reviewed_at = None
    session.add(alert)
    _ledger(session, incident, alert, LedgerKind.warning_returned, actor=actor, from_party=COMMAND,
            to_party=alert.department or COMMAND, at=now, handed_over={"reason": reason})
    return alert


def _text(value: dict[str, str] | None, name: str) -> dict[str, str] | None:
    if value is None:
        return None
    clean = {lang: xml_safe(value.get(lang) or "").strip() for lang in ("zh", "en")}
    if not clean["zh"] or not clean["en"] or any(len(v) > MAX_TEXT for v in clean.values()):
        raise WarningInvalid(f"the {name} needs Chinese and English of 1 to {MAX_TEXT} characters")
    return clean


def _recomposed(alert: CapAlert, incident: Incident, *, colour: str | None, expires_at: datetime | None,
                now: datetime, texts: dict[str, dict[str, str] | None]) -> tuple[dict[str, Any], str, datetime]:
    """The warning's content with a new colour or expiry (its texts worded again from the plan's templates and
    the public outputs it was drafted from) and any texts a person rewrote."""
    if colour is not None and colour not in WARNING_COLOURS:
        raise WarningInvalid(f"the colour is one of {', '.join(WARNING_COLOURS)}")
    if expires_at is not None and expires_at <= now:
        raise WarningInvalid("the warning must expire after now")
    new_colour, new_expiry = colour or alert.colour or "blue", expires_at or alert.expires_at or now
    content = dict(alert.content)
    if (colour is not None or expires_at is not None) and content.get("params"):
        params = PublishWarningParams.model_validate(content["params"])
        labelled = {ref: (pair[0], pair[1]) for ref, pair in (content.get("labelled") or {}).items()}
        composed = _compose(params, incident=incident, department=alert.department or COMMAND, colour=new_colour,
                            now=now, expires_at=new_expiry, worded=content.get("outputs") or {}, labelled=labelled)
        content.update({k: composed[k] for k in ("headline", "description", "instruction")})
        content["colour_source"] = "person" if colour is not None else content.get("colour_source")
    for name, value in texts.items():
        if value is not None:
            content[name] = value
    return content, new_colour, new_expiry


def redraft(session: Session, *, incident_id: str, alert_id: str, actor: str, department: str | None,
            colour: str | None = None, expires_at: datetime | None = None, headline: dict[str, str] | None = None,
            description: dict[str, str] | None = None, instruction: dict[str, str] | None = None,
            polygons: list[str] | None = None) -> CapAlert:
    """The drafting department (or the office) redrafts a returned draft: a new colour or expiry words the texts
    again; rewritten texts replace them; `polygons` redraws its area (an empty list removes it). It goes back to
    the office for review."""
    area = _polygons(polygons)
    texts = {"headline": _text(headline, "headline"), "description": _text(description, "description"),
             "instruction": _text(instruction, "instruction")}
    incident, alert = _locked(session, incident_id, alert_id)
    if department is not None and alert.department != department:
        raise NotFound(f"no warning '{alert_id}' drafted by your department")
    if alert.state != WarningState.returned:
        raise WarningStateConflict(f"the warning is {alert.state}; only a returned draft is redrafted")
    now = utcnow()
    content, alert.colour, alert.expires_at = _recomposed(alert, incident, colour=colour, expires_at=expires_at,
                                                          now=now, texts=texts)
    if area is not None:
        content = {**content, "polygons": area}
    alert.content = content
    alert.revision += 1
    alert.state, alert.drafted_by, alert.drafted_at = WarningState.draft, actor, now
    alert.xml = _render(alert, incident, sent=now)
    session.add(alert)
    _ledger(session, incident, alert, LedgerKind.warning_redrafted, actor=actor,
            from_party=alert.department or COMMAND, to_party=COMMAND, at=now, handed_over=_handed(alert))
    return alert


def sign(session: Session, *, incident_id: str, alert_id: str, signer: User) -> CapAlert:
    """A leader signs the reviewed draft off (签发), which publishes it: to the public feed and page for a real
    incident, as an Exercise (never public) for a drill. The signer holds one of the warning's signer positions
    (the plan's, else the issuing department's leaders): 403 `position_required` otherwise."""
    incident, alert = _locked(session, incident_id, alert_id)
    actor = f"user:{signer.username}"
    if alert.state == WarningState.issued:
        raise WarningStateConflict("the warning is signed off already")
    if alert.state != WarningState.reviewed:
        raise WarningNotReviewed(f"the warning is {alert.state}: the emergency office reviews it before a leader "
                                 "signs it off")
    if alert.drafted_by == actor:
        raise SignerIsDrafter("the person who drafted the warning cannot also sign it off")
    position = require_position(session, user=signer, needs=list(alert.signers), act="sign_warning",
                                what=("签发本预警须由以下职务之一签发",
                                      "signing this warning off needs one of these positions"))
    now = utcnow()
    if alert.expires_at is not None and alert.expires_at <= now:
        raise WarningExpired("the warning's validity has ended; return it to be redrafted with a new expiry")
    previous = current(session, incident.id) if alert.msg_type != "Alert" else []
    if alert.msg_type != "Alert" and not previous:
        raise WarningStateConflict(f"there is no released warning on {incident.code} to {alert.msg_type.lower()}")
    alert.references = _references(previous) if previous else None
    alert.state, alert.signed_by, alert.signed_position, alert.signed_at = WarningState.issued, actor, position, now
    alert.published = alert.status == "Actual"
    alert.sent_at = now
    alert.xml = _render(alert, incident, sent=now, references=alert.references)
    session.add(alert)
    session.flush()
    for old in previous:
        old.superseded_by = alert.id
        session.add(old)
    _ledger(session, incident, alert, LedgerKind.warning_signed, actor=actor, from_party=actor, to_party=COMMAND,
            at=now, handed_over=_handed(alert), extra={"position": position})
    _published(session, incident, alert, actor=actor, kind=LedgerKind.warning_published, at=now)
    return alert


def _published(session: Session, incident: Incident, alert: CapAlert, *, actor: str, kind: LedgerKind,
               at: datetime, extra: dict[str, Any] | None = None) -> None:
    _ledger(session, incident, alert, kind, actor=actor, from_party=alert.department or COMMAND,
            to_party="public" if alert.published else "exercise", at=at, handed_over={"xml": alert.xml},
            extra={"published": alert.published, "references": alert.references, **(extra or {})})


# -- a released warning: update and cancel, one action each ---------------------------------------------------
def may_amend(session: Session, *, user: User, alert: CapAlert) -> str:
    """Who updates or cancels a released warning: the emergency office, or a holder of one of its signer
    positions (`require_position`: 403 `position_required` naming them)."""
    if user.role in OFFICE_ROLES:
        return "office"
    return require_position(session, user=user, needs=list(alert.signers), act="amend_warning",
                            what=("更新或解除本预警须由应急管理部门或以下职务之一办理",
                                  "updating or cancelling this warning needs the emergency office or one of these "
                                  "positions"))


def _latest_released(session: Session, incident: Incident) -> tuple[CapAlert, list[CapAlert]]:
    previous = current(session, incident.id)
    live = [a for a in previous if a.msg_type != "Cancel"]
    if not live:
        raise WarningStateConflict(f"there is no released warning on {incident.code} in force")
    return live[-1], previous


def _successor(session: Session, incident: Incident, base: CapAlert, previous: list[CapAlert], *, msg_type: str,
               actor: str, key: str, content: dict[str, Any], colour: str, expires_at: datetime, now: datetime,
               authority: str) -> CapAlert:
    alert = CapAlert(incident_id=incident.id, identifier=_identifier(session, incident), idempotency_key=key,
                     msg_type=msg_type, status=_status(incident), published=_status(incident) == "Actual",
                     references=_references(previous), xml="", sent_at=now, issued_by=actor,
                     state=WarningState.issued, department=base.department, step_key=base.step_key, colour=colour,
                     expires_at=expires_at, content=content, signers=list(base.signers), drafted_by=actor,
                     drafted_at=now, signed_by=actor, signed_position=None if authority == "office" else authority,
                     signed_at=now)
    alert.xml = _render(alert, incident, sent=now, references=alert.references)
    session.add(alert)
    session.flush()
    for old in previous:
        old.superseded_by = alert.id
        session.add(old)
    return alert


def update(session: Session, *, incident_id: str, user: User, key: str, colour: str | None = None,
           expires_at: datetime | None = None, headline: dict[str, str] | None = None,
           description: dict[str, str] | None = None, instruction: dict[str, str] | None = None) -> CapAlert:
    """Update the released warning in force (CAP Update, `references` the ones it replaces), at once."""
    existing = session.exec(select(CapAlert).where(CapAlert.idempotency_key == key)).first()
    if existing is not None:
        return existing
    texts = {"headline": _text(headline, "headline"), "description": _text(description, "description"),
             "instruction": _text(instruction, "instruction")}
    incident = lock_incident(session, incident_id)
    base, previous = _latest_released(session, incident)
    authority = may_amend(session, user=user, alert=base)
    if colour is None and expires_at is None and not any(texts.values()):
        raise WarningInvalid("an update changes the colour, the expiry or a text")
    now = utcnow()
    content, new_colour, new_expiry = _recomposed(base, incident, colour=colour, expires_at=expires_at, now=now,
                                                  texts=texts)
    actor = f"user:{user.username}"
    alert = _successor(session, incident, base, previous, msg_type="Update", actor=actor, key=key, content=content,
                       colour=new_colour, expires_at=new_expiry, now=now, authority=authority)
    _published(session, incident, alert, actor=actor, kind=LedgerKind.warning_updated, at=now,
               extra={"authority": authority})
    return alert


def cancel(session: Session, *, incident_id: str, user: User, key: str, reason: str) -> CapAlert:
    """Cancel (解除) the released warning in force (CAP Cancel, `references` the ones it ends), at once."""
    existing = session.exec(select(CapAlert).where(CapAlert.idempotency_key == key)).first()
    if existing is not None:
        return existing
    reason = xml_safe(reason).strip()
    if not reason:
        raise ReasonRequired("say why the warning is cancelled (it is published as the cancellation's description)")
    if len(reason) > MAX_TEXT:
        raise WarningInvalid(f"the reason has at most {MAX_TEXT} characters")
    incident = lock_incident(session, incident_id)
    base, previous = _latest_released(session, incident)
    authority = may_amend(session, user=user, alert=base)
    now = utcnow()
    colour = base.colour or "blue"
    content = dict(base.content)
    issuer, event = content["issuer"], content["event"]
    content.update(
        headline={"zh": f"{issuer['zh']}解除{event['zh']}{notice.COLOUR_NAMES[colour]['zh']}预警",
                  "en": f"{issuer['en']} lifts the {notice.COLOUR_NAMES[colour]['en']} {event['en']} warning"},
        description={"zh": reason, "en": reason},
        instruction={"zh": "预警已解除，请继续关注政府部门发布的最新信息。",
                     "en": "The warning is lifted; keep following the latest official information."},
        response_type="AllClear")
    actor = f"user:{user.username}"
    alert = _successor(session, incident, base, previous, msg_type="Cancel", actor=actor, key=key, content=content,
                       colour=colour, expires_at=max(base.expires_at or now, now), now=now, authority=authority)
    _published(session, incident, alert, actor=actor, kind=LedgerKind.warning_cancelled, at=now,
               extra={"authority": authority, "reason": reason})
    return alert
